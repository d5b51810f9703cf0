"""Reference sources for the ablation: features that a packaged pipeline cannot compute, whose rows tell what the
content features are worth (`fusion.data.REFERENCE`).

- ``reference/logmel-stats``: `tagging.evaluation.baseline.logmel_stats` of each track's audio, the hand-made
  yardstick a learnt tagger must beat;
- ``reference/random``: a Gaussian vector per track drawn from the seed and the track's id, which holds nothing
  that carries from warm tracks to cold ones: its row is what fitting the warm tracks' factors gives without
  content;
- ``reference/<name>``: another packaged tagger's tag probabilities, its groups' ``scores/<group>`` of
  `tagging.data.features.extract_features` side by side (e.g. the student ``musicnn-distil-s``).

    python -m fusion references --manifest runs/demo/manifest.parquet --logmel-stats --random 64 \
        --tagger musicnn-distil-s --out runs/demo/references.npz
    python -m fusion ablation ... --references runs/demo/references.npz

The file is a `tagging.data.features.TrackFeatures` with one array per source: a source is absent for a track
(``present[source]`` False, a row of zeros) whose audio could not be decoded, and
``sources[source]["description"]`` names the source's row in the ablation's table.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from fusion.chain import pretrained_tagger
from fusion.data import REFERENCE, SCORES
from tagging.data.features import TrackFeatures, encoder_sources, extract_features
from tagging.evaluation.baseline import logmel_stats
from tagging.labels import read_manifest
from tagging.models.tagger import AudioTagger

LOGMEL, RANDOM = REFERENCE + "logmel-stats", REFERENCE + "random"


def reference_features(manifest: str | Path, logmel: bool = False, random_dim: int | None = None,
                       taggers: Mapping[str, AudioTagger] | None = None, seed: int = 0,
                       device: str | torch.device = "cpu") -> TrackFeatures:
    """The reference sources of every track of ``manifest``, in its order: `LOGMEL` when ``logmel``,
    `RANDOM` (``random_dim`` wide, drawn with ``seed``) when ``random_dim`` is given, and
    ``reference/<name>`` for each tagger of ``taggers`` (``{name: tagger}``, run on ``device``).

    A track whose audio cannot be decoded lacks the log-mel statistics and every tagger's tags (a tagger,
    as `tagging.data.features.extract_features`, also leaves out silent audio and audio under half a chunk),
    with the reason in ``errors``; random features are there for every track."""
    frame = read_manifest(manifest)
    ids = frame["track_id"].to_numpy().astype(str)
    features = TrackFeatures(track_ids=ids, errors=np.full(len(ids), "", dtype=object))
    paths = frame["audio_path"].tolist()
    if logmel:
        values, present = logmel_source(paths)
        why = [f"{path}: log-mel statistics: could not be decoded" if path else "log-mel statistics: no audio file"
               for path in paths]
        _add(features, LOGMEL, values, present, np.where(present, "", why),
             {"kind": "logmel_stats", "description": "Log-mel statistics", "dim": values.shape[1]})
    if random_dim is not None:
        _add(features, RANDOM, random_features(ids, random_dim, seed), np.ones(len(ids), dtype=bool),
             np.full(len(ids), ""), {"kind": "random", "description": f"Random features ({random_dim})",
                                     "dim": random_dim, "seed": seed})
    for name, tagger in (taggers or {}).items():
        values, present, errors = tagger_source(manifest, tagger, device)
        _add(features, REFERENCE + name, values, present, errors,
             {"kind": "tag probabilities", "description": f"{name} tags",
              "groups": {group: len(spec) for group, spec in tagger.labels.groups.items()},
              "tagger": encoder_sources(tagger, None, None, 0)["audio"]})
    features.errors = features.errors.astype(str)
    return features


def _add(features: TrackFeatures, name: str, values: np.ndarray, present: np.ndarray, errors: np.ndarray,
         source: dict) -> None:
    features.arrays[name], features.present[name], features.sources[name] = values, present, source
    features.errors = np.array(["; ".join(e for e in pair if e) for pair in zip(features.errors, errors, strict=True)],
                               dtype=object)


def logmel_source(paths: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Audio files (None: no audio) -> their `tagging.evaluation.baseline.logmel_stats` ``(tracks, 216)`` float32 and
    whether each could be decoded ``(tracks,)``; a row of zeros where not."""
    given = [row for row, path in enumerate(paths) if path is not None]
    stats = logmel_stats([paths[row] for row in given])
    values = np.full((len(paths), stats.shape[1]), np.nan, dtype=np.float32)
    values[given] = stats
    present = ~np.isnan(values).any(axis=1)
    return np.where(present[:, None], values, 0.0).astype(np.float32), present


def random_features(track_ids: Sequence[str], dim: int, seed: int = 0) -> np.ndarray:
    """``(tracks, dim)`` standard Gaussian float32, each row drawn from ``seed`` and its track's id alone: a
    track has the same vector in any manifest, in any order."""
    if dim < 1:
        raise ValueError(f"--random {dim}: random features need at least one dimension")
    if seed < 0:
        raise ValueError(f"--seed {seed}: random features need a seed >= 0")
    values = np.empty((len(track_ids), dim), dtype=np.float32)
    for row, track in enumerate(track_ids):
        key = int.from_bytes(hashlib.sha256(str(track).encode()).digest()[:16], "little")
        values[row] = np.random.default_rng([seed, key]).standard_normal(dim, dtype=np.float32)
    return values


def tagger_source(manifest: str | Path, tagger: AudioTagger, device: str | torch.device = "cpu"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tagger's probabilities of every group for each track of ``manifest``, concatenated in its
    vocabulary's order ``(tracks, labels)``, as `tagging.data.features.extract_features` gives its
    ``scores/<group>``; with where the audio was used ``(tracks,)`` and why not ``(tracks,)`` str."""
    features = extract_features(manifest, tagger, device=device)
    values = np.concatenate([features.arrays[SCORES + group] for group in tagger.labels.groups], axis=1)
    return values.astype(np.float32), features.present["audio"], features.errors


def reference_taggers(specs: Sequence[str]) -> dict[str, AudioTagger]:
    """``--tagger`` values -> ``{name: tagger}``: a name `tagging.pretrained.convert.resolve_model` knows (named so), a
    package folder (named by the folder) or ``NAME=DIR``. A ``ValueError`` names a value that is no packaged
    tagger, or whose name is empty, holds a ``/``, is taken by another source or given twice."""
    taggers: dict[str, AudioTagger] = {}
    for spec in specs:
        name, _, folder = spec.partition("=")
        path = pretrained_tagger(folder or spec)
        name = name if folder else path.name
        if not name or "/" in name or REFERENCE + name in (LOGMEL, RANDOM) or name in taggers:
            raise ValueError(f"--tagger {spec}: the name {name!r} is empty, holds a '/', is taken by another source "
                             "or was given twice; name the tagger with NAME=DIR")
        taggers[name] = AudioTagger.from_pretrained(path)
    return taggers


def write_references(options: argparse.Namespace) -> int:
    """``python -m fusion references`` on parsed options."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if options.out.suffix != ".npz":
        raise ValueError(f"--out {options.out}: reference features are written as .npz")
    if not options.manifest.is_file():
        raise FileNotFoundError(f"--manifest {options.manifest}: not found")
    if not (options.logmel_stats or options.random is not None or options.tagger):
        raise ValueError("no reference source chosen: give --logmel-stats, --random DIM or --tagger NAME|DIR")
    taggers = reference_taggers(options.tagger or [])
    features = reference_features(options.manifest, options.logmel_stats, options.random, taggers, options.seed,
                                  options.device)
    features.save(options.out)
    counts = ", ".join(f"{name} ({features.sources[name]['description']!r}: {values.shape[1]} dims, "
                       f"{int(features.present[name].sum())} present)" for name, values in features.arrays.items())
    print(f"{options.out}: {len(features)} tracks; {counts}")
    return 0
