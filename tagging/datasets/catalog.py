"""What the adapters share: the `Catalog` they return, its checks, writing and summary, the seeded split."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from coldtag.storage import atomic_path, write_json

# `tagging.labels.MULTILABEL`, spelled out: importing that module loads torch (20 s on a busy laptop), which
# a command that only reads tables does not need. tests/tagging/test_datasets.py reads every catalog back with it.
MULTILABEL = "multilabel"
SPLITS = ("train", "val", "test")
MANIFEST_FILE = "manifest.parquet"
VOCAB_FILE = "vocab.json"
SHOWN_MISSING = 5


@dataclass
class Catalog:
    """Tracks present on disk (``frame``: one manifest row each), the vocabulary, and what was left out.

    ``missing`` holds the audio paths of listed tracks not found on disk; ``notes`` are lines the summary
    adds (which tag list was used, tracks outside every split, ...).
    """

    frame: pd.DataFrame
    vocab: dict
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        counts = self.frame["split"].value_counts()
        lines = [f"tracks: {len(self.frame)} ("
                 + ", ".join(f"{split} {int(counts.get(split, 0))}" for split in SPLITS) + ")"]
        lines.append("tags: " + ", ".join(f"{name} {len(spec['labels'])}"
                                          for name, spec in self.vocab["groups"].items()))
        if self.missing:
            shown = ", ".join(self.missing[:SHOWN_MISSING])
            more = f" and {len(self.missing) - SHOWN_MISSING} more" if len(self.missing) > SHOWN_MISSING else ""
            lines.append(f"missing on disk: {len(self.missing)} listed track(s) left out: {shown}{more}")
        else:
            lines.append("missing on disk: none")
        lines.extend(self.notes)
        return "\n".join(lines) + "\n"


def assemble(rows: list[dict], groups: dict[str, list[str]], source: str,
             notes: list[str] | None = None) -> Catalog:
    """A `Catalog` from listed tracks: those whose ``audio_path`` is not a file go to ``missing``.

    ``rows`` hold ``track_id``, ``audio_path`` (absolute), ``split`` and one tag list (or None) per group,
    optionally ``artist_id`` and ``duration``. ``source`` names where the rows came from, for errors.
    """
    if not rows:
        raise ValueError(f"{source}: lists no tracks")
    empty = [name for name, labels in groups.items() if not labels]
    if empty:
        raise ValueError(f"{source}: label group(s) {empty} have no tags on any track")
    vocab = {"groups": {name: {"type": MULTILABEL, "labels": list(labels)} for name, labels in groups.items()}}
    present = [row for row in rows if Path(row["audio_path"]).is_file()]
    missing = [row["audio_path"] for row in rows if not Path(row["audio_path"]).is_file()]
    if not present:
        raise ValueError(f"{source}: none of the {len(rows)} listed audio files exists "
                         f"(first: {missing[0]}); check the audio root")
    columns = ["track_id", "audio_path", "split"]
    columns += [c for c in ("artist_id", "duration") if any(row.get(c) is not None for row in rows)]
    columns += list(groups)
    frame = pd.DataFrame([{c: row.get(c) for c in columns} for row in present], columns=columns)
    # Object dtype keeps lists and None apart (None: not annotated; []: none of these tags).
    for name in groups:
        frame[name] = pd.Series([None if tags is None else list(tags) for tags in frame[name]], dtype=object)
    return Catalog(frame=frame, vocab=vocab, missing=missing, notes=list(notes or []))


def write_catalog(catalog: Catalog, out: str | Path) -> tuple[Path, Path]:
    """Write ``out/manifest.parquet`` and ``out/vocab.json``, each atomically; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest, vocab = out / MANIFEST_FILE, out / VOCAB_FILE
    with atomic_path(manifest) as temporary:
        catalog.frame.to_parquet(temporary, index=False)
    write_json(vocab, catalog.vocab)
    return manifest, vocab


def group_name(category: str) -> str:
    """A category as a label-group (column) name: ``mood/theme`` -> ``mood_theme``."""
    return re.sub(r"\W+", "_", category).strip("_")


def unique(tags) -> list[str]:
    """Tags in first-seen order, each once, blanks dropped (public files repeat tags within a row)."""
    return list(dict.fromkeys(t for t in tags if t))


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"--val-fraction + --test-fraction must leave tracks to train on, got "
                         f"{val_fraction} + {test_fraction}")


def fraction_split(keys: list[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """Each key's split: a seeded shuffle of the sorted keys, ``round(fraction * n)`` to test, then val.

    One key per track, so a track is in one split however many labels or rows name it; the same keys,
    fractions and seed give the same split on every machine.
    """
    check_fractions(val_fraction, test_fraction)
    order = sorted(set(keys))
    shuffled = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
    n_test, n_val = round(test_fraction * len(order)), round(val_fraction * len(order))
    return {key: "test" if i < n_test else "val" if i < n_test + n_val else "train"
            for i, key in enumerate(shuffled)}
