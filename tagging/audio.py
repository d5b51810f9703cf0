"""Audio input: one loader for every format a catalog receives.

WAV, FLAC, MP3, Ogg/Vorbis, Opus, AAC/M4A (and the audio track of a video) all go through torchcodec and
FFmpeg. Three entry points:

- ``audio_info(path)``: what the header says, without decoding.
- ``load_audio(path, sample_rate, offset, duration)``: one mono float32 waveform ``(time,)``.
- ``stream_audio(path, sample_rate, chunk_seconds, hop_seconds)``: fixed-length chunks of an arbitrarily
  long file, decoded as they are needed.

And ``verify_flac(path)``, which catches the damaged FLAC frames FFmpeg decodes without a word.

A file that cannot be used (missing, empty, not audio, no audio stream, corrupt, truncated, too short)
raises ``AudioDecodeError`` naming the file and the reason, never a raw FFmpeg traceback. Padding a short
track up to a model's chunk length is the caller's job: ``load_audio`` returns the audio as it is.

How the samples are produced (measured with torchcodec 0.11.1 and FFmpeg 5.1):

- FFmpeg resamples; channels are averaged here. FFmpeg's own downmix (``num_channels=1``) sums channels
  with -3 dB gains, so a full-scale stereo file reaches 1.41 and a 5.1 one 1.7 instead of staying in [-1, 1].
- Positions count samples from the first decoded sample. ``AudioDecoder.get_samples_played_in_range``
  counts presentation time instead, and an MP3 starts at 0.025 s (encoder delay), which shifts its ranges
  by 1105 samples at 44.1 kHz.
- Ranges and streams are read frame by frame from one decoder. In torchcodec 0.11.1 each
  ``get_samples_played_in_range`` call that starts inside the last decoded frame decodes again from the
  start of the file (a 10-minute MP3 read in 30-s windows took 5.1 s instead of 0.65 s), and with
  resampling each call flushes FFmpeg's resampler, shifting the next window by ~16 samples with a glitch at
  the seam (meta-pytorch/torchcodec#1448 and #1601, fixed upstream in #1449 and #1614). Frame by frame, the
  resampler sees one continuous stream: the samples equal those of a whole-file decode, except the last
  ~1 ms that only a whole-file decode flushes out of the resampler (zeros here).
- torchcodec 0.11.1 cannot seek in audio, so reading from ``offset`` decodes (and drops) everything
  before it: time grows with the offset, memory does not. Training crops, which may start a fraction of a
  sample off, read only the bytes near them where the format allows (`tagging.data.crops.load_crop`).
"""

import hashlib
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torchcodec import _core
from torchcodec.decoders import AudioDecoder

from tagging.errors import UnusableFileError

# The suffixes a folder of uploads is searched for (containers whose audio stream FFmpeg reads).
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".mp4", ".aif",
                            ".aiff", ".wma", ".webm", ".mka"})

# A decoded length this much shorter than the header's duration means the file was cut. The slack covers
# codec priming and padding (tens of ms) and header estimates; a VBR MP3 without a Xing/LAME header can still
# be misreported, since FFmpeg then guesses its duration from the first frame's bit rate.
_TRUNCATION_SLACK_SECONDS = 1.0
_TRUNCATION_SLACK_FRACTION = 0.1
# After a decoding error, how many further frames to try before calling the damage unrecoverable.
_RESYNC_ATTEMPTS = 8
# FLAC bit depths whose samples FFmpeg's float output holds exactly: 16 bits in int16, 24 bits in int32 (the
# value shifted left by 8), both scaled by a power of two into float32's 24-bit mantissa.
_EXACT_FLAC_DEPTHS = frozenset({16, 24})
# torchcodec prefixes FFmpeg's message with the C++ function, file and line.
_TORCHCODEC_PREFIX = re.compile(r"^[\w:]+, \S+:\d+, ")


class AudioDecodeError(UnusableFileError):
    """A file that cannot be used as audio; ``str(error) == f"{path}: {reason}"``."""


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of a file's audio stream.

    ``duration`` is in seconds as the header states it (None when it says nothing); it may differ from the
    decoded length by codec priming and padding (e.g. +0.03 s for MP3) or be an estimate from the bit rate.
    """

    duration: float | None
    sample_rate: int
    num_channels: int
    codec: str


class AudioChunk(NamedTuple):
    """One chunk of ``stream_audio``."""

    start: float  # seconds from the first sample of the file
    wave: torch.Tensor  # (time,) float32 mono, zero-padded past the end of the file
    valid: int  # samples of ``wave`` that are audio; the rest is padding


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Duration, sample rate, channels and codec of ``path``'s audio stream, read from the header."""
    metadata = _open(path, sample_rate=None).metadata
    return AudioInfo(
        duration=None if metadata.duration_seconds is None else float(metadata.duration_seconds),
        sample_rate=metadata.sample_rate,
        num_channels=metadata.num_channels,
        codec=metadata.codec,
    )


def load_audio(
    path: str | os.PathLike,
    sample_rate: int,
    offset: float = 0.0,
    duration: float | None = None,
    *,
    min_seconds: float = 0.05,
) -> torch.Tensor:
    """Decode ``path`` to a mono float32 waveform ``(time,)`` at ``sample_rate``.

    With ``duration``, the result is exactly ``round(duration * sample_rate)`` samples from ``offset``
    seconds on, zero-padded if the file ends first; without, it runs from ``offset`` to the end. The samples
    are those of the whole-file decode at the same positions (see the module notes for the last ~1 ms).
    Silence is valid audio. A file shorter than ``min_seconds`` (0 disables the check) raises
    ``AudioDecodeError``; an ``offset`` at or past the end raises ``ValueError``.
    """
    _check_positive_int("sample_rate", sample_rate)
    _check_seconds("offset", offset, allow_zero=True)
    if duration is not None:
        _check_seconds("duration", duration, allow_zero=False)
    _check_seconds("min_seconds", min_seconds, allow_zero=True)

    if offset == 0 and duration is None:
        return _load_whole(path, sample_rate, min_seconds)
    reader = _SampleReader(path, sample_rate, min_seconds)
    start = round(offset * sample_rate)
    stop = None if duration is None else start + round(duration * sample_rate)
    wave = reader.read(start, stop)
    if reader.length is not None and start >= reader.length:
        raise ValueError(
            f"{path}: offset {offset} s is at or past the end of the audio ({reader.length / sample_rate:.3f} s)"
        )
    return wave


def stream_audio(
    path: str | os.PathLike,
    sample_rate: int,
    chunk_seconds: float,
    hop_seconds: float | None = None,
    *,
    min_seconds: float = 0.05,
) -> Iterator[AudioChunk]:
    """Fixed-length mono chunks of ``path``, decoded as they are needed.

    Chunk ``k`` starts at ``k * hop_seconds`` (default: ``chunk_seconds``, no overlap) and holds
    ``round(chunk_seconds * sample_rate)`` samples; chunks run until one reaches the end of the file, that
    last one zero-padded (``AudioChunk.valid`` says how much of it is audio). Memory is O(chunk + hop)
    whatever the file's length. Opening errors raise here; a file found truncated or corrupt further on
    raises ``AudioDecodeError`` from the iterator, after the chunks before the damage.
    """
    _check_positive_int("sample_rate", sample_rate)
    _check_seconds("chunk_seconds", chunk_seconds, allow_zero=False)
    if hop_seconds is not None:
        _check_seconds("hop_seconds", hop_seconds, allow_zero=False)
    _check_seconds("min_seconds", min_seconds, allow_zero=True)
    size = max(1, round(chunk_seconds * sample_rate))
    hop = size if hop_seconds is None else max(1, round(hop_seconds * sample_rate))
    return _chunks(_SampleReader(path, sample_rate, min_seconds), size, hop)


def verify_flac(path: str | os.PathLike) -> bool:
    """Check a FLAC file's decoded samples against the MD5 signature its encoder stored in STREAMINFO.

    FFmpeg decodes damaged FLAC frames (CRC errors) without a word: they come out as noise or silence.
    The signature is the MD5 of the unencoded samples, interleaved, little-endian, in whole bytes; this
    decodes the file at its own rate frame by frame (memory: one frame), turns the float samples back into
    the integers they were exactly, and compares. Returns True when the samples match; False when there
    is nothing to check: not a native FLAC file (no "fLaC" after an optional ID3v2 tag: other formats, or
    FLAC inside Ogg or Matroska), an MD5 of all zeros (the encoder did not compute one, which the format
    allows), or a bit depth other than 16 and 24 (float32 cannot hold 32-bit samples exactly; 8, 12 and
    20 bits are rare and untested). Raises ``AudioDecodeError`` "corrupt: decoded audio differs from the
    FLAC's MD5 signature (damaged frames)" on a mismatch, and the errors of ``load_audio`` for a file that
    cannot be decoded at all.

    Cost: a second decode, at the file's rate, plus the conversion and the MD5. On a 30-s stereo 44.1 kHz
    file (``benchmarks/verify_flac.py``, one torch thread on a shared 2-core CPU) it took 106 ms at 16 bits
    and 149 ms at 24, 1.7x and 2.1x ``load_audio(path, 16000)`` of the same file (62 and 71 ms): 200 to
    280x real time.
    """
    _check_file(path)
    streaminfo = _flac_streaminfo(path)
    if streaminfo is None:
        return False
    depth, signature = streaminfo
    if depth not in _EXACT_FLAC_DEPTHS or not any(signature):
        return False
    decoder = _open(path, sample_rate=None)
    scale = 2 ** (depth - 1)
    digest = hashlib.md5()
    for frame in _frames(decoder, path, decoder.metadata.sample_rate):  # (channels, n) floats in [-1, 1)
        # numpy rather than torch: torch's per-call overhead on frames this small tripled the cost under load.
        samples = np.clip(np.rint(frame.numpy() * scale), -scale, scale - 1).T  # (n, channels), exact integers
        if depth == 16:
            digest.update(samples.astype("<i2").tobytes())
        else:  # 24: the low three bytes of each little-endian int32
            digest.update(samples.astype("<i4", order="C").view("u1").reshape(-1, 4)[:, :3].tobytes())
    if digest.digest() != signature:
        raise AudioDecodeError(path, "corrupt: decoded audio differs from the FLAC's MD5 signature (damaged frames)")
    return True


def _flac_streaminfo(path: str | os.PathLike) -> tuple[int, bytes] | None:
    """(bits per sample, MD5 signature) from a native FLAC file's STREAMINFO block; None if not native FLAC."""
    with open(path, "rb") as file:
        head = file.read(10)
        if head[:3] == b"ID3" and len(head) == 10:  # ID3v2 tag before the stream: size is 4 x 7 bits
            size = int.from_bytes(bytes(b & 0x7F for b in head[6:10]), "big") + (20 if head[5] & 0x10 else 10)
            file.seek(size)
            head = file.read(4)
        else:
            file.seek(4)
        if head[:4] != b"fLaC":
            return None
        # The first metadata block is STREAMINFO (type 0, 34 bytes); in it, after 10 bytes of block and
        # frame sizes, 64 bits: sample rate (20), channels - 1 (3), bits per sample - 1 (5), total samples
        # (36); then the 16-byte MD5.
        block = file.read(4 + 34)
    if len(block) < 38 or block[0] & 0x7F != 0 or int.from_bytes(block[1:4], "big") != 34:
        raise AudioDecodeError(path, "corrupt: FLAC header without a valid STREAMINFO block")
    fields = int.from_bytes(block[4 + 10 : 4 + 18], "big")
    depth = ((fields >> 36) & 0x1F) + 1
    return depth, block[4 + 18 : 4 + 34]


class _SampleReader:
    """The mono samples of one file, read forward in exact sample ranges with bounded memory."""

    def __init__(self, path: str | os.PathLike, sample_rate: int, min_seconds: float):
        self.path = path
        self.sample_rate = sample_rate
        self.min_seconds = min_seconds
        self.decoder = _open(path, sample_rate)
        self.length: int | None = None  # total samples, known once the end was reached
        self._frames = _frames(self.decoder, path, sample_rate)
        self._pending: list[torch.Tensor] = []  # decoded (channels, n) samples from _start to _end
        self._start = 0
        self._end = 0

    def read(self, start: int, stop: int | None) -> torch.Tensor:
        """Samples ``[start, stop)`` (to the end if ``stop`` is None), zero-padded past the end of the file.

        ``start`` never goes back: samples before it are forgotten. Decoding goes one frame past ``stop``
        so that a range ending exactly at the end of the file knows it.
        """
        wanted = max(math.inf if stop is None else stop, math.ceil(self.min_seconds * self.sample_rate))
        while self.length is None and self._end <= wanted:
            frame = next(self._frames, None)
            if frame is None:
                self._finish()
                break
            self._pending.append(frame)
            self._end += frame.shape[1]
            if self._end <= start:  # all before the range: keep memory O(range), not O(offset)
                self._pending.clear()
                self._start = self._end

        buffered = torch.cat(self._pending, dim=1) if self._pending else torch.zeros(1, 0)
        buffered = buffered[:, start - self._start :]
        self._pending, self._start = [buffered], start
        stop = self._end if stop is None else stop
        wave = buffered.new_zeros(max(stop - start, 0))
        available = min(wave.numel(), buffered.shape[1])
        wave[:available] = buffered[:, :available].mean(0)  # (channels, time) -> (time,)
        return wave

    def _finish(self) -> None:
        self.length = self._end
        _check_length(self.path, self.decoder, self.length, self.sample_rate, self.min_seconds)


def _chunks(reader: _SampleReader, size: int, hop: int) -> Iterator[AudioChunk]:
    start = 0
    while True:
        wave = reader.read(start, start + size)
        if reader.length is not None and start >= reader.length:
            return
        valid = size if reader.length is None else min(size, reader.length - start)
        yield AudioChunk(start / reader.sample_rate, wave, valid)
        if reader.length is not None and start + size >= reader.length:
            return
        start += hop


def scan_length(path: str | os.PathLike, sample_rate: int, *, min_seconds: float = 0.05,
                block_seconds: float = 60.0) -> tuple[int, torch.Tensor]:
    """One streaming pass over ``path`` at its own rate, in O(block) memory: about the number of samples
    ``load_audio(path, sample_rate)`` returns, and a histogram of ``|sample|`` at the file's rate
    (`level_histogram`). Raises as `stream_audio` does.

    The length is ``ceil(n * sample_rate / rate)`` for ``n`` samples at the file's ``rate``: what a
    whole-file decode gives to within one sample (FFmpeg's resampler rounds by its phase; measured on MP3,
    FLAC and WAV at 8-44.1 kHz), found without resampling."""
    native = audio_info(path).sample_rate
    histogram = torch.zeros(len(LEVEL_EDGES) + 1, dtype=torch.long)
    length = 0
    for chunk in stream_audio(path, native, block_seconds, min_seconds=min_seconds):
        histogram += level_histogram(chunk.wave[:chunk.valid])
        length += chunk.valid
    return -(-length * sample_rate // native), histogram


def read_ranges(path: str | os.PathLike, sample_rate: int, ranges: list[tuple[int, int]], *,
                min_seconds: float = 0.05) -> Iterator[torch.Tensor]:
    """The samples ``[start, stop)`` of each range, in order of non-decreasing ``start`` (ranges may
    overlap), zero-padded past the end, decoded in one forward pass with memory O(longest range)."""
    reader = _SampleReader(path, sample_rate, min_seconds)
    previous = 0
    for start, stop in ranges:
        if start < previous:
            raise ValueError(f"ranges must not go back: {start} after {previous}")
        previous = start
        yield reader.read(start, stop)


# Upper edges of the level bins of `level_histogram`: -60 dBFS (silence below), then 0.99 (clipping above).
LEVEL_EDGES = (1e-3, 0.99)


def level_histogram(wave: torch.Tensor) -> torch.Tensor:
    """How many samples of ``wave`` fall below -60 dBFS, between, and at or above 0.99 of full scale:
    enough to tell a silent track (nothing above -60 dBFS) and a clipped one, summed block by block."""
    level = wave.abs()
    silent = int((level < LEVEL_EDGES[0]).sum())
    loud = int((level >= LEVEL_EDGES[1]).sum())
    return torch.tensor([silent, level.numel() - silent - loud, loud])


def _load_whole(path: str | os.PathLike, sample_rate: int, min_seconds: float) -> torch.Tensor:
    decoder = _open(path, sample_rate)
    try:
        wave = decoder.get_all_samples().data.mean(0)  # (channels, time) -> (time,)
    except RuntimeError:
        # Decoding again frame by frame locates the failure and tells a cut-off file from inner damage.
        return _SampleReader(path, sample_rate, min_seconds).read(0, None)
    _check_length(path, decoder, wave.numel(), sample_rate, min_seconds)
    return wave


def _open(path: str | os.PathLike, sample_rate: int | None) -> AudioDecoder:
    file = _check_file(path)
    try:
        return AudioDecoder(file, sample_rate=sample_rate)
    except ValueError:
        # torchcodec's only ValueErrors here say that the container has no audio stream.
        raise AudioDecodeError(path, "unsupported: no audio stream in the file") from None
    except RuntimeError as error:
        raise AudioDecodeError(path, f"not audio: FFmpeg cannot read it ({_ffmpeg_message(error, path)})") from None


def _check_file(path: str | os.PathLike) -> Path:
    file = Path(path)
    if not file.exists():
        raise AudioDecodeError(path, "missing: no such file")
    if not file.is_file():
        raise AudioDecodeError(path, "not a file")
    if file.stat().st_size == 0:
        raise AudioDecodeError(path, "empty: 0 bytes")
    return file


def _frames(decoder: AudioDecoder, path: str | os.PathLike, sample_rate: int) -> Iterator[torch.Tensor]:
    """Every frame of the stream in order, ``(channels, n)`` each; ends at the end of the stream.

    Uses torchcodec's core next-frame op: the public range API seeks and flushes between calls (see the
    module notes).
    """
    decoded = 0
    while True:
        try:
            data, _, _ = _core.get_next_frame(decoder._decoder)
        except IndexError:  # torchcodec's end of stream
            return
        except RuntimeError as error:
            raise AudioDecodeError(path, _decode_failure(decoder, decoded / sample_rate, error, path)) from None
        decoded += data.shape[1]
        yield data


def _decode_failure(decoder: AudioDecoder, at_seconds: float, error: RuntimeError, path: str | os.PathLike) -> str:
    """The reason for a decoding error: a cut-off file has nothing decodable after it, inner damage has."""
    detail = _ffmpeg_message(error, path)
    for _ in range(_RESYNC_ATTEMPTS):
        try:
            _core.get_next_frame(decoder._decoder)
        except IndexError:
            header = decoder.metadata.duration_seconds
            said = "" if header is None else f"header says {header:.2f} s, "
            return f"truncated: {said}decodable data ends at {at_seconds:.2f} s ({detail})"
        except RuntimeError:
            continue
        break
    return f"corrupt: undecodable data at {at_seconds:.2f} s ({detail})"


def _check_length(
    path: str | os.PathLike, decoder: AudioDecoder, length: int, sample_rate: int, min_seconds: float
) -> None:
    decoded = length / sample_rate
    header = decoder.metadata.duration_seconds
    if header is not None and header - decoded > max(_TRUNCATION_SLACK_SECONDS, _TRUNCATION_SLACK_FRACTION * header):
        raise AudioDecodeError(path, f"truncated: header says {header:.2f} s, decoded {decoded:.2f} s")
    if decoded < min_seconds:
        raise AudioDecodeError(path, f"too short: {decoded:.3f} s of audio, min_seconds is {min_seconds} s")


def _ffmpeg_message(error: Exception, path: str | os.PathLike) -> str:
    message = _TORCHCODEC_PREFIX.sub("", str(error).strip()).replace(str(path), "")
    return " ".join(message.split())


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_seconds(name: str, value: float, *, allow_zero: bool) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
