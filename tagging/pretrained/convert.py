"""Pretrained taggers that have heard real music: the ``musicnn`` wheel's checkpoints as coldtag packages.

The ``musicnn`` 0.1.0 wheel (PyPI, ISC licence; Pons & Serra, "musicnn: pre-trained convolutional neural
networks for music audio tagging", ISMIR 2019 LBD) ships four TensorFlow-1 checkpoints: musicnn and a VGG-like
baseline, each trained on MagnaTagATune (MTT, 50 tags) and on the Million Song Dataset (MSD, 50 last.fm tags).
This module reads them without TensorFlow (`tagging.pretrained.tfcheckpoint`) into `AudioTagger`s with the ``musicnn``
or ``vgg`` backbone (`tagging.models.musicnn`) and saves them as packages whose ``package.json`` names the wheel,
its version and licence (the ``"converted_from"`` input, carried on by every fine-tune of them).

    python -m tagging pretrained musicnn --checkpoint MTT_musicnn --out DIR   # one package
    python -m tagging pretrained cache                                        # all four, into the cache

`resolve_model` turns a name given where a package path is expected into a package: a converted name
(``musicnn-mtt``, ``musicnn-msd``, ``vgg-mtt``, ``vgg-msd``) into its package under ``$COLDTAG_HOME/models``
(default ``~/.cache/coldtag``), converted from the installed wheel on first use; a student's name (`STUDENTS`:
small taggers distilled from these on real recordings by `tagging.pretrained.distil`) into its package shipped in
``tagging/pretrained/students/``.

Decision thresholds: a converted package decides each tag at the threshold `THRESHOLDS_FILE` ships for it,
chosen without labels by `tagging.pretrained.agreement.expected_share_thresholds` on the training albums of the
real-recording corpus (``scripts/student_eval.py thresholds``); the students ship theirs, chosen the same way.
A catalog with labelled tracks replaces them with its own: fine-tune on its labels (``train.py fit``, whose
validation sets F1-optimal thresholds), or write its own values into the package's ``thresholds.json`` and
save it again (`AudioTagger.set_thresholds` and ``save_pretrained``). The wheel pins numpy<1.17 and
TensorFlow, neither of which is needed here: install it with ``uv pip install --no-deps musicnn==0.1.0``.

Track outputs: the wheel averages the tag probabilities of consecutive 3-s patches from the track's start and
drops the tail; a package averages them over `AudioTagger`'s chunk grid (consecutive chunks evenly spread
over the whole track, tail included), so on most tracks the two average slightly different patches. On the
patches the wheel cuts, the probabilities are the wheel's (tests/tagging/test_pretrained.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from importlib import metadata
from pathlib import Path

import torch

from coldtag.storage import ProvenanceError, file_sha256, read_package
from tagging.models.musicnn import PATCH_FRAMES
from tagging.models.tagger import AudioTagger
from tagging.pretrained.tfcheckpoint import read_checkpoint

WHEEL = "musicnn"
WHEEL_VERSION = "0.1.0"
INSTALL_HINT = f"uv pip install --no-deps {WHEEL}=={WHEEL_VERSION}"
# name given to --model -> the wheel's checkpoint folder
NAMES = {"musicnn-mtt": "MTT_musicnn", "musicnn-msd": "MSD_musicnn", "vgg-mtt": "MTT_vgg", "vgg-msd": "MSD_vgg"}
STUDENTS_DIR = Path(__file__).resolve().parent / "students"
THRESHOLDS_FILE = Path(__file__).resolve().parent / "thresholds.json"
DATASETS = {"MTT": "MagnaTagATune (Law et al., ISMIR 2009), top 50 tags",
            "MSD": "Million Song Dataset (Bertin-Mahieux et al., ISMIR 2011), top 50 last.fm tags"}
SAMPLE_RATE, N_FFT, HOP, N_MELS = 16000, 512, 256, 96
# 187 uncentred frames: (187 - 1) hops plus one window, so every frame sees the chunk's own samples.
CHUNK_SAMPLES = (PATCH_FRAMES - 1) * HOP + N_FFT  # 48128
# Our grouping of each wheel's 50 tags (musicnn/configuration.py), for records grouped like every package's.
GROUPS = {
    "MTT": {
        "genre": ["classical", "techno", "electronic", "rock", "ambient", "indian", "opera", "pop", "classic",
                  "new age", "dance", "country", "metal"],
        "instrument": ["guitar", "strings", "drums", "piano", "violin", "synth", "harpsichord", "flute", "sitar",
                       "harp", "cello"],
        "mood": ["slow", "fast", "loud", "quiet", "soft", "weird"],
        "voice": ["vocal", "female", "male", "singing", "vocals", "no vocals", "woman", "male vocal", "no vocal",
                  "man", "choir", "voice", "male voice", "female vocal", "no voice", "female voice", "choral"],
        "other": ["beat", "beats", "solo"],
    },
    "MSD": {
        "genre": ["rock", "pop", "alternative", "indie", "electronic", "dance", "alternative rock", "jazz", "metal",
                  "classic rock", "soul", "indie rock", "electronica", "folk", "punk", "blues", "hard rock",
                  "ambient", "experimental", "Hip-Hop", "country", "funk", "electro", "heavy metal",
                  "Progressive rock", "rnb", "indie pop", "House", "chillout", "easy listening"],
        "era": ["00s", "80s", "90s", "70s", "60s", "oldies"],
        "mood": ["beautiful", "Mellow", "chill", "sexy", "catchy", "party", "sad", "happy"],
        "instrument": ["instrumental", "acoustic", "guitar"],
        "voice": ["female vocalists", "male vocalists", "female vocalist"],
    },
}


def wheel_dir() -> Path:
    """The installed ``musicnn`` package's folder; a clear error saying how to install it when it is absent."""
    spec = importlib.util.find_spec(WHEEL)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {WHEEL} wheel is not installed; install it (without its TensorFlow and "
                                  f"numpy<1.17 pins, which coldtag does not need) with: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def _wheel_labels(dataset: str) -> list[str]:
    """The wheel's own tag order (``MTT_LABELS`` / ``MSD_LABELS`` of musicnn/configuration.py)."""
    namespace: dict = {}
    exec((wheel_dir() / "configuration.py").read_text(), namespace)  # constants only; imports nothing
    return list(namespace[f"{dataset}_LABELS"])


def _bn(state: dict, prefix: str, tensors: dict, name: str) -> None:
    for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                         ("running_var", "moving_variance")):
        state[f"{prefix}.{ours}"] = tensors[f"{name}/{theirs}"]


def _conv2d(state: dict, prefix: str, tensors: dict, name: str) -> None:
    state[f"{prefix}.weight"] = tensors[f"{name}/kernel"].permute(3, 2, 0, 1)  # (h, w, in, out) -> (out, in, h, w)
    state[f"{prefix}.bias"] = tensors[f"{name}/bias"]


def _musicnn_state(tensors: dict) -> tuple[dict, str]:
    state = {}
    _bn(state, "backbone.input_norm", tensors, "batch_normalization")
    for i, prefix in enumerate(["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2"]):
        _conv2d(state, f"backbone.{prefix}.0", tensors, f"conv2d_{i}" if i else "conv2d")
        _bn(state, f"backbone.{prefix}.2", tensors, f"batch_normalization_{i + 1}")
    for i in range(3):
        # A (7 x features) kernel on a one-channel image is a 1-d convolution over the features as channels.
        kernel = tensors[f"conv2d_{i + 5}/kernel"]  # (7, features, 1, filters)
        state[f"backbone.midend.{i}.0.weight"] = kernel[:, :, 0, :].permute(2, 1, 0)  # (filters, features, 7)
        state[f"backbone.midend.{i}.0.bias"] = tensors[f"conv2d_{i + 5}/bias"]
        _bn(state, f"backbone.midend.{i}.2", tensors, f"batch_normalization_{i + 6}")
    _bn(state, "backbone.pool_norm", tensors, "batch_normalization_9")
    state["backbone.dense.0.weight"] = tensors["dense/kernel"].T
    state["backbone.dense.0.bias"] = tensors["dense/bias"]
    _bn(state, "backbone.dense.2", tensors, "batch_normalization_10")
    return state, "dense_1"


def _vgg_state(tensors: dict) -> tuple[dict, str]:
    state = {}
    _bn(state, "backbone.input_norm", tensors, "batch_normalization")
    for i in range(5):
        _conv2d(state, f"backbone.blocks.{i}.0", tensors, f"{i + 1}CNN")
        _bn(state, f"backbone.blocks.{i}.2", tensors, f"batch_normalization_{i + 1}")
    return state, "dense"


def convert(checkpoint: str) -> AudioTagger:
    """The wheel's checkpoint ``checkpoint`` (``MTT_musicnn``, ``MTT_vgg``, ``MSD_musicnn``, ``MSD_vgg``) as an
    `AudioTagger` in eval mode, its weights those of the checkpoint."""
    if checkpoint not in NAMES.values():
        raise ValueError(f"--checkpoint {checkpoint!r}: the wheel has {sorted(NAMES.values())}")
    dataset, arch = checkpoint.split("_")
    # The wheel saved each checkpoint with its folder as the prefix: the files are ".index" and ".data-...".
    tensors = {k: torch.from_numpy(v) for k, v in read_checkpoint(f"{wheel_dir() / checkpoint}/").items()}
    labels = _wheel_labels(dataset)
    groups = GROUPS[dataset]
    grouped = sorted(label for group in groups.values() for label in group)
    if grouped != sorted(labels):
        raise ValueError(f"{wheel_dir() / 'configuration.py'}: its {dataset} tags are not the ones coldtag groups "
                         f"(a different wheel version? this converter is for {WHEEL} {WHEEL_VERSION})")
    vocab = {"groups": {name: {"type": "multilabel", "labels": group} for name, group in groups.items()}}
    width, embedding_dim = (64, 200) if arch == "musicnn" else (128, 256)
    model = AudioTagger(vocab=vocab, backbone=arch, width=width, embedding_dim=embedding_dim, dropout=0.5,
                        sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
                        chunk_seconds=CHUNK_SAMPLES / SAMPLE_RATE, eval_chunks=None, log_compression="logC",
                        frontend_center=False)
    state, output = (_musicnn_state if arch == "musicnn" else _vgg_state)(tensors)
    for name, group in groups.items():
        index = torch.tensor([labels.index(label) for label in group])
        state[f"heads.{name}.weight"] = tensors[f"{output}/kernel"][:, index].T
        state[f"heads.{name}.bias"] = tensors[f"{output}/bias"][index]
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")
                and not k.startswith("thresholds_")}
    if set(state) != expected:
        raise ValueError(f"{checkpoint}: the converted weights do not fit the model "
                         f"(missing {sorted(expected - set(state))[:5]}, extra {sorted(set(state) - expected)[:5]})")
    model.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=False)
    name = next(n for n, c in NAMES.items() if c == checkpoint)
    for group, values in shipped_thresholds().get(name, {}).items():
        model.set_thresholds(group, torch.tensor([float(values[label]) for label in groups[group]]))
    return model.eval()


def shipped_thresholds() -> dict:
    """``{name: {group: {label: threshold}}}`` of the converted models (`THRESHOLDS_FILE`; empty without it)."""
    return json.loads(THRESHOLDS_FILE.read_text()) if THRESHOLDS_FILE.is_file() else {}


def student_names() -> list[str]:
    """The names of the student packages shipped in `STUDENTS_DIR`."""
    if not STUDENTS_DIR.is_dir():
        return []
    return sorted(p.name for p in STUDENTS_DIR.iterdir() if (p / "package.json").is_file())


def known_names() -> list[str]:
    """Every name `resolve_model` takes in place of a package path."""
    return [*NAMES, *student_names()]


def provenance(checkpoint: str) -> dict:
    """The ``"converted_from"`` input of a converted package: the wheel, its version and licence, the
    checkpoint and the SHA-256 of its files."""
    folder = wheel_dir() / checkpoint
    dataset, arch = checkpoint.split("_")
    licence = next((p for p in metadata.distribution(WHEEL).files or [] if p.name == "LICENSE.md"), None)
    files = {name: file_sha256(folder / name) for name in (".index", ".data-00000-of-00001")}
    return {
        "kind": "tensorflow-checkpoint",
        "sha256": file_sha256(folder / ".data-00000-of-00001"),
        "source": str(folder),
        "wheel": f"{WHEEL}=={metadata.version(WHEEL)}",
        "checkpoint": checkpoint,
        "files_sha256": files,
        "license": "ISC",
        "license_text": licence.read_text() if licence is not None else None,
        "trained_on": DATASETS[dataset],
        "reference": "Pons & Serra, musicnn: pre-trained convolutional neural networks for music audio tagging, "
                     "ISMIR 2019 late-breaking demo" + ("" if arch == "musicnn" else " (its VGG-like baseline)"),
        "reported": (folder / "experiment.result").read_text().strip(),
        "thresholds_sha256": file_sha256(THRESHOLDS_FILE) if THRESHOLDS_FILE.is_file() else None,
    }


def convert_package(checkpoint: str, out: str | Path, overwrite: bool = False) -> dict:
    """Convert ``checkpoint`` and save it as a package at ``out``; returns the package record."""
    return convert(checkpoint).save_pretrained(out, inputs={"converted_from": provenance(checkpoint)},
                                               overwrite=overwrite)


def cache_dir() -> Path:
    """Where named models are converted to: ``$COLDTAG_HOME/models``, default ``~/.cache/coldtag/models``."""
    return Path(os.environ.get("COLDTAG_HOME") or Path.home() / ".cache" / "coldtag") / "models"


def resolve_model(name_or_path: str | Path) -> Path:
    """A package path as given, a student's name (`student_names`) as its shipped package, or a converted
    name (`NAMES`) as its package in `cache_dir`, converted from the installed wheel the first time (again if
    the installed wheel's checkpoint or the shipped thresholds changed). A missing path that is not a known
    name is refused, listing them. A name wins over a folder of that name in the working directory: give such
    a folder by its absolute path."""
    name = str(name_or_path)
    if name in student_names():
        return STUDENTS_DIR / name
    if name not in NAMES:
        path = Path(name_or_path)
        if not path.exists() and os.sep not in name and "/" not in name:
            raise ValueError(f"{name!r}: neither a package directory nor a known pretrained model "
                             f"({', '.join(known_names())})")
        return path
    target = cache_dir() / name
    try:
        record = read_package(target, AudioTagger.__name__)
        converted = record["inputs"]["converted_from"]
        current = converted["sha256"] == file_sha256(wheel_dir() / NAMES[name] / ".data-00000-of-00001") and \
            converted.get("thresholds_sha256") == (file_sha256(THRESHOLDS_FILE) if THRESHOLDS_FILE.is_file()
                                                   else None)
    except (FileNotFoundError, ProvenanceError, KeyError):
        current = False
    if not current:
        convert_package(NAMES[name], target, overwrite=True)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tagging pretrained", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("musicnn", help="convert one checkpoint of the musicnn wheel into a package")
    one.add_argument("--checkpoint", required=True, choices=sorted(NAMES.values()))
    one.add_argument("--out", required=True, type=Path, help="the package folder to write")
    one.add_argument("--overwrite", action="store_true", help="write beside other files in --out")
    commands.add_parser("cache", help=f"convert every named model ({', '.join(NAMES)}) into the cache")
    commands.add_parser("list", help="every name --model takes in place of a package path")
    options = parser.parse_args(argv)
    try:
        if options.command == "musicnn":
            record = convert_package(options.checkpoint, options.out, options.overwrite)
            print(json.dumps({"package": str(options.out), "sha256": record["sha256"]}))
        elif options.command == "list":
            for name in known_names():
                print(name)
        else:
            for name in NAMES:
                print(f"{name}: {resolve_model(name)}")
    except (OSError, ValueError, ImportError) as error:  # ImportError: the wheel is not installed
        sys.exit(f"python -m tagging pretrained: {error}")
