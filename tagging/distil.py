"""Teacher-student distillation: a pretrained tagger's tag probabilities on an unlabelled folder train an
`AudioTagger` of the size and speed a catalog chooses (Hinton, Vinyals & Dean, "Distilling the knowledge in a
neural network", 2015; soft targets with binary cross-entropy, as multi-label taggers are distilled).

    python -m tagging.distil --teacher musicnn-mtt --audio DIR --out STUDENT [--backbone short_chunk_resnet
        --width 16 --embedding-dim 128 --n-mels 96 --epochs 20]

The teacher (a package path or a name `tagging.pretrained.resolve_model` knows) cuts every file on its own
chunk grid and gives each chunk its probabilities; the student learns each chunk's probabilities from that
chunk, at the teacher's sample rate and chunk length, with `TaggerModule`'s loss (BCE with logits takes soft
targets as they are). The student keeps the teacher's vocabulary and records the teacher as its
``"teacher"`` input. A file that cannot be read is logged and left out; the rest go on.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from coldtag.storage import reference
from tagging.audio import AUDIO_SUFFIXES, load_audio
from tagging.data import collate_tracks
from tagging.lightning import TaggerModule
from tagging.models import AudioTagger
from tagging.pretrained import resolve_model

log = logging.getLogger(__name__)


@torch.no_grad()
def teacher_targets(teacher: AudioTagger, paths: list[Path], chunk_batch: int = 16) -> list[dict]:
    """One training item per chunk of every readable file in ``paths``: ``{"track_id": "<file>#<chunk>",
    "wave": (chunk_samples,), "targets": {group: (labels,) probabilities}}``, the teacher in eval mode."""
    teacher.eval()
    items = []
    for path in paths:
        try:
            wave = load_audio(path, teacher.sample_rate)
        except (OSError, ValueError, RuntimeError) as error:
            log.warning("%s: left out (%s)", path, error)
            continue
        chunks = teacher.track_chunks(wave)  # (chunks, chunk_samples)
        for begin in range(0, len(chunks), chunk_batch):
            batch = chunks[begin:begin + chunk_batch]
            scores = teacher.scores(teacher(batch))
            for row, chunk in enumerate(batch):
                items.append({"track_id": f"{path}#{begin + row}", "wave": chunk,
                              "targets": {name: value[row].float() for name, value in scores.items()}})
    return items


def audio_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--audio {folder}: not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(f"--audio {folder}: holds no audio file ({', '.join(sorted(AUDIO_SUFFIXES))})")
    return paths


def distil(teacher: str | Path, audio: str | Path, out: str | Path, student: dict | None = None, epochs: int = 20,
           batch_size: int = 16, lr: float = 1e-3, seed: int = 0, overwrite: bool = False) -> AudioTagger:
    """Train a student ``AudioTagger(**student)`` on ``teacher``'s probabilities for the files of ``audio`` and
    save it as a package at ``out``. ``student`` takes `AudioTagger`'s network arguments; the vocabulary, sample
    rate and chunk length are the teacher's. Returns the student, in eval mode."""
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    clash = sorted(set(student or {}) & {"vocab", "sample_rate", "chunk_seconds", "eval_chunks"})
    if clash:
        raise ValueError(f"student: {clash} are the teacher's, not the student's to set")
    teacher_path = resolve_model(teacher)
    teacher_model = AudioTagger.from_pretrained(teacher_path)
    items = teacher_targets(teacher_model, audio_files(audio))
    if not items:
        raise ValueError(f"--audio {audio}: no file could be read")
    fixed = {"vocab": teacher_model.config["vocab"], "sample_rate": teacher_model.sample_rate,
             "chunk_seconds": teacher_model.chunk_samples / teacher_model.sample_rate,
             "eval_chunks": teacher_model.eval_chunks}
    pl.seed_everything(seed, verbose=False)
    model = AudioTagger(**fixed, **(student or {}))
    trainer = pl.Trainer(max_epochs=epochs, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    loader = DataLoader(items, batch_size=batch_size, shuffle=True, collate_fn=collate_tracks,
                        drop_last=len(items) > batch_size)
    trainer.fit(TaggerModule(model, lr=lr), train_dataloaders=loader)
    model.save_pretrained(out, inputs={"teacher": reference(teacher_path)}, overwrite=overwrite)
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tagging.distil", description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="a packaged AudioTagger or a pretrained name (musicnn-mtt)")
    parser.add_argument("--audio", required=True, help="a folder of unlabelled audio files")
    parser.add_argument("--out", required=True, help="the student's package folder")
    parser.add_argument("--backbone", default="short_chunk_resnet")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--embedding-dim", type=int, default=128)
    parser.add_argument("--n-mels", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    student = {"backbone": options.backbone, "width": options.width, "embedding_dim": options.embedding_dim,
               "n_mels": options.n_mels}
    try:
        distil(options.teacher, options.audio, options.out, student, options.epochs, options.batch_size, options.lr,
               options.seed, options.overwrite)
    except (OSError, ValueError) as error:
        sys.exit(f"python -m tagging.distil: {error}")
    log.info("student saved to %s", options.out)


if __name__ == "__main__":
    main()
