"""A catalog's decoded audio on disk, as int16 at the model's rate, read through memory maps.

Decoding is the floor under training throughput on CPU (torchcodec decodes on the CPU only), so a catalog
that is trained on for many epochs can be decoded once. Stored as float32 the decoded MTG-Jamendo catalog
takes ~0.85 TB at 16 kHz; as int16 half that, with a rounding error of at most half a step (1/65536), below
what any MP3 keeps.

Format, one folder per set of settings: ``<cache_dir>/<key>/`` where ``key`` is the first 20 hex digits of
the SHA-256 of the settings below, so a changed setting or file makes a new folder instead of reading a
stale one. The folder holds

- ``shard-00000.i16``, ``shard-00001.i16``, ...: the mono samples of ``SHARD_TRACKS`` tracks each, one
  after the other, raw little-endian int16 (``round(sample * 32768)``, clipped to [-32768, 32767]; a
  decoder's overshoot past full scale is clipped). Read back as ``int16 / 32768``.
- ``cache.json``: ``{"settings": ..., "tracks": [...]}``. ``settings`` are what made the samples:
  format version, sample rate, channel mix, decoder and its settings, library versions (torchcodec,
  FFmpeg's libraries, NumPy) and each file's path, size and modification time (ns). ``tracks`` has one
  entry per file, in the order given: ``{"path", "shard", "offset", "length", "error"}``; ``offset`` and
  ``length`` count samples within the shard; a file that cannot be decoded has ``length`` 0 and its
  `AudioDecodeError` message as ``error`` (empty otherwise).

`build_audio_cache` decodes into a hidden folder beside the target and renames it into place
(`coldtag.storage.publish_directory`), so a reader sees a complete cache or none, and of two processes
that race to build the same cache one wins and the other uses it. `AudioCache` opens the shards as
read-only memory maps, lazily in each process: DataLoader workers share the page cache, and each item
reads only its own samples.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from torchcodec import _core

from coldtag.storage import publish_directory
from tagging.audio import AudioDecodeError, load_audio

FORMAT = "coldtag-audio-cache/1"
INDEX_FILE = "cache.json"
SHARD_TRACKS = 256
SCALE = 32768


def cache_settings(paths: Sequence[str | os.PathLike], sample_rate: int) -> dict:
    """Everything the cached samples depend on; its hash names the cache folder. A missing file is
    recorded with size and time -1 (it will be an error record, and a cache again once it exists)."""
    files = []
    for path in paths:
        try:
            stat = os.stat(path)
            files.append([str(path), stat.st_size, stat.st_mtime_ns])
        except OSError:
            files.append([str(path), -1, -1])
    return {
        "format": FORMAT, "sample_rate": sample_rate, "channels": "mean of the file's channels",
        "decoder": "tagging.audio.load_audio, whole file, FFmpeg's resampler with torchcodec's defaults",
        "min_seconds": 0.05, "scale": SCALE, "shard_tracks": SHARD_TRACKS,
        "software": {"torchcodec": metadata.version("torchcodec"), "numpy": np.__version__,
                     "ffmpeg": _core.get_ffmpeg_library_versions()},
        "files": files,
    }


def cache_folder(cache_dir: str | os.PathLike, settings: dict) -> Path:
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / key


def build_audio_cache(paths: Sequence[str | os.PathLike], sample_rate: int, cache_dir: str | os.PathLike,
                      workers: int = 0) -> Path:
    """The cache folder of ``paths`` decoded at ``sample_rate`` under ``cache_dir``, decoding them first
    unless a cache with the same settings is there. ``workers`` > 0 decodes in that many processes."""
    settings = cache_settings(paths, sample_rate)
    folder = cache_folder(cache_dir, settings)
    if (folder / INDEX_FILE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    tracks, shard, offset, handle = [], -1, 0, None
    try:
        for i, (path, (samples, error)) in enumerate(zip(paths, _decoded(paths, sample_rate, workers), strict=True)):
            if i % SHARD_TRACKS == 0:
                if handle:
                    handle.close()
                shard, offset = shard + 1, 0
                handle = open(staging / _shard_name(shard), "wb")
            handle.write(samples.astype("<i2", copy=False).tobytes())
            tracks.append({"path": str(path), "shard": shard, "offset": offset, "length": len(samples),
                           "error": error})
            offset += len(samples)
        if handle:
            handle.close()
        (staging / INDEX_FILE).write_text(json.dumps({"settings": settings, "tracks": tracks}) + "\n")
        publish_directory(staging, folder)
    finally:
        if handle:
            handle.close()
        shutil.rmtree(staging, ignore_errors=True)
    return folder


class AudioCache:
    """A cache folder of `build_audio_cache`, read as float32. Picklable without its memory maps, which
    each process opens when it first reads."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        path = self.folder / INDEX_FILE
        try:
            index = json.loads(path.read_text())
            self.settings, tracks = index["settings"], index["tracks"]
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{path}: not a readable audio cache index ({error})") from error
        if self.settings.get("format") != FORMAT:
            raise ValueError(f"{path}: format {self.settings.get('format')!r}, this version reads {FORMAT!r}")
        if cache_folder(self.folder.parent, self.settings) != self.folder:
            raise ValueError(f"{self.folder}: its name is not the key of the settings {INDEX_FILE} records; "
                             "the folder was renamed or its index edited, so its samples cannot be trusted")
        self.tracks = tracks
        self._maps: dict[int, np.memmap] = {}

    def read(self, shard: int, offset: int, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` of the track at ``offset`` in ``shard``, float32 in [-1, 1)."""
        if shard not in self._maps:
            self._maps[shard] = np.memmap(self.folder / _shard_name(shard), dtype="<i2", mode="r")
        return self._maps[shard][offset + start:offset + stop].astype(np.float32) / SCALE

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}


def _decoded(paths: Sequence, sample_rate: int, workers: int) -> Iterator[tuple[np.ndarray, str]]:
    jobs = [(str(path), sample_rate) for path in paths]
    if workers <= 0:
        yield from map(_decode, jobs)
        return
    # Spawned, not forked: a forked copy of a process holding torch's thread pools can hang.
    with get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_decode, jobs, chunksize=4)


def _decode(job: tuple[str, int]) -> tuple[np.ndarray, str]:
    path, sample_rate = job
    try:
        wave = load_audio(path, sample_rate).numpy()
    except AudioDecodeError as error:
        return np.zeros(0, dtype=np.int16), str(error)
    return np.clip(np.round(wave * SCALE), -SCALE, SCALE - 1).astype(np.int16), ""


def _shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.i16"
