"""`coldtag annotate --engine ray`: the catalog annotated on Ray Data, from one machine to a cluster.

The pending items become a dataset; decoding (`TrackReader`) runs as CPU tasks, at most ``--workers``
(at least one) at a time over the whole cluster; inference runs in a pool of actors that each load the
model once (`load_annotator`) and turn batches of ``--batch-size`` decoded tracks into records
(`annotate_tracks`, the local engine's records). An actor asks for one GPU when ``--device`` is
``cuda`` or ``auto`` on a cluster that has GPUs, and there is one actor per GPU; otherwise each actor
takes one CPU, from one actor up to as many as the CPUs that decoding leaves. On CPUs alone, when that
number equals ``--workers``, Ray Data may fuse the two stages so that each actor decodes its own
tracks; the records are the same.

The parts are committed by the driver (``part-<run>-000-<seq>.parquet``, the `Records` of rank 0),
not by the actors, because Ray Data retries an actor's task when the actor dies (``max_task_retries``)
and delivers each finished block to the driver once: a part written as a side effect inside a task
would be written again by the retry, with the same records as the first, whereas the blocks the
driver reads hold every record once. An actor also has no end-of-stream hook the driver can wait for
(its ``__del__`` runs when the pool shuts down, after the driver has stopped reading), so its last,
partial part could not be committed before the run is counted. Records are small (no audio), so the
driver is not the bottleneck, and only the driver has to reach the output folder.

Between the stages a decoded track travels as one pickled value (its tensors as NumPy arrays), as torch's
DataLoader carries it between its workers: its fields mix ``None``, nested lists and tensors of
different lengths, which no Arrow column type holds for every track. The actors return Arrow tables in
the record schema, so every block the driver reads has the layout of the parts.

Ray is started here (``ray.init``) unless it is already running, with ``COLDTAG_RAY_NUM_CPUS`` CPUs when
that variable is set (the tests pin it), and shut down again at the end; this module never imports
Lightning.
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
import torch

from annotation import records as records_module
from annotation.annotators import Annotator, annotate_tracks, load_annotator
from annotation.engines import EngineOptions
from annotation.inputs import Item
from annotation.reader import ReadItem, log_to, read_item
from annotation.records import AnnotationRecord, Records
from tagging.tracks import TrackReader

NUM_CPUS_ENV = "COLDTAG_RAY_NUM_CPUS"


def annotate_ray(model: str | Path, reader: TrackReader, pending: list[Item], out: Path,
                 schema: pa.Schema, run: int, options: EngineOptions) -> None:
    """Annotate ``pending`` on Ray Data and commit the records as parts of run ``run`` under ``out``."""
    if not pending:
        return
    started = _start_ray()
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = options.progress
        gpus = int(ray.cluster_resources().get("GPU", 0))
        on_gpu = gpus > 0 and (options.device == "auto" or torch.device(options.device).type == "cuda")
        workers = max(options.workers, 1)
        if on_gpu:
            pool, resources = ray.data.ActorPoolStrategy(size=gpus), {"num_gpus": 1}
        else:
            spare = int(ray.cluster_resources().get("CPU", 1)) - workers
            pool, resources = ray.data.ActorPoolStrategy(min_size=1, max_size=max(spare, 1)), {"num_cpus": 1}
        logs = _log_files(out)
        tracks = ray.data.from_items([{"id": item.id, "item": pickle.dumps(item)} for item in pending],
                                     override_num_blocks=-(-len(pending) // options.batch_size))
        decoded = tracks.map(_decode, fn_kwargs={"reader": reader, "logs": logs}, num_cpus=1,
                             compute=ray.data.TaskPoolStrategy(size=workers))
        records = decoded.map_batches(
            _Annotate, batch_size=options.batch_size, batch_format="numpy", compute=pool,
            fn_constructor_kwargs={"model": str(model), "schema": schema,
                                   "allow_outside": options.allow_outside,
                                   "device": "cuda" if on_gpu else "cpu", "logs": logs},
            **resources)
        writer = Records(out, schema, run=run, rank=0)
        for block in records.iter_batches(batch_size=None, batch_format="pyarrow"):
            records_module.checkpoint("decoded")  # records received and not yet committed: where a kill test cuts in
            for row in block.to_pylist():
                writer.add(AnnotationRecord.from_row(row))
                if len(writer.rows) >= options.part_size:
                    writer.commit()
        writer.commit()
    finally:
        if started:
            ray.shutdown()


def _start_ray() -> bool:
    """Starts Ray (or joins the cluster ``RAY_ADDRESS`` names) unless it is running; whether it did."""
    if ray.is_initialized():
        return False
    value = os.environ.get(NUM_CPUS_ENV)
    try:
        cpus = None if value is None else int(value)
    except ValueError:
        cpus = 0
    if cpus is not None and cpus < 1:
        raise ValueError(f"{NUM_CPUS_ENV}={value!r}: must be a whole number >= 1")
    # Ray reports usage statistics to its authors over the network unless told not to; nothing here may
    # reach the internet at run time.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    return True


def _pack(read: ReadItem) -> bytes:
    track = read.track
    tensors = {name: getattr(track, name).numpy() for name in ("chunks", "cover") if getattr(track, name) is not None}
    bare = replace(read, track=replace(track, chunks=None, cover=None))
    return pickle.dumps((bare, tensors), protocol=5)


def _unpack(blob: bytes) -> ReadItem:
    # Only what `_decode` packed in this job is unpickled; no file a user handed in.
    read, tensors = pickle.loads(blob)
    for name, value in tensors.items():
        setattr(read.track, name, torch.from_numpy(value))
    return read


def _decode(row: dict, reader: TrackReader, logs: list[str]) -> dict:
    for path in logs:
        log_to(path)
    item = pickle.loads(row["item"])  # an Item this job pickled
    return {"id": item.id, "track": _pack(read_item(reader, item))}


class _Annotate:
    """An inference actor: the model loaded once, batches of decoded tracks -> records in ``schema``."""

    def __init__(self, model: str, schema: pa.Schema, allow_outside: bool, device: str,
                 logs: list[str]):
        for path in logs:
            log_to(path)
        self.annotator: Annotator = load_annotator(model, device, allow_outside)
        self.schema = schema

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        records = annotate_tracks(self.annotator, [_unpack(blob) for blob in batch["track"]])
        return pa.Table.from_pylist([record.to_row() for record in records], schema=self.schema)


def _log_files(out: Path) -> list[str]:
    """The command's log files in ``out``, so that the tracebacks logged in Ray's workers land there too."""
    return [h.baseFilename for h in logging.getLogger("tagging").handlers
            if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == Path(out).resolve()]


