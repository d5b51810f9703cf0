"""What a decoding worker does with one `Item`: the file facts a record keeps (size, mtime, the input key a
later run compares) and the `tagging.tracks.DecodedTrack` a model reads; and the DataLoader that runs it
in worker processes. Reading never raises: a bad file gives its error.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from annotation.inputs import InputKey, Item, file_facts
from tagging import tempo_key
from tagging.tracks import DecodedTrack, TrackReader

LOGGERS = ("coldtag", "annotation", "tagging", "fusion")


@dataclass
class ReadItem:
    """One item as read: its record's file facts and the decoded track (``seconds``: time spent on it)."""

    item: Item
    size: int | None
    mtime: float | None
    input_key: InputKey
    track: DecodedTrack
    seconds: float


def input_key(reader: TrackReader, item: Item) -> InputKey:
    """What a finished record must have been made from to be skipped: path, size and mtime of the audio and
    of the sidecars ``reader`` reads."""
    paths = [item.path, *(p for p in reader.sidecars(item.lyrics, item.cover) if p is not None)]
    return InputKey(json.dumps([[p, *file_facts(p)] for p in paths]))


def read_item(reader: TrackReader, item: Item) -> ReadItem:
    started = time.perf_counter()
    key = input_key(reader, item)
    _, size, mtime = json.loads(key)[0]  # the audio's facts, as the key records them: the file is stat-ed once
    track = reader(item.path, item.lyrics, item.cover, refused=item.refused, refused_sidecars=item.refused_sidecars)
    return ReadItem(item, size, mtime, key, track, time.perf_counter() - started)


def log_to(path: str | Path) -> None:
    """Send this process's ``coldtag``, ``annotation``, ``tagging`` and ``fusion`` logs (tracebacks of
    unexpected errors among them) to the file ``path`` too; once per file, whichever process or worker asks."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path for h in logger.handlers):
            continue
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


class _Decode(torch.utils.data.Dataset):
    def __init__(self, items: list[Item], reader: TrackReader):
        self.items, self.reader = items, reader

    @staticmethod
    def worker_init(_: int) -> None:
        # Each decoding process uses one core; the model's process keeps the others.
        torch.set_num_threads(1)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> ReadItem:
        return read_item(self.reader, self.items[index])


def decoding_loader(items: list[Item], reader: TrackReader, batch_size: int, workers: int,
                    sampler: torch.utils.data.Sampler | None = None) -> torch.utils.data.DataLoader:
    """Batches of `ReadItem`\\ s, decoded by ``workers`` processes in input order (or the ``sampler``'s)."""
    dataset = _Decode(items, reader)
    if reader.tempo_key:
        # Here, not in the first track's time; forked decoding processes start with it imported.
        tempo_key.load()
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                       num_workers=workers, collate_fn=list,
                                       worker_init_fn=dataset.worker_init if workers else None,
                                       prefetch_factor=4 if workers else None)


def model_threads(workers: int) -> int:
    """Torch threads for the model's process beside ``workers`` decoding processes: the cores they leave
    (at least one). A second thread fighting two decoders for two cores slows everything
    (benchmarks/annotate.py)."""
    return max(1, len(os.sched_getaffinity(0)) - workers)
