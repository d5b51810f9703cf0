"""Lightning wrapper of the content -> factors models: cosine loss, early-stopping signal, cold-start metrics.

One module trains either model of `fusion.model` on the warm items' WMF factors. Validation and test
predict every item of the cold subset (``cold_val`` / ``cold_test``), and the whole prediction matrix is
scored at once by `recsys.evaluate_cold_start`: the cosine distance to the fold-in factors and the
ranking metrics against the items' held-out plays. Logged as ``train/loss``, ``val/cosine_distance``
(the early-stopping signal), ``val/cold/recall@50``, ..., ``test/cosine_distance``, ``test/cold/...``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fusion.model import cosine_distance
from recsys import ColdStartSplit, evaluate_cold_start

SUBSETS = {"val": "cold_val", "test": "cold_test"}


class FactorRegressionModule(pl.LightningModule):
    """Trains ``model`` (a `LateFusionRegressor` or an `AudioFactorRegressor`) to regress factors.

    Batches are dicts with ``target`` ``(batch, f)``, ``index`` ``(batch,)`` (the item's position among
    its subset's items) and either ``inputs`` / ``present`` (fusion) or ``wave`` / ``length`` (audio).
    Audio is scored whole-track in validation and test, pooled by ``pooling`` (``"track"`` or
    ``"centre"``); ``test_prefix`` renames the test metrics, so one model can be tested both ways.
    The ranking metrics of the best validation epoch so far are kept (``best_metrics``, ``best_epoch``);
    the weights of that epoch are a ``ModelCheckpoint``'s on ``val/cosine_distance``.

    Args:
        model: the content -> factors network.
        split: the item cold-start split; its warm factors are the training targets.
        lr: Adam's learning rate (the paper keeps Adam's defaults).
        ks, map_k: cut-offs of the ranking metrics.
    """

    def __init__(self, model: nn.Module, split: ColdStartSplit, lr: float = 1e-3, ks: Sequence[int] = (50,),
                 map_k: int = 500):
        super().__init__()
        self.model, self.split = model, split
        self.lr, self.ks, self.map_k = lr, tuple(ks), map_k
        self.pooling, self.test_prefix = "track", "test"
        self.best_score, self.best_epoch = math.inf, -1
        self.best_metrics: dict[str, float] = {}
        self.predicted: np.ndarray | None = None

    def _predict(self, batch: dict, stage: str) -> torch.Tensor:
        if "wave" not in batch:
            return self.model(batch["inputs"], batch["present"])
        if stage == "train":
            return self.model(batch["wave"])
        return self.model.predict_tracks(batch["wave"], batch["length"], pooling=self.pooling)

    def _step(self, batch: dict, stage: str) -> torch.Tensor | None:
        predicted = self._predict(batch, stage)
        target = batch["target"]
        if stage != "train":
            self.predicted[batch["index"].cpu().numpy()] = predicted.detach().float().cpu().numpy()
        has_direction = target.norm(dim=1) > 0
        if stage != "train" or not has_direction.any():
            return None
        loss = cosine_distance(predicted[has_direction], target[has_direction]).mean()
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=int(has_direction.sum()))
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def _start(self, stage: str) -> None:
        # Items a batch never reaches (audio that cannot be decoded) stay zero: no prediction, ranked last
        # by nobody and counted at distance 1.
        n_items = len(self.split.items(SUBSETS[stage]))
        self.predicted = np.zeros((n_items, self.split.item_factors.shape[1]), dtype=np.float32)

    def _log_metrics(self, prefix: str, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            if name not in ("cosine_distance", "users"):
                self.log(f"{prefix}/cold/{name}", value)

    def on_validation_epoch_start(self) -> None:
        self._start("val")

    def on_validation_epoch_end(self) -> None:
        # The early-stopping signal every epoch; the ranking metrics (users × items scores) only when it
        # improves, i.e. for the weights that will be kept.
        distance = mean_cosine_distance(self.predicted, self.split.item_factors[self.split.items("cold_val")])
        self.log("val/cosine_distance", distance)
        if distance < self.best_score:
            self.best_metrics = evaluate_cold_start(self.predicted, self.split, self.ks, self.map_k, "cold_val")
            self._log_metrics("val", self.best_metrics)
            self.best_score, self.best_epoch = distance, self.current_epoch

    def on_test_epoch_start(self) -> None:
        self._start("test")

    def on_test_epoch_end(self) -> None:
        self.test_metrics = evaluate_cold_start(self.predicted, self.split, self.ks, self.map_k, "cold_test")
        self.log(f"{self.test_prefix}/cosine_distance", self.test_metrics["cosine_distance"])
        self._log_metrics(self.test_prefix, self.test_metrics)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def mean_cosine_distance(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean 1 - cos over the rows whose target has a direction; a zero prediction counts as 1, as in
    `recsys.evaluate_cold_start`."""
    keep = np.linalg.norm(target, axis=1) > 0
    distance = cosine_distance(torch.from_numpy(predicted[keep]), torch.from_numpy(target[keep]))
    return float(distance.clamp(0.0, 2.0).mean())


class FactorDataModule(pl.LightningDataModule):
    """Ready-made datasets per stage (``"train"``, ``"val"``, ``"test"``); training batches are shuffled."""

    def __init__(self, datasets: dict[str, Dataset], batch_size: int, eval_batch_size: int | None = None,
                 collate_fn: Callable | None = None):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        missing = {"train", "val", "test"} - set(datasets)
        if missing:
            raise ValueError(f"datasets lacks stage(s) {sorted(missing)}")
        self.datasets, self.collate_fn = datasets, collate_fn
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size

    def _loader(self, stage: str, shuffle: bool, batch_size: int) -> DataLoader:
        return DataLoader(self.datasets[stage], batch_size=batch_size, shuffle=shuffle, collate_fn=self.collate_fn)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)
