"""`coldtag annotate` past one process: Lightning's predict loop with DDP over devices and nodes.

Every rank loads the model once, decodes its own share of the tracks (every ``world``-th, so no track is
read twice and none is padded in) with ``--workers`` processes, and commits its records as its own part
files (``part-<run>-<rank>-<seq>.parquet``) through a prediction writer. The records are those of the
local engine (`annotation.annotators.annotate_tracks`); rank 0 merges after the last barrier.

Lightning's ``ddp`` strategy re-runs the command line in each new process, so these engines are reached
from the ``coldtag annotate`` command, never from an interactive session.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import BasePredictionWriter

from annotation.annotators import Annotator, annotate_tracks, load_annotator
from annotation.engines import EngineOptions
from annotation.inputs import Item
from annotation.reader import ReadItem, decoding_loader
from annotation.records import AnnotationRecord, Records
from tagging.tracks import TrackReader


class _RankShare(torch.utils.data.Sampler):
    """Every ``world``-th index from this rank's, read when iterated (after the process group exists)."""

    def __init__(self, size: int):
        self.size = size

    def _share(self) -> range:
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        return range(rank, self.size, world)

    def __iter__(self):
        return iter(self._share())

    def __len__(self) -> int:
        return len(self._share())


class _Annotate(pl.LightningModule):
    def __init__(self, model: str, allow_outside: bool):
        super().__init__()
        self.model_dir, self.allow_outside = model, allow_outside
        self.annotator: Annotator | None = None

    def setup(self, stage: str) -> None:
        # Loaded on each rank's own device, once.
        self.annotator = load_annotator(self.model_dir, self.trainer.strategy.root_device, self.allow_outside)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # the annotator moves each track's inputs itself

    def predict_step(self, batch: list[ReadItem], batch_idx: int) -> list[AnnotationRecord]:
        return annotate_tracks(self.annotator, batch)


class _PartWriter(BasePredictionWriter):
    def __init__(self, out: Path, schema: pa.Schema, run: int, part_size: int):
        super().__init__(write_interval="batch")
        self.out, self.schema, self.run, self.part_size = out, schema, run, part_size
        self.records: Records | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.records = Records(self.out, self.schema, run=self.run, rank=trainer.global_rank)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        for record in prediction:
            self.records.add(record)
        if len(self.records.rows) >= self.part_size:
            self.records.commit()

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.records.commit()
        trainer.strategy.barrier("annotate: every rank committed")


def annotate_ddp(model: str, reader: TrackReader, pending: list[Item], out: Path,
                 schema: pa.Schema, run: int, options: EngineOptions) -> None:
    """Annotate ``pending`` on ``options.devices`` x ``options.num_nodes`` processes (GPUs when there are)."""
    accelerator = "gpu" if options.device.startswith("cuda") or (options.device == "auto"
                                                                  and torch.cuda.is_available()) else "cpu"
    trainer = pl.Trainer(accelerator=accelerator, devices=options.devices, num_nodes=options.num_nodes,
                         strategy="ddp" if options.devices * options.num_nodes > 1 else "auto",
                         callbacks=[_PartWriter(out, schema, run, options.part_size)], logger=False,
                         enable_checkpointing=False, enable_progress_bar=options.progress,
                         use_distributed_sampler=False, default_root_dir=str(out))
    loader = decoding_loader(pending, reader, options.batch_size, options.workers, _RankShare(len(pending)))
    module = _Annotate(str(model), options.allow_outside)
    trainer.predict(module, dataloaders=loader, return_predictions=False)
