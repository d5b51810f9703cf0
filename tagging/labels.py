"""Label groups, manifests and per-tag scores.

A catalog describes its labels in a vocabulary (``vocab.json``)::

    {"groups": {"genre": {"type": "multilabel", "labels": ["rock", ...]},
                "graded": {"type": "regression", "labels": ["tempo", ...], "ranges": [[40, 220], ...]}}}

and its tracks in a manifest (Parquet or CSV) with one row per track. For a multilabel group the column
named like the group holds the track's positive tags (a list; in CSV a ``;``-separated string); a null
means "not annotated" and is masked out of the loss, while an empty list means "none of these tags".
For a regression group each label is its own float column, a missing value (NaN) likewise masked.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

MULTILABEL = "multilabel"
REGRESSION = "regression"


@dataclass(frozen=True)
class LabelGroup:
    name: str
    type: str
    labels: list[str]
    ranges: list[list[float]] | None = None

    def __post_init__(self):
        if self.type not in (MULTILABEL, REGRESSION):
            raise ValueError(f"label group {self.name!r}: type must be {MULTILABEL!r} or {REGRESSION!r}, "
                             f"got {self.type!r}")
        if not self.labels:
            raise ValueError(f"label group {self.name!r} has no labels")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"label group {self.name!r} lists a label twice")
        if self.type == REGRESSION:
            if self.ranges is None or len(self.ranges) != len(self.labels):
                raise ValueError(f"regression group {self.name!r} needs one [low, high] range per label")
            for label, (low, high) in zip(self.labels, self.ranges, strict=True):
                if not high > low:
                    raise ValueError(f"regression label {label!r}: range [{low}, {high}] is empty")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class LabelSpace:
    """The label groups a model predicts, in a fixed order (the order of the vocabulary)."""

    groups: dict[str, LabelGroup] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, vocab: dict) -> LabelSpace:
        if "groups" not in vocab or not isinstance(vocab["groups"], dict) or not vocab["groups"]:
            raise ValueError('a vocabulary needs a non-empty "groups" mapping')
        return cls({name: LabelGroup(name=name, type=spec.get("type", MULTILABEL), labels=list(spec["labels"]),
                                     ranges=spec.get("ranges"))
                    for name, spec in vocab["groups"].items()})

    @classmethod
    def from_json(cls, path: str | Path) -> LabelSpace:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: not a usable label vocabulary: {error}") from error

    def to_dict(self) -> dict:
        groups = {}
        for name, group in self.groups.items():
            spec = {"type": group.type, "labels": list(group.labels)}
            if group.ranges is not None:
                spec["ranges"] = [list(r) for r in group.ranges]
            groups[name] = spec
        return {"groups": groups}

    def sizes(self) -> dict[str, int]:
        return {name: len(group) for name, group in self.groups.items()}

    def multilabel(self) -> list[LabelGroup]:
        return [g for g in self.groups.values() if g.type == MULTILABEL]

    def regression(self) -> list[LabelGroup]:
        return [g for g in self.groups.values() if g.type == REGRESSION]

    def encode(self, manifest: pd.DataFrame, source: str = "manifest") -> dict[str, np.ndarray]:
        """Targets per group, float32 ``(tracks, labels)``, NaN where a label is missing.

        Regression targets are scaled to [0, 1] by the group's ranges, so groups of different units
        weigh alike in the loss; `decode_regression` undoes it.
        """
        targets = {}
        for group in self.groups.values():
            if group.type == MULTILABEL:
                targets[group.name] = self._encode_multilabel(manifest, group, source)
            else:
                missing = [label for label in group.labels if label not in manifest.columns]
                if missing:
                    raise ValueError(f"{source}: no column for regression label(s) {missing}")
                values = manifest[group.labels].to_numpy(dtype=np.float32, na_value=np.nan)
                low, high = np.asarray(group.ranges, dtype=np.float32).T
                targets[group.name] = (values - low) / (high - low)
        return targets

    @staticmethod
    def _encode_multilabel(manifest: pd.DataFrame, group: LabelGroup, source: str) -> np.ndarray:
        if group.name not in manifest.columns:
            raise ValueError(f"{source}: no column {group.name!r} for label group {group.name!r}")
        index = {label: i for i, label in enumerate(group.labels)}
        out = np.zeros((len(manifest), len(group)), dtype=np.float32)
        for row, tags in enumerate(manifest[group.name]):
            if tags is None or (isinstance(tags, float) and math.isnan(tags)):
                out[row] = np.nan
                continue
            if isinstance(tags, str):
                tags = [t for t in tags.split(";") if t]
            for tag in tags:
                if tag not in index:
                    raise ValueError(f"{source}: row {row} ({group.name}) has tag {tag!r} that is not in "
                                     f"the vocabulary")
                out[row, index[tag]] = 1.0
        return out

    def decode_regression(self, name: str, scaled: torch.Tensor) -> torch.Tensor:
        low, high = torch.tensor(self.groups[name].ranges, dtype=scaled.dtype, device=scaled.device).T
        return low + scaled * (high - low)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a Parquet or CSV/TSV manifest; audio/lyrics/cover paths become absolute."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: manifest not found")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix in (".csv", ".tsv"):
        frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", keep_default_na=True)
    else:
        raise ValueError(f"{path}: manifest must be .parquet, .csv or .tsv")
    for column in ("track_id", "audio_path"):
        if column not in frame.columns:
            raise ValueError(f"{path}: manifest has no {column!r} column (has {list(frame.columns)})")
    if frame["track_id"].duplicated().any():
        duplicate = frame.loc[frame["track_id"].duplicated(), "track_id"].iloc[0]
        raise ValueError(f"{path}: track_id {duplicate!r} appears more than once")
    root = path.parent
    for column in ("audio_path", "lyrics_path", "cover_path"):
        if column in frame.columns:
            # object dtype: pandas' string dtype would turn "no file" (None) into NaN.
            frame[column] = pd.Series([None if p is None or (isinstance(p, float) and math.isnan(p))
                                       else str(root / p) for p in frame[column]], index=frame.index, dtype=object)
    frame["track_id"] = frame["track_id"].astype(str)
    return frame


def f1_optimal_thresholds(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-tag threshold maximising F1 on ``(n, tags)`` probabilities; 0.5 where a tag has no positives.

    Candidate thresholds are the observed probabilities themselves, evaluated all at once by sorting.
    """
    _n, tags = probs.shape
    thresholds = torch.full((tags,), 0.5)
    for tag in range(tags):
        keep = ~torch.isnan(targets[:, tag])
        p, t = probs[keep, tag].float(), targets[keep, tag].float()
        positives = t.sum()
        if positives == 0 or positives == len(t):
            continue
        order = torch.argsort(p, descending=True)
        p, t = p[order], t[order]
        tp = torch.cumsum(t, 0)
        predicted = torch.arange(1, len(t) + 1, dtype=torch.float32)
        f1 = 2 * tp / (predicted + positives)
        # Ties: a threshold admits every item with the same score, so only the last of a run counts.
        last_of_run = torch.ones_like(p, dtype=torch.bool)
        last_of_run[:-1] = p[:-1] != p[1:]
        f1 = torch.where(last_of_run, f1, torch.zeros_like(f1))
        best = int(torch.argmax(f1))
        below = p[best + 1] if best + 1 < len(p) else torch.tensor(0.0)
        thresholds[tag] = (p[best] + below) / 2
    return thresholds


def nanmean(values: list[float]) -> float:
    """Mean of the finite values; NaN when there are none (a metric undefined for every tag)."""
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan
