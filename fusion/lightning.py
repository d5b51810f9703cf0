"""Lightning wrappers of the content -> factors models: cosine loss, early-stopping signal, cold-start metrics,
and the datamodules of a catalog's items, for ``train.py`` (LightningCLI) like the taggers::

    python train.py fit --config configs/fusion_demo.yaml
    python train.py fit --config configs/fusion_audio_demo.yaml

One module trains either model of `fusion.model` on the warm items' WMF factors. Validation and test
predict every item of the cold subset (``cold_val`` / ``cold_test``), and the whole prediction matrix is
scored at once by `recsys.evaluate_cold_start`: the cosine distance to the fold-in factors and the
ranking metrics against the items' held-out plays. Logged as ``train/loss``, ``val/cosine_distance``
(the early-stopping signal, and the monitor of the config's ``ModelCheckpoint``), ``val/cold/recall@50``,
..., ``test/cosine_distance``, ``test/cold/...``. The datamodule owns the split (`ColdStartSplit`) and
tells the network its sizes (``input_dims``, ``n_factors``, linked by ``train.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from coldtag.storage import file_sha256
from fusion.data import (
    FUSION_SPLIT,
    AudioFactorDataset,
    FeatureFactorDataset,
    assemble,
    catalog_sources,
    collate_waves,
    modality_of,
    trainable,
)
from fusion.model import cosine_distance
from recsys import ColdStartSplit, evaluate_cold_start
from tagging.data.features import TrackFeatures
from tagging.labels import LabelSpace, read_manifest

SUBSETS = {"val": "cold_val", "test": "cold_test"}


class FactorRegressionModule(pl.LightningModule):
    """Trains ``model`` (a `LateFusionRegressor` or an `AudioFactorRegressor`) to regress factors.

    Batches are dicts with ``target`` ``(batch, f)``, ``index`` ``(batch,)`` (the item's position among
    its subset's items) and either ``inputs`` / ``present`` (fusion) or ``wave`` / ``length`` (audio).
    Audio is scored whole-track in validation and test, pooled by ``pooling`` (``"track"`` or
    ``"centre"``); ``test_prefix`` renames the test metrics, so one model can be tested both ways.
    The ranking metrics of the best validation epoch are computed when training ends (``best_metrics``,
    ``best_epoch``; logged then as ``val/cold/...``); the weights of that epoch are a ``ModelCheckpoint``'s on
    ``val/cosine_distance``.

    Args:
        model: the content -> factors network.
        lr: Adam's learning rate (the paper keeps Adam's defaults).
        ks, map_k: cut-offs of the ranking metrics.
        export_dir: where ``train.py fit`` packages the best weights (``save_pretrained``), recording the
            datamodule's ``sources`` (the packages and files its inputs and targets came from).
    """

    def __init__(self, model: nn.Module, lr: float = 1e-3, ks: list[int] | None = None, map_k: int = 500,
                 export_dir: str | None = None):
        super().__init__()
        self.model = model
        self.lr, self.ks, self.map_k, self.export_dir = lr, tuple(ks or (50,)), map_k, export_dir
        self.split: ColdStartSplit | None = None
        self.pooling, self.test_prefix = "track", "test"
        self.best_score, self.best_epoch = math.inf, -1
        self.best_metrics: dict[str, float] = {}
        self.best_predicted: np.ndarray | None = None
        self.predicted: np.ndarray | None = None
        self.test_metrics: dict[str, float] = {}

    def setup(self, stage: str) -> None:
        self.split = self.trainer.datamodule.split

    def export(self, directory: str | Path) -> None:
        self.model.save_pretrained(directory, inputs=self.trainer.datamodule.sources)

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
        # The early-stopping signal every epoch; the ranking metrics (users × items scores) once, when training
        # ends, for the predictions of the weights that are kept (`on_train_end`).
        distance = mean_cosine_distance(self.predicted, self.split.item_factors[self.split.items("cold_val")])
        self.log("val/cosine_distance", distance)
        if distance < self.best_score:
            self.best_predicted = self.predicted.copy()
            self.best_score, self.best_epoch = distance, self.current_epoch

    def on_train_end(self) -> None:
        if self.best_predicted is None:
            return
        self.best_metrics = evaluate_cold_start(self.best_predicted, self.split, self.ks, self.map_k, "cold_val")
        if self.logger is not None:  # `self.log` is closed after the last epoch: to the logger itself
            self.logger.log_metrics({f"val/cold/{name}": value for name, value in self.best_metrics.items()
                                     if name not in ("cosine_distance", "users")}, step=self.global_step)

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


class _FactorData(pl.LightningDataModule):
    """What both datamodules share: the split and its targets, the items the models learn from, loaders."""

    def __init__(self, manifest: str, recsys: str, batch_size: int, eval_batch_size: int):
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(f"batch_size and eval_batch_size must be >= 1, got {batch_size}, {eval_batch_size}")
        self.manifest_path, self.coldstart = Path(manifest), Path(recsys) / "coldstart.npz"
        for path in (self.manifest_path, self.coldstart):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: not found")
        self.split = ColdStartSplit.load(self.coldstart)
        self.manifest = read_manifest(self.manifest_path)
        self.train_positions, self.training = training_items(self.split, self.manifest)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.datasets: dict[str, Dataset] = {}
        self.collate_fn: Callable | None = None
        self.sources = {"factors": {"kind": "ColdStartSplit", "source": str(self.coldstart.resolve()),
                                    "sha256": file_sha256(self.coldstart)}}

    @property
    def n_factors(self) -> int:
        return int(self.split.item_factors.shape[1])

    def _loader(self, stage: str, shuffle: bool, batch_size: int) -> DataLoader:
        return DataLoader(self.datasets[stage], batch_size=batch_size, shuffle=shuffle, collate_fn=self.collate_fn)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)


class FeatureFactorDataModule(_FactorData):
    """A catalog's items as the late-fusion rows read them: the named ``inputs`` (`fusion.data`) from the
    cached features (``python -m tagging features``) and the manifest's annotations, their factors from
    ``python -m recsys coldstart``'s split. Training items: the warm ones the manifest's `FUSION_SPLIT`
    column marks ``train`` (features the tagger never saw), else every warm item with plays.

    Args:
        manifest: the catalog manifest (``python -m fusion split``'s, with its ``vocab.json`` beside it).
        features: the ``.npz`` of ``python -m tagging features``.
        recsys: the output folder of ``python -m recsys coldstart`` (its ``coldstart.npz``).
        inputs: the fusion inputs, e.g. ``[audio, scores/attribute]``.
        vocab: the label vocabulary (default: ``vocab.json`` beside the manifest).
    """

    def __init__(self, manifest: str, features: str, recsys: str, inputs: list[str], vocab: str | None = None,
                 batch_size: int = 256, eval_batch_size: int = 1024):
        super().__init__(manifest, recsys, batch_size, eval_batch_size)
        if not inputs:
            raise ValueError("inputs: name at least one fusion input")
        self.features_path = Path(features)
        labels = LabelSpace.from_json(Path(vocab) if vocab else self.manifest_path.parent / "vocab.json")
        features_ = TrackFeatures.load(self.features_path)
        content = catalog_sources(features_, self.manifest, labels, self.split.item_ids)
        self.inputs = tuple(inputs)
        self.arrays, self.masks = assemble(*content, self.inputs)
        modalities = {modality_of(name) for name in self.inputs}
        self.sources |= {m: ref for m, ref in features_.sources.items() if m in modalities}

    @property
    def input_dims(self) -> dict[str, int]:
        return {name: int(x.shape[1]) for name, x in self.arrays.items()}

    def setup(self, stage: str | None = None) -> None:
        for part, subset in (("train", "warm"), ("val", "cold_val"), ("test", "cold_test")):
            items = self.split.items(subset)
            positions = self.train_positions if part == "train" else np.arange(len(items))
            self.datasets[part] = FeatureFactorDataset({n: x[items] for n, x in self.arrays.items()},
                                                       {n: m[items] for n, m in self.masks.items()},
                                                       self.split.item_factors[items], positions)


class AudioFactorDataModule(_FactorData):
    """A catalog's items as the end-to-end audio rows read them: random patches of ``patch_seconds`` for
    training (``patches_per_track`` per track and epoch; the paper drew 3), whole tracks for validation and
    test, decoded once into the tagger's int16 audio cache (`tagging.data.modules.CatalogDataModule`).

    Args:
        manifest, recsys: as `FeatureFactorDataModule`'s.
        vocab: the label vocabulary (default: ``vocab.json`` beside the manifest).
        sample_rate, patch_seconds: the network's (``train.py`` links them from the model).
    """

    def __init__(self, manifest: str, recsys: str, vocab: str | None = None, sample_rate: int = 16000,
                 patch_seconds: float = 3.0, patches_per_track: int = 1, batch_size: int = 64,
                 eval_batch_size: int = 16, seed: int = 0):
        super().__init__(manifest, recsys, batch_size, eval_batch_size)
        if patches_per_track < 1:
            raise ValueError(f"patches_per_track must be >= 1, got {patches_per_track}")
        self.vocab = vocab
        self.sample_rate, self.patch_seconds = sample_rate, patch_seconds
        self.patches_per_track, self.seed = patches_per_track, seed
        self.collate_fn = collate_waves
        self.skipped: list = []

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        from tagging.data.modules import CatalogDataModule, TrackDataset

        # The tagger's datamodule decodes the catalog once into its int16 audio cache; the tagger at the same
        # sample rate shares it.
        catalog = CatalogDataModule(str(self.manifest_path), vocab=self.vocab, sample_rate=self.sample_rate,
                                    clip_seconds=self.patch_seconds, cache_audio=True, seed=self.seed)
        catalog.setup()
        self.skipped = catalog.skipped
        table = catalog.tables["all"]
        row_of = {str(t): i for i, t in enumerate(table["track_id"])}
        groups = list(catalog.labels.groups)
        for part, subset in (("train", "warm"), ("val", "cold_val"), ("test", "cold_test")):
            items = self.split.items(subset)
            candidates = self.train_positions if part == "train" else np.arange(len(items))
            positions = np.array([p for p in candidates if str(self.split.item_ids[items[p]]) in row_of],
                                 dtype=np.int64)
            rows = [row_of[str(self.split.item_ids[items[p]])] for p in positions]
            tracks = TrackDataset(table.select(rows, keep_in_memory=True), groups, self.sample_rate,
                                  clip_samples=catalog.clip_samples if part == "train" else None, seed=self.seed,
                                  audio_cache=catalog.audio_cache)
            self.datasets[part] = AudioFactorDataset(tracks, self.split.item_factors[items], positions,
                                                     repeats=self.patches_per_track if part == "train" else 1)


def training_items(split: ColdStartSplit, manifest: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Positions (within the warm items) the fusion models learn from, and which they are: the warm items
    with plays the manifest's `FUSION_SPLIT` column marks ``train``, or every warm item with plays without one."""
    warm = split.items("warm")
    positions = trainable(split, "warm")
    if FUSION_SPLIT not in manifest.columns:
        return positions, "every warm item (no fusion_split column: features may be in-sample)"
    marked = set(manifest.loc[manifest[FUSION_SPLIT] == "train", "track_id"].astype(str))
    chosen = np.array([p for p in positions if str(split.item_ids[warm[p]]) in marked], dtype=np.int64)
    if len(chosen) == 0:
        raise ValueError(f"no warm item with plays is marked train in the manifest's {FUSION_SPLIT!r} column")
    return chosen, f"warm items marked train in {FUSION_SPLIT}"
