"""Training crops that decode only the neighbourhood of the crop.

torchcodec 0.11.1 cannot seek in audio: ``AudioDecoder`` only ever seeks back to the start of the stream
(its core ``seek_to_pts`` refuses audio streams, "The method you called isn't supported"), and
``get_samples_played_in_range(start, stop)`` on a fresh decoder decodes and drops every frame before
``start``. A crop 236 s into a 4-minute MP3 took 37 times as long as one at the start (650 ms against
18 ms, ``benchmarks/crop_decoding.py``); read by `load_crop` it took 15 ms.

What torchcodec does accept is a file in memory (``AudioDecoder(bytes)``), so `load_crop` seeks itself: it
reads only the bytes around the crop and decodes those, where the byte position of a sample is known
exactly from the file's header:

- **PCM WAV**: fixed bytes per sample; the slice gets the file's own header with the sizes patched.
- **constant bit-rate MP3 with a LAME/Lavc ``Info`` header** (what LAME and FFmpeg write for CBR): frame
  ``k`` starts within a byte of ``k * 144 * bit_rate / sample_rate`` after the header (72 for MPEG-2/2.5),
  the header gives the encoder delay and padding FFmpeg trims, and the slice starts 3 frames early: the
  the slice starts early enough for the bit reservoir (a frame's data may begin up to 511 bytes back)
  plus 2 frames, since the reservoir and the overlap of MP3's transform make the first decoded frames of
  a cut stream wrong. Measured on 128 kbit/s (418-byte frames): 2 frames of pre-roll still differed from
  a whole-file decode by up to 0.04, 3 gave its samples; at 64 kbit/s (209-byte frames) 3 differed by
  0.07 and 4 were exact. The rule gives 4 and 5.

Anything else (VBR MP3 or MP3 without an ``Info`` header, whose byte positions are estimates; FLAC, Ogg,
Opus, AAC) goes through the exact `tagging.audio.load_audio`, as do files the fast path cannot read, so
a bad file still raises `AudioDecodeError` with its reason.

How close it is: at the file's own rate the samples are those of the whole-file decode (checked to float
precision). Resampled, FFmpeg's resampler starts from the slice's first sample instead of the file's, so
the crop starts up to half a sample of the output rate away from the exact crop (31 µs at 16 kHz): the
same sound, a fraction of a sample early or late (after that shift the samples still differ by up to
~2% RMS, from what the resampler does near Nyquist on the shifted grid), which training crops at random
offsets do not notice.
Evaluation and whole-track decoding keep using the exact `load_audio`.
"""

import math
import os
import struct

import torch
from torchcodec.decoders import AudioDecoder

from tagging.audio import load_audio

# MPEG audio Layer III header fields (ISO 11172-3, ISO 13818-3): version bits 3 = MPEG-1, 2 = MPEG-2,
# 0 = MPEG-2.5.
_MP3_KBPS = {3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
             2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_MP3_KBPS[0] = _MP3_KBPS[2]
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
# FFmpeg's MP3 decoder adds this many samples of delay to the encoder's, and trims both.
_MP3_DECODER_DELAY = 529
# How far back a frame's data may start (the bit reservoir): main_data_begin is 9 bits in MPEG-1, 8 in
# MPEG-2/2.5.
_MP3_RESERVOIR_BYTES = {3: 511, 2: 255, 0: 255}
# Frames decoded and dropped before the crop beyond those the reservoir may reach into: one for the
# overlap of the transform, one of margin (see the module notes).
_MP3_EXTRA_PREROLL_FRAMES = 2
# Samples at the file's rate decoded and dropped before a WAV crop, so the resampler has settled.
_WAV_PREROLL_SAMPLES = 1024
_WAV_FORMATS = {1, 3, 0xFFFE}  # integer PCM, float PCM, extensible


def load_crop(path: str | os.PathLike, sample_rate: int, offset: float, duration: float) -> torch.Tensor:
    """``round(duration * sample_rate)`` mono float32 samples from ``offset`` seconds, zero-padded past the
    end: `load_audio(path, sample_rate, offset, duration)`, decoding only the bytes near the crop where
    the format allows (see the module notes for how close that is), exactly otherwise."""
    layout = _layout(path)
    if layout is None:
        return load_audio(path, sample_rate, offset=offset, duration=duration)
    size = round(duration * sample_rate)
    first = math.floor(offset * layout.rate)  # first wanted sample at the file's rate
    count = math.ceil(duration * layout.rate) + 2
    try:
        data, sliced_from = layout.slice(path, first, count)
        decoded = AudioDecoder(data, sample_rate=sample_rate).get_all_samples().data.mean(0)  # (time,)
    except (OSError, RuntimeError, ValueError):
        return load_audio(path, sample_rate, offset=offset, duration=duration)
    # Output sample j of the slice sounds at (sliced_from / rate + j / sample_rate) s of the whole decode.
    # (rounded as `load_audio` rounds the offset, so that at the file's own rate both agree exactly)
    start = round(offset * sample_rate)
    skip = round(start - sliced_from * sample_rate / layout.rate)
    # The file's own end: an MP3 slice still holds the encoder's padding that a whole decode trims.
    valid = max(0, min(size, round(layout.length * sample_rate / layout.rate) - start))
    wave = decoded.new_zeros(size)
    available = min(valid, max(decoded.numel() - skip, 0))
    wave[:available] = decoded[skip:skip + available]
    return wave


class _Wav:
    """Where the samples of a PCM WAV file are. Like `_Mp3`: ``rate``, ``length`` (samples per channel a
    whole-file decode returns) and ``slice(path, first, count)``: a decodable file holding at least samples
    ``[first, first + count)``, and which whole-decode sample (at the file's rate) its first one is."""

    def __init__(self, header: bytes, data_start: int, data_size: int, block: int, rate: int):
        self.header, self.data_start, self.block, self.rate = header, data_start, block, rate
        self.length = data_size // block

    def slice(self, path, first, count):
        start = max(0, first - _WAV_PREROLL_SAMPLES)
        stop = min(self.length, first + count)
        with open(path, "rb") as handle:
            handle.seek(self.data_start + start * self.block)
            body = handle.read(max(stop - start, 0) * self.block)
        header = bytearray(self.header)
        struct.pack_into("<I", header, 4, len(header) - 8 + len(body))
        struct.pack_into("<I", header, len(header) - 4, len(body))
        return bytes(header) + body, start


class _Mp3:
    def __init__(self, first_frame: int, frame_bytes: float, bit_rate: int, frame_samples: int, rate: int,
                 delay: int, length: int, preroll: int):
        self.first_frame, self.frame_bytes, self.bit_rate = first_frame, frame_bytes, bit_rate
        self.frame_samples, self.rate, self.delay, self.length = frame_samples, rate, delay, length
        self.preroll = preroll  # frames

    def slice(self, path, first, count):
        # Whole-decode sample s is sample s + delay of the stream of frames that follows the Info frame.
        frame = max(0, (first + self.delay) // self.frame_samples - self.preroll)
        frames = math.ceil(count / self.frame_samples) + self.preroll + 2
        guess = self.first_frame + round(frame * self.frame_bytes)
        with open(path, "rb") as handle:
            handle.seek(max(guess - 4, self.first_frame))
            data = handle.read(round((frames + 1) * self.frame_bytes) + 8)
        at = self._sync(data)
        found = round((max(guess - 4, self.first_frame) + at - self.first_frame) / self.frame_bytes)
        if found != frame:
            raise ValueError(f"{path}: frame {frame} not where a constant bit rate puts it")
        return data[at:], frame * self.frame_samples - self.delay

    def _sync(self, data: bytes) -> int:
        """Offset of the first frame header in ``data`` followed by another of the same bit rate."""
        for at in range(min(len(data) - 4, 16)):
            header = _mp3_header(data[at:at + 4])
            if header and header[0] == self.bit_rate:
                following = _mp3_header(data[at + header[2]:at + header[2] + 4])
                if following and following[0] == self.bit_rate:
                    return at
        raise ValueError("no MP3 frame header near the expected position")


def _layout(path) -> _Wav | _Mp3 | None:
    """The layout of a file `load_crop` can seek in, or None (read it exactly)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _wav_layout(head)
    if str(path).lower().endswith(".mp3"):
        return _mp3_layout(head)
    return None


def _wav_layout(head: bytes) -> _Wav | None:
    at, fmt = 12, None
    while at + 8 <= len(head):
        chunk, size = head[at:at + 4], struct.unpack_from("<I", head, at + 4)[0]
        if chunk == b"fmt " and at + 24 <= len(head):
            fmt = struct.unpack_from("<HHIIH", head, at + 8)  # format, channels, rate, byte rate, block
        elif chunk == b"data":
            if fmt is None or fmt[0] not in _WAV_FORMATS or fmt[4] == 0:
                return None
            return _Wav(head[:at + 8], at + 8, size, fmt[4], fmt[2])
        at += 8 + size + size % 2  # chunks are padded to even sizes
    return None


def _mp3_layout(head: bytes) -> _Mp3 | None:
    start = 0
    if head[:3] == b"ID3":  # an ID3v2 tag first: syncsafe size, plus a footer when flagged
        start = 10 + int.from_bytes(bytes(b & 0x7F for b in head[6:10]), "big") + (10 if head[5] & 0x10 else 0)
    header = _mp3_header(head[start:start + 4])
    if header is None:
        return None
    bit_rate, rate, frame_bytes, version, mono = header
    # The Info header sits in the first frame, after the 4-byte header and the side information.
    side = (17 if mono else 32) if version == 3 else (9 if mono else 17)
    tag = start + 4 + side
    if head[tag:tag + 4] != b"Info" or len(head) < tag + 144:
        return None  # VBR ("Xing", "VBRI") or no header: byte positions would be estimates
    flags = int.from_bytes(head[tag + 4:tag + 8], "big")
    if not flags & 1:
        return None
    frames = int.from_bytes(head[tag + 8:tag + 12], "big")
    toc = 100 if flags & 4 else 0
    lame = tag + 8 + 4 + (4 if flags & 2 else 0) + toc + (4 if flags & 8 else 0)  # the LAME extension
    delay_padding = int.from_bytes(head[lame + 21:lame + 24], "big")
    delay, padding = delay_padding >> 12, delay_padding & 0xFFF
    frame_samples = 1152 if version == 3 else 576
    slot = 144 if version == 3 else 72
    preroll = math.ceil(_MP3_RESERVOIR_BYTES[version] / (slot * bit_rate // rate)) + _MP3_EXTRA_PREROLL_FRAMES
    return _Mp3(start + frame_bytes, slot * bit_rate / rate, bit_rate, frame_samples, rate,
                delay + _MP3_DECODER_DELAY, frames * frame_samples - delay - padding, preroll)


def _mp3_header(four: bytes) -> tuple[int, int, int, int, bool] | None:
    """(bit rate, sample rate, frame bytes, version, mono) of a Layer III frame header, or None."""
    if len(four) < 4 or four[0] != 0xFF or four[1] & 0xE0 != 0xE0:
        return None
    version, layer = (four[1] >> 3) & 3, (four[1] >> 1) & 3
    index, rate_index, padding = four[2] >> 4, (four[2] >> 2) & 3, (four[2] >> 1) & 1
    if version == 1 or layer != 1 or index in (0, 15) or rate_index == 3:
        return None
    bit_rate, rate = _MP3_KBPS[version][index] * 1000, _MP3_RATES[version][rate_index]
    slot = 144 if version == 3 else 72
    return bit_rate, rate, slot * bit_rate // rate + padding, version, four[3] >> 6 == 3
