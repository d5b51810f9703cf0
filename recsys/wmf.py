"""Weighted matrix factorization of play counts with implicit's ALS, and the `.npz` format of factors.

Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008: every
(user, item) cell has a preference p_ui = [r_ui > 0] and a confidence c_ui, and the factors minimise

    Σ_ui c_ui (p_ui − x_uᵀ y_i)² + λ (Σ_u ‖x_u‖² + Σ_i ‖y_i‖²),

with c_ui = 1 + α r_ui ("linear") or c_ui = 1 + α log(1 + r_ui / ε) ("log"), as in the paper.
This is the factorization whose item factors Oramas et al. (DLRS 2017) regress from content.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import implicit.cpu.als
import implicit.gpu
import numpy as np
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from coldtag.storage import atomic_path

__all__ = ["WMF", "load_npz", "save_npz"]


class WMF:
    """Weighted matrix factorization of a users × items play-count matrix.

    Args:
        factors: size of the latent space.
        regularization: λ, on user and item factors alike.
        alpha: α in the confidence c = 1 + α·r (or 1 + α·log(1 + r/ε)).
        iterations: ALS sweeps (users then items).
        scaling: ``"linear"`` or ``"log"`` confidence.
        epsilon: ε of the log scaling.
        random_state: seed of the initial factors.
        use_gpu: implicit's CUDA implementation; ``None`` uses it when CUDA is present.
        num_threads: threads of implicit's CPU solver; 0 means all cores.

    After :meth:`fit`, ``user_factors`` ``(n_users, factors)`` and ``item_factors`` ``(n_items, factors)``
    are float32 NumPy arrays and ``fit_seconds`` is the wall time of the ALS sweeps.
    """

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.1,
        alpha: float = 20.0,
        iterations: int = 15,
        scaling: str = "linear",
        epsilon: float = 1.0,
        random_state: int | None = 0,
        use_gpu: bool | None = None,
        num_threads: int = 0,
    ):
        if factors < 1:
            raise ValueError(f"factors must be >= 1, got {factors}")
        if regularization < 0:
            raise ValueError(f"regularization must be >= 0, got {regularization}")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if scaling not in ("linear", "log"):
            raise ValueError(f"scaling must be 'linear' or 'log', got {scaling!r}")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        if use_gpu and not implicit.gpu.HAS_CUDA:
            raise ValueError("use_gpu=True but implicit was built without CUDA or no GPU is visible")
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.scaling = scaling
        self.epsilon = epsilon
        self.random_state = random_state
        self.use_gpu = implicit.gpu.HAS_CUDA if use_gpu is None else use_gpu
        self.num_threads = num_threads
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self.fit_seconds: float | None = None

    def get_params(self) -> dict:
        """The constructor arguments, for saving beside the factors."""
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": self.iterations,
            "scaling": self.scaling,
            "epsilon": self.epsilon,
            "random_state": self.random_state,
        }

    def confidence(self, plays: sp.spmatrix) -> sp.csr_matrix:
        """Confidences c = 1 + α·r (or the log form) on the nonzero cells of ``plays``, same shape.

        implicit reads a stored value as the confidence c_ui itself (and p_ui = 1); it would use α·r
        with its own ``alpha``, which gives a single play no more weight than an unplayed cell when
        α = 1. Hence the model below is built with alpha=1 and is handed c directly.
        """
        plays = sp.csr_matrix(plays, dtype=np.float32, copy=True)  # the caller's matrix stays as it was
        plays.eliminate_zeros()
        if plays.nnz and plays.data.min() < 0:
            raise ValueError(f"play counts must be >= 0, got {plays.data.min()}")
        data = plays.data if self.scaling == "linear" else np.log1p(plays.data / self.epsilon)
        return sp.csr_matrix(((1.0 + self.alpha * data).astype(np.float32), plays.indices, plays.indptr), plays.shape)

    def fit(self, plays: sp.spmatrix, show_progress: bool = False) -> WMF:
        """Factorize ``plays`` ``(n_users, n_items)`` of play counts; returns ``self``."""
        confidence = self.confidence(plays)
        # implicit's solver runs its own threads; a multi-threaded BLAS underneath slows it down badly.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=1.0,
                use_gpu=self.use_gpu,
                iterations=self.iterations,
                num_threads=self.num_threads,
                random_state=self.random_state,
            )
            start = time.perf_counter()
            model.fit(confidence, show_progress=show_progress)
            self.fit_seconds = time.perf_counter() - start
        if self.use_gpu:
            model = model.to_cpu()
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        return self

    def fold_in_items(self, item_plays: sp.spmatrix) -> np.ndarray:
        """Factors ``(n_new, factors)`` of items from their plays ``(n_new, n_users)``, users held fixed.

        Each row is the exact least-squares ALS item step against the fitted user factors X:
        y = (XᵀC_iX + λI)⁻¹ XᵀC_i p_i, with the same confidences and λ as the fit. So the result lives in
        the latent space of ``user_factors``: x_uᵀy ranks it against fitted items, and cosine distances
        to other items' factors mean something. Refitting a model that includes the new items would
        rotate the whole space, and its factors could not be compared with these user factors.
        An item with no plays gets the zero vector.
        """
        if self.user_factors is None:
            raise RuntimeError("fit the model before folding in items")
        if item_plays.shape[1] != len(self.user_factors):
            raise ValueError(f"item_plays has {item_plays.shape[1]} user columns, the model {len(self.user_factors)}")
        with threadpool_limits(1, "blas"):
            # implicit's CPU recalculate_item solves the normal equations by Cholesky (not the CG of fit).
            solver = implicit.cpu.als.AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=1.0,
                num_threads=self.num_threads,
            )
            solver.user_factors = self.user_factors
            n_new = item_plays.shape[0]
            folded = solver.recalculate_item(np.arange(n_new), self.confidence(item_plays))
        return np.asarray(folded, dtype=np.float32).reshape(n_new, self.factors)


def save_npz(path: str | Path, **arrays) -> None:
    """Write arrays to ``path`` atomically, loadable with ``allow_pickle=False``.

    Object arrays of text become fixed-width unicode; a ``dict`` value is stored as a JSON string.
    """
    path = Path(path)
    plain = {}
    for name, value in arrays.items():
        if isinstance(value, dict):
            value = json.dumps(value)
        array = np.asarray(value)
        if array.dtype == object:
            array = array.astype(str)
        plain[name] = array
    with atomic_path(path) as staging, open(staging, "wb") as out:
        np.savez(out, **plain)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, never unpickling anything."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
