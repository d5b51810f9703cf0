"""The chunk grid: where a model reads a track. Every tagger, the reader of tracks, distillation, the review
page's chunk view and fusion's audio model cut a track at the same `chunk_starts`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def chunk_starts(n_samples: int, chunk: int, max_chunks: int | None = None) -> list[int]:
    """The fixed grid of chunk starts over a track: as many chunks as cover it, evenly spaced.

    A track no longer than one chunk gets the single start 0 (the caller zero-pads it). With
    ``max_chunks`` the grid is thinned to that many evenly spaced chunks, as tagging evaluations do
    (Won et al. average 16 chunks per track).
    """
    if n_samples <= chunk:
        return [0]
    count = math.ceil(n_samples / chunk)
    if max_chunks is not None:
        count = min(count, max_chunks)
    last = n_samples - chunk
    if count == 1:
        return [last // 2]
    return [round(i * last / (count - 1)) for i in range(count)]


def grid_chunks(wave: torch.Tensor, chunk: int, max_chunks: int | None = None) -> torch.Tensor:
    """One track ``(time,)`` -> the chunks ``(chunks, chunk)`` at its `chunk_starts`, zero-padded past its
    end. A reader that streams a long file cuts the same chunks from the same starts without holding it."""
    return cut_chunks(wave, chunk_starts(len(wave), chunk, max_chunks), chunk)


def cut_chunks(wave: torch.Tensor, starts: list[int], chunk: int) -> torch.Tensor:
    """``(time,)`` -> ``(len(starts), chunk)``: the chunk at each start, zero-padded past the wave's end."""
    pieces = []
    for start in starts:
        piece = wave[start:start + chunk]
        pieces.append(F.pad(piece, (0, chunk - len(piece))))
    return torch.stack(pieces)
