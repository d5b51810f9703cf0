"""The musicnn wheel's checkpoints as coldtag packages: read without TensorFlow, equal to the TensorFlow
original, resolved by name, annotating through ``coldtag annotate``, and a start for fine-tuning.

Needs the ``musicnn`` 0.1.0 wheel installed (``scripts/setup.sh`` does: ``uv pip install --no-deps
musicnn==0.1.0``); never TensorFlow.
"""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchcodec.encoders import AudioEncoder

from annotation.cli import cli_main
from annotation.records import read_annotations
from coldtag.storage import read_package
from scripts.musicnn_reference import SAMPLE_RATE, reference_signal
from tagging.audio import load_audio
from tagging.frontend import Frontend
from tagging.lightning import TaggerModule
from tagging.models.musicnn import PATCH_FRAMES, VGG, MusiCNN
from tagging.models.tagger import AudioTagger
from tagging.pretrained import convert as pretrained
from tagging.pretrained.convert import CHUNK_SAMPLES, HOP, N_FFT, NAMES, convert, resolve_model
from tagging.pretrained.tfcheckpoint import read_checkpoint

REFERENCE = json.loads((Path(__file__).parents[1] / "reference" / "musicnn_reference.json").read_text())
# See test_the_port_gives_the_tensorflow_models_probabilities for where this bound comes from.
PROBABILITY_BOUND = 2e-4
REFERENCE_VOCAB = {"groups": {"genre": {"type": "multilabel", "labels": ["rock", "pop"]}}}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("COLDTAG_HOME", str(tmp_path_factory.getbasetemp() / "coldtag-home"))


def _wheel_patches(wave: torch.Tensor) -> torch.Tensor:
    """The wheel's patches of a track, as samples: librosa's centred frames (reflect-padded by n_fft / 2),
    cut into consecutive 187-frame patches from the start, the incomplete tail dropped (extractor.batch_data).
    Each patch is the 48128 samples whose uncentred frames are that patch's frames."""
    padded = F.pad(wave.view(1, 1, -1), (N_FFT // 2, N_FFT // 2), mode="reflect").view(-1)
    frames = len(wave) // HOP + 1
    starts = range(0, frames - PATCH_FRAMES + 1, PATCH_FRAMES)
    return torch.stack([padded[start * HOP:start * HOP + CHUNK_SAMPLES] for start in starts])


def _in_wheel_order(model: AudioTagger, scores: dict[str, torch.Tensor], labels: list[str]) -> np.ndarray:
    """Grouped ``{group: (n, group_labels)}`` -> ``(n, 50)`` in the wheel's tag order."""
    columns = {label: scores[name][:, j] for name, group in model.labels.groups.items()
               for j, label in enumerate(group.labels)}
    return torch.stack([columns[label] for label in labels], dim=1).numpy()


def test_the_checkpoint_reader_gives_every_weight_with_its_shape():
    tensors = read_checkpoint(f"{pretrained.wheel_dir() / 'MTT_musicnn'}/")
    weights = {k: v for k, v in tensors.items() if "Adam" not in k and not k.endswith("_power")}
    assert len(weights) == 64  # 8 convolutions and 2 dense layers (w, b), 11 batch norms (4 each)
    assert tensors["conv2d/kernel"].shape == (7, 38, 1, 204) and tensors["conv2d/kernel"].dtype == np.float32
    assert tensors["conv2d_5/kernel"].shape == (7, 561, 1, 64)
    assert tensors["dense_1/kernel"].shape == (200, 50)
    assert np.all(tensors["batch_normalization_9/moving_variance"] > 0)


def test_a_file_that_is_no_checkpoint_is_refused_by_name(tmp_path):
    (tmp_path / "x.index").write_bytes(b"\0" * 100)
    (tmp_path / "x.data-00000-of-00001").write_bytes(b"")
    with pytest.raises(ValueError, match=r"x\.index: not a TensorBundle index"):
        read_checkpoint(tmp_path / "x")
    with pytest.raises(FileNotFoundError, match=r"y\.index: missing"):
        read_checkpoint(tmp_path / "y")


@pytest.mark.parametrize("checkpoint", sorted(NAMES.values()))
def test_the_port_gives_the_tensorflow_models_probabilities(checkpoint):
    """On the wheel's own patches of `reference_signal`, every tag probability of every patch and of the track
    (their mean, as the wheel's tagger takes it) is the TensorFlow model's within PROBABILITY_BOUND.

    TensorFlow does not run here or in CI: its probabilities were computed once by
    scripts/musicnn_reference.py (the wheel's extractor and graph, TensorFlow 2.15 in a throwaway venv)
    and are kept in tests/reference/musicnn_reference.json.

    The bound: both sides compute in float32 from the same samples; float32 round-off (a different summation
    order in librosa's and torch's FFT and mel, TensorFlow's and torch's convolutions) moves a probability by
    about 1e-6. The one step where they can part by more is the float16 cast of the mel power (the wheel's
    and ours): a power within float32 error of a float16 rounding boundary may round up on one side and down
    on the other, moving that bin's log10(1 + 10000 p) by at most log10(1 + 2**-10) = 4.2e-4. Moving *every*
    bin of every patch by that much (random signs) moved the four models' probabilities on this clip by at
    most 1.8e-4; a rounding split falls on a few bins of a patch, not on all of them, so 2e-4 holds with
    room. (Measured at the time of writing: at most 1.7e-5.) A wrong padding, epsilon, layer order or
    flattening order moves them by 1e-3 to 1.
    """
    reference = REFERENCE["models"][checkpoint]
    model = convert(checkpoint)
    patches = _wheel_patches(torch.from_numpy(reference_signal()))
    theirs = np.array(reference["patch_probabilities"])
    assert patches.shape == (len(theirs), CHUNK_SAMPLES)
    with torch.no_grad():
        ours = _in_wheel_order(model, model.scores(model(patches)), reference["labels"])
        track = model.chunk_outputs([patches]).scores
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=PROBABILITY_BOUND)
    np.testing.assert_allclose(_in_wheel_order(model, track, reference["labels"])[0],
                               reference["track_probabilities"], rtol=0, atol=PROBABILITY_BOUND)


def test_a_chunk_with_a_windows_context_gives_the_whole_tracks_frames():
    """What lets a package cut tracks into independent chunks and still see the wheel's spectrogram: the
    uncentred frames of 48128 samples starting 256 samples before frame 187i are frames 187i..187i+186 of the
    centred (reflect-padded) whole track. Equal within 5e-4: float32 round-off may put a power on the other
    side of a float16 rounding boundary, which moves that bin by at most log10(1 + 2**-10) = 4.2e-4."""
    wave = torch.from_numpy(reference_signal())[:6 * SAMPLE_RATE]
    centred, chunked = Frontend(compression="logC"), Frontend(compression="logC", center=False)
    whole = centred(wave.unsqueeze(0))[0]  # (96, 376)
    patches = _wheel_patches(wave)
    assert patches.shape == (2, CHUNK_SAMPLES) and chunked.n_frames(CHUNK_SAMPLES) == PATCH_FRAMES
    for index, patch in enumerate(patches):
        part = chunked(patch.unsqueeze(0))[0]
        assert part.shape == (96, PATCH_FRAMES)
        np.testing.assert_allclose(part, whole[:, index * PATCH_FRAMES:(index + 1) * PATCH_FRAMES], rtol=0,
                                   atol=5e-4)
    quiet = centred(torch.zeros(1, 4000))
    assert quiet.abs().max() == 0  # log10(1 + 0): silence is 0, not a floor in dB


def test_musicnn_takes_any_length_and_vgg_only_its_patch():
    spec = torch.rand(2, 96, 100)
    assert MusiCNN().eval()(spec).shape == (2, 200)
    with pytest.raises(ValueError, match="takes 187-frame patches, got 100 frames"):
        VGG()(spec)
    assert VGG().eval()(torch.rand(2, 96, PATCH_FRAMES)).shape == (2, 256)
    with pytest.raises(ValueError, match="rhythm, harmony, band_stats and pooling do not apply"):
        AudioTagger(REFERENCE_VOCAB, backbone="musicnn", n_mels=96, rhythm=True)


def test_a_name_resolves_to_a_package_converted_once_that_says_where_it_came_from(tmp_path):
    path = resolve_model("musicnn-mtt")
    assert path == Path(os.environ["COLDTAG_HOME"]) / "models" / "musicnn-mtt"
    record = read_package(path, "AudioTagger")
    source = record["inputs"]["converted_from"]
    assert source["wheel"] == "musicnn==0.1.0" and source["license"] == "ISC"
    assert source["checkpoint"] == "MTT_musicnn" and "Universitat Pompeu Fabra" in source["license_text"]
    assert "MagnaTagATune" in source["trained_on"] and "ROC-AUC" in source["reported"]
    made = (path / "package.json").stat().st_mtime_ns
    assert resolve_model("musicnn-mtt") == path and (path / "package.json").stat().st_mtime_ns == made
    model = AudioTagger.from_pretrained(path)
    groups = model.labels.groups
    assert list(groups) == ["genre", "instrument", "mood", "voice", "other"]
    assert "piano" in groups["instrument"].labels and "female vocal" in groups["voice"].labels
    assert sum(len(g) for g in groups.values()) == 50
    assert resolve_model(tmp_path) == tmp_path  # a path passes as it is


def test_an_unknown_name_lists_the_known_ones_and_a_missing_wheel_says_how_to_install_it(monkeypatch):
    with pytest.raises(ValueError, match="musicnn-mtt, musicnn-msd, vgg-mtt, vgg-msd"):
        resolve_model("musicnn-mtx")
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"uv pip install --no-deps musicnn==0\.1\.0"):
        convert("MTT_vgg")


def _write(path: Path, wave: torch.Tensor, rate: int) -> None:
    AudioEncoder(wave.unsqueeze(0), sample_rate=rate).to_file(str(path))


def test_coldtag_annotate_takes_a_name_and_writes_the_records_of_any_package(tmp_path, capsys):
    """A small corpus (the reference clip at 16 kHz, a 4-s chord at 44.1 kHz, a 1-s clip shorter than a chunk)
    through the real command with ``--model musicnn-mtt``: the columns of a package trained here, and per
    track the probabilities the loaded model gives in `AudioTagger.annotate`, and its decided tags (at the
    shipped thresholds) except for the short clip, which is flagged and decides nothing."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    clip = torch.from_numpy(reference_signal())
    t = torch.arange(4 * 44100) / 44100
    chord = sum(0.2 * torch.sin(2 * math.pi * f * t) for f in (220.0, 277.2, 329.6))
    _write(corpus / "clip.wav", clip, SAMPLE_RATE)
    _write(corpus / "chord.flac", chord, 44100)
    _write(corpus / "short.wav", clip[:SAMPLE_RATE], SAMPLE_RATE)
    assert cli_main([str(corpus), "--model", "musicnn-mtt", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    records = read_annotations(tmp_path / "out").to_pandas().set_index("id").sort_index()
    assert list(records.index) == ["chord.flac", "clip.wav", "short.wav"]
    assert records["error"].isna().all()

    model = AudioTagger.from_pretrained(resolve_model("musicnn-mtt"))
    toy = AudioTagger(model.config["vocab"], backbone="tiny", width=2, embedding_dim=4, n_mels=16)
    toy.save_pretrained(tmp_path / "toy")
    assert cli_main([str(corpus), "--model", str(tmp_path / "toy"), "--out", str(tmp_path / "toy-out"),
                     "--no-progress"]) == 0
    assert list(read_annotations(tmp_path / "toy-out").to_pandas().columns) == list(records.reset_index().columns)

    for name in ("clip.wav", "chord.flac", "short.wav"):
        expected = model.annotate(load_audio(corpus / name, model.sample_rate))
        np.testing.assert_allclose(records.at[name, "embedding"], expected["embedding"], atol=1e-5)
        for group in model.labels.groups:
            written = records.at[name, group]
            np.testing.assert_allclose(list(written["probabilities"].values()),
                                       list(expected[group]["probabilities"].values()), atol=1e-5)
            # the 1-s clip covers a third of a chunk: its numbers are written, no tag is decided from it
            assert list(written["tags"]) == ([] if name == "short.wav" else expected[group]["tags"])
    assert "short" in records.at["short.wav", "warnings"]
    short = model.annotate(load_audio(corpus / "short.wav", model.sample_rate))
    assert any(short[group]["tags"] for group in model.labels.groups)  # the model alone would decide a tag


def test_a_fine_tune_and_a_linear_probe_start_from_the_converted_weights():
    vocab = {"groups": {"instrument": {"type": "multilabel", "labels": ["guitar", "strings", "drums", "piano",
                                                                        "violin", "synth", "harpsichord", "flute",
                                                                        "sitar", "harp", "cello"]},
                        "scene": {"type": "multilabel", "labels": ["club", "cafe"]}}}
    package = AudioTagger.from_pretrained(resolve_model("vgg-mtt"))
    settings = {k: v for k, v in package.config.items() if k != "vocab"}
    for freeze in (False, True):
        module = TaggerModule(AudioTagger(vocab, **settings), pretrained="vgg-mtt", freeze_backbone=freeze)
        tuned, start = module.model.state_dict(), package.state_dict()
        below = [k for k in start if k.startswith("backbone.")]
        assert below and all(torch.equal(tuned[k], start[k]) for k in below)
        assert torch.equal(tuned["heads.instrument.weight"], start["heads.instrument.weight"])  # kept group
        assert tuned["heads.scene.weight"].shape == (2, 256)
        trainable = {name for name, p in module.model.named_parameters() if p.requires_grad}
        assert (trainable == {"heads.instrument.weight", "heads.instrument.bias", "heads.scene.weight",
                              "heads.scene.bias"}) == freeze
    assert module.model.pretrained_inputs["converted_from"]["wheel"] == "musicnn==0.1.0"


@pytest.mark.slow
@pytest.mark.parametrize("probe", [False, True])
def test_train_py_fine_tunes_the_named_package_with_the_shipped_config(tiny_catalog, tmp_path, probe):
    """configs/finetune_musicnn.yaml on the tiny catalog's vocabulary, one step (fast_dev_run): the exported
    package started from musicnn-mtt's weights (a linear probe keeps them exactly; a fine-tune's first step
    at the warm-up learning rate moves them by far less than they differ from a fresh network) and records
    the converted package and the wheel it came from."""
    from train import cli_main as train

    export = tmp_path / "model"
    train(["fit", "--config", "configs/finetune_musicnn.yaml",
           f"--data.init_args.manifest={tiny_catalog / 'manifest.parquet'}",
           f"--data.init_args.vocab={tiny_catalog / 'vocab.json'}", "--trainer.fast_dev_run=true",
           f"--model.init_args.freeze_backbone={str(probe).lower()}", f"--model.init_args.export_dir={export}",
           f"--model.init_args.tables_dir={tmp_path}", f"--trainer.default_root_dir={tmp_path}",
           "--trainer.logger=false", "--trainer.callbacks=[]"])  # the config's write under runs/
    start = AudioTagger.from_pretrained(resolve_model("musicnn-mtt")).state_dict()
    tuned = AudioTagger.from_pretrained(export)
    assert tuned.labels.to_dict() == json.loads((tiny_catalog / "vocab.json").read_text())
    fresh = AudioTagger(tuned.config["vocab"], **{k: v for k, v in tuned.config.items() if k != "vocab"}).state_dict()
    weights = [k for k in start if k.startswith("backbone.") and k.endswith("weight")]
    moved = max((tuned.state_dict()[k] - start[k]).abs().max().item() for k in weights)
    apart = min((fresh[k] - start[k]).abs().max().item() for k in weights)
    assert moved == 0.0 if probe else 0.0 < moved < 0.1 * apart, (moved, apart)
    inputs = read_package(export)["inputs"]
    assert inputs["pretrained"]["sha256"] == read_package(resolve_model("musicnn-mtt"))["sha256"]
    assert inputs["converted_from"]["wheel"] == "musicnn==0.1.0"


def test_the_converter_command_writes_a_package_and_names_what_it_refuses(tmp_path, capsys):
    pretrained.main(["musicnn", "--checkpoint", "MSD_vgg", "--out", str(tmp_path / "msd-vgg")])
    written = json.loads(capsys.readouterr().out)
    model = AudioTagger.from_pretrained(tmp_path / "msd-vgg")
    assert written["sha256"] == model.package["sha256"]
    assert model.config["backbone"] == "vgg" and "era" in model.labels.groups
    assert model.package["inputs"]["converted_from"]["checkpoint"] == "MSD_vgg"
    with pytest.raises(SystemExit):
        pretrained.main(["musicnn", "--checkpoint", "MSD_big", "--out", str(tmp_path / "x")])
    assert "invalid choice: 'MSD_big'" in capsys.readouterr().err
