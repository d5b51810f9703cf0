"""Tempo and key estimators (`tagging.tempo_key`) on audio whose answer is known: click tracks at set tempi,
I-IV-V-I cadences in set keys, their stretched and shifted copies, and the columns `coldtag annotate` writes."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile
import torch

from tagging.keys import KEY_PROFILES, key_fits, key_templates
from tagging.tempo_key import estimate_key, estimate_tempo, mirex_tempo_accuracy

SR = 16000
STRETCHES = (0.8, 0.9, 1.1, 1.25)  # duration ratios: the tempo becomes bpm / ratio
needs_rubberband = pytest.mark.skipif(shutil.which("rubberband") is None,
                                      reason="the rubberband command is missing: apt-get install rubberband-cli")


def clicks(bpm: float, seconds: float = 20.0) -> np.ndarray:
    """A metronome: a 30 ms 1 kHz ping on every beat."""
    y = np.zeros(int(seconds * SR), np.float32)
    t = np.arange(int(0.03 * SR)) / SR
    ping = np.sin(2 * np.pi * 1000 * t) * np.exp(-150 * t)
    for beat in np.arange(0, seconds, 60 / bpm):
        start = int(beat * SR)
        y[start:start + len(ping)] += ping[:len(y) - start]
    return 0.5 * y


# I-IV-V-I in semitones above the tonic; the minor cadence's dominant has the raised leading tone.
CADENCES = {"major": [(0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7)],
            "minor": [(0, 3, 7), (5, 8, 12), (7, 11, 14), (0, 3, 7)]}


def cadence(tonic: int, mode: str, repeats: int = 3) -> np.ndarray:
    """The cadence in ``tonic`` (0 = C), the chord's root in the bass, each note with five harmonics."""
    t = np.arange(SR) / SR
    envelope = np.minimum(1, t / 0.02) * np.exp(-1.5 * t)
    chords = []
    for chord in CADENCES[mode] * repeats:
        y = np.zeros_like(t)
        for note in [36 + tonic + chord[0], *(60 + tonic + n for n in chord)]:
            f = 440 * 2 ** ((note - 69) / 12)
            y += sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 6))
        chords.append(y * envelope)
    return (0.05 * np.concatenate(chords)).astype(np.float32)


def rubberband(y: np.ndarray, tmp_path, *options: str) -> np.ndarray:
    soundfile.write(tmp_path / "in.wav", y, SR, subtype="FLOAT")
    subprocess.run(["rubberband", "-q", *options, str(tmp_path / "in.wav"), str(tmp_path / "out.wav")], check=True,
                   capture_output=True)
    out, _ = soundfile.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    return out.mean(axis=1)


def within(estimate: float, truth: float) -> bool:
    """MIREX Accuracy1: 4 %, and half or double the tempo is an error."""
    return abs(estimate / truth - 1) <= 0.04


@pytest.mark.parametrize("bpm", [100, 137])
def test_tempo_of_a_click_track_and_of_its_tempo_changes(bpm):
    for tempo in [bpm, *(bpm / ratio for ratio in STRETCHES)]:
        estimate = estimate_tempo(clicks(tempo), SR)
        assert within(estimate.bpm, tempo), (tempo, estimate)
        assert estimate.confidence > 0.7


@needs_rubberband
@pytest.mark.parametrize(("bpm", "ratio"), [(100, 1.25), (137, 0.8)])
def test_tempo_scales_with_a_rubberband_stretch(bpm, ratio, tmp_path):
    """A real time-stretcher's output (smeared clicks): 100 BPM played 1.25x longer is 80 BPM; 137 BPM
    played 0.8x as long is 171 BPM, above the prior's centre, not its half."""
    estimate = estimate_tempo(rubberband(clicks(bpm), tmp_path, "-t", str(ratio)), SR)
    assert within(estimate.bpm, bpm / ratio), estimate


def test_tempo_of_silence_and_of_noise():
    assert np.isnan(estimate_tempo(np.zeros(10 * SR), SR).bpm) and estimate_tempo(np.zeros(10 * SR), SR).confidence == 0
    noise = np.random.default_rng(0).normal(0, 0.1, 20 * SR).astype(np.float32)
    assert estimate_tempo(noise, SR).confidence < 0.3 < estimate_tempo(clicks(120), SR).confidence


def test_tempo_does_not_depend_on_the_sample_rate():
    import librosa

    y = librosa.resample(clicks(137), orig_sr=SR, target_sr=22050)
    assert within(estimate_tempo(torch.from_numpy(y), 22050).bpm, 137)


@pytest.mark.parametrize(("tonic", "mode"), [(0, "major"), (9, "minor")])
def test_key_of_a_cadence_and_of_its_transpositions(tonic, mode):
    for k in range(-3, 4):
        key = estimate_key(cadence((tonic + k) % 12, mode), SR)
        assert (key.tonic, key.mode) == ((tonic + k) % 12, mode), (k, key)
        assert key.confidence > 0.6 and 0.5 < key.mode_confidence <= 1


@needs_rubberband
@pytest.mark.parametrize(("tonic", "mode", "k"), [(0, "major", 3), (9, "minor", -2)])
def test_key_moves_with_a_rubberband_pitch_shift(tonic, mode, k, tmp_path):
    key = estimate_key(rubberband(cadence(tonic, mode), tmp_path, "-p", str(k)), SR)
    assert (key.tonic, key.mode) == ((tonic + k) % 12, mode)


def test_both_profiles_read_a_profile_back_and_refuse_an_unknown_name():
    profile = torch.tensor(np.roll(KEY_PROFILES["minor"], 4), dtype=torch.float32).unsqueeze(0)
    fits = key_fits(profile, key_templates())[0]
    assert divmod(int(fits.flatten().argmax()), 12) == (1, 4)
    assert estimate_key(cadence(2, "major"), SR, profiles="krumhansl")[:2] == (2, "major")
    with pytest.raises(ValueError, match="profiles must be one of"):
        estimate_key(cadence(2, "major"), SR, profiles="edma-typo")


def test_mirex_tempo_accuracy_forgives_only_metrical_levels():
    assert mirex_tempo_accuracy(103.9, 100) == (True, True)
    assert mirex_tempo_accuracy(104.1, 100) == (False, False)
    assert mirex_tempo_accuracy(201, 100) == (False, True)
    assert mirex_tempo_accuracy(33.4, 100) == (False, True)
    assert mirex_tempo_accuracy(150, 100) == (False, False)
    assert mirex_tempo_accuracy(float("nan"), 100) == (False, False)


def test_mirex_weighted_key_score_of_mir_eval():
    weighted_score = pytest.importorskip("mir_eval.key", reason="mir_eval (the bench extra) is missing").weighted_score
    scores = [weighted_score("C major", estimate) for estimate in ("C major", "G major", "A minor", "C minor",
                                                                   "D major")]
    assert scores == [1.0, 0.5, 0.3, 0.2, 0.0]
