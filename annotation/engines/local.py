"""The local engine: this process runs the model, ``--workers`` processes decode."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import torch

from annotation import records as records_module
from annotation.annotators import Annotator, annotate_tracks
from annotation.engines import EngineOptions
from annotation.inputs import Item
from annotation.reader import decoding_loader, model_threads
from annotation.records import AnnotationRecord, Records


def annotate_local(annotator: Annotator, items: list[Item], options: EngineOptions) -> Iterator[AnnotationRecord]:
    """One record per item, in batches of ``options.batch_size`` decoded by ``options.workers`` processes while
    the model, loaded once in this process, runs on ``options.threads`` threads (default
    `annotation.reader.model_threads`)."""
    if not items:
        return
    before = torch.get_num_threads()
    torch.set_num_threads(options.threads or model_threads(options.workers))
    try:
        for batch in decoding_loader(items, annotator.reader, options.batch_size, options.workers):
            records_module.checkpoint("decoded")
            yield from annotate_tracks(annotator, batch)
    finally:
        torch.set_num_threads(before)


def run_local(annotator: Annotator, pending: list[Item], records: Records, options: EngineOptions) -> None:
    """Annotate ``pending`` into ``records``, a part every ``options.part_size`` records, with a progress bar
    unless ``options.progress`` is false."""
    bar = _progress(len(pending)) if options.progress else None
    audio_seconds, started = 0.0, time.perf_counter()
    for record in annotate_local(annotator, pending, options):
        records.add(record)
        audio_seconds += record.duration or 0.0
        if len(records.rows) >= options.part_size:
            records.commit()
        if bar is not None:
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.set_postfix_str(f"{audio_seconds / elapsed:.0f}x real time", refresh=False)
            bar.update()
    records.commit()
    if bar is not None:
        bar.close()


def _progress(total: int):
    if total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="track", desc="coldtag annotate", file=sys.stderr, smoothing=0.1)
