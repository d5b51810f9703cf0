"""A folder of good and bad inputs for annotation tests, and what must become of each file.

``write_corpus(root)`` writes it (under a second) and returns ``EXPECTED_AUDIO``. It is deterministic:
the same bytes every time, except the Ogg file (a random stream serial number; the same samples) and the
video (written by the ``ffmpeg`` command, whichever version is installed). Ids are paths relative
to ``root`` with "/" separators, as the annotate command names tracks. Three tables say what to expect:

- ``EXPECTED_AUDIO: dict[str, str | None]``: every audio input (each file with an audio extension, and the
  directory and dangling link that pretend to be one) -> None when it must be annotated, else the prefix of
  the reason its error record must give: the reason of ``tagging.audio.load_audio(path, rate)``, or, for a
  FLAC that decodes, of ``tagging.audio.verify_flac(path)`` (the FLAC with damaged frames decodes without
  a word; only its MD5 tells). Prefixes: "empty", "not audio", "truncated", "unsupported", "not a file",
  "missing", "corrupt".
- ``EXPECTED_WARNINGS: dict[str, tuple[str, ...]]``: audio id -> the warnings its record must carry,
  for files annotated fine (None in ``EXPECTED_AUDIO``) that a user should not trust: "silent" (30 s of
  digital zeros) and "short" (0.2 s, shorter than any model's chunk). Ids not listed carry none.
- ``EXPECTED_SIDECARS: dict[str, dict[str, str | None]]``: audio id -> {sidecar id: None when usable,
  else the prefix of the reason of ``tagging.models.text.read_lyrics`` (``.txt``) or ``tagging.models.image.load_cover``
  (``.jpg``/``.png``)}. A bad sidecar leaves its audio annotated (None in ``EXPECTED_AUDIO``). Audio ids
  not listed have no sidecar.

Beware: ``good/arpeggio.txt`` is a FIFO and ``bad/dangling.flac`` a dangling link; a tool that reads every
file (``shutil.copytree``, ``cat *``) blocks on the FIFO. Sample rates run from 16 to 44.1 kHz; the sounds
are a few seconds of synthetic notes with harmonics, decaying envelopes and a low noise floor.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchcodec.encoders import AudioEncoder

SECONDS = 4.0

EXPECTED_AUDIO: dict[str, str | None] = {
    # Several codecs, rates and channel counts, annotated fine.
    "good/tone.wav": None,  # PCM 16-bit, 44.1 kHz stereo
    "good/chord.flac": None,  # 22.05 kHz mono
    "good/arpeggio.mp3": None,  # 44.1 kHz stereo
    "good/album/melody.ogg": None,  # Vorbis, 32 kHz mono; in a subfolder
    "good/album/bass.m4a": None,  # AAC, 24 kHz stereo
    # Valid audio that must be flagged (EXPECTED_WARNINGS).
    "warn/silence.wav": None,
    "warn/blip.wav": None,
    # One of each kind of bad file.
    "bad/empty.wav": "empty",
    "bad/random.mp3": "not audio",  # 20,000 random bytes
    "bad/text.wav": "not audio",  # lyrics saved with the wrong name
    "bad/truncated.mp3": "truncated",  # a 4-s MP3 cut at half its bytes
    "bad/video.mp4": "unsupported",  # a video without an audio stream
    "bad/folder.mp3": "not a file",  # an empty directory
    "bad/dangling.flac": "missing",  # a symbolic link to nothing
    "bad/damaged.flac": "corrupt",  # a bit flipped inside 6 frames: decodes, but fails its MD5
}
EXPECTED_WARNINGS: dict[str, tuple[str, ...]] = {
    "warn/silence.wav": ("silent",),  # 30 s of zeros
    "warn/blip.wav": ("short",),  # 0.2 s of a tone
}
EXPECTED_SIDECARS: dict[str, dict[str, str | None]] = {
    "good/tone.wav": {"good/tone.txt": None, "good/tone.png": None},
    "good/chord.flac": {"good/chord.txt": "not text", "good/chord.jpg": "not an image"},
    "good/arpeggio.mp3": {"good/arpeggio.txt": "not a regular file"},  # a FIFO
}

# A pentatonic scale in Hz, from which the notes are drawn.
_SCALE = (220.0, 246.94, 277.18, 329.63, 369.99, 440.0, 493.88, 554.37, 659.25)


def write_corpus(root: Path) -> dict[str, str | None]:
    """Write the corpus into ``root`` (created if needed) and return a copy of ``EXPECTED_AUDIO``."""
    if shutil.which("ffmpeg") is None:
        import pytest

        pytest.skip("needs the ffmpeg command")
    root = Path(root)
    for folder in ("good/album", "warn", "bad"):
        (root / folder).mkdir(parents=True, exist_ok=True)

    _encode(root / "good/tone.wav", _music(44100, 2, seed=1), 44100)
    _encode(root / "good/chord.flac", _music(22050, 1, seed=2), 22050)
    _encode(root / "good/arpeggio.mp3", _music(44100, 2, seed=3), 44100)
    _encode(root / "good/album/melody.ogg", _music(32000, 1, seed=4), 32000)
    _encode(root / "good/album/bass.m4a", _music(24000, 2, seed=5), 24000)

    _encode(root / "warn/silence.wav", torch.zeros(1, 30 * 16000), 16000)
    blip = 0.5 * torch.sin(2 * torch.pi * 440.0 * torch.arange(round(0.2 * 16000)) / 16000)
    _encode(root / "warn/blip.wav", blip.unsqueeze(0), 16000)

    rng = np.random.default_rng(0)
    (root / "bad/empty.wav").write_bytes(b"")
    (root / "bad/random.mp3").write_bytes(rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    (root / "bad/text.wav").write_text("Saved with the wrong name, these are the words of a song.\n" * 40)
    whole = _encode(root / "bad/whole.mp3", _music(44100, 2, seed=6), 44100)
    (root / "bad/truncated.mp3").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=d=1:s=64x64:r=10",
                    "-pix_fmt", "yuv420p", str(root / "bad/video.mp4")], check=True)
    (root / "bad/folder.mp3").mkdir(exist_ok=True)
    _symlink(root / "bad/dangling.flac", "gone.flac")
    intact = _encode(root / "bad/intact.flac", _music(44100, 2, seed=7, noise=0.1), 44100)
    _flip_bits_inside_frames(intact, root / "bad/damaged.flac", count=6)
    intact.unlink()

    # Sidecars: a good pair, a bad pair, a FIFO.
    (root / "good/tone.txt").write_text("Hold the note, let it ring\nUntil the morning light\n", encoding="utf-8")
    _cover(root / "good/tone.png")
    (root / "good/chord.txt").write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    (root / "good/chord.jpg").write_text("not a picture, only text with a .jpg name\n")
    fifo = root / "good/arpeggio.txt"
    if fifo.exists() or fifo.is_symlink():
        fifo.unlink()
    os.mkfifo(fifo)
    return dict(EXPECTED_AUDIO)


def _music(rate: int, channels: int, seed: int, noise: float = 0.01) -> torch.Tensor:
    """``SECONDS`` of eighth notes from ``_SCALE`` at 120 bpm: three harmonics, a decaying envelope, a
    kick on every beat and a noise floor of amplitude ``noise``. (channels, time) float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(SECONDS * rate)) / rate
    wave = np.zeros_like(t)
    note = 0.25
    for start in np.arange(0, SECONDS, note):
        frequency = _SCALE[rng.integers(len(_SCALE))]
        inside = (t >= start) & (t < start + note)
        local = t[inside] - start
        envelope = np.exp(-local / 0.12) * np.minimum(1, local / 0.005)
        wave[inside] += envelope * sum(np.sin(2 * np.pi * k * frequency * local) / k for k in (1, 2, 3))
        if round(start / note) % 2 == 0:  # a kick: a falling sine under the note
            wave[inside] += 0.8 * np.exp(-local / 0.05) * np.sin(2 * np.pi * (60 + 60 * np.exp(-local / 0.02)) * local)
    wave = 0.4 * wave / np.abs(wave).max()
    tracks = [wave * gain + noise * rng.standard_normal(t.size) for gain in np.linspace(1.0, 0.7, channels)]
    return torch.from_numpy(np.clip(np.stack(tracks), -1, 1)).float()


def _encode(path: Path, samples: torch.Tensor, rate: int) -> Path:
    AudioEncoder(samples, sample_rate=rate).to_file(path)
    return path


def _flip_bits_inside_frames(source: Path, path: Path, count: int) -> None:
    """Copy a FLAC file with one bit flipped halfway between ``count`` pairs of frame sync codes, as a
    storage error flips them: the lowest bit of a byte, which in this file's wide residuals leaves every
    frame parseable, so FFmpeg decodes the damage without a word (a whole inverted byte would often break
    the parse, which ``load_audio`` already reports)."""
    data = bytearray(source.read_bytes())
    syncs = [i for i in range(data.index(b"\xff\xf8"), len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xF8]
    for k in range(1, count + 1):
        i = len(syncs) * k // (count + 1)
        data[(syncs[i] + syncs[i + 1]) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _cover(path: Path) -> None:
    image = Image.new("RGB", (64, 64), (30, 30, 90))
    ImageDraw.Draw(image).ellipse((12, 12, 52, 52), fill=(220, 160, 40))
    image.save(path)


def _symlink(path: Path, target: str) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)
