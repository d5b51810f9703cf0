"""Global tempo and key of a recording by signal processing: `estimate_tempo` and `estimate_key`.

No weights, nothing learnt from our synthesized catalogs, so they read real recordings as well as toy ones
and cost a fraction of a tagger's time. Built from librosa (ISC licence, well kept, already the project's
benchmark dependency):

- Tempo: librosa's onset strength (`librosa.onset.onset_strength`: log-mel spectral flux, the
  detection function of its own `beat.beat_track` and `feature.tempo`) at 100 frames a second, its
  autocorrelation in 8-second windows averaged over the track (an autocorrelation tempogram, as
  `librosa.feature.tempogram` computes it), weighted by a log-normal prior around 120 BPM with one octave
  of spread (Ellis, "Beat tracking by dynamic programming", JNMR 2007, the prior `feature.tempo` uses),
  and the best lag refined by parabolic interpolation, so the 4 % tolerance of MIREX is not spent on the
  frame grid. Confidence: the mean normalised autocorrelation at that lag (1 for a metronome, near 0
  when nothing repeats).
- Key: librosa's STFT chroma (`librosa.feature.chroma_stft`, 256 ms frames, with its tuning estimate and
  each frame scaled to a maximum of 1, so loud passages do not outvote the rest), averaged over the track
  into a pitch-class profile, correlated with the 24 keys' profiles of `tagging.keys`
  (Krumhansl-Schmuckler key finding; Temperley's 1999 profiles by default, Krumhansl-Kessler's on
  request). Confidence: the winning key's correlation; mode confidence: 0.5 + half the winning key's
  lead over the best key of the other mode (0.5 when both modes fit equally, towards 1 when one does).
  The constant-Q chroma (`chroma_cqt`) was tried first: on the smoke check's warzone2100 tracks, its key
  moved with a rubberband pitch shift in only 1/3 to 1/2 of the shifts, the STFT chroma's in all of them.

Left out: learned tempo models with non-commercial or AGPL terms (tempocnn, madmom), and the `basic-pitch`
ONNX pitch model (Apache-2.0) as a pitch-salience front end for key, which would add onnxruntime.
Both estimators take a mono wave at any sample rate and resample to `ANALYSIS_RATE`, so a track gets the
same values whichever tagger's rate it was decoded at.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from tagging.keys import MODES, PROFILES, key_fits, key_templates

ANALYSIS_RATE = 16000
TEMPO_FPS = 100  # onset frames per second: a lag step is ~2 % of the period at 200 BPM, refined below
TEMPO_WINDOW_SECONDS = 8.0
TEMPO_RANGE = (30.0, 300.0)
PRIOR_BPM, PRIOR_OCTAVES = 120.0, 1.0
CHROMA_FFT, CHROMA_HOP = 4096, 2048  # 256 ms frames: 4 Hz bins, a semitone apart from ~70 Hz up


class Tempo(NamedTuple):
    bpm: float  # nan for audio with no onsets
    confidence: float  # in [0, 1]


class Key(NamedTuple):
    tonic: int  # pitch class, 0 = C
    mode: str  # "major" or "minor"
    confidence: float  # the key profile's correlation with the track's, in [0, 1]
    mode_confidence: float  # in [0.5, 1]


def _mono(wave, sample_rate: int) -> np.ndarray:
    """A mono wave (tensor or array, ``(time,)``) -> float32 numpy at `ANALYSIS_RATE`."""
    import librosa

    if sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
    y = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    if y.ndim != 1:
        raise ValueError(f"expected a mono wave (time,), got shape {y.shape}")
    y = y.astype(np.float32)
    if sample_rate != ANALYSIS_RATE:
        y = librosa.resample(y, orig_sr=sample_rate, target_sr=ANALYSIS_RATE, res_type="soxr_hq")
    return y


def onset_envelope(y: np.ndarray) -> np.ndarray:
    """A wave at `ANALYSIS_RATE` -> its onset strength at `TEMPO_FPS` frames a second."""
    import librosa

    return librosa.onset.onset_strength(y=y, sr=ANALYSIS_RATE, hop_length=ANALYSIS_RATE // TEMPO_FPS, n_fft=1024,
                                        n_mels=64)


def tempo_curve(envelope: np.ndarray) -> np.ndarray:
    """Onset strength ``(frames,)`` -> the mean autocorrelation of its Hann-windowed 8-second windows (half
    overlapping), each normalised to 1 at lag 0: ``(window,)``, index = lag in frames."""
    import librosa

    window = int(TEMPO_WINDOW_SECONDS * TEMPO_FPS)
    if len(envelope) < window:
        envelope = np.pad(envelope, (0, window - len(envelope)))
    frames = librosa.util.frame(envelope, frame_length=window, hop_length=window // 2, axis=0)  # (n, window)
    frames = (frames - frames.mean(axis=1, keepdims=True)) * np.hanning(window)
    acf = librosa.autocorrelate(frames, axis=1)
    energy = acf[:, :1]
    kept = energy[:, 0] > 1e-10  # silent windows say nothing about the tempo
    if not kept.any():
        return np.zeros(window)
    return (acf[kept] / energy[kept]).mean(axis=0)


def tempo_prior(bpm: np.ndarray) -> np.ndarray:
    """The log-normal weight of each tempo: 1 at `PRIOR_BPM`, e^-1/2 an octave (`PRIOR_OCTAVES`) away."""
    return np.exp(-0.5 * (np.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)


def estimate_tempo(wave, sample_rate: int) -> Tempo:
    """A mono recording ``(time,)`` -> its global tempo in BPM and a confidence in [0, 1]."""
    curve = tempo_curve(onset_envelope(_mono(wave, sample_rate)))
    lags = np.arange(len(curve), dtype=np.float64)
    with np.errstate(divide="ignore"):
        bpm = 60.0 * TEMPO_FPS / lags
    usable = (bpm >= TEMPO_RANGE[0]) & (bpm <= TEMPO_RANGE[1])
    score = np.where(usable, np.clip(curve, 0, None) * tempo_prior(np.where(usable, bpm, PRIOR_BPM)), 0.0)
    best = int(score.argmax())
    if score[best] <= 0:
        return Tempo(float("nan"), 0.0)
    lag = float(best)
    if 0 < best < len(score) - 1:  # the vertex of the parabola through the peak and its neighbours
        left, centre, right = score[best - 1], score[best], score[best + 1]
        bend = left - 2 * centre + right
        if bend < 0:
            lag += float(np.clip(0.5 * (left - right) / bend, -0.5, 0.5))
    return Tempo(60.0 * TEMPO_FPS / lag, float(np.clip(curve[best], 0.0, 1.0)))


def pitch_class_profile(wave, sample_rate: int) -> np.ndarray:
    """A mono recording -> its mean chroma, ``(12,)`` with C first."""
    import librosa

    y = _mono(wave, sample_rate)
    if not np.any(y):
        return np.zeros(12)
    chroma = librosa.feature.chroma_stft(y=y, sr=ANALYSIS_RATE, n_fft=CHROMA_FFT, hop_length=CHROMA_HOP)
    return chroma.mean(axis=1)


def key_of_profile(profile: np.ndarray, profiles: str = "temperley") -> Key:
    """A 12-bin pitch-class profile -> the best of the 24 keys under ``profiles`` (a name of
    `tagging.keys.PROFILES`), with its confidences."""
    if profiles not in PROFILES:
        raise ValueError(f"profiles must be one of {sorted(PROFILES)}, got {profiles!r}")
    fits = key_fits(torch.as_tensor(profile, dtype=torch.float32).reshape(1, 12),
                    key_templates(PROFILES[profiles]))[0].double().numpy()  # (2, 12): [mode, tonic]
    mode, tonic = divmod(int(fits.argmax()), 12)
    lead = fits[mode].max() - fits[1 - mode].max()
    return Key(tonic, MODES[mode], float(np.clip(fits[mode, tonic], 0.0, 1.0)), float(min(1.0, 0.5 + lead / 2)))


def estimate_key(wave, sample_rate: int, profiles: str = "temperley") -> Key:
    """A mono recording ``(time,)`` -> its key: tonic pitch class (0 = C), mode and confidences."""
    return key_of_profile(pitch_class_profile(wave, sample_rate), profiles)


def mirex_tempo_accuracy(estimate: float, truth: float, tolerance: float = 0.04) -> tuple[bool, bool]:
    """MIREX tempo Accuracy1 (``estimate`` within ``tolerance`` of ``truth``) and Accuracy2 (within it of
    ``truth`` times 1, 2, 1/2, 3 or 1/3: an error of metrical level forgiven) for one track."""
    if not truth > 0:
        raise ValueError(f"a true tempo is > 0 BPM, got {truth}")
    if not np.isfinite(estimate):
        return False, False
    within = [abs(estimate / (truth * factor) - 1) <= tolerance for factor in (1, 2, 1 / 2, 3, 1 / 3)]
    return within[0], any(within)
