"""Bootstrap intervals that resample artists, not tracks.

Tracks of one artist share timbre, tempo, production and listeners, so they are not independent
evidence: five of ten odd-meter test tracks by one artist say much less than ten artists would. A
bootstrap that draws tracks treats them as independent and gives intervals that are too narrow; one that
draws whole artists (clusters, with all their tracks) keeps that dependence (Field & Welsh, "Bootstrapping
clustered data", JRSS-B 2007). Every comparison the project reports goes through `paired_difference`
(`runs_difference` for a model trained with several seeds) or `cluster_bootstrap`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Difference:
    """``a`` and ``b`` on the whole sample, their ``difference`` (a - b) with its ``low``-``high``
    interval, and the bootstrap share of resamples where the difference is <= 0 (a one-sided p-value for
    "a is better"). ``resamples`` counts the resamples where the statistic was defined."""

    a: float
    b: float
    difference: float
    low: float
    high: float
    p_not_positive: float
    clusters: int
    resamples: int

    def __str__(self) -> str:
        return f"{self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def cluster_indices(clusters: Sequence) -> list[np.ndarray]:
    """Row indices of each cluster, in order of first appearance. A missing cluster label (None, NaN)
    makes the row a cluster of its own: an unknown artist is not assumed to be any other's."""
    labels = pd.Series(list(clusters), dtype=object)
    missing = labels.isna().to_numpy()
    codes = pd.factorize(labels)[0]
    codes[missing] = codes.max(initial=-1) + 1 + np.arange(int(missing.sum()))
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return np.split(order, bounds) if len(order) else []


def cluster_resamples(clusters: Sequence, resamples: int, seed: int = 0) -> list[np.ndarray]:
    """``resamples`` bootstrap samples of row indices, each drawing as many clusters as there are, with
    replacement, and taking all rows of every cluster drawn (a cluster drawn twice appears twice)."""
    groups = cluster_indices(clusters)
    if not groups:
        raise ValueError("nothing to resample: no rows")
    rng = np.random.default_rng(seed)
    return [np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
            for _ in range(resamples)]


def cluster_bootstrap(statistic: Callable[[np.ndarray], float], clusters: Sequence, resamples: int = 2000,
                      level: float = 0.95, seed: int = 0) -> tuple[float, float, float, np.ndarray]:
    """Percentile interval of ``statistic(rows)`` over cluster resamples of the rows.

    ``statistic`` takes an array of row indices (with repeats) and returns a number, NaN where it is
    undefined on that resample (an AUC without a positive); such resamples are left out. Returns the
    statistic on all rows, the interval's ends and the defined resampled values.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    everything = np.arange(len(clusters))
    values = np.array([statistic(rows) for rows in cluster_resamples(clusters, resamples, seed)], dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float(statistic(everything)), math.nan, math.nan, values
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(statistic(everything)), float(low), float(high), values


def paired_difference(metric: Callable[[np.ndarray, np.ndarray], float], truth: np.ndarray, a: np.ndarray,
                      b: np.ndarray, clusters: Sequence, resamples: int = 2000, level: float = 0.95,
                      seed: int = 0) -> Difference:
    """``metric(truth, a) - metric(truth, b)`` with a cluster-bootstrap interval; both models are scored on
    the same resample (paired). ``metric`` may return NaN where it is undefined (it is then skipped)."""
    return runs_difference(metric, truth, [a], b, clusters, resamples, level, seed)


def runs_difference(metric: Callable[[np.ndarray, np.ndarray], float], truth: np.ndarray,
                    runs: Sequence[np.ndarray], b: np.ndarray | list[np.ndarray], clusters: Sequence,
                    resamples: int = 2000, level: float = 0.95, seed: int = 0) -> Difference:
    """`paired_difference` of model ``b`` and model ``a`` trained several times (one score array per run,
    e.g. per seed): ``a`` is the mean of ``metric`` over the runs, and every resample scores all runs and
    ``b`` on the same rows, so the interval is that of the seed-averaged difference (one run: exactly
    `paired_difference`). ``b`` given as a list of arrays is several runs too, averaged the same way."""
    truth = np.asarray(truth)
    runs = [np.asarray(a) for a in runs]
    b_runs = [np.asarray(x) for x in b] if isinstance(b, list | tuple) else [np.asarray(b)]
    if not runs or not b_runs:
        raise ValueError("runs: no score arrays")
    if not all(len(truth) == len(x) for x in runs + b_runs) or len(truth) != len(clusters):
        raise ValueError(f"truth, a, b and clusters differ in length: {len(truth)}, "
                         f"{[len(a) for a in runs]}, {[len(x) for x in b_runs]}, {len(clusters)}")

    def mean_over(arrays: list[np.ndarray], rows: np.ndarray) -> float:
        return float(np.mean([_safe(metric, truth[rows], x[rows]) for x in arrays]))

    def statistic(rows: np.ndarray) -> float:
        return mean_over(runs, rows) - mean_over(b_runs, rows)

    difference, low, high, values = cluster_bootstrap(statistic, clusters, resamples, level, seed)
    everything = np.arange(len(truth))
    return Difference(a=mean_over(runs, everything), b=mean_over(b_runs, everything), difference=difference,
                      low=low, high=high, p_not_positive=float(np.mean(values <= 0)) if len(values) else math.nan,
                      clusters=len(cluster_indices(clusters)), resamples=len(values))


def _safe(metric: Callable[[np.ndarray, np.ndarray], float], truth: np.ndarray, scores: np.ndarray) -> float:
    try:
        return float(metric(truth, scores))
    except ValueError:  # scikit-learn's AUC on a resample with one class
        return math.nan
