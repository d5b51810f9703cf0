"""Item cold-start protocol: warm model, fold-in targets, and honest metrics for predicted item factors.

Items are split, not plays (as in DropoutNet and the cold-start benchmarks after it): every item is
``warm``, ``cold_val`` or ``cold_test``. WMF is fitted on the warm items' plays only. The *true* factors
of a cold item are then folded in from all its plays against the fixed warm user factors, which puts
them in the warm model's latent space: they are the regression targets of a content model, and the
oracle row of the tables. A predicted item matrix is scored against them by cosine distance (Oramas,
Nieto et al., DLRS 2017) and, for each user with held-out plays, by ranking the cold items with
x_uᵀŷ_i: Recall@k, NDCG@k, MAP@500 and AUC (van den Oord et al. 2013 report the last two).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from coldtag.intervals import Difference, cluster_bootstrap, cluster_indices

from .interactions import Interactions
from .wmf import WMF, load_npz, save_npz

__all__ = [
    "SPLITS",
    "ColdStartSplit",
    "artist_prior",
    "baseline_metrics",
    "evaluate_cold_start",
    "make_cold_start_split",
    "metrics_table",
    "paired_ranking_difference",
    "ranking_metrics",
]

SPLITS = ("warm", "cold_val", "cold_test")
_SCORES_PER_BATCH = 1 << 22  # users × items scores held at once while ranking


@dataclass(frozen=True, eq=False)
class ColdStartSplit:
    """Everything a content → factors model needs to train on warm items and be judged on cold ones.

    Shapes: ``user_ids`` ``(n_users,)``; ``item_ids``, ``item_split`` ``(n_items,)``; ``user_factors``
    ``(n_users, f)`` from the warm model; ``item_factors`` ``(n_items, f)``: the fitted factors of warm
    items and the fold-in factors of cold items; ``plays`` ``(n_users, n_items)`` play counts;
    ``prior`` ``(n_items,)`` a score known on day one (e.g. :func:`artist_prior`) or ``None``.
    Users are those with at least one warm play: someone who only played cold items is a cold *user*,
    which this item cold-start protocol does not measure.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    item_split: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    plays: sp.csr_matrix
    prior: np.ndarray | None = None
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        n_users, n_items = len(self.user_ids), len(self.item_ids)
        unknown = set(np.unique(self.item_split)) - set(SPLITS)
        if unknown:
            raise ValueError(f"item_split values must be in {SPLITS}, got {sorted(unknown)}")
        shapes = {
            "item_split": (self.item_split.shape, (n_items,)),
            "user_factors": (self.user_factors.shape[:1], (n_users,)),
            "item_factors": (self.item_factors.shape[:1], (n_items,)),
            "plays": (self.plays.shape, (n_users, n_items)),
        }
        if self.prior is not None:
            shapes["prior"] = (self.prior.shape, (n_items,))
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"{name} has shape {got}, expected {want}")

    def items(self, subset: str) -> np.ndarray:
        """Indices of the items of one split, ascending: the row order of predictions for that split."""
        if subset not in SPLITS:
            raise ValueError(f"subset must be one of {SPLITS}, got {subset!r}")
        return np.flatnonzero(self.item_split == subset)

    def save(self, path: str | Path) -> None:
        """One ``.npz`` with factors, ids, split, plays (CSR parts) and prior; no pickle."""
        plays = self.plays.tocsr()
        extra = {} if self.prior is None else {"prior": self.prior}
        save_npz(
            path,
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            item_split=self.item_split,
            user_factors=self.user_factors,
            item_factors=self.item_factors,
            plays_data=plays.data,
            plays_indices=plays.indices,
            plays_indptr=plays.indptr,
            params=self.params,
            **extra,
        )

    @classmethod
    def load(cls, path: str | Path) -> ColdStartSplit:
        data = load_npz(path)
        shape = (len(data["user_ids"]), len(data["item_ids"]))
        plays = sp.csr_matrix((data["plays_data"], data["plays_indices"], data["plays_indptr"]), shape=shape)
        return cls(
            data["user_ids"],
            data["item_ids"],
            data["item_split"],
            data["user_factors"],
            data["item_factors"],
            plays,
            data.get("prior"),
            json.loads(str(data["params"])),
        )


def make_cold_start_split(
    interactions: Interactions, item_split: Sequence[str] | np.ndarray, model: WMF, prior: np.ndarray | None = None
) -> ColdStartSplit:
    """Fit ``model`` on the warm items' plays and fold in the cold items' true factors.

    ``item_split`` ``(n_items,)`` labels each column of ``interactions.user_items``; ``prior``
    ``(n_items,)`` is kept for the popularity baseline. ``model`` is fitted in place.
    """
    item_split = np.asarray(item_split).astype(str)
    if item_split.shape != (interactions.n_items,):
        raise ValueError(f"item_split has shape {item_split.shape}, expected ({interactions.n_items},)")
    unknown = sorted(set(np.unique(item_split)) - set(SPLITS))
    if unknown:
        raise ValueError(f"item_split values must be in {SPLITS}, got {unknown}")
    warm = item_split == "warm"
    plays = interactions.user_items.tocsr()
    known = np.asarray(plays[:, warm].sum(axis=1)).ravel() > 0
    if not known.any():
        raise ValueError("no user has a play of a warm item: nothing to fit")
    plays = plays[known]
    model.fit(plays[:, warm])
    item_factors = np.zeros((interactions.n_items, model.factors), dtype=np.float32)
    item_factors[warm] = model.item_factors
    # Same confidences, λ and fixed user factors as the warm fit: the exact ALS item step puts the
    # cold items in the warm latent space, where cosine distances to predictions are meaningful.
    item_factors[~warm] = model.fold_in_items(plays[:, ~warm].T.tocsr())
    params = {**model.get_params(), "fit_seconds": model.fit_seconds, "cold_users_dropped": int((~known).sum())}
    return ColdStartSplit(
        interactions.user_ids[known],
        interactions.item_ids,
        item_split,
        model.user_factors,
        item_factors,
        plays,
        None if prior is None else np.asarray(prior, dtype=np.float64),
        params,
    )


def artist_prior(plays: sp.spmatrix, item_artist: np.ndarray, warm: np.ndarray) -> np.ndarray:
    """Per item, the plays of the *warm* items by the same artist ``(n_items,)``.

    A new track's own plays are unknowable on the day it is released; its artist's history is not.
    Items of an unknown (missing) artist get 0.
    """
    codes, _ = pd.factorize(np.asarray(item_artist))  # missing -> -1
    known = codes >= 0
    warm = np.asarray(warm, dtype=bool) & known
    item_plays = np.asarray(plays.sum(axis=0)).ravel().astype(np.float64)
    per_artist = np.bincount(codes[warm], weights=item_plays[warm], minlength=codes.max(initial=-1) + 1)
    prior = np.zeros(len(codes))
    # Indexed through the known items only: with no artist known, per_artist is empty.
    prior[known] = per_artist[codes[known]]
    return prior


def ranking_metrics(
    score: Callable[[np.ndarray], np.ndarray],
    relevant: sp.csr_matrix,
    ks: Sequence[int] = (50,),
    map_k: int = 500,
    seed: int = 0,
) -> dict[str, float]:
    """Per-user averaged Recall@k, NDCG@k, MAP@map_k and AUC of a score function over a candidate set.

    ``relevant`` ``(n_users, n_candidates)``: nonzero where the user played the candidate.
    ``score(users)`` gives scores ``(len(users), n_candidates)``. Users without a relevant candidate are
    left out (``"users"`` counts the rest); AUC also leaves out users who played every candidate.
    Definitions, with R the user's relevant set and hits counted in the top k:
    Recall@k = hits / |R|; NDCG@k = DCG / ideal DCG with gain 1/log2(rank + 1);
    AP@k = Σ_{rank ≤ k, relevant} precision@rank / min(k, |R|); AUC = P(relevant scored above
    irrelevant), ties counting one half. Ties in the top-k order are broken at random, independently
    per user (``seed``), so a constant score earns random-ranking metrics, not those of storage order.
    """
    relevant = sp.csr_matrix(relevant, copy=True)
    relevant.eliminate_zeros()  # a stored zero is not a play
    n_relevant = np.diff(relevant.indptr)
    users = np.flatnonzero(n_relevant > 0)
    n = relevant.shape[1]
    if users.size == 0 or n == 0:
        raise ValueError("no user has a relevant candidate: nothing to rank")
    top = min(max(max(ks), map_k), n)
    discount = 1.0 / np.log2(np.arange(2, top + 2))
    ideal = np.cumsum(discount)
    rng = np.random.default_rng(seed)
    totals = {f"recall@{k}": 0.0 for k in ks} | {f"ndcg@{k}": 0.0 for k in ks} | {f"map@{map_k}": 0.0}
    auc_sum, auc_users = 0.0, 0
    batch = max(1, _SCORES_PER_BATCH // n)
    for start in range(0, len(users), batch):
        rows = users[start : start + batch]
        scores = np.asarray(score(rows), dtype=np.float64)
        hit = relevant[rows].toarray() > 0  # (b, n)
        n_rel = n_relevant[rows]
        # Sorted by score, then by a random key: equal scores end in random order.
        order = np.lexsort((rng.random(scores.shape), -scores), axis=1)[:, :top]
        hits = np.take_along_axis(hit, order, axis=1)  # (b, top) in rank order
        for k in ks:
            kk = min(k, n)
            found = hits[:, :kk]
            totals[f"recall@{k}"] += (found.sum(axis=1) / n_rel).sum()
            dcg = (found * discount[:kk]).sum(axis=1)
            totals[f"ndcg@{k}"] += (dcg / ideal[np.minimum(n_rel, kk) - 1]).sum()
        mk = min(map_k, n)
        precision = np.cumsum(hits[:, :mk], axis=1) / np.arange(1, mk + 1)
        totals[f"map@{map_k}"] += ((precision * hits[:, :mk]).sum(axis=1) / np.minimum(n_rel, map_k)).sum()
        n_neg = n - n_rel
        both = n_neg > 0
        if both.any():
            ranks = rankdata(scores[both], axis=1)  # ascending, ties averaged
            positive_ranks = (ranks * hit[both]).sum(axis=1)
            pos, neg = n_rel[both], n_neg[both]
            auc_sum += ((positive_ranks - pos * (pos + 1) / 2) / (pos * neg)).sum()
            auc_users += int(both.sum())
    metrics = {name: float(total / len(users)) for name, total in totals.items()}
    metrics["auc"] = auc_sum / auc_users if auc_users else float("nan")
    metrics["users"] = float(len(users))
    return metrics


def evaluate_cold_start(
    predicted: np.ndarray,
    split: ColdStartSplit,
    ks: Sequence[int] = (50,),
    map_k: int = 500,
    subset: str = "cold_test",
    seed: int = 0,
) -> dict[str, float]:
    """Metrics of predicted factors ``(n_subset_items, f)`` for the items of ``split.items(subset)``.

    Returns ``cosine_distance`` (mean 1 − cos(ŷ_i, y_i) over subset items that have plays; a zero
    prediction counts as distance 1), ``recall@k`` and ``ndcg@k`` for each k, ``map@{map_k}``, ``auc``,
    and ``users`` (how many were ranked). Each user with a held-out play ranks only the subset's items,
    by x_uᵀŷ_i.
    """
    items = split.items(subset)
    predicted = np.asarray(predicted, dtype=np.float64)
    if predicted.shape != (len(items), split.item_factors.shape[1]):
        raise ValueError(
            f"predicted has shape {predicted.shape}, expected ({len(items)}, {split.item_factors.shape[1]}) "
            f"for the {subset} items"
        )
    metrics = {"cosine_distance": _cosine_distance(predicted, split, items)}
    users = split.user_factors.astype(np.float64)
    metrics |= ranking_metrics(lambda rows: users[rows] @ predicted.T, split.plays[:, items], ks, map_k, seed)
    return metrics


def baseline_metrics(
    split: ColdStartSplit, ks: Sequence[int] = (50,), map_k: int = 500, subset: str = "cold_test", seed: int = 0
) -> dict[str, dict[str, float]]:
    """Reference rows for the items of ``subset``.

    - ``random``: independent uniform scores per (user, item); its cosine distance is that of random
      Gaussian vectors (about 1).
    - ``mean warm factor``: every item predicted as the mean warm item factor, what a content model that
      learned nothing would output; it ties all items, so it ranks at random, but its cosine distance is
      the floor a fusion model has to beat.
    - ``popularity``: the day-one prior ``split.prior`` (e.g. the artist's warm plays) as the score for
      every user; skipped without a prior. Scores are not factors: no cosine distance.
    - ``popularity (held-out plays)``: each item's number of listeners among the evaluated users, the
      same for every user; an upper bound on non-personalised ranking, computed from these very plays.
    - ``oracle``: the fold-in factors themselves; an upper bound, computed from these very plays.
    """
    items = split.items(subset)
    relevant = split.plays[:, items]
    rng = np.random.default_rng(seed)
    random_vectors = rng.standard_normal((len(items), split.item_factors.shape[1]))

    def random_scores(users: np.ndarray) -> np.ndarray:
        return rng.random((len(users), len(items)))

    rows = {
        "random": {"cosine_distance": _cosine_distance(random_vectors, split, items)}
        | ranking_metrics(random_scores, relevant, ks, map_k, seed),
        "mean warm factor": evaluate_cold_start(
            np.tile(split.item_factors[split.items("warm")].mean(axis=0), (len(items), 1)),
            split,
            ks,
            map_k,
            subset,
            seed,
        ),
    }
    if split.prior is not None:
        prior = split.prior[items]
        rows["popularity"] = {"cosine_distance": float("nan")} | ranking_metrics(
            lambda users: np.broadcast_to(prior, (len(users), len(items))), relevant, ks, map_k, seed
        )
    # How many of the evaluated users played each item: the best any non-personalised ranking can do,
    # and a number nobody has for a track on its first day. An upper bound, like the oracle.
    listeners = np.asarray((relevant > 0).sum(axis=0)).ravel().astype(np.float64)
    rows["popularity (held-out plays)"] = {"cosine_distance": float("nan")} | ranking_metrics(
        lambda users: np.broadcast_to(listeners, (len(users), len(items))), relevant, ks, map_k, seed
    )
    rows["oracle"] = evaluate_cold_start(split.item_factors[items], split, ks, map_k, subset, seed)
    return rows


def paired_ranking_difference(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    relevant: sp.spmatrix,
    item_clusters: Sequence,
    metric: str = "recall@50",
    ks: Sequence[int] = (50,),
    map_k: int = 500,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Difference:
    """A per-user ranking ``metric`` of two scorings of the same candidates, and their difference with an
    interval that resamples the candidate *items* by cluster (their artist; `coldtag.intervals`).

    ``scores_a``, ``scores_b`` ``(n_users, n_items)``; ``relevant`` as in `ranking_metrics`;
    ``item_clusters`` ``(n_items,)``. On each resample every user ranks the items drawn, an item drawn
    twice standing as two candidates, and the metric is averaged over the users with at least one
    relevant item among them: a user none of whose items was drawn has no ranking to judge, and counting
    that user as zero (or keeping the full-sample denominator) would pull both rows down and shrink the
    interval. Both scorings see the same resamples and the same random tie-breaking.
    """
    scores_a, scores_b = np.asarray(scores_a), np.asarray(scores_b)
    relevant = sp.csr_matrix(relevant)
    if not scores_a.shape == scores_b.shape == relevant.shape or len(item_clusters) != relevant.shape[1]:
        raise ValueError(f"shapes differ: scores {scores_a.shape} and {scores_b.shape}, relevant {relevant.shape}, "
                         f"{len(item_clusters)} item clusters")

    everything = np.arange(relevant.shape[1])
    if metric not in ranking_metrics(lambda users: scores_a[users], relevant, ks, map_k, seed):
        raise ValueError(f"metric {metric!r} is not computed for ks={list(ks)}, map_k={map_k}")
    if metric.startswith("recall@"):
        # Recall alone, on dense arrays, from each user's order of all candidates computed once (ties
        # broken at random): a resample is only how many times it drew each candidate. A thousand resamples
        # of a 3,000 x 100 table then take about a second, not the minutes of every metric of
        # `ranking_metrics` re-sorted.
        k = int(metric.removeprefix("recall@"))
        users = np.flatnonzero(np.diff(relevant.indptr) > 0)
        hit = relevant[users].toarray() > 0
        noise = np.random.default_rng(seed).random(hit.shape)

        def scorer(scores: np.ndarray) -> Callable[[np.ndarray], float]:
            order = np.lexsort((noise, -scores[users]), axis=1)
            ordered_hits = np.take_along_axis(hit, order, axis=1)
            return lambda columns: _recall(order, ordered_hits, np.bincount(columns, minlength=hit.shape[1]), k)
    else:
        def scorer(scores: np.ndarray) -> Callable[[np.ndarray], float]:
            def value(columns: np.ndarray) -> float:
                try:
                    return ranking_metrics(lambda users: scores[users][:, columns], relevant[:, columns], ks,
                                           map_k, seed)[metric]
                except ValueError:  # no user has a relevant item among those drawn
                    return float("nan")
            return value

    value_a, value_b = scorer(scores_a), scorer(scores_b)
    difference, low, high, values = cluster_bootstrap(
        lambda columns: value_a(columns) - value_b(columns), item_clusters, resamples, level, seed
    )
    return Difference(
        a=value_a(everything), b=value_b(everything), difference=difference, low=low, high=high,
        p_not_positive=float(np.mean(values <= 0)) if len(values) else float("nan"),
        clusters=len(cluster_indices(item_clusters)), resamples=len(values),
    )


def _recall(order: np.ndarray, ordered_hits: np.ndarray, drawn: np.ndarray, k: int) -> float:
    """Recall@k of a resample of the candidates, averaged over the users with a hit among those drawn (NaN
    when none has). ``order``: each user's candidates best first; ``ordered_hits``: whether each is relevant,
    in that order; ``drawn``: how many times the resample drew each candidate. A candidate drawn twice stands
    twice in the ranking, both copies side by side; when only one fits in the top k, one counts."""
    # Counts in the narrowest integer type that holds them: the cumulative sums below are most of the work.
    kind = np.int16 if drawn.sum() < np.iinfo(np.int16).max else np.int64
    copies = drawn.astype(kind)[order]
    before = np.cumsum(copies, axis=1, dtype=kind) - copies  # copies ranked above each candidate
    in_top = np.minimum(np.maximum(k - before, 0), copies)
    n_rel = (copies * ordered_hits).sum(axis=1)
    keep = n_rel > 0
    if not keep.any():
        return float("nan")
    return float(((in_top * ordered_hits).sum(axis=1)[keep] / n_rel[keep]).mean())


def metrics_table(rows: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Rows of metrics (name -> metrics dict) as a frame with the ranking metrics first."""
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "model"
    first = [c for c in frame.columns if c not in ("cosine_distance", "users")]
    return frame[[*first, "cosine_distance", "users"]]


def _cosine_distance(predicted: np.ndarray, split: ColdStartSplit, items: np.ndarray) -> float:
    truth = split.item_factors[items].astype(np.float64)
    # Items nobody played have no true direction (their fold-in is the zero vector): not scored.
    has_plays = np.diff(split.plays.tocsc()[:, items].indptr) > 0
    truth, predicted = truth[has_plays], predicted[has_plays]
    if len(truth) == 0:
        return float("nan")
    norms = np.linalg.norm(predicted, axis=1) * np.linalg.norm(truth, axis=1)
    cosine = np.divide((predicted * truth).sum(axis=1), norms, out=np.zeros(len(truth)), where=norms > 0)
    # Rounding can push the cosine of a vector with itself a hair past 1.
    return float(np.mean(np.clip(1.0 - cosine, 0.0, 2.0)))
