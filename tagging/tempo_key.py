"""Global tempo and key of a recording by signal processing: `estimate_tempo` and `estimate_key`.

No weights, nothing learnt from our synthesized catalogs, so they read real recordings as well as toy ones
and cost a fraction of a tagger's time. Built from librosa (ISC licence, well kept, already the project's
benchmark dependency):

- Tempo: librosa's onset strength (`librosa.onset.onset_strength`: log-mel spectral flux, the
  detection function of its own `beat.beat_track` and `feature.tempo`) at 100 frames a second, its
  autocorrelation in 8-second windows averaged over the track (an autocorrelation tempogram, as
  `librosa.feature.tempogram` computes it) times the windows' mean magnitude spectrum at the same rate (a
  Fourier tempogram: the product keeps the beat and shrinks its multiples and fractions, which only one of
  the two favours; Peeters, EURASIP JASP 2007), weighted by a log-normal prior around 120 BPM with one
  octave of spread (Ellis, "Beat tracking by dynamic programming", JNMR 2007, the prior `feature.tempo`
  uses), and the best lag refined by parabolic interpolation, so the 4 % tolerance of MIREX is not spent on
  the frame grid. The product was chosen on the real recordings' training albums: a time-stretched track's
  tempo scaled with the stretch in 0.780 of the stretches with it, 0.708 with the autocorrelation alone
  (docs/attributes.md). Confidence: the mean normalised autocorrelation at that lag (1 for a metronome, near 0
  when nothing repeats).
- Key: a harmonic-sum chroma by default (``chroma="harmonic"``): on the power spectrogram's 256 ms frames,
  each bin below 2 kHz's magnitude plus 0.8 and 0.64 of the magnitude at twice and three times its
  frequency, squared, so a note's overtones count for the note; through librosa's chroma filterbank at the
  tuning librosa's estimate finds, each frame scaled to a maximum of 1 (so loud passages do not outvote the
  rest). ``chroma="stft"`` is librosa's STFT chroma (`librosa.feature.chroma_stft`) the same way, the
  default until the training albums' run of docs/attributes.md: the key moved with a pitch shift in 0.866 of
  the training albums' shifts with the harmonic chroma, 0.855 with the STFT chroma (a margin within the
  noise of 118 tracks; the toy's validation split gave 0.907 and 0.869). The chroma is averaged over the
  track into a pitch-class profile, correlated with the 24 keys' profiles of `tagging.keys`
  (Krumhansl-Schmuckler key finding; Krumhansl-Kessler's profiles by default, Temperley's 1999 on
  request: with the STFT chroma the key moved in 0.855 of those shifts with the first, 0.840 with the
  second). Confidence: the winning key's correlation;
  mode confidence: 0.5 + half the winning key's lead over the best key of the other mode (0.5 when both
  modes fit equally, towards 1 when one does).
  The constant-Q chroma (`chroma_cqt`) was tried first: on the smoke check's warzone2100 tracks, its key
  moved with a rubberband pitch shift in only 1/3 to 1/2 of the shifts, the STFT chroma's in all of them.

Left out: learned tempo models with non-commercial or AGPL terms (tempocnn, madmom), and the `basic-pitch`
ONNX pitch model (Apache-2.0) as a pitch-salience front end for key, which would add onnxruntime.

Cost: both read at most the central `ANALYSIS_SECONDS` (60 s) of a recording, at `ANALYSIS_RATE` (16 kHz,
the rate a 16 kHz tagger's `coldtag annotate` already decodes at, so there is nothing to resample there; a
wave at another rate is cut first, then resampled). The spectrograms are numpy's own (`scipy.fft.rfft` over
strided frames) with the mel and chroma filterbanks built once, and the tuning estimate (librosa's
`estimate_tuning`: parabolic peak picking over the whole spectrogram) computed only in its 150-4000 Hz band;
each gives librosa's numbers to float32 rounding at a fraction of its cost (benchmarks/tempo_key.py).
`estimate_tempo_key` gives both from one conversion. The two need different spectrograms (10 ms hops for
onsets, 4 Hz bins for chroma), so they do not share one.
"""

from __future__ import annotations

import fcntl
import importlib
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.fft
import scipy.sparse
import torch

from tagging.keys import MODES, PROFILES, key_fits, key_templates

ANALYSIS_RATE = 16000
ANALYSIS_SECONDS = 60.0  # at most the central minute of a recording is analysed
TEMPO_FPS = 100  # onset frames per second: a lag step is ~2 % of the period at 200 BPM, refined below
TEMPO_WINDOW_SECONDS = 8.0
TEMPO_DFT_PADDING = 4  # the windows' spectra are read between bins ~1.9 BPM apart
TEMPO_RANGE = (30.0, 300.0)
PRIOR_BPM, PRIOR_OCTAVES = 120.0, 1.0
ONSET_FFT, ONSET_MELS = 1024, 64  # 64 ms frames, 64 mel bands up to 8 kHz
CHROMA_FFT, CHROMA_HOP = 4096, 2048  # 256 ms frames: 4 Hz bins, a semitone apart from ~70 Hz up
TUNING_BAND = (150.0, 4000.0)  # Hz: where librosa's tuning estimate looks for spectral peaks
CHROMAS = ("stft", "harmonic")  # the key's pitch-class front ends (`profile_of_wave`)
KEY_CHROMA = "harmonic"  # the one `estimate_key` and `estimate_tempo_key` use unless told
HARMONIC_WEIGHTS = (1.0, 0.8, 0.64)  # a bin's magnitude, then its second and third harmonics'
HARMONIC_MAX_HZ = 2000.0  # the harmonic chroma reads bins below this (their third harmonics below 6 kHz)
HARMONIC_BINS = int(np.ceil(HARMONIC_MAX_HZ * CHROMA_FFT / ANALYSIS_RATE))  # 512: bins 0-511, below 2 kHz
HARMONIC_READ = len(HARMONIC_WEIGHTS) * (HARMONIC_BINS - 1) + 1  # the bins the sum reads: up to 3 x 511
TOP_DB = 80.0
BLOCK_BYTES = 1 << 20  # frames whose spectra are taken at once: a cache-sized block (256 of 1024 samples)


class Tempo(NamedTuple):
    bpm: float  # nan for audio with no onsets
    confidence: float  # in [0, 1]


class Key(NamedTuple):
    tonic: int  # pitch class, 0 = C
    mode: str  # "major" or "minor"
    confidence: float  # the key profile's correlation with the track's, in [0, 1]
    mode_confidence: float  # in [0.5, 1]


@lru_cache(maxsize=1)
def load():
    """The librosa module, with the parts the estimators use imported (about 2 s; a reader calls this before
    its first track, so that the track's time is its own).

    Importing a librosa module compiles its numba gufuncs and saves them in numba's cache. Two processes
    doing that at once (the decoding workers or DDP ranks of a fresh install) can save a mismatched pair of
    cache files that crashes every later process (numba#10128), so the first import waits for a lock that
    every process of the machine shares (`warm_cache` fills the whole cache at installation)."""
    with open(Path(tempfile.gettempdir()) / "coldtag-librosa-import.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        librosa = importlib.import_module("librosa")
        # librosa loads its modules lazily: touch those the estimators call, under the lock too.
        for name in ("resample", "autocorrelate", "pitch_tuning", "filters", "util"):
            getattr(librosa, name)
    return librosa


def warm_cache() -> None:
    """Import every librosa module once, alone, so that numba's cache holds all of librosa's compiled
    functions before any two processes could write it (``make setup`` calls this after installing)."""
    import pkgutil

    librosa = load()
    for module in pkgutil.walk_packages(librosa.__path__, "librosa."):
        if "._" not in module.name:
            importlib.import_module(module.name)


def central_range(length: int, sample_rate: int) -> tuple[int, int]:
    """``(start, stop)``: the samples of a ``length``-sample recording that are analysed, its central
    `ANALYSIS_SECONDS` (all of it when shorter)."""
    samples = int(ANALYSIS_SECONDS * sample_rate)
    start = max(0, (length - samples) // 2)
    return start, min(length, start + samples)


def _mono(wave, sample_rate: int) -> np.ndarray:
    """A mono wave (tensor or array, ``(time,)``) -> its central `ANALYSIS_SECONDS`, float32 numpy at
    `ANALYSIS_RATE`."""
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
    y = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    if y.ndim != 1:
        raise ValueError(f"expected a mono wave (time,), got shape {y.shape}")
    start, stop = central_range(len(y), sample_rate)
    y = y[start:stop].astype(np.float32)
    if sample_rate != ANALYSIS_RATE:
        y = load().resample(y, orig_sr=sample_rate, target_sr=ANALYSIS_RATE, res_type="soxr_hq")
    return y


@lru_cache(maxsize=4)
def _hann(n_fft: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic, as librosa's


def _frames(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """``(time,)`` -> ``(frames, n_fft)``, a view: frames centred every ``hop`` samples, zero padded at the
    ends, as librosa's ``stft(center=True, pad_mode="constant")`` cuts them."""
    padded = np.pad(y.astype(np.float32, copy=False), n_fft // 2)
    return np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]


def _power(frames: np.ndarray) -> np.ndarray:
    """``(frames, n_fft)`` -> ``(frames, n_fft // 2 + 1)``: the power spectrum of each Hann-windowed frame."""
    spectrum = scipy.fft.rfft(frames * _hann(frames.shape[1]), axis=1)
    return spectrum.real ** 2 + spectrum.imag ** 2


def _block_powers(frames: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """Each block of ``frames`` whose windowed copy fits `BLOCK_BYTES` (the cache): its slice of the frames
    and its `_power`."""
    step = max(1, BLOCK_BYTES // (4 * frames.shape[1]))
    for start in range(0, len(frames), step):
        block = slice(start, start + step)
        yield block, _power(frames[block])


def power_spectrogram(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """``(time,)`` -> ``(frames, n_fft // 2 + 1)``: librosa's ``abs(stft(y, n_fft, hop)) ** 2``, frames first,
    taken a cache-sized block of frames at a time."""
    frames = _frames(y, n_fft, hop)
    power = np.empty((len(frames), n_fft // 2 + 1), np.float32)
    for block, block_power in _block_powers(frames):
        power[block] = block_power
    return power


@lru_cache(maxsize=1)
def _mel_filters() -> scipy.sparse.csr_matrix:
    """``(mels, bins)``, sparse: each bin feeds at most two triangles, so a sparse product costs ~1/30 of a
    dense one."""
    return scipy.sparse.csr_matrix(load().filters.mel(sr=ANALYSIS_RATE, n_fft=ONSET_FFT, n_mels=ONSET_MELS,
                                                      fmax=ANALYSIS_RATE / 2))


@lru_cache(maxsize=128)
def _chroma_filters(tuning: float) -> np.ndarray:
    return load().filters.chroma(sr=ANALYSIS_RATE, n_fft=CHROMA_FFT, tuning=tuning, n_chroma=12).astype(np.float32)


def onset_envelope(y: np.ndarray) -> np.ndarray:
    """A wave at `ANALYSIS_RATE` -> its onset strength at `TEMPO_FPS` frames a second: librosa's
    ``onset.onset_strength(y, n_fft=1024, n_mels=64)`` (the mean over mel bands of the rise in dB from one
    frame to the next, 80 dB below the loudest band floored). Each block of spectra is reduced to its mel
    bands while it is in the cache."""
    hop = ANALYSIS_RATE // TEMPO_FPS
    frames = _frames(y, ONSET_FFT, hop)
    mel = np.empty((ONSET_MELS, len(frames)), np.float32)
    for block, block_power in _block_powers(frames):
        mel[:, block] = _mel_filters() @ block_power.T
    db = 10 * np.log10(np.maximum(mel, 1e-10))  # (mels, frames)
    db = np.maximum(db, db.max() - TOP_DB)
    flux = np.maximum(0.0, np.diff(db, axis=1)).mean(axis=0)  # (frames - 1,)
    return np.pad(flux, (1 + ONSET_FFT // (2 * hop), 0))[:db.shape[1]]  # centred on the frames, as librosa pads


def tempo_curves(envelope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Onset strength ``(frames,)`` -> two tempograms over its Hann-windowed 8-second windows (half
    overlapping), each ``(window,)``, index = lag in frames:

    - the mean autocorrelation of the windows, each normalised to 1 at lag 0: it peaks at the beat period and
      at its multiples (half, a third of the tempo);
    - the mean magnitude spectrum of the windows (zero padded to `TEMPO_DFT_PADDING` times their length, each
      scaled to a maximum of 1), read at the frequency 1 / lag: it peaks at the beat rate and at its multiples
      (twice, three times the tempo).

    A metrical level the one favours by mistake the other does not, so their product keeps the beat and
    shrinks the other levels (Peeters, "Template-based estimation of time-varying tempo", EURASIP JASP 2007).
    Both are zero when every window is silent."""
    librosa = load()
    window = int(TEMPO_WINDOW_SECONDS * TEMPO_FPS)
    if len(envelope) < window:
        envelope = np.pad(envelope, (0, window - len(envelope)))
    frames = librosa.util.frame(envelope, frame_length=window, hop_length=window // 2, axis=0)  # (n, window)
    frames = (frames - frames.mean(axis=1, keepdims=True)) * np.hanning(window)
    acf = librosa.autocorrelate(frames, axis=1)
    energy = acf[:, :1]
    kept = energy[:, 0] > 1e-10  # silent windows say nothing about the tempo
    if not kept.any():
        return np.zeros(window), np.zeros(window)
    spectrum = np.abs(np.fft.rfft(frames[kept], n=TEMPO_DFT_PADDING * window, axis=1))  # (n, bins)
    spectrum = (spectrum / spectrum.max(axis=1, keepdims=True)).mean(axis=0)
    with np.errstate(divide="ignore"):
        rate = 1.0 / np.arange(window)  # beats per frame at each lag (inf at lag 0, read as 0 below)
    bins = np.arange(len(spectrum)) / (TEMPO_DFT_PADDING * window)
    return (acf[kept] / energy[kept]).mean(axis=0), np.interp(rate, bins, spectrum, right=0.0)


def tempo_prior(bpm: np.ndarray) -> np.ndarray:
    """The log-normal weight of each tempo: 1 at `PRIOR_BPM`, e^-1/2 an octave (`PRIOR_OCTAVES`) away."""
    return np.exp(-0.5 * (np.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)


def estimate_tempo(wave, sample_rate: int) -> Tempo:
    """A mono recording ``(time,)`` -> its global tempo in BPM and a confidence in [0, 1]."""
    return tempo_of_wave(_mono(wave, sample_rate))


def tempo_of_wave(y: np.ndarray) -> Tempo:
    """`estimate_tempo` of a wave already at `ANALYSIS_RATE`."""
    return tempo_of_envelope(onset_envelope(y))


def tempo_of_envelope(envelope: np.ndarray) -> Tempo:
    """The tempo of an onset strength at `TEMPO_FPS` frames a second."""
    curve, spectrum = tempo_curves(envelope)
    lags = np.arange(len(curve), dtype=np.float64)
    with np.errstate(divide="ignore"):
        bpm = 60.0 * TEMPO_FPS / lags
    usable = (bpm >= TEMPO_RANGE[0]) & (bpm <= TEMPO_RANGE[1])
    evidence = np.clip(curve, 0, None) * spectrum
    score = np.where(usable, evidence * tempo_prior(np.where(usable, bpm, PRIOR_BPM)), 0.0)
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


def estimate_tuning(power: np.ndarray) -> float:
    """A ``(frames, bins)`` power spectrogram of `CHROMA_FFT`-sample frames -> the deviation from A440 in
    fractions of a semitone, as librosa's ``estimate_tuning(S=power.T)`` finds it (the spectral peaks above a
    tenth of their frame's maximum, placed by parabolic interpolation, the louder half of them histogrammed by
    their distance to the nearest semitone), computed in `TUNING_BAND` only, where librosa keeps its peaks."""
    librosa = load()
    freqs = np.arange(power.shape[1]) * ANALYSIS_RATE / CHROMA_FFT
    band = np.flatnonzero((freqs >= TUNING_BAND[0]) & (freqs < TUNING_BAND[1]))
    lo, hi = band[0], band[-1] + 1
    s = power[:, lo - 1:hi + 1]  # (frames, band + 2): the band and a neighbour on each side
    above = s * (s > 0.1 * power.max(axis=1, keepdims=True))
    peak = (above[:, 1:-1] > above[:, :-2]) & (above[:, 1:-1] >= above[:, 2:])
    left, centre, right = s[:, :-2], s[:, 1:-1], s[:, 2:]
    bend, slope = right + left - 2 * centre, (right - left) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(slope) < np.abs(bend), -slope / bend, 0.0)
    magnitude = (centre + 0.5 * slope * shift)[peak]
    if not magnitude.size:
        return 0.0
    pitch = (np.arange(lo, hi) + shift)[peak] * ANALYSIS_RATE / CHROMA_FFT
    return float(librosa.pitch_tuning(pitch[magnitude >= np.median(magnitude)], resolution=0.01, bins_per_octave=12))


def harmonic_spectrum(magnitude: np.ndarray) -> np.ndarray:
    """``(frames, bins)`` magnitude spectra of `CHROMA_FFT`-sample frames -> ``(frames, HARMONIC_BINS)``: each
    bin below `HARMONIC_MAX_HZ` summed with `HARMONIC_WEIGHTS` of the magnitude at twice and three times its
    frequency, so that a note's second and third harmonics (its octave and twelfth) count for the note too, not
    only for the pitch classes they sound. The spectrum read at k times bin i's frequency by linear
    interpolation is bin k·i itself, so the bins are read directly."""
    if magnitude.shape[1] < HARMONIC_READ:
        raise ValueError(f"the harmonic sum reads {HARMONIC_READ} bins, got {magnitude.shape[1]}")
    summed = HARMONIC_WEIGHTS[0] * magnitude[:, :HARMONIC_BINS]
    for k, weight in enumerate(HARMONIC_WEIGHTS[1:], start=2):
        summed = summed + weight * magnitude[:, :k * HARMONIC_BINS:k]  # bins 0, k, 2k, ..., k (HARMONIC_BINS - 1)
    return summed


def pitch_class_profile(wave, sample_rate: int, chroma: str = KEY_CHROMA) -> np.ndarray:
    """A mono recording -> its mean chroma, ``(12,)`` with C first (``chroma``: one of `CHROMAS`, see
    `profile_of_wave`)."""
    return profile_of_wave(_mono(wave, sample_rate), chroma)


def profile_of_wave(y: np.ndarray, chroma: str = KEY_CHROMA) -> np.ndarray:
    """`pitch_class_profile` of a wave already at `ANALYSIS_RATE`, with one of two chroma front ends, both on
    the power spectrogram's frames (256 ms, 4 Hz bins) and librosa's chroma filterbank at the tuning
    estimated from that spectrogram, each frame scaled to a maximum of 1 and the frames averaged:

    - ``"stft"``: librosa's ``feature.chroma_stft(y, n_fft=4096, hop_length=2048)``, the power of every bin;
    - ``"harmonic"``: the magnitude (square root of the power) of each bin below `HARMONIC_MAX_HZ` plus 0.8
      and 0.64 of the magnitude at two and three times its frequency (`harmonic_spectrum`), squared back
      into a power, so that tonal peaks weigh against broadband sound as much as in the STFT chroma. Left
      a magnitude, broadband sound weighs far more, and its chroma is not flat (a pitch class high in the
      octave spans more bins than one low in it): a profile that does not move with a pitch shift. On the
      training albums' shifts the key moved in 0.609 of them with the sum left a magnitude, 0.866 with it
      squared, 0.863 with powers summed instead of magnitudes (docs/attributes.md)."""
    if chroma not in CHROMAS:
        raise ValueError(f"chroma must be one of {CHROMAS}, got {chroma!r}")
    if not np.any(y):
        return np.zeros(12)
    power = power_spectrogram(y, CHROMA_FFT, CHROMA_HOP)  # (frames, bins)
    filters = _chroma_filters(round(estimate_tuning(power), 2))  # (12, bins)
    if chroma == "harmonic":
        power = harmonic_spectrum(np.sqrt(power[:, :HARMONIC_READ])) ** 2
        filters = filters[:, :HARMONIC_BINS]
    # einsum's own loop: numpy's threaded BLAS stalls on a busy machine for products this small
    frames = np.einsum("cf,tf->tc", filters, power)  # (frames, 12)
    peak = frames.max(axis=1, keepdims=True)
    frames = np.divide(frames, peak, out=np.zeros_like(frames), where=peak > np.finfo(np.float32).tiny)
    return frames.mean(axis=0)


def key_of_profile(profile: np.ndarray, profiles: str = "krumhansl") -> Key:
    """A 12-bin pitch-class profile -> the best of the 24 keys under ``profiles`` (a name of
    `tagging.keys.PROFILES`), with its confidences."""
    if profiles not in PROFILES:
        raise ValueError(f"profiles must be one of {sorted(PROFILES)}, got {profiles!r}")
    fits = key_fits(torch.as_tensor(profile, dtype=torch.float32).reshape(1, 12),
                    key_templates(PROFILES[profiles]))[0].double().numpy()  # (2, 12): [mode, tonic]
    mode, tonic = divmod(int(fits.argmax()), 12)
    lead = fits[mode].max() - fits[1 - mode].max()
    return Key(tonic, MODES[mode], float(np.clip(fits[mode, tonic], 0.0, 1.0)), float(min(1.0, 0.5 + lead / 2)))


def estimate_key(wave, sample_rate: int, profiles: str = "krumhansl", chroma: str = KEY_CHROMA) -> Key:
    """A mono recording ``(time,)`` -> its key: tonic pitch class (0 = C), mode and confidences (``chroma``:
    one of `CHROMAS`, see `profile_of_wave`)."""
    return key_of_profile(pitch_class_profile(wave, sample_rate, chroma), profiles)


def estimate_tempo_key(wave, sample_rate: int, chroma: str = KEY_CHROMA) -> tuple[Tempo, Key | None]:
    """`estimate_tempo` and `estimate_key` of one recording from one conversion; the key is None for
    silence, which has no pitch classes."""
    y = _mono(wave, sample_rate)
    profile = profile_of_wave(y, chroma)
    return tempo_of_wave(y), (key_of_profile(profile) if profile.any() else None)


def mirex_tempo_accuracy(estimate: float, truth: float, tolerance: float = 0.04) -> tuple[bool, bool]:
    """MIREX tempo Accuracy1 (``estimate`` within ``tolerance`` of ``truth``) and Accuracy2 (within it of
    ``truth`` times 1, 2, 1/2, 3 or 1/3: an error of metrical level forgiven) for one track."""
    if not truth > 0:
        raise ValueError(f"a true tempo is > 0 BPM, got {truth}")
    if not np.isfinite(estimate):
        return False, False
    within = [abs(estimate / (truth * factor) - 1) <= tolerance for factor in (1, 2, 1 / 2, 3, 1 / 3)]
    return within[0], any(within)
