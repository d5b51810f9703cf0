"""Audio input: every format decodes to the right tone, length and position; every bad file says why."""

import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from torchcodec.encoders import AudioEncoder

from tagging.audio import AudioChunk, AudioDecodeError, audio_info, load_audio, stream_audio, verify_flac

RATE = 16000  # the rate every test decodes to
SECONDS = 3.0
# (extension, file sample rate, channels, FFmpeg codec name): mono and stereo, several rates.
FORMATS = [
    ("wav", 44100, 2, "pcm_s16le"),
    ("flac", 22050, 1, "flac"),
    ("mp3", 44100, 2, "mp3"),
    ("ogg", 32000, 1, "vorbis"),
    ("opus", 48000, 2, "opus"),
    ("m4a", 44100, 1, "aac"),
]
TONE = 440.0
# Read frame by frame (ranges, streams), a file lacks the last few samples that only a whole-file decode
# flushes out of FFmpeg's resampler (16 at 16 kHz); comparisons stop this far from the end of the file.
TAIL = 64


def _tone(frequency: float, seconds: float, rate: int, channels: int = 1, amplitude: float = 0.5) -> torch.Tensor:
    t = np.arange(round(seconds * rate)) / rate
    wave = amplitude * np.sin(2 * np.pi * frequency * t)
    return torch.from_numpy(np.stack([wave] * channels)).float()  # (channels, time)


def _write(path, samples: torch.Tensor, rate: int):
    AudioEncoder(samples, sample_rate=rate).to_file(path)
    return path


def _peak_hz(wave: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave.numpy() * np.hanning(wave.numel())))
    return float(np.fft.rfftfreq(wave.numel(), 1 / rate)[spectrum.argmax()])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 3-s 440 Hz tone in every format, plus a two-tone file whose halves tell positions apart."""
    folder = tmp_path_factory.mktemp("audio")
    paths = {
        ext: _write(folder / f"tone.{ext}", _tone(TONE, SECONDS, rate, channels), rate)
        for ext, rate, channels, _ in FORMATS
    }
    # 440 Hz for the first second, 1000 Hz for the second: a segment's pitch says where it came from.
    two = torch.cat([_tone(440, 1.0, 44100, 2), _tone(1000, 1.0, 44100, 2)], dim=1)
    for ext in ("flac", "mp3"):
        paths[f"two.{ext}"] = _write(folder / f"two.{ext}", two, 44100)
    return paths


@pytest.mark.parametrize(("ext", "rate", "channels", "codec"), FORMATS)
def test_every_format_decodes_to_the_tone_at_the_requested_rate(files, ext, rate, channels, codec):
    info = audio_info(files[ext])
    assert (info.sample_rate, info.num_channels, info.codec) == (rate, channels, codec)
    assert info.duration == pytest.approx(SECONDS, abs=0.05)

    wave = load_audio(files[ext], RATE)
    assert wave.dtype == torch.float32 and wave.ndim == 1
    # Codecs pad to whole frames (AAC by ~20 ms); none loses audio.
    assert SECONDS * RATE <= wave.numel() <= (SECONDS + 0.05) * RATE
    assert _peak_hz(wave, RATE) == pytest.approx(TONE, abs=1.0)
    # Level kept (a 0.5 sine has RMS 0.354); measured away from the edges, where the abrupt start and
    # stop make lossy codecs ring.
    assert wave[RATE // 2 : -RATE // 2].square().mean().sqrt() == pytest.approx(0.5 / 2**0.5, abs=0.02)


@pytest.mark.parametrize("ext", [ext for ext, *_ in FORMATS])
def test_every_format_is_aligned_with_the_source(files, ext):
    # Codec delays (MP3's encoder delay, Opus pre-skip, AAC priming) are compensated: sample 0 is the
    # source's sample 0, so offsets mean the same in every format.
    # The tone's period is 36 samples, so lags within +-18 are told apart.
    reference = load_audio(files["wav"], RATE)[RATE : 2 * RATE]
    shifted = load_audio(files[ext], RATE)[RATE - 18 : 2 * RATE + 18].unfold(0, RATE, 1)  # (37 lags, RATE)
    errors = (shifted - reference).square().mean(dim=1)
    assert int(errors.argmin()) - 18 == 0


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = _tone(TONE, 1.0, RATE, amplitude=0.5), _tone(TONE, 1.0, RATE, amplitude=0.1)
    path = _write(tmp_path / "stereo.wav", torch.cat([left, right]), RATE)
    # FFmpeg's own downmix would give 0.42 (sum at -3 dB); the mean is 0.3.
    torch.testing.assert_close(load_audio(path, RATE), (left[0] + right[0]) / 2, atol=1e-4, rtol=0)


@pytest.mark.parametrize("ext", ["flac", "mp3"])
def test_offset_and_duration_select_the_right_segment(files, ext):
    path = files[f"two.{ext}"]
    whole = load_audio(path, RATE)
    assert _peak_hz(load_audio(path, RATE, offset=0.25, duration=0.5), RATE) == pytest.approx(440, abs=2)
    assert _peak_hz(load_audio(path, RATE, offset=1.25, duration=0.5), RATE) == pytest.approx(1000, abs=2)
    # Sample-exact: a segment is the slice of the whole decode, exactly round(duration * rate) long.
    segment = load_audio(path, RATE, offset=0.7321, duration=0.4567)
    start = round(0.7321 * RATE)
    assert segment.numel() == round(0.4567 * RATE)
    torch.testing.assert_close(segment, whole[start : start + segment.numel()], atol=1e-6, rtol=0)
    tail = load_audio(path, RATE, offset=1.5)
    start = round(1.5 * RATE)
    assert abs(tail.numel() - (whole.numel() - start)) <= TAIL
    n = tail.numel() - TAIL
    torch.testing.assert_close(tail[:n], whole[start : start + n], atol=1e-6, rtol=0)


def test_a_range_past_the_end_is_zero_padded(files):
    whole = load_audio(files["flac"], RATE)
    segment = load_audio(files["flac"], RATE, offset=2.5, duration=1.0)
    assert segment.numel() == RATE
    available = whole.numel() - round(2.5 * RATE)
    torch.testing.assert_close(segment[: available - TAIL], whole[-available:-TAIL], atol=1e-6, rtol=0)
    assert torch.all(segment[available:] == 0)
    with pytest.raises(ValueError, match=r"offset 3\.5 s is at or past the end"):
        load_audio(files["flac"], RATE, offset=3.5, duration=1.0)


def test_silence_is_valid_audio(tmp_path):
    path = _write(tmp_path / "silence.flac", torch.zeros(1, RATE), RATE)
    wave = load_audio(path, RATE)
    assert wave.numel() == RATE and torch.all(wave == 0)


def test_too_short_raises_unless_disabled(tmp_path):
    path = _write(tmp_path / "blip.wav", _tone(TONE, 0.02, RATE), RATE)
    with pytest.raises(AudioDecodeError, match=r"too short: 0\.020 s"):
        load_audio(path, RATE)
    with pytest.raises(AudioDecodeError, match="too short"):
        next(stream_audio(path, RATE, chunk_seconds=1.0))
    assert load_audio(path, RATE, min_seconds=0).numel() == round(0.02 * RATE)


def _cut(source, path, fraction):
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _damage(source, path, _):
    data = bytearray(source.read_bytes())
    start, size = len(data) // 3, len(data) // 10
    data[start : start + size] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _png(_, path, __):
    Image.new("RGB", (16, 16), "red").save(path, format="PNG")


def _video_without_audio(_, path, __):
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs the ffmpeg command")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=d=1:s=64x64:r=10", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )


BAD_FILES = {
    "missing.wav": (None, "missing: no such file"),
    "empty.mp3": (lambda _, path, __: path.write_bytes(b""), "empty: 0 bytes"),
    "text.mp3": (lambda _, path, __: path.write_text("not audio at all\n" * 50), "not audio: FFmpeg cannot read it"),
    "image.wav": (_png, "unsupported: no audio stream"),
    "video.mp4": (_video_without_audio, "unsupported: no audio stream"),
    "cut.flac": (_cut, "truncated: header says 4.0"),
    "cut.mp3": (_cut, "truncated: header says 4.0"),
    "damaged.flac": (_damage, "corrupt: undecodable data at"),
    "damaged.mp3": (_damage, "corrupt: undecodable data at"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_every_bad_file_raises_one_error_naming_file_and_reason(tmp_path, name):
    make, reason = BAD_FILES[name]
    path = tmp_path / name
    if make is not None:
        source = _write(tmp_path / f"source{path.suffix}", _tone(TONE, 4.0, 44100, 2), 44100)
        make(source, path, 0.5)
    with pytest.raises(AudioDecodeError) as error:
        load_audio(path, RATE)
    assert str(error.value) == f"{path}: {error.value.reason}"
    assert error.value.reason.startswith(reason)
    assert "SingleStreamDecoder" not in error.value.reason  # no raw torchcodec/FFmpeg location
    with pytest.raises(AudioDecodeError, match=reason.split(":")[0]):
        list(stream_audio(path, RATE, chunk_seconds=1.0))


def test_audio_info_raises_the_same_error(tmp_path):
    with pytest.raises(AudioDecodeError, match="missing"):
        audio_info(tmp_path / "nothing.ogg")


@pytest.fixture(scope="module")
def long_file(tmp_path_factory):
    """10 minutes of 8 kHz noise and a tone: any misplaced sample would show, upsampling exercises FFmpeg."""
    seconds, rate = 600, 8000
    noise = np.random.default_rng(0).standard_normal(seconds * rate) * 0.1
    samples = torch.from_numpy(noise).float() + _tone(300, seconds, rate, amplitude=0.3)
    return _write(tmp_path_factory.mktemp("long") / "long.flac", samples.clamp(-1, 1), rate)


def test_stream_of_a_long_file_equals_the_whole_decode(long_file):
    whole = load_audio(long_file, RATE)
    chunks = list(stream_audio(long_file, RATE, chunk_seconds=30.0))
    assert [chunk.start for chunk in chunks] == [30.0 * k for k in range(20)]
    assert all(chunk.wave.shape == (30 * RATE,) and chunk.wave.dtype == torch.float32 for chunk in chunks)
    streamed = torch.cat([chunk.wave[: chunk.valid] for chunk in chunks])
    assert abs(streamed.numel() - whole.numel()) <= TAIL
    n = streamed.numel() - TAIL
    torch.testing.assert_close(streamed[:n], whole[:n], atol=1e-6, rtol=0)


@pytest.mark.parametrize(("chunk", "hop", "starts"), [(1.0, 0.5, [0, 0.5, 1.0, 1.5, 2.0]), (0.5, 1.0, [0, 1.0, 2.0])])
def test_stream_chunks_overlap_or_skip_by_hop_and_pad_the_last(files, chunk, hop, starts):
    whole = load_audio(files["ogg"], RATE)
    chunks = list(stream_audio(files["ogg"], RATE, chunk_seconds=chunk, hop_seconds=hop))
    assert all(isinstance(c, AudioChunk) for c in chunks)
    assert [c.start for c in chunks] == starts
    size = round(chunk * RATE)
    for c in chunks:
        begin = round(c.start * RATE)
        expected = torch.zeros(size)
        piece = whole[begin : begin + size]
        expected[: piece.numel()] = piece
        assert abs(c.valid - min(size, whole.numel() - begin)) <= TAIL
        torch.testing.assert_close(c.wave[: c.valid - TAIL], expected[: c.valid - TAIL], atol=1e-6, rtol=0)
        assert torch.all(c.wave[c.valid :] == 0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: load_audio(p, 0), "sample_rate must be a positive integer, got 0"),
        (lambda p: load_audio(p, RATE, offset=-1.0), "offset must be a finite number of seconds >= 0"),
        (lambda p: load_audio(p, RATE, duration=0.0), "duration must be a finite number of seconds > 0"),
        (lambda p: stream_audio(p, RATE, chunk_seconds=float("nan")), "chunk_seconds must be"),
        (lambda p: stream_audio(p, RATE, 1.0, hop_seconds=0), "hop_seconds must be"),
    ],
)
def test_bad_arguments_name_the_argument(files, call, message):
    with pytest.raises(ValueError, match=message):
        call(files["wav"])


# ---- training crops that seek (tagging.data.crops) ----

def _catalog_file(catalog, fmt: str):
    """A file of the tiny catalog in ``fmt`` whose rate is not ``RATE``, so that reading it resamples."""
    import pandas as pd

    frame = pd.read_parquet(catalog / "manifest.parquet")
    row = frame[(frame["format"] == fmt) & (frame["sample_rate"] != RATE)].iloc[0]
    return catalog / row["audio_path"], int(row["sample_rate"])


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_crop_at_the_files_rate_has_the_exact_samples(tiny_catalog, fmt):
    from tagging.data.crops import _layout, load_crop

    path, rate = _catalog_file(tiny_catalog, fmt)
    assert _layout(path) is not None  # the fast path, not the fallback
    for offset in (0.0, 0.77, 1.9, 3.5):  # the last runs past the end: zero-padded like load_audio
        exact = load_audio(path, rate, offset=offset, duration=1.0)
        crop = load_crop(path, rate, offset, 1.0)
        assert crop.shape == exact.shape
        assert float((crop - exact)[:-TAIL].abs().max()) <= 1e-6, offset


def _fractional_shift(exact_track: np.ndarray, start: int, crop: np.ndarray) -> tuple[float, float]:
    """The shift d (in samples, by band-limited interpolation of the exact track) that makes the exact crop
    at ``start + d`` closest to ``crop``, and the relative error left there."""
    margin = 64
    window = exact_track[start - margin:start + len(crop) + margin]
    spectrum = np.fft.rfft(window)
    frequencies = np.fft.rfftfreq(len(window))
    errors = {}
    for d in np.arange(-1.0, 1.0001, 0.05):
        shifted = np.fft.irfft(spectrum * np.exp(2j * np.pi * frequencies * d), len(window))[margin:-margin]
        errors[round(float(d), 2)] = np.sqrt(np.mean((shifted - crop) ** 2) / np.mean(crop ** 2))
    best = min(errors, key=errors.get)
    return best, errors[best]


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_resampled_crop_is_the_exact_crop_within_half_a_sample(tiny_catalog, fmt):
    from tagging.data.crops import load_crop

    path, _ = _catalog_file(tiny_catalog, fmt)
    track = load_audio(path, RATE).numpy()
    for offset in (0.5, 1.37, 2.2):
        crop = load_crop(path, RATE, offset, 1.0).numpy()
        shift, error = _fractional_shift(track, round(offset * RATE), crop)
        # Half a sample (+ the search step), and what the resampler does differently near Nyquist on a
        # grid shifted by a fraction of a sample (measured up to 1.6% on the tiny catalog).
        assert abs(shift) <= 0.5 + 0.05 and error < 0.03, (offset, shift, error)


def test_crop_of_a_format_it_cannot_seek_is_exact(files):
    from tagging.data.crops import _layout, load_crop

    assert _layout(files["flac"]) is None
    exact = load_audio(files["flac"], RATE, offset=1.2, duration=0.5)
    assert torch.equal(load_crop(files["flac"], RATE, 1.2, 0.5), exact)


# ---------------------------------------------------------------- verify_flac


def _ffmpeg_flac(path, depth: int, seconds: float = 4.0):
    """A stereo FLAC made by the ffmpeg command: white noise on the left, pink on the right.

    Noise, so that an inverted byte lands in the wide binary part of a Rice-coded residual and changes
    samples without breaking the parse, the damage FFmpeg decodes without a word. In a tone's small
    residuals it often breaks the parse instead, which ``load_audio`` already reports as "corrupt".
    """
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs the ffmpeg command")
    sample_format = ["-sample_fmt", "s16"] if depth == 16 else ["-sample_fmt", "s32", "-bits_per_raw_sample", "24"]
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"anoisesrc=d={seconds}:r=44100:a=0.3:seed=1",
         "-f", "lavfi", "-i", f"anoisesrc=d={seconds}:r=44100:a=0.3:seed=2:c=pink",
         "-filter_complex", "[0][1]amerge=inputs=2", *sample_format, str(path)],
        check=True,
    )
    return path


def _flip_inside_frames(source, path, count: int = 5):
    """Copy ``source`` with one byte inverted halfway between ``count`` pairs of frame sync codes."""
    data = bytearray(source.read_bytes())
    syncs = [i for i in range(data.index(b"\xff\xf8"), len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xF8]
    for k in range(1, count + 1):
        i = len(syncs) * k // (count + 1)
        data[(syncs[i] + syncs[i + 1]) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("depth", [16, 24])
def test_verify_flac_accepts_an_intact_file(tmp_path, depth):
    intact = _ffmpeg_flac(tmp_path / "intact.flac", depth)
    assert verify_flac(intact) is True
    # Some taggers put an ID3v2 tag before "fLaC": 10-byte header, size in 7-bit bytes, then the frames.
    frames = b"TIT2" + (7).to_bytes(4, "big") + b"\x00\x00" + b"\x03a song"
    tagged = tmp_path / "tagged.flac"
    tagged.write_bytes(b"ID3\x04\x00\x00" + bytes([0, 0, 0, len(frames)]) + frames + intact.read_bytes())
    assert audio_info(tagged).codec == "flac"
    assert verify_flac(tagged) is True


@pytest.mark.parametrize("depth", [16, 24])
def test_verify_flac_catches_damaged_frames_that_decode_silently(tmp_path, depth):
    damaged = _flip_inside_frames(_ffmpeg_flac(tmp_path / "intact.flac", depth), tmp_path / "damaged.flac")
    assert load_audio(damaged, RATE).numel() == 4 * RATE  # FFmpeg says nothing: the reason for verify_flac
    with pytest.raises(AudioDecodeError) as caught:
        verify_flac(damaged)
    assert str(caught.value) == (
        f"{damaged}: corrupt: decoded audio differs from the FLAC's MD5 signature (damaged frames)"
    )


def test_verify_flac_skips_what_it_cannot_check(tmp_path, files):
    intact = _ffmpeg_flac(tmp_path / "intact.flac", 16)
    unsigned = bytearray(intact.read_bytes())
    start = 4 + 4 + 18  # "fLaC", the block header, then 18 bytes of STREAMINFO before its MD5
    unsigned[start : start + 16] = bytes(16)  # an encoder that computed no MD5
    (tmp_path / "unsigned.flac").write_bytes(bytes(unsigned))
    assert verify_flac(tmp_path / "unsigned.flac") is False
    twenty_bits = bytearray(intact.read_bytes())
    fields = int.from_bytes(twenty_bits[18:26], "big")  # rate, channels, bits per sample - 1 (bits 36-40), ...
    twenty_bits[18:26] = (fields & ~(0x1F << 36) | (20 - 1) << 36).to_bytes(8, "big")
    (tmp_path / "twenty.flac").write_bytes(bytes(twenty_bits))
    assert verify_flac(tmp_path / "twenty.flac") is False  # float32 is exact for 16 and 24 bits only
    assert verify_flac(files["wav"]) is False  # not FLAC
    assert verify_flac(files["flac"]) is True  # torchcodec's own encoder writes the MD5 too
    with pytest.raises(AudioDecodeError, match="missing: no such file"):
        verify_flac(tmp_path / "nowhere.flac")
