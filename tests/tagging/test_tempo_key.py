"""Tempo and key estimators (`tagging.tempo_key`) on audio whose answer is known: click tracks at set tempi,
I-IV-V-I cadences in set keys (with both chroma front ends), their stretched and shifted copies, and the columns
`coldtag annotate` writes."""

import shutil
import subprocess

import librosa
import numpy as np
import pytest
import soundfile
import torch

from annotation.cli import cli_main
from annotation.records import read_annotations
from tagging.keys import KEY_PROFILES, key_fits, key_templates
from tagging.models.tagger import AudioTagger
from tagging.tempo_key import (
    CHROMA_FFT,
    CHROMAS,
    HARMONIC_BINS,
    HARMONIC_MAX_HZ,
    HARMONIC_READ,
    KEY_CHROMA,
    estimate_key,
    estimate_tempo,
    estimate_tempo_key,
    harmonic_spectrum,
    mirex_tempo_accuracy,
    onset_envelope,
    pitch_class_profile,
)
from tagging.tracks import TrackReader

SR = 16000
STRETCHES = (0.8, 0.9, 1.1, 1.25)  # duration ratios: the tempo becomes bpm / ratio
needs_rubberband = pytest.mark.skipif(shutil.which("rubberband") is None,
                                      reason="the rubberband command is missing: apt-get install rubberband-cli")


def clicks(bpm: float, seconds: float = 20.0, offbeat: float = 0.0) -> np.ndarray:
    """A metronome: a 30 ms 1 kHz ping on every beat, and ``offbeat`` times as loud halfway between beats."""
    y = np.zeros(int(seconds * SR), np.float32)
    t = np.arange(int(0.03 * SR)) / SR
    ping = np.sin(2 * np.pi * 1000 * t) * np.exp(-150 * t)
    for i, beat in enumerate(np.arange(0, seconds, 30 / bpm)):
        start = int(beat * SR)
        y[start:start + len(ping)] += (offbeat if i % 2 else 1.0) * ping[:len(y) - start]
    return 0.5 * y


# I-IV-V-I in semitones above the tonic; the minor cadence's dominant has the raised leading tone.
CADENCES = {"major": [(0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7)],
            "minor": [(0, 3, 7), (5, 8, 12), (7, 11, 14), (0, 3, 7)]}


def cadence(tonic: int, mode: str, repeats: int = 3, harmonics: int = 5) -> np.ndarray:
    """The cadence in ``tonic`` (0 = C), the chord's root in the bass, each note with ``harmonics`` harmonics
    at 1/h of the fundamental's amplitude (a sawtooth's first ones)."""
    t = np.arange(SR) / SR
    envelope = np.minimum(1, t / 0.02) * np.exp(-1.5 * t)
    chords = []
    for chord in CADENCES[mode] * repeats:
        y = np.zeros_like(t)
        for note in [36 + tonic + chord[0], *(60 + tonic + n for n in chord)]:
            f = 440 * 2 ** ((note - 69) / 12)
            y += sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, harmonics + 1) if f * h < SR / 2)
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


@pytest.mark.parametrize("bpm", [180, 220])
def test_tempo_of_a_fast_click_track(bpm):
    """Above the prior's centre a metronome still reads at its own tempo, not half of it, and to 1 %."""
    estimate = estimate_tempo(clicks(bpm), SR)
    assert abs(estimate.bpm / bpm - 1) <= 0.01, estimate


@needs_rubberband
@pytest.mark.parametrize(("bpm", "ratio"), [(100, 1.25), (137, 0.8), (180, 0.8)])
def test_tempo_scales_with_a_rubberband_stretch(bpm, ratio, tmp_path):
    """A real time-stretcher's output (smeared clicks): 100 BPM played 1.25x longer is 80 BPM; 137 BPM
    played 0.8x as long is 171 BPM, above the prior's centre, not its half; 180 BPM so played is 225 BPM."""
    estimate = estimate_tempo(rubberband(clicks(bpm), tmp_path, "-t", str(ratio)), SR)
    assert within(estimate.bpm, bpm / ratio), estimate


@needs_rubberband
def test_the_metrical_level_stays_when_a_track_is_stretched(tmp_path):
    """Beats with off-beats at half their loudness: whichever level is read (beats or off-beats), the stretched
    copies are read at the same level, so their tempo scales by the stretch (what stretch consistency on real
    recordings measures)."""
    y = clicks(100, offbeat=0.5)
    original = estimate_tempo(y, SR).bpm
    for ratio in (0.8, 1.25):
        stretched = estimate_tempo(rubberband(y, tmp_path, "-t", str(ratio)), SR).bpm
        assert within(stretched * ratio, original), (ratio, original, stretched)


def test_tempo_of_silence_and_of_noise():
    assert np.isnan(estimate_tempo(np.zeros(10 * SR), SR).bpm) and estimate_tempo(np.zeros(10 * SR), SR).confidence == 0
    noise = np.random.default_rng(0).normal(0, 0.1, 20 * SR).astype(np.float32)
    assert estimate_tempo(noise, SR).confidence < 0.3 < estimate_tempo(clicks(120), SR).confidence


def test_tempo_does_not_depend_on_the_sample_rate():
    y = librosa.resample(clicks(137), orig_sr=SR, target_sr=22050)
    assert within(estimate_tempo(torch.from_numpy(y), 22050).bpm, 137)


@pytest.mark.parametrize("chroma", CHROMAS)
@pytest.mark.parametrize(("tonic", "mode"), [(0, "major"), (9, "minor")])
def test_key_of_a_cadence_and_of_its_transpositions(tonic, mode, chroma):
    for k in range(-3, 4):
        key = estimate_key(cadence((tonic + k) % 12, mode), SR, chroma=chroma)
        assert (key.tonic, key.mode) == ((tonic + k) % 12, mode), (k, key)
        assert key.confidence > 0.6 and 0.5 < key.mode_confidence <= 1


@needs_rubberband
@pytest.mark.parametrize("chroma", CHROMAS)
@pytest.mark.parametrize(("tonic", "mode", "k"), [(0, "major", 3), (9, "minor", -2)])
def test_key_moves_with_a_rubberband_pitch_shift(tonic, mode, k, chroma, tmp_path):
    key = estimate_key(rubberband(cadence(tonic, mode), tmp_path, "-p", str(k)), SR, chroma=chroma)
    assert (key.tonic, key.mode) == ((tonic + k) % 12, mode)


def test_the_harmonic_sum_reads_each_bin_at_twice_and_three_times_its_frequency():
    """Bin i gets 0.8 and 0.64 of bins 2i and 3i (the spectrum interpolated at 2f and 3f, which are bins);
    only bins below 2 kHz are summed."""
    assert HARMONIC_BINS * SR / CHROMA_FFT == HARMONIC_MAX_HZ == 2000  # bins 0-511, below 2 kHz
    magnitude = np.zeros((1, CHROMA_FFT // 2 + 1), np.float32)
    magnitude[0, [100, 200, 300]] = 1.0  # a note at bin 100 (391 Hz) and its second and third harmonics
    summed = harmonic_spectrum(magnitude)[0]
    assert summed.shape == (HARMONIC_BINS,)
    assert summed[100] == pytest.approx(1 + 0.8 + 0.64)  # the note gets its overtones
    assert summed[200] == pytest.approx(1.0) and summed[300] == pytest.approx(1.0)  # theirs (400, 600) are silent
    assert summed[50] == pytest.approx(0.8) and summed[150] == pytest.approx(0.8)  # octaves below 100 and 300
    assert np.flatnonzero(summed).tolist() == [50, 100, 150, 200, 300]  # 200 / 3 and 100 / 3 are not bins
    rng = np.random.default_rng(0)
    magnitude = rng.random((3, CHROMA_FFT // 2 + 1))
    bins = np.arange(magnitude.shape[1], dtype=np.float64)
    expected = sum(weight * np.stack([np.interp(k * bins[:HARMONIC_BINS], bins, row) for row in magnitude])
                   for k, weight in ((1, 1.0), (2, 0.8), (3, 0.64)))
    np.testing.assert_allclose(harmonic_spectrum(magnitude), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="reads"):
        harmonic_spectrum(magnitude[:, :HARMONIC_READ - 1])


def test_the_harmonic_chroma_is_librosas_chroma_of_the_squared_harmonic_sum():
    """The harmonic profile is librosa's ``chroma_stft`` (at the tuning of the plain power spectrogram) of
    (|X(f)| + 0.8 |X(2f)| + 0.64 |X(3f)|) ** 2 below 2 kHz, frames scaled to a maximum of 1 and averaged."""
    y = cadence(9, "minor", repeats=1, harmonics=10)
    magnitude = np.abs(librosa.stft(y, n_fft=CHROMA_FFT, hop_length=CHROMA_FFT // 2, pad_mode="constant"))
    tuning = librosa.estimate_tuning(S=magnitude ** 2, sr=SR, bins_per_octave=12)
    summed = np.zeros_like(magnitude)
    for k, weight in ((1, 1.0), (2, 0.8), (3, 0.64)):
        summed[:HARMONIC_BINS] += weight * magnitude[:k * HARMONIC_BINS:k]
    chroma = librosa.feature.chroma_stft(S=summed ** 2, sr=SR, n_fft=CHROMA_FFT, tuning=tuning).mean(axis=1)
    np.testing.assert_allclose(pitch_class_profile(y, SR, chroma="harmonic"), chroma, rtol=0, atol=1e-5)


@pytest.mark.parametrize("tonic", range(12))
def test_the_harmonic_chroma_hears_a_minor_cadence_of_bright_notes_as_minor(tonic):
    """Notes with a sawtooth's first ten harmonics: the tonic's fifth harmonic (two octaves and a major third
    up) sounds the major third that a minor key lacks, and the third and sixth the fifth. The harmonic chroma
    still finds the minor key on every tonic."""
    y = cadence(tonic, "minor", repeats=2, harmonics=10)
    key = estimate_key(y, SR, chroma="harmonic")
    assert (key.tonic, key.mode) == (tonic, "minor"), key
    assert key.mode_confidence > 0.5


@needs_rubberband
@pytest.mark.parametrize("k", [-3, 2])
def test_the_harmonic_chroma_moves_with_a_rubberband_pitch_shift_of_bright_notes(k, tmp_path):
    shifted = rubberband(cadence(9, "minor", repeats=2, harmonics=10), tmp_path, "-p", str(k))
    assert estimate_key(shifted, SR, chroma="harmonic")[:2] == ((9 + k) % 12, "minor")


def test_an_unknown_chroma_is_refused_and_annotate_uses_the_default():
    with pytest.raises(ValueError, match="chroma must be one of"):
        estimate_key(cadence(2, "major"), SR, chroma="cqt")
    y = cadence(4, "minor", repeats=1, harmonics=10)
    assert estimate_tempo_key(y, SR)[1] == estimate_key(y, SR, chroma=KEY_CHROMA)


def test_both_profiles_read_a_profile_back_and_refuse_an_unknown_name():
    profile = torch.tensor(np.roll(KEY_PROFILES["minor"], 4), dtype=torch.float32).unsqueeze(0)
    fits = key_fits(profile, key_templates())[0]
    assert divmod(int(fits.flatten().argmax()), 12) == (1, 4)
    assert estimate_key(cadence(2, "major"), SR, profiles="temperley")[:2] == (2, "major")
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


def test_the_spectra_are_librosas_and_only_the_central_minute_is_read():
    """The numpy spectra and the band-limited tuning estimate give librosa's onset strength and chroma to
    float32 rounding; a recording longer than a minute is judged on its middle minute."""
    y = cadence(9, "minor") + clicks(100, 12.0)
    reference = librosa.onset.onset_strength(y=y, sr=SR, hop_length=SR // 100, n_fft=1024, n_mels=64)
    np.testing.assert_allclose(onset_envelope(y), reference, rtol=0, atol=1e-4 * reference.max())
    chroma = librosa.feature.chroma_stft(y=y, sr=SR, n_fft=4096, hop_length=2048).mean(axis=1)
    np.testing.assert_allclose(pitch_class_profile(y, SR, chroma="stft"), chroma, rtol=0, atol=1e-5)
    middle = clicks(137, 60.0)
    framed = np.concatenate([np.zeros(30 * SR, np.float32), middle, clicks(90, 30.0)])
    assert estimate_tempo(framed, SR) == estimate_tempo(middle, SR)


# A tagger that reads 16 kHz, as the pretrained and distilled ones do: annotate hands the estimators the wave
# it decoded for the model.
VOCAB = {"groups": {"genre": {"type": "multilabel", "labels": ["one", "two"]}}}


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    torch.manual_seed(0)
    model = AudioTagger(VOCAB, backbone="tiny", width=4, embedding_dim=8, sample_rate=SR, n_fft=512,
                        hop_length=256, n_mels=32, chunk_seconds=1.0, eval_chunks=3).eval()
    path = tmp_path_factory.mktemp("tagger") / "model"
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    """A click track at 137 BPM, a cadence in A minor, silence, a 0.3 s blip and a file that is not audio."""
    root = tmp_path_factory.mktemp("uploads")
    soundfile.write(root / "clicks.wav", clicks(137), SR)
    soundfile.write(root / "cadence.flac", cadence(9, "minor"), SR)
    soundfile.write(root / "silent.wav", np.zeros(5 * SR, np.float32), SR)
    soundfile.write(root / "blip.wav", cadence(0, "major")[:int(0.3 * SR)], SR)
    (root / "text.wav").write_text("not audio\n" * 50)
    return root


def _annotate(uploads, tagger, out, *extra):
    assert cli_main([str(uploads), "--model", str(tagger), "--out", str(out), "--workers", "1", "--no-progress",
                     *extra]) == 0
    return read_annotations(out).to_pandas().set_index("id")


def test_annotate_records_the_tempo_and_key_it_was_given(uploads, tagger, tmp_path):
    records = _annotate(uploads, tagger, tmp_path / "out")
    tempo = records.loc["clicks.wav", "tempo"]
    assert abs(tempo["bpm"] / 137 - 1) <= 0.02 and tempo["confidence"] > 0.7, tempo
    key = records.loc["cadence.flac", "key"]
    assert (key["tonic"], key["mode"]) == ("A", "minor") and key["confidence"] > 0.6, key
    assert 0.5 < key["mode_confidence"] <= 1
    assert abs(records.loc["cadence.flac", "tempo"]["bpm"] / 60 - 1) <= 0.02  # a chord a second
    # Nothing to estimate from silence or from 0.3 s: null, and no error.
    for name in ("silent.wav", "blip.wav"):
        assert records.loc[name, "error"] is None
        assert records.loc[name, "tempo"] is None and records.loc[name, "key"] is None, name
    assert records.loc["text.wav", "error"]["type"] == "AudioDecodeError"
    assert records.loc["text.wav", "tempo"] is None and records.loc["text.wav", "key"] is None


def test_no_tempo_key_leaves_the_columns_null(uploads, tagger, tmp_path):
    records = _annotate(uploads, tagger, tmp_path / "out", "--no-tempo-key")
    assert records["tempo"].isna().all() and records["key"].isna().all()
    assert records.loc["clicks.wav", "genre"] is not None  # the model's columns are there as ever


def test_a_streamed_file_gets_the_tempo_and_key_of_its_whole_decode(uploads, tagger):
    model = AudioTagger.from_pretrained(tagger)
    clicks_path = str(uploads / "clicks.wav")
    whole = TrackReader.for_tagger(model, tempo_key=True)(clicks_path)
    streamed = TrackReader.for_tagger(model, tempo_key=True, stream_above_seconds=1.0)(clicks_path)
    assert abs(streamed.tempo.bpm / whole.tempo.bpm - 1) < 1e-3 and streamed.key[:2] == whole.key[:2]
    assert TrackReader.for_tagger(model)(clicks_path).tempo is None  # a reader for features does not estimate
    assert estimate_tempo_key(np.zeros(10 * SR), SR)[1] is None
