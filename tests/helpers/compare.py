"""Comparing annotation records at the precision each value's type allows, and counting raw records.

Two runs of the same model on the same files (another engine, batch or process count) compute the same
float32 network in another order, so their floats may differ in the last bits:

- Probabilities (values on [0, 1]) are compared absolutely, to ``PROBABILITY`` (1e-5: a few hundred float32
  steps at 0.5, far below any decision a user makes from a probability).
- Graded values are in their units (BPM, ...). The head predicts them scaled to [0, 1] by the vocabulary's
  range and `LabelSpace.decode_regression` stretches them by the range's width, so the error a graded value
  can carry is a probability-sized error times that width: ``PROBABILITY * (high - low)`` in units, i.e. the
  same bound relative to the label's range. An absolute 1e-5 BPM is below float32's own step near 224 BPM.
- Embeddings are unbounded: relative to the vector's largest magnitude (at least 1), to ``PROBABILITY``.
- Integers, strings, lists of tags, errors and file facts (size, mtime, duration of the same file) exactly.
- Timings (``seconds``) are not compared.

Records are compared after `read_annotations`, which keeps the latest record per id; that reader hides
duplicates, so tests about duplicates count the raw rows of the part files (`raw_records`) instead.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tagging.labels import MULTILABEL, LabelSpace

PROBABILITY = 1e-5
TIMINGS = ("seconds",)


def raw_records(out: Path) -> pd.DataFrame:
    """Every row of every committed part file, duplicates included, with the part's rank."""
    frames = []
    for path in sorted((Path(out) / "parts").glob("part-*.parquet")):
        frame = pq.read_table(path, columns=["id", "error"]).to_pandas()
        frames.append(frame.assign(part=path.name, rank=path.name.split("-")[2]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["id", "error", "part", "rank"])


def assert_same_records(left: pd.DataFrame, right: pd.DataFrame, labels: LabelSpace) -> None:
    """Equal record for record (frames indexed by id), each value at its type's precision."""
    assert list(left.index) == list(right.index)
    assert list(left.columns) == list(right.columns)
    for track in left.index:
        for column in left.columns:
            if column in TIMINGS:
                continue
            a, b, where = left.at[track, column], right.at[track, column], f"{track}.{column}"
            group = labels.groups.get(column)
            if a is None or b is None:
                assert a is None and b is None, (where, a, b)
            elif group is not None and group.type == MULTILABEL:
                assert list(a["tags"]) == list(b["tags"]), where
                _assert_numbers(a["probabilities"], b["probabilities"], PROBABILITY, f"{where}.probabilities")
            elif group is not None:
                assert a.keys() == b.keys(), where
                for label, (low, high) in zip(group.labels, group.ranges, strict=True):
                    _assert_numbers(a[label], b[label], PROBABILITY * (high - low), f"{where}.{label}")
            elif column == "embedding":
                scale = max(1.0, float(np.max(np.abs(a))))
                _assert_numbers(a, b, PROBABILITY * scale, where)
            else:
                _assert_exact(a, b, where)


def _assert_numbers(a, b, tolerance: float, where: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        a, b = list(a.values()), list(b.values())
    a, b = np.atleast_1d(np.asarray(a, dtype=float)), np.atleast_1d(np.asarray(b, dtype=float))
    assert a.shape == b.shape, where
    same = (np.isnan(a) & np.isnan(b)) | (np.abs(a - b) <= tolerance)
    assert same.all(), (where, a[~same], b[~same], tolerance)


def _assert_exact(a, b, where: str) -> None:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = list(a), list(b)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        assert math.isnan(b), (where, a, b)
        return
    assert a == b, (where, a, b)
