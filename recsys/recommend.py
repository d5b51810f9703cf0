"""Recommend and find similar items from factors, in the style of implicit, over catalogs of any size.

Scores are inner products x_uᵀy_i (cosine for similar items). The catalog is scanned in chunks of
items, so memory stays at about ``user_batch × chunk_size × 9`` bytes whatever the catalog size.
:class:`Recommender` answers implicit's calls with implicit's dtypes (int32 ids, float32 scores), so
``implicit.evaluation.ranking_metrics_at_k`` runs on it unchanged, and its ``.npz`` is a file
``implicit.cpu.als.AlternatingLeastSquares.load`` reads (and the other way round).
"""

from __future__ import annotations

import json
from pathlib import Path

import implicit.cpu.als
import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from .interactions import index_of
from .wmf import load_npz, save_npz

__all__ = ["DEFAULT_CHUNK_SIZE", "DEFAULT_USER_BATCH", "Recommender", "topk"]

# From the sweep of benchmarks/recommend.py (top-100 over 1,000,000 items, 64 factors, batches of 256
# users, 2 busy cores): 16,384 items per chunk was fastest (6.7 ns per score) with a 40 MB working set;
# 65,536 took 25 % longer with 148 MB, 4,096 three times longer (per-chunk overhead), and the whole
# catalog at once twice as long with 2.2 GB.
DEFAULT_CHUNK_SIZE = 16_384
DEFAULT_USER_BATCH = 256


def topk(
    queries: np.ndarray,
    items: np.ndarray,
    N: int,
    *,
    exclude: sp.csr_matrix | None = None,
    item_scale: np.ndarray | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    user_batch: int = DEFAULT_USER_BATCH,
) -> tuple[np.ndarray, np.ndarray]:
    """The N highest ``queries @ items.T`` per query row, best first.

    ``queries`` ``(n_queries, f)``, ``items`` ``(n_items, f)`` -> ``ids`` int64 and ``scores`` float32,
    both ``(n_queries, min(N, n_items))``. ``exclude`` ``(n_queries, <= n_items)`` marks items a query must
    not get; ``item_scale`` ``(n_items,)`` multiplies each item's scores (1/‖y_i‖ gives cosines). A row
    with fewer than N allowed items is padded with id -1 and score -inf.

    Per chunk of items: scores for a batch of queries, then only the scores above each query's current
    N-th best survive (one comparison per score; in the first chunk the bar is the chunk's own N-th best,
    found by a partition); the survivors and the running best are merged with one ``argpartition``.
    After the first chunk few scores survive, so the cost stays close to that of the matrix product.
    """
    if chunk_size < 1 or user_batch < 1:
        raise ValueError(f"chunk_size and user_batch must be >= 1, got {chunk_size} and {user_batch}")
    queries = np.asarray(queries, dtype=np.float32)
    items = np.asarray(items, dtype=np.float32)
    n_items = len(items)
    N = min(N, n_items)
    if exclude is not None and (exclude.shape[0] != len(queries) or exclude.shape[1] > n_items):
        raise ValueError(f"exclude has shape {exclude.shape} for {len(queries)} queries and {n_items} items")
    ids = np.full((len(queries), N), -1, dtype=np.int64)
    scores = np.full((len(queries), N), -np.inf, dtype=np.float32)
    if N == 0:
        return ids, scores
    buffer = np.empty(min(user_batch, len(queries)) * min(chunk_size, n_items), dtype=np.float32)
    for start in range(0, len(queries), user_batch):
        stop = min(start + user_batch, len(queries))
        excluded = None if exclude is None else exclude[start:stop].tocoo()
        ids[start:stop], scores[start:stop] = _topk_batch(
            queries[start:stop], items, N, excluded, item_scale, chunk_size, buffer
        )
    return ids, scores


def _topk_batch(queries, items, N, excluded, item_scale, chunk_size, buffer):
    b = len(queries)
    best_scores = np.full((b, N), -np.inf, dtype=np.float32)
    best_ids = np.full((b, N), -1, dtype=np.int64)
    for offset in range(0, len(items), chunk_size):
        chunk = items[offset : offset + chunk_size]
        c = len(chunk)
        block = buffer[: b * c].reshape(b, c)  # (b, c), contiguous whatever c
        np.matmul(queries, chunk.T, out=block)
        if item_scale is not None:
            block *= item_scale[offset : offset + c]
        if excluded is not None:
            inside = (excluded.col >= offset) & (excluded.col < offset + c)
            block[excluded.row[inside], excluded.col[inside] - offset] = -np.inf

        threshold = best_scores.min(axis=1)
        unfilled = np.isneginf(threshold)
        if c > N and unfilled.any():
            # A query without N candidates yet would let the whole chunk through: its bar is the
            # chunk's own N-th best score (partitioning values costs half the memory of indices).
            own = block[unfilled] if not unfilled.all() else block.copy()
            own.partition(c - N, axis=1)
            threshold[unfilled] = np.nextafter(own[:, c - N], -np.inf)
        flat = np.flatnonzero(block > threshold[:, None])
        if flat.size == 0:
            continue
        # Survivors, row by row, into a (b, most survivors of a row) array padded with -inf.
        rows, cols = np.divmod(flat, c)
        per_row = np.bincount(rows, minlength=b)
        slot = np.arange(flat.size) - (np.cumsum(per_row) - per_row)[rows]
        cand_scores = np.full((b, per_row.max()), -np.inf, dtype=np.float32)
        cand_cols = np.zeros((b, per_row.max()), dtype=np.int64)
        cand_scores[rows, slot] = block.ravel()[flat]
        cand_cols[rows, slot] = cols
        merged_scores = np.concatenate([best_scores, cand_scores], axis=1)
        merged_ids = np.concatenate([best_ids, cand_cols + offset], axis=1)
        keep = np.argpartition(merged_scores, merged_scores.shape[1] - N, axis=1)[:, -N:]
        best_scores = np.take_along_axis(merged_scores, keep, axis=1)
        best_ids = np.take_along_axis(merged_ids, keep, axis=1)

    order = np.lexsort((best_ids, -best_scores), axis=1)  # equal scores: lower index first
    best_scores = np.take_along_axis(best_scores, order, axis=1)
    best_ids = np.take_along_axis(best_ids, order, axis=1)
    best_ids[np.isneginf(best_scores)] = -1
    return best_ids, best_scores


class Recommender:
    """Users and items in one latent space: recommend, similar items, new items, save and load.

    Args:
        user_factors: ``(n_users, f)``.
        item_factors: ``(n_items, f)``.
        user_ids, item_ids: original ids of the rows (default: their positions).
        params: anything JSON-serialisable to keep with the factors (e.g. :meth:`WMF.get_params`).
        regularization: λ of the ALS user step that :meth:`recalculate_user` solves; default
            ``params["regularization"]`` (what :class:`WMF` records), else unknown (fold-in then raises).
        alpha: implicit's ``alpha``: the confidence of a cell is ``alpha ×`` its value in ``user_items``.
            :class:`WMF` fits with alpha 1 on the confidences ``1 + α·r`` it computes itself, so a user
            folds in the same way as in its fit from ``WMF(**params).confidence(plays)`` with alpha 1.
        chunk_size, user_batch: see :func:`topk`.

    Like implicit, methods take and return *indices*; ``user_ids[u]`` / ``item_ids[i]`` give the
    original ids and :meth:`user_index` / :meth:`item_index` go the other way.
    """

    def __init__(
        self,
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
        *,
        params: dict | None = None,
        regularization: float | None = None,
        alpha: float = 1.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        user_batch: int = DEFAULT_USER_BATCH,
    ):
        user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        if user_factors.ndim != 2 or item_factors.ndim != 2 or user_factors.shape[1] != item_factors.shape[1]:
            raise ValueError(
                f"factors must be (n_users, f) and (n_items, f), got {user_factors.shape} and {item_factors.shape}"
            )
        self.user_factors = user_factors
        self.item_factors = item_factors
        self.user_ids = np.arange(len(user_factors)) if user_ids is None else np.asarray(user_ids)
        self.item_ids = np.arange(len(item_factors)) if item_ids is None else np.asarray(item_ids)
        if len(self.user_ids) != len(user_factors) or len(self.item_ids) != len(item_factors):
            raise ValueError(
                f"{len(self.user_ids)} user ids and {len(self.item_ids)} item ids for factors "
                f"{user_factors.shape} and {item_factors.shape}"
            )
        _check_unique(self.item_ids, "item")
        self.params = dict(params or {})
        if regularization is None:
            regularization = self.params.get("regularization")
        if regularization is not None and regularization < 0:
            raise ValueError(f"regularization must be >= 0, got {regularization}")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.regularization = None if regularization is None else float(regularization)
        self.alpha = float(alpha)
        self.chunk_size = chunk_size
        self.user_batch = user_batch
        self._item_norms: np.ndarray | None = None
        self._item_lookup: pd.Index | None = None
        self._user_lookup: pd.Index | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_factors)

    @property
    def n_items(self) -> int:
        return len(self.item_factors)

    def user_index(self, ids):
        """Row(s) of original user id(s): a scalar gives an int, a sequence an int array."""
        if self._user_lookup is None:
            self._user_lookup = pd.Index(self.user_ids)
        return index_of(self._user_lookup, ids, "user")

    def item_index(self, ids):
        """Row(s) of original item id(s): a scalar gives an int, a sequence an int array."""
        if self._item_lookup is None:
            self._item_lookup = pd.Index(self.item_ids)
        return index_of(self._item_lookup, ids, "item")

    def recommend(
        self,
        userid,
        user_items: sp.csr_matrix | None,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items: np.ndarray | None = None,
        recalculate_user: bool = False,
        items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-N items for a user index (-> ``(N,)`` ids and scores) or an array of them (-> ``(n, N)``).

        As implicit's ``recommend``: ``user_items`` has one row per requested user (``user_items[userid]``
        of the training matrix); it may have fewer columns than the model has items (items added later
        were never played). ``filter_items`` are item indices nobody gets; ``items`` restricts the
        candidates to those item indices (not both). With ``recalculate_user`` the user's factors are
        folded in from ``user_items`` (:meth:`recalculate_user`), so ``userid`` need not be a known user.
        Ids are int32 and scores float32. A scalar request with fewer than N candidates returns fewer; a
        batch pads with id -1 and score -inf.
        """
        scalar = np.ndim(userid) == 0
        users = np.atleast_1d(np.asarray(userid))
        if (filter_already_liked_items or recalculate_user) and (
            not sp.issparse(user_items) or user_items.shape[0] != len(users)
        ):
            raise ValueError("user_items must be a sparse matrix with one row per requested user")
        if recalculate_user:
            queries = self.recalculate_user(users, user_items)
        else:
            if users.size and (users.min() < 0 or users.max() >= self.n_users):
                raise IndexError(f"user index out of range [0, {self.n_users}): {userid}")
            queries = self.user_factors[users]
        exclude = sp.csr_matrix(user_items) if filter_already_liked_items else None
        items = self._candidates(items, filter_items)
        candidates = self.item_factors
        if items is not None:
            candidates = candidates[items]
            if exclude is not None:
                exclude = _restrict_columns(exclude, items, self.n_items)
        ids, scores = topk(
            queries,
            candidates,
            N,
            exclude=exclude,
            chunk_size=self.chunk_size,
            user_batch=self.user_batch,
        )
        if items is not None:
            ids = np.where(ids >= 0, items[ids], -1)
        ids = ids.astype(np.int32)
        return _unbatch(ids, scores) if scalar else (ids, scores)

    def recalculate_user(self, userid, user_items: sp.csr_matrix) -> np.ndarray:
        """Factors of users from their rows of ``user_items``, item factors held fixed, as implicit does.

        The exact ALS user step x = (YᵀC_uY + λI)⁻¹ YᵀC_u p_u with C_u = ``alpha`` × the row's values
        (and p = 1 where a value is positive), solved by implicit's own CPU code, so the answer is
        implicit's ``recalculate_user`` on an ``AlternatingLeastSquares`` with these factors, λ and
        alpha. ``userid`` only says scalar (-> ``(f,)``) or batch (-> ``(n, f)``), as in implicit.
        """
        if self.regularization is None:
            raise ValueError("recalculate_user needs the regularization λ of the fit; this model has none "
                             "(pass regularization= to Recommender or keep it in params)")
        n_users = 1 if np.ndim(userid) == 0 else len(np.asarray(userid))
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
        if user_items.shape[0] != n_users:
            raise ValueError(f"user_items has {user_items.shape[0]} rows for {n_users} users")
        if user_items.shape[1] < self.n_items:  # items added later were never played
            user_items = sp.csr_matrix((user_items.data, user_items.indices, user_items.indptr),
                                       shape=(n_users, self.n_items))
        elif user_items.shape[1] > self.n_items:
            raise ValueError(f"user_items has {user_items.shape[1]} item columns, the model {self.n_items}")
        # implicit's solver runs its own threads; a multi-threaded BLAS underneath slows it down badly.
        with threadpool_limits(1, "blas"):
            solver = implicit.cpu.als.AlternatingLeastSquares(
                factors=self.item_factors.shape[1], regularization=self.regularization, alpha=self.alpha,
                num_threads=1,
            )
            solver.item_factors = self.item_factors
            factors = solver.recalculate_user(np.arange(n_users), user_items)
        factors = np.asarray(factors, dtype=np.float32)
        return factors[0] if np.ndim(userid) == 0 else factors

    def similar_items(self, itemid, N: int = 10, items: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The N items of highest cosine similarity to an item index (or each of an array of them).

        The item itself is among the candidates (cosine 1), as in implicit.
        """
        query = np.atleast_1d(np.asarray(itemid))
        if query.size and (query.min() < 0 or query.max() >= self.n_items):
            raise IndexError(f"item index out of range [0, {self.n_items}): {itemid}")
        ids, scores = self.similar_to(self.item_factors[query], N, items)
        return _unbatch(ids, scores) if np.ndim(itemid) == 0 else (ids, scores)

    def similar_to(self, factors: np.ndarray, N: int = 10, items: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """The N items of highest cosine similarity to each row of ``factors`` ``(queries, f)``, vectors in this
        model's latent space that need not be its items' (a new track's predicted factors): ``(ids, scores)``,
        each ``(queries, N)``, best first. A zero vector has no direction: its cosine with anything is 0."""
        factors = np.atleast_2d(np.asarray(factors, dtype=np.float32))
        if factors.shape[1] != self.item_factors.shape[1]:
            raise ValueError(f"factors must have {self.item_factors.shape[1]} columns, got {factors.shape[1]}")
        norms = self.item_norms
        inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        candidates, scale = self.item_factors, inverse
        if items is not None:
            items = self._check_items(items)
            candidates, scale = candidates[items], inverse[items]
        lengths = np.linalg.norm(factors, axis=1, keepdims=True)
        queries = np.divide(factors, lengths, out=np.zeros_like(factors), where=lengths > 0)
        ids, scores = topk(
            queries, candidates, N, item_scale=scale, chunk_size=self.chunk_size, user_batch=self.user_batch
        )
        if items is not None:
            ids = np.where(ids >= 0, items[ids], -1)
        return ids.astype(np.int32), scores

    def add_items(self, item_ids, factors: np.ndarray) -> np.ndarray:
        """Append new items with given factors (e.g. predicted from content); returns their indices.

        The factors must be in this model's latent space (fold-in or a regression onto its item factors).
        Nothing is refitted; existing indices stay valid.
        """
        item_ids = np.atleast_1d(np.asarray(item_ids))
        factors = np.atleast_2d(np.asarray(factors, dtype=np.float32))
        if factors.shape != (len(item_ids), self.item_factors.shape[1]):
            raise ValueError(f"factors must be ({len(item_ids)}, {self.item_factors.shape[1]}), got {factors.shape}")
        if len(self.item_ids) and _id_kind(item_ids) != _id_kind(self.item_ids):
            raise ValueError(f"new item ids are {item_ids.dtype}, the model's {self.item_ids.dtype}")
        clash = np.isin(item_ids, self.item_ids)
        if clash.any():
            raise ValueError(f"item ids already in the model: {item_ids[clash][:5].tolist()}")
        _check_unique(item_ids, "new item")
        first = self.n_items
        self.item_factors = np.concatenate([self.item_factors, factors])
        self.item_ids = np.concatenate([self.item_ids, item_ids])
        self._item_norms = self._item_lookup = None
        return np.arange(first, self.n_items)

    @property
    def item_norms(self) -> np.ndarray:
        if self._item_norms is None:
            self._item_norms = np.linalg.norm(self.item_factors, axis=1)
        return self._item_norms

    def save(self, path: str | Path) -> None:
        """Factors, ids and params to one ``.npz`` (no pickle) that implicit can load too.

        Beside our keys it writes what ``implicit.cpu.als.AlternatingLeastSquares.load`` sets on a model
        (``factors``, ``alpha``, ``dtype`` and ``regularization`` when known), so implicit's
        ``recalculate_user`` on the loaded model folds users in as :meth:`recalculate_user` does.
        """
        implicit_keys = {"factors": self.item_factors.shape[1], "alpha": self.alpha, "dtype": "float32"}
        if self.regularization is not None:
            implicit_keys["regularization"] = self.regularization
        save_npz(
            path,
            user_factors=self.user_factors,
            item_factors=self.item_factors,
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            params=self.params,
            **implicit_keys,
        )

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> Recommender:
        """Read what :meth:`save` or implicit's ``AlternatingLeastSquares.save`` wrote.

        ``kwargs`` go to the constructor (e.g. ``chunk_size``). A file of implicit has no ids (rows are
        their own ids); its other settings (``iterations``, ``random_state``, ...) become ``params``.
        """
        data = load_npz(path)
        missing = {"user_factors", "item_factors"} - set(data)
        if missing:
            raise ValueError(f"{path}: not a factors file, missing {sorted(missing)}")
        if "params" in data:
            params = json.loads(str(data["params"]))
        else:
            own = {"user_factors", "item_factors", "user_ids", "item_ids", "regularization", "alpha", "dtype"}
            params = {name: value.item() for name, value in data.items() if name not in own and value.shape == ()}
        settings = {name: float(data[name]) for name in ("regularization", "alpha") if name in data}
        return cls(
            data["user_factors"],
            data["item_factors"],
            data.get("user_ids"),
            data.get("item_ids"),
            params=params,
            **{**settings, **kwargs},
        )

    def _candidates(self, items, filter_items) -> np.ndarray | None:
        """Candidate item indices from implicit's ``items`` / ``filter_items``; ``None`` means all."""
        if filter_items is not None and items is not None:
            raise ValueError("give items or filter_items, not both (as in implicit)")
        if filter_items is not None:
            return np.setdiff1d(np.arange(self.n_items), self._check_items(filter_items))
        return None if items is None else self._check_items(items)

    def _check_items(self, items) -> np.ndarray:
        items = np.asarray(items, dtype=np.int64)
        if items.size and (items.min() < 0 or items.max() >= self.n_items):
            raise IndexError(f"item indices out of range [0, {self.n_items})")
        return items


def _restrict_columns(matrix: sp.csr_matrix, items: np.ndarray, n_items: int) -> sp.csr_matrix:
    """Columns of ``matrix`` renumbered to positions in ``items``; other columns dropped."""
    position = np.full(n_items, -1, dtype=np.int64)
    position[items] = np.arange(len(items))
    coo = matrix.tocoo()
    inside = coo.col < n_items
    rows, cols = coo.row[inside], position[coo.col[inside]]
    kept = cols >= 0
    return sp.csr_matrix(
        (np.ones(kept.sum(), dtype=np.float32), (rows[kept], cols[kept])), shape=(matrix.shape[0], len(items))
    )


def _unbatch(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    valid = ids[0] >= 0
    return ids[0][valid], scores[0][valid]


def _id_kind(ids: np.ndarray) -> str:
    # Text ids are object arrays in memory (recsys.interactions) and fixed-width once loaded from .npz.
    return "text" if ids.dtype.kind in "OU" else ids.dtype.kind


def _check_unique(ids: np.ndarray, kind: str) -> None:
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"repeated {kind} ids: {values[counts > 1][:5].tolist()}")
