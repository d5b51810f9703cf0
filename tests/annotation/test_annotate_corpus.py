"""The annotation test corpus says the truth about its files: each outcome it promises is what the loaders
give, its tables cover every file it writes, and it is written fast and the same way every time."""

import hashlib
import os
import time
from pathlib import Path

import pytest
import torch

from tagging.audio import AudioDecodeError, load_audio, verify_flac
from tagging.models.image import CoverError, load_cover
from tagging.models.text import LyricsError, read_lyrics
from tests.helpers.annotate_corpus import EXPECTED_AUDIO, EXPECTED_SIDECARS, EXPECTED_WARNINGS, write_corpus

RATE = 16000
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".mp4"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    started = time.perf_counter()
    expected = write_corpus(root)
    return root, expected, time.perf_counter() - started


def _audio_outcome(path: Path) -> str | None:
    try:
        load_audio(path, RATE)
        if path.suffix == ".flac":
            verify_flac(path)
    except AudioDecodeError as error:
        return error.reason
    return None


def test_written_fast_and_returns_the_audio_table(corpus):
    _, expected, seconds = corpus
    assert expected == EXPECTED_AUDIO
    assert seconds < 3


@pytest.mark.parametrize("name", EXPECTED_AUDIO)
def test_each_audio_input_gives_the_promised_outcome(corpus, name):
    root, expected, _ = corpus
    reason = _audio_outcome(root / name)
    if expected[name] is None:
        assert reason is None, reason
    else:
        assert reason is not None and reason.startswith(expected[name]), reason


def test_warned_files_are_what_their_warnings_say(corpus):
    root, _, _ = corpus
    assert EXPECTED_WARNINGS == {"warn/silence.wav": ("silent",), "warn/blip.wav": ("short",)}
    silence = load_audio(root / "warn/silence.wav", RATE)
    assert silence.numel() == 30 * RATE and not silence.any()
    blip = load_audio(root / "warn/blip.wav", RATE)
    assert blip.numel() == round(0.2 * RATE) and blip.abs().max() > 0.4
    for name in EXPECTED_AUDIO:  # the other good files are music, not silence
        if EXPECTED_AUDIO[name] is None and name not in EXPECTED_WARNINGS:
            wave = load_audio(root / name, RATE)
            assert wave.numel() >= 3.9 * RATE and wave.abs().max() > 0.2, name


def test_the_damaged_flac_decodes_without_a_word_and_is_not_clipped(corpus):
    root, _, _ = corpus
    wave = load_audio(root / "bad/damaged.flac", RATE)  # FFmpeg's silence is what verify_flac is for
    assert wave.numel() == 4 * RATE
    assert (wave.abs() >= 0.99).float().mean() < 1e-3  # no "clipped" warning to blur its error
    with pytest.raises(AudioDecodeError, match="MD5"):
        verify_flac(root / "bad/damaged.flac")


def test_each_sidecar_gives_the_promised_outcome(corpus):
    root, _, _ = corpus
    for audio, sidecars in EXPECTED_SIDECARS.items():
        assert EXPECTED_AUDIO[audio] is None  # a bad sidecar never spoils its audio
        for name, expected in sidecars.items():
            path = root / name
            assert path.stem == (root / audio).stem and path.parent == (root / audio).parent
            try:
                if path.suffix == ".txt":
                    read_lyrics(path)
                else:
                    assert tuple(load_cover(path).shape) == (3, 128, 128)
                reason = None
            except (LyricsError, CoverError) as error:
                reason = error.reason
            if expected is None:
                assert reason is None, (name, reason)
            else:
                assert reason is not None and reason.startswith(expected), (name, reason)


def test_the_tables_name_every_file_written(corpus):
    root, _, _ = corpus
    audio, sidecars = set(), set()
    for folder, directories, files in os.walk(root):  # lists names only: the FIFO is never opened
        for name in directories + files:
            relative = (Path(folder) / name).relative_to(root).as_posix()
            if Path(name).suffix in AUDIO_SUFFIXES:
                audio.add(relative)
            elif name in files:
                sidecars.add(relative)
    assert audio == set(EXPECTED_AUDIO)
    assert sidecars == {name for table in EXPECTED_SIDECARS.values() for name in table}


def test_written_the_same_way_every_time(corpus, tmp_path):
    root, _, _ = corpus
    write_corpus(tmp_path)
    for name in [*EXPECTED_AUDIO, *(n for table in EXPECTED_SIDECARS.values() for n in table)]:
        first, second = root / name, tmp_path / name
        if name == "bad/video.mp4" or not first.is_file() or first.is_fifo():
            continue  # the video's bytes depend on the ffmpeg build; links, folders and FIFOs hold none
        if first.suffix == ".ogg":  # Ogg streams get a random serial number: the same samples, then
            assert torch.equal(load_audio(first, RATE), load_audio(second, RATE)), name
            continue
        assert _digest(first) == _digest(second), name
    assert os.readlink(tmp_path / "bad/dangling.flac") == "gone.flac"
    assert (tmp_path / "good/arpeggio.txt").is_fifo()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
