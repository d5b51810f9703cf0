"""What the fusion models read: content inputs per track, assembled from cached features, and the
item cold-start split's factors as targets.

A *source* is one cached array of `tagging.features` (``"audio"``, ``"scores/attribute"``, ...) or of the
catalog's annotations (``"annotated/attribute"``, ``"annotated/graded"``); an *input* of the fusion
model is one or more sources side by side, present when the modality they come from is:

- ``audio``: the frozen tagger's audio embedding;
- ``mlg``: its predicted attributes and graded values, the "machine-listening genome" of Oramas et al.;
- ``genre``, ``mood``: its predicted genre and mood probabilities;
- ``mgp``: the hand-annotated attributes and graded values (the paper's Music Genome Project row): an
  upper bound, since a new track has no annotation;
- ``lyrics``, ``cover``: the frozen lyrics and cover embeddings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from recsys import ColdStartSplit
from tagging.features import TrackFeatures
from tagging.labels import LabelSpace

if TYPE_CHECKING:  # tagging.data imports Lightning, which the deployed pipeline does without
    from tagging.data import TrackDataset

# input -> (sources concatenated in this order, the modality whose presence it follows)
INPUTS: dict[str, tuple[tuple[str, ...], str]] = {
    "audio": (("audio",), "audio"),
    "mlg": (("scores/attribute", "scores/graded"), "audio"),
    "genre": (("scores/genre",), "audio"),
    "mood": (("scores/mood",), "audio"),
    "mgp": (("annotated/attribute", "annotated/graded"), "annotated"),
    "lyrics": (("lyrics",), "lyrics"),
    "cover": (("cover",), "cover"),
}
# What a track nobody has annotated can still have: the inputs a deployed pipeline may use.
CONTENT_INPUTS = tuple(name for name, (_, modality) in INPUTS.items() if modality != "annotated")
ANNOTATED_GROUPS = ("attribute", "graded")


def assemble(sources: dict[str, np.ndarray], present: dict[str, np.ndarray],
             names: list[str] | tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Sources ``{source: (tracks, dim)}`` and presence ``{modality: (tracks,)}`` -> the named inputs
    ``{input: (tracks, dim_input)}`` float32 and their masks ``{input: (tracks,)}`` bool."""
    inputs, masks = {}, {}
    for name in names:
        if name not in INPUTS:
            raise ValueError(f"unknown fusion input {name!r}; known: {sorted(INPUTS)}")
        keys, modality = INPUTS[name]
        missing = [k for k in keys if k not in sources] + ([] if modality in present else [f"{modality} mask"])
        if missing:
            raise ValueError(f"input {name!r} needs sources {list(keys)} and the {modality!r} presence mask; "
                             f"missing {missing} (have {sorted(sources)} and masks {sorted(present)})")
        inputs[name] = np.concatenate([np.asarray(sources[k], dtype=np.float32) for k in keys], axis=1)
        masks[name] = np.asarray(present[modality], dtype=bool)
    return inputs, masks


def catalog_sources(features: TrackFeatures, manifest: pd.DataFrame, labels: LabelSpace,
                    track_ids) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every source and presence mask for ``track_ids``, in that order.

    ``manifest`` (as `tagging.labels.read_manifest` gives it) supplies the annotated attributes and
    graded values, encoded by ``labels``; a missing annotation becomes 0 (absent attribute, bottom of the
    range), and a track with no annotation at all is marked as lacking the ``annotated`` modality.
    """
    track_ids = [str(t) for t in track_ids]
    rows = features.rows(track_ids)
    sources = {name: array[rows] for name, array in features.arrays.items()}
    present = {name: mask[rows].astype(bool) for name, mask in features.present.items()}
    groups = [g for g in ANNOTATED_GROUPS if g in labels.groups]
    if groups:
        frame = manifest.set_index("track_id").loc[track_ids].reset_index()
        subset = LabelSpace({g: labels.groups[g] for g in groups})
        encoded = subset.encode(frame, source="manifest")
        annotated = np.zeros(len(track_ids), dtype=bool)
        for group, values in encoded.items():
            annotated |= ~np.isnan(values).all(axis=1)
            sources[f"annotated/{group}"] = np.nan_to_num(values, nan=0.0)
        present["annotated"] = annotated
    return sources, present


def trainable(split: ColdStartSplit, subset: str) -> np.ndarray:
    """Positions (within ``split.items(subset)``) of the items whose factors have a direction: an item
    nobody played folds in to the zero vector, which no cosine loss can aim at."""
    return np.flatnonzero(np.linalg.norm(split.item_factors[split.items(subset)], axis=1) > 0)


class FeatureFactorDataset(Dataset):
    """Items of one subset as ``{"inputs": {input: (dim,)}, "present": {input: ()}, "target": (f,),
    "index": ()}``; ``index`` is the item's position among the subset's items (the order of predictions)."""

    def __init__(self, inputs: dict[str, np.ndarray], present: dict[str, np.ndarray], targets: np.ndarray,
                 positions: np.ndarray):
        self.inputs = {name: torch.from_numpy(np.ascontiguousarray(x[positions])) for name, x in inputs.items()}
        self.present = {name: torch.from_numpy(m[positions]) for name, m in present.items()}
        self.targets = torch.from_numpy(np.asarray(targets[positions], dtype=np.float32))
        self.index = torch.from_numpy(np.asarray(positions, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        return {"inputs": {n: x[i] for n, x in self.inputs.items()},
                "present": {n: m[i] for n, m in self.present.items()},
                "target": self.targets[i], "index": self.index[i]}


class AudioFactorDataset(Dataset):
    """Waveforms of one subset's tracks (random patches, or whole tracks) with their factors.

    ``tracks`` is a `tagging.data.TrackDataset` over decoded audio, one row per entry of ``positions``;
    each track appears ``repeats`` times per epoch (the paper drew 3 patches per track).
    """

    def __init__(self, tracks: TrackDataset, targets: np.ndarray, positions: np.ndarray, repeats: int = 1):
        if len(tracks) != len(positions):
            raise ValueError(f"{len(tracks)} tracks for {len(positions)} positions")
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.tracks, self.repeats = tracks, repeats
        self.targets = torch.from_numpy(np.asarray(targets[positions], dtype=np.float32))
        self.index = torch.from_numpy(np.asarray(positions, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.tracks) * self.repeats

    def __getitem__(self, i: int) -> dict:
        i %= len(self.tracks)
        return {"wave": self.tracks[i]["wave"], "target": self.targets[i], "index": self.index[i]}


def collate_waves(items: list[dict]) -> dict:
    """Zero-pad waves of unequal length into ``(batch, time)`` and keep their true ``length``."""
    lengths = torch.tensor([len(item["wave"]) for item in items])
    waves = torch.zeros(len(items), int(lengths.max()))
    for row, item in enumerate(items):
        waves[row, :len(item["wave"])] = item["wave"]
    return {"wave": waves, "length": lengths, "target": torch.stack([item["target"] for item in items]),
            "index": torch.stack([item["index"] for item in items])}
