"""Why a catalog track is similar to a new one, in the words of the tagger that described both.

`CatalogTags` holds the tags the pipeline's own audio tagger decides for every catalog track (from the
cached features the fusion model learnt from), so that a new track's similar tracks are explained by the
tags it shares with each, in that tagger's vocabulary: a chain run from ``musicnn-mtt`` explains with
MagnaTagATune's tags, one whose tagger learnt the catalog's labels with those. A catalog needs no labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coldtag.storage import ProvenanceError, atomic_path
from fusion.data import SCORES
from tagging.data.features import TrackFeatures
from tagging.models.tagger import AudioTagger


@dataclass
class CatalogTags:
    """``tags[group]``: ``(tracks, labels)`` booleans aligned with ``track_ids``, the multilabel groups of
    ``labels`` (``{group: [label, ...]}``) in the tagger's order. A track whose audio could not be used has
    no tags."""

    track_ids: np.ndarray
    labels: dict[str, list[str]]
    tags: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        self.track_ids = np.asarray(self.track_ids).astype(str)
        self._rows = {t: i for i, t in enumerate(self.track_ids.tolist())}
        for group, values in self.tags.items():
            if values.shape != (len(self.track_ids), len(self.labels[group])):
                raise ValueError(f"catalog tags of {group!r} have shape {values.shape}, expected "
                                 f"({len(self.track_ids)}, {len(self.labels[group])})")

    @classmethod
    def from_features(cls, features: TrackFeatures, tagger: AudioTagger,
                      source: str | Path = "features") -> CatalogTags:
        """The tags ``tagger`` decides (its thresholds) from the scores it gave each track in ``features``;
        `ProvenanceError` when the features record another tagger, ``ValueError`` when a group is missing."""
        made_by = features.sources.get("audio", {}).get("sha256")
        if made_by and tagger.package and made_by != tagger.package["sha256"]:
            raise ProvenanceError(f"{source}: scores of the audio tagger sha256:{made_by[:12]}, not of "
                                  f"{tagger.package_path} (sha256:{tagger.package['sha256'][:12]}): its tags "
                                  "would not be this tagger's")
        present = features.present.get("audio", np.zeros(len(features), dtype=bool))
        labels, tags = {}, {}
        for group in tagger.labels.multilabel():
            scores = features.arrays.get(SCORES + group.name)
            if scores is None:
                raise ValueError(f"{source}: no {SCORES + group.name} scores; extract the features with this tagger")
            thresholds = tagger.thresholds(group.name).cpu().numpy()
            labels[group.name] = list(group.labels)
            tags[group.name] = (scores >= thresholds) & present[:, None]
        return cls(features.track_ids, labels, tags)

    def of(self, track_id: str) -> list[str] | None:
        """The tags of one catalog track, group by group in vocabulary order; None for a track not held."""
        row = self._rows.get(str(track_id))
        if row is None:
            return None
        return [label for group, names in self.labels.items()
                for label, on in zip(names, self.tags[group][row], strict=True) if on]

    def explain(self, tags: Sequence[str] | None, track_id: str) -> dict:
        """``{"shared_tags": [...], "why": sentence}`` for catalog track ``track_id`` found similar to a new
        track the same tagger gave ``tags`` (None: the new track had no usable audio)."""
        theirs = self.of(track_id)
        if tags is None or theirs is None:
            return {"shared_tags": [], "why": "close in listening; no tags to compare (audio missing or unusable)"}
        shared = [tag for tag in tags if tag in set(theirs)]
        if not shared:
            return {"shared_tags": [], "why": "no tag in common: close in listening only"}
        return {"shared_tags": shared, "why": f"both tagged {', '.join(shared)}"}

    def save(self, path: str | Path) -> None:
        payload = {"track_ids": self.track_ids}
        for group, names in self.labels.items():
            payload[f"labels/{group}"] = np.asarray(names, dtype=str)
            payload[f"tags/{group}"] = self.tags[group]
        with atomic_path(Path(path)) as staging, open(staging, "wb") as file:
            np.savez(file, **payload)

    @classmethod
    def load(cls, path: str | Path) -> CatalogTags:
        with np.load(path, allow_pickle=False) as data:
            groups = [k.removeprefix("labels/") for k in data.files if k.startswith("labels/")]
            return cls(data["track_ids"], {g: data[f"labels/{g}"].tolist() for g in groups},
                       {g: data[f"tags/{g}"].astype(bool) for g in groups})

    def check(self, tagger: AudioTagger) -> None:
        """``ValueError`` unless these are tags of ``tagger``'s vocabulary (its multilabel groups and labels)."""
        expected = {group.name: list(group.labels) for group in tagger.labels.multilabel()}
        if self.labels != expected:
            raise ValueError(f"catalog tags of the groups {list(self.labels)} do not fit the tagger's vocabulary "
                             f"{list(expected)}: they were decided by another tagger")
