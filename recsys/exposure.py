"""Fair exposure: re-ranking lists to give a share of their slots to tracks the caller names (long-tail,
cold, new-artist), and the metrics of a run's lists beside their accuracy (coverage, long-tail share,
Gini of exposure across artists, intra-list diversity)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


def long_tail_mask(item_plays: np.ndarray, head_share: float = 0.8) -> np.ndarray:
    """True for long-tail items: all but the most played items that together hold ``head_share`` of plays."""
    if not 0 < head_share < 1:
        raise ValueError(f"head_share must be in (0, 1), got {head_share}")
    plays = np.asarray(item_plays, dtype=np.float64)
    order = np.argsort(-plays, kind="stable")
    before = np.concatenate([[0.0], np.cumsum(plays[order])[:-1]])  # plays of the items more played than it
    tail = np.ones(len(plays), dtype=bool)
    tail[order[before < head_share * plays.sum()]] = False
    return tail


@dataclass(frozen=True)
class Reranked:
    """Re-ranked lists ``ids`` ``(n, N)`` int32 (-1 padding) with their original ``scores``;
    ``shortfall`` ``(n,)``: how many masked items each list lacks to meet the target share."""

    ids: np.ndarray
    scores: np.ndarray
    shortfall: np.ndarray


def rerank(ids: np.ndarray, scores: np.ndarray, mask: np.ndarray, share: float, N: int) -> Reranked:
    """Per row of candidates, the N-item list of highest total score with at least ⌈share·N⌉ masked items.

    ``ids``, ``scores`` ``(n, n_candidates)``: candidates per list (e.g. a mixer's top 10·N; -1 pads);
    ``mask`` ``(n_items,)``: the items the target counts (long-tail, cold, new-artist...). The best list
    takes the ⌈share·N⌉ best-scored masked candidates and fills up with the best of the rest; it is
    ordered by score. When a row has too few masked candidates it takes all of them and its shortfall
    is what is missing.
    """
    if not 0 <= share <= 1:
        raise ValueError(f"share must be in [0, 1], got {share}")
    ids, scores = np.atleast_2d(ids), np.atleast_2d(scores)
    mask = np.asarray(mask, dtype=bool)
    out_ids = np.full((len(ids), N), -1, dtype=np.int32)
    out_scores = np.full((len(ids), N), -np.inf, dtype=np.float32)
    shortfall = np.zeros(len(ids), dtype=np.int64)
    for row, (candidates, values) in enumerate(zip(ids, scores, strict=True)):
        valid = candidates >= 0
        candidates, values = candidates[valid], values[valid]
        order = np.argsort(-values, kind="stable")
        candidates, values = candidates[order], values[order]
        size = min(N, len(candidates))
        need = math.ceil(share * size - 1e-9)
        masked = np.flatnonzero(mask[candidates])
        chosen = masked[:need]
        shortfall[row] = need - len(chosen)
        rest = np.setdiff1d(np.arange(len(candidates)), chosen)[: size - len(chosen)]
        chosen = np.sort(np.concatenate([chosen, rest]))  # positions in score order: best first
        out_ids[row, :size] = candidates[chosen]
        out_scores[row, :size] = values[chosen]
    return Reranked(out_ids, out_scores, shortfall)


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, → 1 when one holds everything."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return math.nan
    return float(((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (n * total))


def list_metrics(ids: np.ndarray, relevant: sp.csr_matrix | None = None, long_tail: np.ndarray | None = None,
                 vectors: np.ndarray | None = None) -> pd.DataFrame:
    """Per list (row of ``ids``, -1 padding): recall, ndcg, long_tail_share, diversity.

    With R the list's held-out items (row of ``relevant``) and k the list length: recall = hits / |R|
    and ndcg = DCG / ideal DCG with gain 1/log2(rank + 1), as in :func:`recsys.ranking_metrics`
    (NaN without held-out items); long_tail_share = share of the list in ``long_tail``; diversity
    (intra-list) = mean pairwise 1 − cosine of the items' ``vectors``. A metric without its input is NaN.
    """
    ids = np.atleast_2d(ids)
    n, k = ids.shape
    columns = {name: np.full(n, np.nan) for name in ("recall", "ndcg", "long_tail_share", "diversity")}
    gains = 1 / np.log2(np.arange(2, k + 2))
    if vectors is not None:
        vectors = np.asarray(vectors, dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1)
        unit = vectors / np.where(norms > 0, norms, 1.0)[:, None]
    for row, items in enumerate(ids):
        items = items[items >= 0]
        if relevant is not None:
            held = set(relevant[row].indices[relevant[row].data != 0].tolist())
            if held:
                hits = np.array([i in held for i in items.tolist()], dtype=float)
                columns["recall"][row] = hits.sum() / len(held)
                columns["ndcg"][row] = (hits * gains[: len(items)]).sum() / gains[: min(k, len(held))].sum()
        if long_tail is not None and len(items):
            columns["long_tail_share"][row] = np.asarray(long_tail, bool)[items].mean()
        if vectors is not None and len(items) > 1:
            cosine = unit[items] @ unit[items].T
            m = len(items)
            columns["diversity"][row] = 1 - (cosine.sum() - np.trace(cosine)) / (m * (m - 1))
    return pd.DataFrame(columns)


def run_metrics(ids: np.ndarray, n_items: int, long_tail: np.ndarray | None = None,
                artists: Sequence | None = None) -> dict[str, float]:
    """Over all lists of a run: ``coverage`` (share of the catalog recommended at least once),
    ``long_tail_share`` (of all recommended slots) and ``artist_gini`` (Gini of the slots each known
    artist of the catalog got, artists never recommended counting 0). Without ``long_tail`` or
    ``artists`` (unknown artists are left out) that metric is NaN."""
    shown = np.asarray(ids).ravel()
    shown = shown[shown >= 0]
    result = {"coverage": len(np.unique(shown)) / n_items if n_items else math.nan,
              "long_tail_share": math.nan, "artist_gini": math.nan}
    if long_tail is not None and len(shown):
        result["long_tail_share"] = float(np.asarray(long_tail, bool)[shown].mean())
    if artists is not None:
        codes, _ = pd.factorize(pd.Series(list(artists), dtype=object))
        known = codes[shown][codes[shown] >= 0]
        result["artist_gini"] = gini(np.bincount(known, minlength=codes.max(initial=-1) + 1))
    return result
