"""What the fusion models read: content inputs per track, assembled from cached features, and the
item cold-start split's factors as targets.

An *input* of a fusion model is one cached array, named as `tagging.data.features` and the manifest give it:

- ``audio``: the frozen tagger's audio embedding;
- ``scores/<group>``: the tagger's predictions for one label group of the vocabulary. The predicted
  attribute groups together are the "machine-listening genome" (MLG) of Oramas et al.;
- ``annotated/<group>``: the manifest's hand annotations of a group, encoded as the tagger's targets
  (the paper's Music Genome Project row for the attribute groups): an upper bound, since a new track
  has no annotation;
- ``lyrics``, ``cover``: the frozen lyrics and cover embeddings;
- ``reference/<name>``: a reference source of ``python -m fusion references`` (`fusion.references`), such as
  log-mel statistics, random vectors or another tagger's tag probabilities: a row that tells what the
  content features are worth, which a packaged pipeline cannot compute (`is_content`).

Names come from the vocabulary, never from a fixed list, so any catalog's groups are inputs. An input
is present for a track when the modality it comes from is (`modality_of`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from coldtag.intervals import cluster_indices
from recsys import ColdStartSplit
from tagging.data.features import TrackFeatures
from tagging.labels import REGRESSION, LabelSpace

if TYPE_CHECKING:  # tagging.data.modules imports Lightning, which the deployed pipeline does without
    from tagging.data.modules import TrackDataset

SCORES, ANNOTATED, REFERENCE = "scores/", "annotated/", "reference/"
# The manifest column naming each track's part in the fusion stage (`split_warm_tracks`): ``train``
# (warm tracks the audio tagger never saw), ``val``, ``test`` (cold), or null (the tagger's own tracks).
FUSION_SPLIT = "fusion_split"


def modality_of(name: str) -> str:
    """The modality whose presence an input follows: the tagger's scores need the audio; an annotation
    and a reference source are their own."""
    return "audio" if name.startswith(SCORES) else name


def is_content(name: str) -> bool:
    """Whether the packaged pipeline computes this input for a brand-new track: not an annotation (nobody
    has annotated a new track) nor a reference source (`REFERENCE`: a yardstick for the ablation, which
    the pipeline has no encoder for)."""
    return not name.startswith((ANNOTATED, REFERENCE))


def assemble(sources: dict[str, np.ndarray], present: dict[str, np.ndarray],
             names: list[str] | tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Sources ``{source: (tracks, dim)}`` and presence ``{modality: (tracks,)}`` -> the named inputs
    ``{input: (tracks, dim)}`` float32 and their masks ``{input: (tracks,)}`` bool."""
    inputs, masks = {}, {}
    for name in names:
        modality = modality_of(name)
        if name not in sources or modality not in present:
            raise ValueError(f"fusion input {name!r} needs the source {name!r} and the {modality!r} presence "
                             f"mask; have sources {sorted(sources)} and masks {sorted(present)}")
        inputs[name] = np.asarray(sources[name], dtype=np.float32)
        masks[name] = np.asarray(present[modality], dtype=bool)
    return inputs, masks


def available_sources(sources: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> list[str]:
    """The sources some track has: a modality no track has (lyrics, in a catalog without any) is no row's input."""
    return [name for name in sources if np.asarray(present[modality_of(name)]).any()]


def catalog_sources(features: TrackFeatures, manifest: pd.DataFrame, labels: LabelSpace,
                    track_ids) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every source and presence mask for ``track_ids``, in that order.

    ``manifest`` (as `tagging.labels.read_manifest` gives it) supplies the annotations of every group of
    ``labels`` that it has columns for, encoded as the tagger's targets; a missing value becomes 0
    (absent label, bottom of the range), and a track with no value in a group lacks that group's
    ``annotated/<group>`` modality.
    """
    track_ids = [str(t) for t in track_ids]
    rows = features.rows(track_ids)
    sources = {name: array[rows] for name, array in features.arrays.items()}
    present = {name: mask[rows].astype(bool) for name, mask in features.present.items()}
    groups = [g for g in labels.groups if _annotation_columns(labels, g) <= set(manifest.columns)]
    if groups:
        frame = manifest.set_index("track_id").loc[track_ids].reset_index()
        subset = LabelSpace({g: labels.groups[g] for g in groups})
        for group, values in subset.encode(frame, source="manifest").items():
            sources[ANNOTATED + group] = np.nan_to_num(values, nan=0.0)
            present[ANNOTATED + group] = ~np.isnan(values).all(axis=1)
    return sources, present


def with_references(features: TrackFeatures, references: TrackFeatures, source: str | Path,
                    track_ids) -> TrackFeatures:
    """``features`` with the reference sources of ``references`` (``python -m fusion references``'s file, read
    from ``source``) beside its own arrays, row for row; a track of ``features`` that ``references`` lacks
    has them absent (zeros).

    A ``ValueError`` names ``source`` when it lacks one of ``track_ids`` (the tracks a model learns from
    and is judged on), holds no source, a source not named `REFERENCE` ``+ name``, one ``features`` has
    already, or one without a ``description``."""
    names = list(references.arrays)
    wrong = [n for n in names if not n.startswith(REFERENCE) or n in features.arrays
             or "description" not in references.sources.get(n, {})]
    if not names or wrong:
        raise ValueError(f"{source}: not reference features of python -m fusion references: its sources {names} "
                         f"must be named {REFERENCE}<name>, have a description, and be new to the features "
                         f"(offending: {wrong})")
    index = {t: i for i, t in enumerate(references.track_ids.tolist())}
    missing = [t for t in map(str, track_ids) if t not in index]
    if missing:
        raise ValueError(f"{source}: no reference features for {len(missing)} track(s) of the cold-start split, "
                         f"e.g. {missing[:3]}; make them from the ablation's manifest (python -m fusion references)")
    rows = np.array([index.get(t, -1) for t in features.track_ids.tolist()], dtype=np.int64)
    known = rows >= 0
    arrays, present = dict(features.arrays), dict(features.present)
    for name in names:
        arrays[name] = np.zeros((len(rows), references.arrays[name].shape[1]), dtype=np.float32)
        arrays[name][known] = references.arrays[name][rows[known]]
        present[name] = known.copy()
        present[name][known] = references.present[name][rows[known]]
    return TrackFeatures(track_ids=features.track_ids, arrays=arrays, present=present, errors=features.errors,
                         sources={**features.sources, **{n: references.sources[n] for n in names}})


def _annotation_columns(labels: LabelSpace, group: str) -> set[str]:
    """The manifest columns a group's annotations live in: the group's own for tags, one per label for
    graded values."""
    spec = labels.groups[group]
    return set(spec.labels) if spec.type == REGRESSION else {group}


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

    ``tracks`` is a `tagging.data.modules.TrackDataset` over decoded audio, one row per entry of ``positions``;
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


def split_warm_tracks(manifest: pd.DataFrame, split: ColdStartSplit, tagger_share: float, seed: int = 0,
                      artist_col: str | None = None) -> pd.DataFrame:
    """The manifest with the tracks' parts in the two stages: ``split`` for the audio tagger and
    `FUSION_SPLIT` for the models that learn from its features.

    As in Oramas et al., whose attributes came from separately trained models, the tagger learns from
    ``tagger_share`` of the warm tracks and the fusion stage from the others, so the features it trains on
    are as out-of-sample as those of the cold tracks it is judged on. The warm tracks are dealt by
    artist (``artist_col``; a track without one is its own artist), in an order drawn with ``seed``, so
    that the fusion side does not hear an artist the tagger memorised. One tagger serves both: features
    of K cross-fitted taggers would not share one embedding space. Cold-validation and cold-test tracks
    are ``val`` and ``test`` in both columns; a manifest track the split does not hold (nobody played it)
    trains the tagger only. ``tagger_share=1`` gives the tagger every warm track and the fusion stage
    the same tracks: the in-sample setting, for comparison.
    """
    if not 0.0 < tagger_share <= 1.0:
        raise ValueError(f"tagger_share must be in (0, 1], got {tagger_share}")
    frame = manifest.copy()
    ids = frame["track_id"].astype(str)
    part = pd.Series(dict(zip(split.item_ids.astype(str), split.item_split, strict=True)))
    part = ids.map(part)
    if artist_col is not None and artist_col not in frame.columns:
        raise ValueError(f"no artist column {artist_col!r} in the manifest (has {list(frame.columns)})")
    warm = np.flatnonzero((part == "warm").to_numpy())
    if len(warm) == 0:
        raise ValueError("the cold-start split has no warm track in the manifest: nothing to train on")
    artists = frame[artist_col].to_numpy()[warm] if artist_col else [None] * len(warm)
    clusters = cluster_indices(artists)
    order = np.random.default_rng(seed).permutation(len(clusters))
    target = round(tagger_share * len(warm))
    tagger = np.zeros(len(warm), dtype=bool)
    taken = 0
    for c in order:
        if taken >= target:
            break
        tagger[clusters[c]] = True
        taken += len(clusters[c])
    if tagger_share < 1 and tagger.all():
        raise ValueError(f"tagger_share {tagger_share}: the warm tracks' {len(clusters)} artist(s) leave no "
                         "fusion-side track; lower the share")
    tagger_split = np.where(part == "cold_val", "val", np.where(part == "cold_test", "test", None)).astype(object)
    fusion_split = tagger_split.copy()
    tagger_split[part.isna().to_numpy()] = "train"
    tagger_split[warm[tagger]] = "train"
    fusion_split[warm[~tagger] if tagger_share < 1 else warm] = "train"
    frame["split"], frame[FUSION_SPLIT] = tagger_split, fusion_split
    return frame
