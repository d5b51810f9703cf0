"""The realistic toy catalog: its tags are the GM programs that play, its key is the one its harmony writes.

The tests that render audio need the fluidsynth command and a General MIDI soundfont (`make setup`);
without them they are skipped, saying which is missing.
"""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torchcodec.decoders import AudioDecoder

pytest.importorskip("mido", reason="mido (a project dependency) is not installed: pip install mido")

import toycatalog.build
import toycatalog.realistic
from tagging.frontend import Frontend
from tagging.keys import KEY_PROFILES, best_key
from tagging.models.layers import HarmonicFeatures
from toycatalog import build_catalog, load_manifest
from toycatalog.catalog import spectral_centroid
from toycatalog.cli import main
from toycatalog.realistic import (
    CHORD_INSTRUMENTS,
    GM_PROGRAMS,
    GM_VARIANTS,
    INSTRUMENTS,
    RANGES,
    Piece,
    draw_piece,
    fluidsynth_missing,
    make_artists,
    midi_file,
    render_piece,
    write_score,
    written_key,
)

MISSING = fluidsynth_missing()
needs_fluidsynth = pytest.mark.skipif(MISSING is not None, reason=f"cannot render realistic audio: {MISSING}")
SR = 22050


def _piece(instruments, mode="major", key_root=0, drums=False, duration=6.0) -> Piece:
    return Piece(duration=duration, bpm=100.0, meter="4/4", swing=0.0, key_root=key_root, mode=mode,
                 instruments=instruments, drums=drums, density=0.6, reverb=30, channels=1)


def _render(piece: Piece, seed: int = 0) -> np.ndarray:
    return render_piece(piece, write_score(piece, np.random.default_rng(seed)), SR)


def _power_spectrum(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = audio.mean(axis=0)
    return np.fft.rfftfreq(y.size, 1 / SR), np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2


def _midi_hz(note: int) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _chroma(audio: np.ndarray) -> np.ndarray:
    """12 pitch-class energies of the whole clip, from FFT bins between 55 Hz and 2 kHz."""
    freqs, power = _power_spectrum(audio)
    band = (freqs >= 55.0) & (freqs <= 2000.0)
    pitch_class = np.round(12 * np.log2(freqs[band] / 440.0) + 69).astype(int) % 12
    return np.bincount(pitch_class, weights=np.sqrt(power[band]), minlength=12)


def _fit(chroma: np.ndarray, root: int, mode: str) -> float:
    return float(np.corrcoef(chroma, np.roll(KEY_PROFILES[mode], root))[0, 1])


def test_midi_programs_are_the_instrument_tags():
    piece = _piece(("piano", "bass", "violin", "flute"), drums=True)
    midi = midi_file(piece, write_score(piece, np.random.default_rng(0)))
    programs = {m.channel: m.program for m in midi.tracks[0] if m.type == "program_change"}
    assert programs == {i: GM_PROGRAMS[name] for i, name in enumerate(piece.instruments)}
    varied = replace(piece, programs=(2, 34, 40, 73))  # electric grand, picked bass
    midi = midi_file(varied, write_score(varied, np.random.default_rng(0)))
    assert [m.program for m in midi.tracks[0] if m.type == "program_change"] == [2, 34, 40, 73]
    with pytest.raises(ValueError, match="not GM variants"):
        replace(piece, programs=(0, 40, 40, 73))  # a violin is no bass
    playing = {m.channel for m in midi.tracks[0] if m.type == "note_on"}
    assert playing == {0, 1, 2, 3, 9}  # every tagged instrument plays, and the drums on GM channel 10


@pytest.mark.parametrize("key_root", [0, 4, 9])
@pytest.mark.parametrize("mode", ["major", "minor"])
def test_written_notes_fit_the_labelled_key(key_root, mode):
    piece = _piece(("piano", "bass", "clarinet"), mode=mode, key_root=key_root, duration=20.0)
    assert written_key(write_score(piece, np.random.default_rng(key_root))) == (key_root, mode)


def test_drawn_pieces_vary_their_recordings():
    artists = make_artists(40, 4.0, np.random.default_rng(0))
    pieces = [draw_piece(artist, 20.0, np.random.default_rng(i)) for i, (artist, _) in enumerate(artists)]
    assert all(2 <= len(p.instruments) <= 4 and set(p.instruments) & set(CHORD_INSTRUMENTS) for p in pieces)
    assert all(p.programs[i] in GM_VARIANTS[name] for p in pieces for i, name in enumerate(p.instruments))
    assert len({p.programs[p.instruments.index("piano")] for p in pieces if "piano" in p.instruments}) > 1
    assert 0.2 < np.mean([p.lowpass_hz is None for p in pieces]) < 0.8


def test_best_key_reads_a_profile_back():
    assert best_key(np.roll(KEY_PROFILES["minor"], 9)) == (9, "minor")


def test_missing_fluidsynth_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(toycatalog.realistic.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"fluidsynth command is not installed.*make setup"):
        build_catalog(tmp_path / "out", preset="realistic")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--preset", "realistic", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "fluidsynth command is not installed" in capsys.readouterr().err


@needs_fluidsynth
def test_single_instrument_energy_sits_in_its_register():
    """A flute-only render is bright and has almost nothing below the flute's lowest note; a bass-only one
    keeps its energy in the bass register (fundamentals and the first harmonics)."""
    flute, bass = _render(_piece(("flute",))), _render(_piece(("bass",)))
    assert spectral_centroid(flute, SR) > 4 * spectral_centroid(bass, SR)
    freqs, power = _power_spectrum(flute)
    assert power[freqs < 0.9 * _midi_hz(RANGES["flute"][0])].sum() < 0.05 * power.sum()
    freqs, power = _power_spectrum(bass)
    assert power[freqs < 4 * _midi_hz(RANGES["bass"][1])].sum() > 0.8 * power.sum()


@needs_fluidsynth
def test_same_piece_same_samples():
    """FluidSynth adds no randomness of its own, so a seed decides a realistic catalog's audio."""
    artist, _ = make_artists(4, 2.0, np.random.default_rng(3))[1]
    piece = draw_piece(artist, 4.0, np.random.default_rng(5))
    np.testing.assert_array_equal(_render(piece, seed=1), _render(piece, seed=1))


@needs_fluidsynth
def test_rendered_minor_piece_fits_its_minor_key():
    """A minor piece's chroma correlates better with its key's Krumhansl profile than with the relative or
    the parallel major, and best of all 24 keys; the tagger's chroma and harmonic branch find that key too."""
    audio = _render(_piece(("piano", "bass", "strings"), mode="minor", key_root=9, duration=12.0))
    chroma = _chroma(audio)
    fit = _fit(chroma, 9, "minor")
    assert fit > _fit(chroma, 0, "major") and fit > _fit(chroma, 9, "major")
    assert best_key(chroma) == (9, "minor")
    frontend = Frontend(sample_rate=SR, n_fft=8192, hop_length=2048, kind="chroma")
    tonic, mode = HarmonicFeatures().key(frontend(torch.from_numpy(audio.mean(axis=0)).float().unsqueeze(0)))
    assert (int(tonic), int(mode)) == (9, 1)


@pytest.mark.slow
@needs_fluidsynth
def test_tiny_realistic_build_follows_the_catalog_layout(tmp_path, monkeypatch):
    preset = replace(toycatalog.build.PRESETS["realistic"], n_tracks=8, duration=3.0, tracks_per_artist=2.0)
    monkeypatch.setitem(toycatalog.build.PRESETS, "realistic", preset)
    summary = build_catalog(tmp_path / "real", preset="realistic", workers=1)
    root = tmp_path / "real"
    manifest = load_manifest(root)
    vocab = json.loads((root / "vocab.json").read_text())["groups"]
    assert list(vocab) == ["genre", "instrument", "meter", "mode", "graded"]
    assert vocab["instrument"]["labels"] == list(INSTRUMENTS)
    assert len(manifest) == summary["tracks"] == 8
    assert manifest["instrument"].map(len).between(2, 4).all()
    assert manifest.groupby("artist_id")["split"].nunique().max() == 1  # splits are by artist
    for row in manifest.itertuples():
        decoded = AudioDecoder(str(root / row.audio_path)).get_all_samples()
        assert decoded.data.shape == (row.channels, round(row.duration * row.sample_rate))
    assert (root / "summary.md").read_text().startswith("# Realistic toy catalog `realistic` (seed 0)")
