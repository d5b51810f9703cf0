"""Lightning datamodules over a catalog manifest.

`CatalogDataModule` (built on Hugging Face `datasets`) yields raw mono float32 waveforms, as the
spectrogram is the model's job: random crops of ``clip_seconds`` for training, whole tracks (zero-padded,
with their lengths) for validation, test and predict. Files that cannot be decoded are found once, at
set-up, named in one warning and left out; training goes on.

Audio comes either from the files, decoded per item (a training crop decodes only the bytes near it where
the format allows, `tagging.data.crops`; whole tracks decode exactly), or with ``cache_audio`` from an int16
cache at the model's rate (`tagging.data.cache`), built once in ``prepare_data`` and memory-mapped by
every process. Either way the table held by each DataLoader worker is metadata only (ids, paths, targets,
lengths, cache positions), a few MB for a catalog of 50k tracks. `FeatureDataModule` yields the cached per-modality
embeddings of `tagging.data.features` for the multimodal tagger.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from tagging.audio import AudioDecodeError, audio_info, load_audio
from tagging.data.cache import AudioCache, build_audio_cache
from tagging.data.crops import load_crop
from tagging.data.features import MODALITIES, TrackFeatures
from tagging.labels import LabelSpace, read_manifest

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def split_of(frame: pd.DataFrame, column: str, source: str | Path) -> pd.Series:
    """Each manifest row's split, from its ``column``: ``"train"``, ``"val"``, ``"test"``, or None where the
    value is null (the row is in no split; a derived manifest may leave out tracks another model trained on).
    """
    if column not in frame.columns:
        raise ValueError(f"{source}: manifest has no split column {column!r} (has {list(frame.columns)})")
    values = frame[column]
    unknown = set(values.dropna()) - set(SPLITS)
    if unknown:
        raise ValueError(f"{source}: column {column!r} has unknown split value(s) {sorted(unknown, key=str)}; "
                         f"use {SPLITS} or null")
    return values.astype(object).where(values.notna(), None)


class TrackDataset(Dataset):
    """Manifest rows as ``{"track_id", "wave", "length", "targets"}`` items.

    ``clip_samples`` set: a crop of that length at a random offset (training); unset: the whole track.
    With ``audio_cache`` (at ``sample_rate``), audio is read from it at the table's ``cache_shard``,
    ``cache_offset`` and ``cache_length``; else it is decoded on the fly, crops by `load_crop`.
    """

    def __init__(self, table: datasets.Dataset, groups: list[str], sample_rate: int,
                 clip_samples: int | None = None, seed: int = 0, audio_cache: AudioCache | None = None):
        if audio_cache is not None and audio_cache.settings["sample_rate"] != sample_rate:
            raise ValueError(f"{audio_cache.folder}: cache holds audio at {audio_cache.settings['sample_rate']} Hz, "
                             f"the dataset reads {sample_rate} Hz")
        self.table = table.with_format("numpy")
        self.groups = groups
        self.sample_rate = sample_rate
        self.clip_samples = clip_samples
        self.cache = audio_cache
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        """``item`` is a row index, or ``(epoch, index)`` from `TrainingOrder`: the crop is then drawn from
        (seed, epoch, index) alone, the same on any process, in any worker, after any resume."""
        epoch, index = item if isinstance(item, tuple) else (None, item)
        row = self.table[int(index)]
        rng = self.rng if epoch is None else np.random.default_rng([self.seed, epoch, int(index)])
        wave = self._crop(row, rng) if self.clip_samples else self._whole(row)
        return {"track_id": str(row["track_id"]), "wave": torch.from_numpy(np.ascontiguousarray(wave)),
                "targets": {g: torch.from_numpy(np.asarray(row[f"target_{g}"], dtype=np.float32))
                            for g in self.groups}}

    def _whole(self, row: dict) -> np.ndarray:
        if self.cache:
            return self._cached(row, 0, int(row["cache_length"]))
        return load_audio(row["audio_path"], self.sample_rate).numpy()

    def _crop(self, row: dict, rng: np.random.Generator) -> np.ndarray:
        total = (int(row["cache_length"]) if self.cache
                 else int(float(row["duration"]) * self.sample_rate))
        start = int(rng.integers(0, max(total - self.clip_samples, 0) + 1))
        if self.cache:
            wave = self._cached(row, start, min(start + self.clip_samples, total))
        else:
            wave = load_crop(row["audio_path"], self.sample_rate, offset=start / self.sample_rate,
                             duration=self.clip_samples / self.sample_rate).numpy()
        return np.pad(wave, (0, self.clip_samples - len(wave)))

    def _cached(self, row: dict, start: int, stop: int) -> np.ndarray:
        return self.cache.read(int(row["cache_shard"]), int(row["cache_offset"]), start, stop)

    def worker_init(self, worker_id: int) -> None:
        # Plain row indices draw crops from a running generator: each worker needs its own, else every
        # worker returns the same crops. (epoch, index) items do not use it.
        self.rng = np.random.default_rng([torch.initial_seed() % 2**32, worker_id])


class TrainingOrder(DistributedSampler):
    """The training items of an epoch, ``(epoch, index)``, shuffled by (seed, epoch) and split among DDP
    processes as Lightning's own sampler would.

    Nothing here depends on what ran before: the order comes from (seed, epoch), and the epoch travels with
    each index so that `TrackDataset` draws the crop from (seed, epoch, index). A run resumed from a
    checkpoint saved at the end of an epoch therefore sees the same data, in the same order, with the same
    crops, as the run that was not interrupted; a run resumed in the middle of an epoch starts that epoch
    again. Lightning calls ``set_epoch`` on it and, as it is a `DistributedSampler`, leaves it in place.
    """

    def __init__(self, dataset: Dataset, seed: int):
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(dataset, num_replicas=dist.get_world_size() if distributed else 1,
                         rank=dist.get_rank() if distributed else 0, shuffle=True, seed=seed)

    def __iter__(self):
        return ((self.epoch, index) for index in super().__iter__())


def collate_tracks(items: list[dict]) -> dict:
    """Stack items; waves of unequal length are zero-padded and their true ``lengths`` kept."""
    lengths = torch.tensor([len(item["wave"]) for item in items])
    waves = torch.zeros(len(items), int(lengths.max()))
    for row, item in enumerate(items):
        waves[row, :len(item["wave"])] = item["wave"]
    targets = {g: torch.stack([item["targets"][g] for item in items]) for g in items[0]["targets"]}
    return {"track_id": [item["track_id"] for item in items], "wave": waves, "length": lengths,
            "targets": targets}


def every_track_once(dataset: Dataset, source: Path) -> UnrepeatedDistributedSampler | None:
    """Under DDP, each process's share of an evaluation or prediction set, every item exactly once.

    Lightning would otherwise give evaluation loaders a `DistributedSampler`, which pads the last batch
    with repeated tracks so every process runs as many batches: those repeats would enter the metrics and
    the F1 thresholds twice. Shares here differ by at most one item, which evaluation without gradients
    allows; torchmetrics gathers shares of unequal size. None outside DDP (a plain sequential order).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    if len(dataset) < dist.get_world_size():
        raise ValueError(f"{source}: {len(dataset)} track(s) to evaluate on {dist.get_world_size()} processes; "
                         "every process needs at least one (use fewer devices)")
    return UnrepeatedDistributedSampler(dataset, shuffle=False)


class CatalogDataModule(pl.LightningDataModule):
    """Tracks of a manifest split by its ``split`` column into train / val / test.

    Args:
        manifest: Parquet/CSV manifest (see `tagging.labels`); paths in it are relative to its folder.
        vocab: label vocabulary JSON; default ``vocab.json`` beside the manifest.
        sample_rate: rate the model expects (linked from the model's config by ``train.py``).
        clip_seconds: training crop length (linked from the model's ``chunk_seconds``).
        cache_audio: decode every track once, in ``prepare_data``, into an int16 cache at
            ``sample_rate`` (`tagging.data.cache`: keyed by the decoding settings, library versions and
            the files' paths, sizes and times; 2 bytes per sample, ~0.42 TB for MTG-Jamendo at 16 kHz);
            worth it when the decoded catalog fits on disk. Training crops then read from memory maps.
        cache_dir: where that cache goes; default ``coldtag-audio`` in the Hugging Face datasets cache
            (``HF_DATASETS_CACHE``), never the catalog's own folder, which may be read-only or shared.
        predict_split: which tracks ``predict`` runs on: a split name or ``"all"``.
        seed: of the training order and crops (`TrainingOrder`); default the run's ``seed_everything``,
            so that another seed also draws other crops and orders.
    """

    def __init__(self, manifest: str, vocab: str | None = None, sample_rate: int = 16000,
                 clip_seconds: float = 3.69, batch_size: int = 32, eval_batch_size: int = 16,
                 num_workers: int = 0, cache_audio: bool = False, cache_dir: str | None = None,
                 predict_split: str = "all", seed: int | None = None):
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(f"batch sizes must be >= 1, got {batch_size} and {eval_batch_size}")
        if predict_split not in (*SPLITS, "all"):
            raise ValueError(f"predict_split must be one of {(*SPLITS, 'all')}, got {predict_split!r}")
        self.manifest_path = Path(manifest)
        self.vocab_path = Path(vocab) if vocab else self.manifest_path.parent / "vocab.json"
        self.labels = LabelSpace.from_json(self.vocab_path)
        self.sample_rate = sample_rate
        self.clip_samples = round(clip_seconds * sample_rate)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.cache_audio, self.cache_dir = num_workers, cache_audio, cache_dir
        self.predict_split = predict_split
        self.seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else seed
        self.tables: dict[str, datasets.Dataset] = {}
        self.audio_cache: AudioCache | None = None
        self.skipped: list[str] = []

    @property
    def vocab(self) -> dict:
        return self.labels.to_dict()

    @property
    def audio_cache_dir(self) -> Path:
        root = self.cache_dir or os.environ.get("HF_DATASETS_CACHE", datasets.config.HF_DATASETS_CACHE)
        return Path(root) / "coldtag-audio"

    def prepare_data(self) -> None:
        """Decode the catalog into the audio cache, unless it is there (Lightning calls this on one process
        per node, before ``setup``)."""
        if self.cache_audio:
            paths = read_manifest(self.manifest_path)["audio_path"].tolist()
            build_audio_cache(paths, self.sample_rate, self.audio_cache_dir, workers=self.num_workers)

    def setup(self, stage: str | None = None) -> None:
        if self.tables:
            return
        frame = read_manifest(self.manifest_path)
        splits = split_of(frame, "split", self.manifest_path)
        targets = self.labels.encode(frame, source=str(self.manifest_path))
        columns = {"track_id": frame["track_id"].tolist(), "audio_path": frame["audio_path"].tolist(),
                   "split": splits.tolist()}
        columns.update({f"target_{g}": list(t) for g, t in targets.items()})
        if "duration" in frame.columns:
            columns["duration"] = frame["duration"].astype(float).tolist()
        table = datasets.Dataset.from_dict(columns)
        table = self._decode_all(table) if self.cache_audio else self._probe_all(table)
        for split in SPLITS:
            self.tables[split] = table.filter(lambda s, split=split: s == split, input_columns="split")
        self.tables["all"] = table

    def _probe_all(self, table: datasets.Dataset) -> datasets.Dataset:
        """Read every header once: durations for cropping, and bad files out before training starts."""
        def probe(path: str) -> dict:
            try:
                return {"duration": audio_info(path).duration, "error": ""}
            except AudioDecodeError as error:
                return {"duration": 0.0, "error": str(error)}
        return self._drop_errors(table.map(probe, input_columns="audio_path",
                                           remove_columns=[c for c in ("duration",) if c in table.column_names]))

    def _decode_all(self, table: datasets.Dataset) -> datasets.Dataset:
        """The cache's positions of every track (building the cache if ``prepare_data`` did not run, as
        when a script calls ``setup`` itself)."""
        folder = build_audio_cache(table["audio_path"], self.sample_rate, self.audio_cache_dir,
                                   workers=self.num_workers)
        self.audio_cache = AudioCache(folder)
        tracks = self.audio_cache.tracks
        for name, key in (("cache_shard", "shard"), ("cache_offset", "offset"), ("cache_length", "length"),
                          ("error", "error")):
            table = table.add_column(name, [track[key] for track in tracks])
        return self._drop_errors(table)

    def _drop_errors(self, table: datasets.Dataset) -> datasets.Dataset:
        errors = [e for e in table["error"] if e]
        if errors:
            self.skipped = errors
            shown = "\n  ".join(errors[:20])
            more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
            log.warning("%s: %d track(s) left out, their audio cannot be used:\n  %s%s",
                        self.manifest_path, len(errors), shown, more)
        return table.filter(lambda e: not e, input_columns="error").remove_columns("error")

    def _dataset(self, split: str, train: bool) -> TrackDataset:
        if len(self.tables[split]) == 0:
            raise ValueError(f"{self.manifest_path}: split {split!r} has no usable tracks")
        return TrackDataset(self.tables[split], list(self.labels.groups), self.sample_rate,
                            clip_samples=self.clip_samples if train else None, seed=self.seed,
                            audio_cache=self.audio_cache)

    def _loader(self, dataset: TrackDataset, train: bool, batch_size: int) -> DataLoader:
        sampler = TrainingOrder(dataset, self.seed) if train else every_track_once(dataset, self.manifest_path)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=collate_tracks, worker_init_fn=dataset.worker_init,
                          persistent_workers=self.num_workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("train", train=True), True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val", train=False), False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test", train=False), False, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self._dataset(self.predict_split, train=False), False, self.eval_batch_size)


class FeatureDataModule(pl.LightningDataModule):
    """Cached embeddings per modality (`tagging.data.features`) with the manifest's labels and splits.

    Args:
        manifest: the catalog manifest (labels and the split column).
        features: the ``.npz`` written by ``python -m tagging features``; it needs only the tracks of a split.
        vocab: label vocabulary JSON; default ``vocab.json`` beside the manifest.
        modalities: which of the cached modalities the model uses.
        split_column: the manifest column that puts each track in train / val / test; tracks with a null
            value in it are left out. ``fusion_split`` in a manifest where the multimodal tagger trains on
            tracks the audio tagger (split by ``split``) never saw.
    """

    def __init__(self, manifest: str, features: str, vocab: str | None = None,
                 modalities: list[str] | None = None, batch_size: int = 64, num_workers: int = 0,
                 split_column: str = "split"):
        super().__init__()
        self.manifest_path = Path(manifest)
        self.split_column = split_column
        self.labels = LabelSpace.from_json(Path(vocab) if vocab else self.manifest_path.parent / "vocab.json")
        self.features = TrackFeatures.load(features)
        self.modalities = list(modalities or [m for m in MODALITIES if m in self.features.present])
        missing = [m for m in self.modalities if m not in self.features.present]
        if missing:
            raise ValueError(f"{features}: has no {missing} features; it has {sorted(self.features.present)}")
        self.batch_size, self.num_workers = batch_size, num_workers
        self.items: dict[str, list[dict]] = {}

    @property
    def vocab(self) -> dict:
        return self.labels.to_dict()

    @property
    def input_dims(self) -> dict[str, int]:
        return {m: int(self.features.arrays[m].shape[1]) for m in self.modalities}

    @property
    def input_sources(self) -> dict:
        """What produced each modality's embeddings (recorded by `tagging.data.features`)."""
        return {m: ref for m, ref in self.features.sources.items() if m in self.modalities}

    def setup(self, stage: str | None = None) -> None:
        if self.items:
            return
        frame = read_manifest(self.manifest_path)
        splits = split_of(frame, self.split_column, self.manifest_path)
        frame, splits = frame[splits.notna()].reset_index(drop=True), splits.dropna().tolist()
        targets = self.labels.encode(frame, source=str(self.manifest_path))
        rows = self.features.rows(frame["track_id"].tolist())
        items = []
        for i, row in enumerate(rows):
            present = {m: bool(self.features.present[m][row]) for m in self.modalities}
            if not any(present.values()):
                continue
            items.append({
                "track_id": frame["track_id"].iloc[i], "split": splits[i],
                "inputs": {m: torch.from_numpy(self.features.arrays[m][row]) for m in self.modalities},
                "present": present,
                "targets": {g: torch.from_numpy(t[i]) for g, t in targets.items()}})
        for split in SPLITS:
            self.items[split] = [item for item in items if item["split"] == split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.items.get(split):
            raise ValueError(f"{self.manifest_path}: split {split!r} has no tracks with features")
        data = [{k: v for k, v in item.items() if k != "split"} for item in self.items[split]]
        return DataLoader(data, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          sampler=None if shuffle else every_track_once(data, self.manifest_path))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
