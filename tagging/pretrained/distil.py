"""Teacher-student distillation: pretrained taggers' outputs on unlabelled audio train a small, fast
`AudioTagger` (Hinton, Vinyals & Dean, "Distilling the knowledge in a neural network", 2015; the student's
inputs augmented while the teacher hears clean audio, as in Won, Choi & Serra, "Semi-supervised music tagging
transformer", ISMIR 2021).

    python -m tagging distil --teacher musicnn-mtt [--teacher musicnn-msd] --manifest data/real/manifest.csv \\
        --out STUDENT [--width 16 --n-mels 64 --hop-length 512 --epochs 20]
    python -m tagging distil --teacher musicnn-mtt --audio DIR --out STUDENT
    python -m tagging distil --teacher musicnn-mtt --manifest M.csv --out STUDENT --from-teacher 24 --lr 1e-3

``--from-teacher N``: the student is the teacher's own musicnn with N of its 204 timbral filters per shape, started
from the teacher's weights (`tagging.pretrained.prune`), rather than a network of its own.

Data: a manifest (``audio_path``, ``split``, and ``album``) whose ``train`` tracks the student learns from and whose
``val`` tracks choose its best epoch, or a folder whose files are all ``train``. Every chunk of every track
(up to ``max_seconds`` of it) on the teacher's chunk grid is one example; its target is each teacher's logits
on the clean chunk. With several teachers the student has every teacher's groups, each named
``<teacher>_<group>`` (``mtt_genre``, ``msd_genre``): one student, both vocabularies.

Augmentation (training examples only): the chunk as re-encoded by a lossy codec (MP3 or Opus at a low bit
rate, decoded again), a gain, a spectral tilt (an EQ of a few dB per octave) and short crops (a random part
of the chunk, zero-padded as a short upload is). The loss is the mean squared difference of logits
(``loss="logits"``; Ba & Caruana, "Do deep nets really need to be deep?", 2014), which weighs a tag the
teacher finds unlikely on every track as much as a common one, or binary cross-entropy on the teacher's
probabilities (``loss="probabilities"``).

Decoded audio, its re-encodings and the teachers' logits are cached under ``cache`` (per file, keyed by the
file's path, size and time and by the teacher package's hash), so a second student costs only its training.
A file that cannot be read is logged and left out; the rest go on.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

from coldtag.storage import file_sha256, read_package, reference
from tagging.audio import AUDIO_SUFFIXES, load_audio
from tagging.data.modules import collate_tracks
from tagging.models.tagger import AudioTagger
from tagging.pretrained.convert import known_names, resolve_model
from tagging.pretrained.prune import prune_musicnn

log = logging.getLogger(__name__)

CODECS = {"mp3": ("libmp3lame", "48k", "mp3"), "opus": ("libopus", "24k", "ogg")}


@dataclass(frozen=True)
class CorpusTrack:
    path: str
    split: str  # "train" or "val"
    album: str = ""


def manifest_tracks(manifest: str | Path) -> list[CorpusTrack]:
    """The ``train`` and ``val`` rows of a manifest CSV with ``audio_path`` and ``split`` columns (``album``
    optional; a relative path is relative to the manifest's folder); other splits (the held-out ``test``) are
    never read here."""
    manifest = Path(manifest)
    with open(manifest, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"audio_path", "split"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"--manifest {manifest}: no {sorted(missing)} column")
        tracks = [CorpusTrack(str(manifest.parent / row["audio_path"]), row["split"], row.get("album") or "")
                  for row in reader if row["split"] in ("train", "val")]
    if not any(t.split == "train" for t in tracks):
        raise ValueError(f"--manifest {manifest}: no track of split 'train'")
    return tracks


def audio_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--audio {folder}: not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(f"--audio {folder}: holds no audio file ({', '.join(sorted(AUDIO_SUFFIXES))})")
    return paths


def reencode(wave: torch.Tensor, sample_rate: int, codec: str) -> torch.Tensor:
    """``wave`` through a lossy ``codec`` (`CODECS`) and back, with the ``ffmpeg`` command: same length."""
    encoder, bitrate, container = CODECS[codec]
    raw = ["-f", "f32le", "-ar", str(sample_rate), "-ac", "1"]
    encoded = subprocess.run(["ffmpeg", "-v", "error", *raw, "-i", "pipe:", "-c:a", encoder, "-b:a", bitrate,
                              "-f", container, "pipe:"], input=wave.numpy().astype("<f4").tobytes(),
                             capture_output=True, check=True).stdout
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:", *raw, "pipe:"], input=encoded,
                             capture_output=True, check=True).stdout
    out = torch.from_numpy(np.frombuffer(decoded, dtype="<f4").copy())
    return F.pad(out, (0, max(0, len(wave) - len(out))))[:len(wave)]


def _file_key(path: str, max_seconds: float) -> str:
    stat = os.stat(path)
    return hashlib.sha1(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{max_seconds}".encode()
                        ).hexdigest()[:20]


def cached_audio(path: str, sample_rate: int, max_seconds: float, codecs: tuple[str, ...], cache: Path
                 ) -> dict[str, torch.Tensor]:
    """``{"clean": wave, codec: re-encoded wave, ...}`` of the first ``max_seconds`` of ``path`` as int16
    (full scale 32767: a quarter of float32's memory for hours of audio), decoded once and cached."""
    file = cache / "audio" / f"{_file_key(path, max_seconds)}-{sample_rate}.safetensors"
    waves = load_file(file) if file.exists() else {}
    if "clean" not in waves:
        clean = load_audio(path, sample_rate)[:round(max_seconds * sample_rate)]
        waves = {"clean": (clean.clamp(-1, 1) * 32767).round().short()}
    changed = not file.exists()
    for codec in codecs:
        if codec not in waves:
            waves[codec] = (reencode(waves["clean"].float() / 32767, sample_rate, codec).clamp(-1, 1) * 32767
                            ).round().short()
            changed = True
    if changed:
        file.parent.mkdir(parents=True, exist_ok=True)
        save_file(waves, file)
    return {name: wave for name, wave in waves.items() if name == "clean" or name in codecs}


@torch.no_grad()
def cached_logits(teacher: AudioTagger, wave: torch.Tensor, path: str, max_seconds: float, cache: Path,
                  chunk_batch: int = 16) -> dict[str, torch.Tensor]:
    """The teacher's logits ``{group: (chunks, labels)}`` on every chunk of ``wave`` (its chunk grid without a
    cap: `AudioTagger.chunk_scores`), cached by the teacher package's hash."""
    file = cache / "teachers" / teacher.package["sha256"][:16] / f"{_file_key(path, max_seconds)}.safetensors"
    if file.exists():
        return load_file(file)
    teacher.eval()
    scored = teacher.chunk_scores(wave, max_chunks=None, logits=True, chunk_batch=chunk_batch)
    logits = {**scored.scores, "starts": torch.tensor(scored.starts)}
    file.parent.mkdir(parents=True, exist_ok=True)
    save_file(logits, file)
    return logits


@dataclass
class Augment:
    """What a training chunk may go through; probabilities per chunk, ranges uniform."""

    codec_share: float = 0.5  # re-encoded (each codec equally often) instead of clean
    gain_db: tuple[float, float] = (-12.0, 6.0)
    tilt_db_per_octave: tuple[float, float] = (-3.0, 3.0)
    tilt_share: float = 0.5
    crop_share: float = 0.2  # a short crop of the chunk, zero-padded
    crop_seconds: tuple[float, float] = (1.0, 2.5)

    def tilt(self, wave: torch.Tensor, sample_rate: int, slope: float) -> torch.Tensor:
        """A spectral tilt of ``slope`` dB per octave about 1 kHz (flat below 50 Hz)."""
        spectrum = torch.fft.rfft(wave)
        freqs = torch.fft.rfftfreq(len(wave), 1 / sample_rate).clamp_min(50.0)
        gain = torch.pow(10.0, slope * torch.log2(freqs / 1000.0) / 20.0)
        return torch.fft.irfft(spectrum * gain, n=len(wave))


@dataclass
class TeacherTrack:
    waves: dict[str, torch.Tensor]  # "clean" and the codecs, (time,) int16 each (`cached_audio`)
    starts: torch.Tensor  # (chunks,)
    logits: dict[str, torch.Tensor]  # group -> (chunks, labels)


@dataclass
class DistilChunks(Dataset):
    """Every chunk of every track: ``{"track_id", "wave": (chunk,), "targets": {group: logits}}``; with
    ``augment`` the wave is augmented (the targets stay the clean chunk's)."""

    tracks: list[TeacherTrack]
    chunk: int
    sample_rate: int
    augment: Augment | None = None
    seed: int = 0
    index: list[tuple[int, int]] = field(init=False)

    def __post_init__(self):
        self.index = [(t, c) for t, track in enumerate(self.tracks) for c in range(len(track.starts))]
        self.rng = np.random.default_rng(self.seed)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        t, c = self.index[i]
        track = self.tracks[t]
        start = int(track.starts[c])
        variant = "clean"
        augment, rng = self.augment, self.rng
        codecs = [name for name in track.waves if name != "clean"]
        if augment is not None and codecs and rng.random() < augment.codec_share:
            variant = codecs[rng.integers(len(codecs))]
        wave = track.waves[variant][start:start + self.chunk].float() / 32767
        wave = F.pad(wave, (0, self.chunk - len(wave)))
        if augment is not None:
            if rng.random() < augment.tilt_share:
                wave = augment.tilt(wave, self.sample_rate, rng.uniform(*augment.tilt_db_per_octave))
            wave = wave * 10 ** (rng.uniform(*augment.gain_db) / 20)
            if rng.random() < augment.crop_share:
                length = min(self.chunk, round(rng.uniform(*augment.crop_seconds) * self.sample_rate))
                begin = int(rng.integers(0, self.chunk - length + 1))
                wave = F.pad(wave[begin:begin + length], (0, self.chunk - length))
            wave = wave.clamp(-1.0, 1.0)
        return {"track_id": f"{t}#{c}", "wave": wave.float(),
                "targets": {name: value[c] for name, value in track.logits.items()}}


class DistilModule(pl.LightningModule):
    """The student and its loss against the teachers' logits; ``val/loss`` on clean validation chunks."""

    def __init__(self, model: AudioTagger, loss: str = "logits", lr: float = 3e-3, weight_decay: float = 1e-4,
                 epochs: int = 20):
        super().__init__()
        if loss not in ("logits", "probabilities"):
            raise ValueError(f"loss must be 'logits' or 'probabilities', got {loss!r}")
        self.model, self.loss_kind, self.lr, self.weight_decay, self.epochs = model, loss, lr, weight_decay, epochs

    def loss(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        terms = []
        for name, target in targets.items():
            if self.loss_kind == "logits":
                terms.append(F.mse_loss(outputs[name].float(), target.float(), reduction="sum"))
            else:
                terms.append(F.binary_cross_entropy_with_logits(outputs[name].float(), torch.sigmoid(target.float()),
                                                                reduction="sum"))
        return torch.stack(terms).sum() / (len(next(iter(targets.values()))) * sum(t.shape[1] for t in
                                                                                    targets.values()))

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        loss = self.loss(self.model(batch["wave"]), batch["targets"])
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["wave"]))
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_train_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        log.info("epoch %d of %d: %s", self.current_epoch + 1, self.epochs,
                 ", ".join(f"{name} {float(metrics[name]):.4f}" for name in ("train/loss", "val/loss")
                           if name in metrics))

    def configure_optimizers(self):
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        other = [p for p in self.model.parameters() if p.dim() < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                       {"params": other, "weight_decay": 0.0}], lr=self.lr)
        steps = self.trainer.estimated_stepping_batches
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=self.lr, total_steps=max(3, steps),
                                                       pct_start=max(2 / max(3, steps), 0.1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def teacher_prefix(name: str | Path) -> str:
    """The group prefix of a teacher in a many-teacher student: ``musicnn-mtt`` -> ``mtt``; a folder's name."""
    name = Path(str(name)).name
    return name.rsplit("-", 1)[-1] if "-" in name else name


def teacher_input(name: str | Path, path: Path) -> dict:
    """How a student records a teacher: its package reference (without the folder, for a teacher given by a
    name), the name it was given by, and what the teacher itself was converted from (the wheel, its version
    and licence), without the licence's text."""
    record = read_package(path)
    converted = {k: v for k, v in record.get("inputs", {}).get("converted_from", {}).items()
                 if k not in ("license_text", "source")}
    ref = reference(path)
    if str(name) in known_names():  # found again by its name; a machine's cache folder says nothing more
        del ref["source"]
    return {**ref, "name": str(name), **({"converted_from": converted} if converted else {})}


def taught_groups(student: AudioTagger, teacher: str) -> dict[str, str] | None:
    """``{teacher group: student group}`` for the groups ``student`` learnt from the teacher named ``teacher``
    (as its package records it), or None if that teacher did not teach it."""
    inputs = (student.package or {}).get("inputs", {})
    if inputs.get("teacher", {}).get("name") == teacher:
        return {name: name for name in student.labels.groups}
    prefix = teacher_prefix(teacher)
    if inputs.get(f"teacher_{prefix}", {}).get("name") == teacher:
        return {name[len(prefix) + 1:]: name for name in student.labels.groups if name.startswith(f"{prefix}_")}
    return None


def student_vocab(teachers: list[tuple[str, AudioTagger]]) -> tuple[dict, dict[str, tuple[int, str]]]:
    """The student's vocabulary and, per student group, (teacher index, teacher group)."""
    if len(teachers) == 1:
        vocab = teachers[0][1].config["vocab"]
        return vocab, {name: (0, name) for name in vocab["groups"]}
    groups, source = {}, {}
    for i, (prefix, teacher) in enumerate(teachers):
        for name, group in teacher.config["vocab"]["groups"].items():
            groups[f"{prefix}_{name}"] = group
            source[f"{prefix}_{name}"] = (i, name)
    return {"groups": groups}, source


def distil(teachers: list[str | Path], out: str | Path, *, manifest: str | Path | None = None,
           audio: str | Path | None = None, student: dict | None = None, epochs: int = 20, batch_size: int = 32,
           lr: float = 3e-3, loss: str = "logits", max_seconds: float = 480.0, augment: Augment | None = None,
           codecs: tuple[str, ...] = ("mp3", "opus"), cache: str | Path = "runs/distil/cache", seed: int = 0,
           from_teacher: bool = False, overwrite: bool = False, provenance: dict | None = None) -> AudioTagger:
    """Train a student ``AudioTagger(**student)`` on ``teachers``' logits and save it as a package at ``out``.

    ``manifest`` (train/val rows) or ``audio`` (a folder, all train). ``student`` takes `AudioTagger`'s network
    and front-end arguments; the sample rate, chunk length and chunk grid are the (first) teacher's, and so
    are all teachers'. ``from_teacher``: the student is the first teacher's own network (a musicnn) with
    ``student["front_filters"]`` front-end filters, started from the teacher's weights (`prune_musicnn`; the
    heads of the groups it teaches are its own); ``student`` then holds nothing else.
    ``augment`` None: `Augment`'s defaults; ``codecs=()`` trains without re-encodings.
    ``provenance`` is recorded in the package as the ``"corpus"`` input (recipe, albums and their licences,
    command). Returns the student in eval mode, its weights those of the best validation epoch (the last
    without validation tracks)."""
    if epochs < 1 or batch_size < 1 or max_seconds <= 0:
        raise ValueError(f"epochs, batch_size and max_seconds must be positive, got {epochs}, {batch_size}, "
                         f"{max_seconds}")
    if (manifest is None) == (audio is None):
        raise ValueError("give either --manifest or --audio")
    clash = sorted(set(student or {}) & {"vocab", "sample_rate", "chunk_seconds", "eval_chunks"})
    if clash:
        raise ValueError(f"student: {clash} are the teacher's, not the student's to set")
    tracks = manifest_tracks(manifest) if manifest is not None else \
        [CorpusTrack(str(p), "train") for p in audio_files(audio)]
    paths = [resolve_model(t) for t in teachers]
    models = [AudioTagger.from_pretrained(p) for p in paths]
    first = models[0]
    for name, model in zip(teachers[1:], models[1:], strict=True):
        if (model.sample_rate, model.chunk_samples) != (first.sample_rate, first.chunk_samples):
            raise ValueError(f"--teacher {name}: its sample rate and chunk length differ from {teachers[0]}'s")
    prefixes = [teacher_prefix(t) for t in teachers]
    if len(set(prefixes)) != len(prefixes):
        raise ValueError(f"--teacher: two teachers share the name {prefixes}; give packages of distinct names")
    vocab, source = student_vocab(list(zip(prefixes, models, strict=True)))
    cache = Path(cache)
    loaded = {"train": [], "val": []}
    for track in tracks:
        try:
            waves = cached_audio(track.path, first.sample_rate, max_seconds,
                                 codecs if track.split == "train" else (), cache)
            clean = waves["clean"].float() / 32767
            teacher_logits = [cached_logits(m, clean, track.path, max_seconds, cache) for m in models]
        except (OSError, ValueError, RuntimeError, subprocess.CalledProcessError) as error:
            log.warning("%s: left out (%s)", track.path, error)
            continue
        logits = {name: teacher_logits[i][group] for name, (i, group) in source.items()}
        loaded[track.split].append(TeacherTrack(waves, teacher_logits[0]["starts"], logits))
        log.info("%s: %d chunks", track.path, len(teacher_logits[0]["starts"]))
    if not loaded["train"]:
        raise ValueError("no training file could be read")
    fixed = {"vocab": vocab, "sample_rate": first.sample_rate,
             "chunk_seconds": first.chunk_samples / first.sample_rate, "eval_chunks": first.eval_chunks}
    pl.seed_everything(seed, verbose=False)
    model = pruned_student(first, vocab, source, fixed, student or {}) if from_teacher else \
        AudioTagger(**fixed, **(student or {}))
    train = DistilChunks(loaded["train"], first.chunk_samples, first.sample_rate, augment or Augment(), seed)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, collate_fn=collate_tracks,
                        drop_last=len(train) > batch_size)
    val_loader = None
    if loaded["val"]:
        val = DistilChunks(loaded["val"], first.chunk_samples, first.sample_rate)
        val_loader = DataLoader(val, batch_size=2 * batch_size, collate_fn=collate_tracks)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=cache / "checkpoints" / Path(out).name, monitor="val/loss",
                                              mode="min", save_top_k=1) if val_loader else None
    trainer = pl.Trainer(max_epochs=epochs, accelerator="auto", devices=1, logger=False,
                         enable_checkpointing=checkpoint is not None, callbacks=[checkpoint] if checkpoint else [],
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    module = DistilModule(model, loss=loss, lr=lr, epochs=epochs)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=val_loader)
    if checkpoint is not None and checkpoint.best_model_path:
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
        log.info("best epoch by val/loss: %s (%.4f)", checkpoint.best_model_path, float(checkpoint.best_model_score))
    inputs = {("teacher" if len(teachers) == 1 else f"teacher_{prefix}"): teacher_input(name, path)
              for name, prefix, path in zip(teachers, prefixes, paths, strict=True)}
    if provenance is not None:
        inputs["corpus"] = provenance
    model.save_pretrained(out, inputs=inputs, overwrite=overwrite)
    return model.eval()


def pruned_student(teacher: AudioTagger, vocab: dict, source: dict[str, tuple[int, str]], fixed: dict,
                   student: dict) -> AudioTagger:
    """The teacher's own network with ``student["front_filters"]`` front-end filters and its weights
    (`prune_musicnn`); the heads of the groups the teacher (index 0 in ``source``) teaches are its heads."""
    if teacher.config["backbone"] != "musicnn":
        raise ValueError(f"a student pruned from its teacher needs a musicnn teacher, got the "
                         f"{teacher.config['backbone']!r} backbone")
    if set(student) != {"front_filters"}:
        raise ValueError(f"a student pruned from its teacher takes the teacher's network: give front_filters "
                         f"only, got {sorted(student)}")
    config = {**{k: v for k, v in teacher.config.items() if k != "front_filters"}, **fixed, **student,
              "vocab": vocab}
    model = AudioTagger(**config)
    model.backbone.load_state_dict(prune_musicnn(teacher.backbone, student["front_filters"],
                                                 teacher.config["n_mels"]).state_dict())
    with torch.no_grad():
        for name, (index, group) in source.items():
            if index == 0:
                model.heads[name].load_state_dict(teacher.heads[group].state_dict())
    return model


def corpus_provenance(manifest: str | Path, command: str) -> dict:
    """The ``"corpus"`` input of a student: the manifest's hash, the albums it learnt from (train and val) with
    their packages and licences, and the command that made the student."""
    with open(manifest, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] in ("train", "val")]
    albums: dict[str, dict] = {}
    for row in rows:
        entry = albums.setdefault(row.get("album") or "", {"split": row["split"], "package": row.get("package"),
                                                           "licenses": set(), "tracks": 0})
        entry["licenses"].add(row.get("license") or "unknown")
        entry["tracks"] += 1
    return {"kind": "corpus", "sha256": file_sha256(manifest), "recipe": "scripts/real_corpus.py",
            "albums": {name: {**a, "licenses": sorted(a["licenses"])} for name, a in sorted(albums.items())},
            "command": command}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tagging distil", description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", action="append", required=True,
                        help="a packaged AudioTagger or a pretrained name (musicnn-mtt); repeat for one student "
                             "of several teachers")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--manifest", help="a CSV with audio_path and split (train/val) columns")
    data.add_argument("--audio", help="a folder of unlabelled audio files, all for training")
    parser.add_argument("--out", required=True, help="the student's package folder")
    network = {"backbone": "short_chunk_resnet", "width": 16, "embedding_dim": 128, "n_mels": 64, "n_fft": 1024,
               "hop_length": 512}
    parser.add_argument("--backbone", help=f"the student's network (default {network['backbone']})")
    for name in list(network)[1:]:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"default {network[name]}")
    parser.add_argument("--from-teacher", type=int, metavar="FRONT_FILTERS",
                        help="instead: the first teacher's own musicnn with this many front-end filters per timbral "
                             "shape (204 as published; a quarter as many temporal ones), started from its weights")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--loss", choices=("logits", "probabilities"), default="logits")
    parser.add_argument("--max-seconds", type=float, default=480.0, help="of each track (default 480)")
    parser.add_argument("--no-augment", action="store_true", help="train on clean chunks only")
    parser.add_argument("--cache", default="runs/distil/cache")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    given = {name: getattr(options, name) for name in network if getattr(options, name) is not None}
    if options.from_teacher is not None and given:
        parser.error(f"--from-teacher takes the teacher's network: --{', --'.join(given)} do not apply")
    student = {"front_filters": options.from_teacher} if options.from_teacher is not None else {**network, **given}
    command = "python -m tagging distil " + " ".join(sys.argv[1:] if argv is None else argv)
    augment = Augment(codec_share=0.0, gain_db=(0.0, 0.0), tilt_share=0.0, crop_share=0.0) \
        if options.no_augment else None
    try:
        provenance = corpus_provenance(options.manifest, command) if options.manifest else None
        distil(options.teacher, options.out, manifest=options.manifest, audio=options.audio, student=student,
               epochs=options.epochs, batch_size=options.batch_size, lr=options.lr, loss=options.loss,
               max_seconds=options.max_seconds, augment=augment, codecs=() if options.no_augment else ("mp3", "opus"),
               cache=options.cache, seed=options.seed, from_teacher=options.from_teacher is not None,
               overwrite=options.overwrite, provenance=provenance)
    except (OSError, ValueError) as error:
        sys.exit(f"python -m tagging distil: {error}")
    log.info("student saved to %s", options.out)
