"""Sound sources: each function makes one note or one drum hit, as a float32 array; none knows the beat.

Karplus-Strong plucked strings (Karplus & Strong, "Digital Synthesis of Plucked-String and Drum Timbres",
Computer Music Journal 7(2), 1983), a struck string of stretched partials, band-limited saws (polyBLEP),
the Rosenberg glottal pulse (Rosenberg, JASA 49, 1971) and formant resonators as in a cascade formant
synthesizer (Klatt, JASA 67, 1980), and noise-based drums.
"""

import math

import numpy as np
from scipy import signal

# (frequency Hz, bandwidth Hz) of the first three formants of an adult male voice (Peterson & Barney 1952).
VOWELS = (
    ((730, 90), (1090, 110), (2440, 170)),
    ((530, 60), (1840, 100), (2480, 120)),
    ((270, 60), (2290, 100), (3010, 120)),
    ((570, 70), (840, 80), (2410, 130)),
    ((300, 60), (870, 70), (2240, 100)),
)


def midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def butter(kind: str, cutoff, sr: int, order: int = 2) -> np.ndarray:
    """Butterworth second-order sections, cutoffs clipped below Nyquist (some tracks are at 16 kHz)."""
    nyq = 0.45 * sr
    cutoff = np.minimum(cutoff, nyq) if np.ndim(cutoff) == 0 else [min(c, nyq) for c in cutoff]
    return signal.butter(order, cutoff, kind, fs=sr, output="sos")


def saw(freq: float, sr: int, n: int, phase: float) -> np.ndarray:
    """Band-limited sawtooth (polyBLEP): a naive saw aliases audibly at 16 kHz."""
    dt = freq / sr
    # In-place float64 phase (float32 drifts over seconds); floor is several times faster than %.
    ph = np.arange(n, dtype=np.float64)
    ph *= dt
    ph += phase
    ph -= np.floor(ph)
    y = ph.astype(np.float32)
    y *= 2.0
    y -= 1.0
    lo = np.flatnonzero(ph < dt)
    t = ph[lo] / dt
    y[lo] -= 2.0 * t - t * t - 1.0
    hi = np.flatnonzero(ph > 1.0 - dt)
    t = (ph[hi] - 1.0) / dt
    y[hi] -= t * t + 2.0 * t + 1.0
    return y


def pluck(f0: float, sr: int, seconds: float, t60: float, brightness: float, rng: np.random.Generator):
    """Karplus-Strong string, computed one period-long block at a time.

    The loop y[n] = x[n] + g * sum_k h_k y[n-p-k] only looks back >= p samples, so a whole block of p
    samples depends on earlier blocks alone: n/p vectorised steps instead of n scalar ones. h is the
    classic two-point average convolved with a linear-interpolation fractional delay, which tunes the
    loop to sr/f0 exactly while keeping the zero at Nyquist that makes high partials die first.
    """
    n = int(seconds * sr)
    delay = sr / f0 - 0.5
    p = int(delay)
    w = delay - p
    h = np.array([0.5 * (1.0 - w), 0.5, 0.5 * w]) * 10.0 ** (-3.0 / (f0 * t60))
    pole = 1.0 - brightness
    burst = signal.lfilter([1.0 - pole], [1.0, -pole], rng.uniform(-1.0, 1.0, p))
    burst -= burst.mean()
    n_blocks = -(-n // p)
    y = np.zeros(2 + n_blocks * p)
    y[2 : 2 + p] = burst
    for s in range(2 + p, 2 + n_blocks * p, p):
        y[s : s + p] = h[0] * y[s - p : s] + h[1] * y[s - p - 1 : s - 1] + h[2] * y[s - p - 2 : s - 2]
    return y[2 : 2 + n].astype(np.float32)


def piano(f0: float, sr: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Struck string: stretched (inharmonic) partials, each decaying faster the higher it is."""
    n = int(seconds * sr)
    t = np.arange(n, dtype=np.float32) / sr
    k = np.arange(1, 9, dtype=np.float32)
    fk = k * f0 * np.sqrt(1.0 + 3e-4 * k * k)
    keep = fk < 0.45 * sr
    k, fk = k[keep], fk[keep]
    amps = k**-1.3 * rng.uniform(0.7, 1.0, k.size).astype(np.float32)
    tau = 1.6 * (110.0 / f0) ** 0.35 / (1.0 + 0.45 * (k - 1.0))
    phases = rng.uniform(0, 2 * np.pi, k.size).astype(np.float32)
    partials = np.sin(2 * np.pi * fk[:, None] * t + phases[:, None]) * np.exp(-t / tau[:, None])
    y = amps @ partials
    y[: int(0.002 * sr)] *= np.linspace(0.0, 1.0, int(0.002 * sr), dtype=np.float32)
    return y


def glottal(phase: np.ndarray, open_quotient: float) -> np.ndarray:
    """Rosenberg glottal flow pulse; its derivative (lip radiation) is what leaves the mouth."""
    tp, tn = 0.66 * open_quotient, 0.34 * open_quotient
    p = phase % 1.0
    rise = 0.5 * (1.0 - np.cos(np.pi * p / tp))
    fall = np.cos(0.5 * np.pi * (p - tp) / tn)
    g = np.where(p < tp, rise, np.where(p < tp + tn, fall, 0.0))
    return np.diff(g, prepend=g[0])


def formant_filters(sr: int, scale: float) -> list[np.ndarray]:
    """One cascade of formant resonators per vowel; scale > 1 shortens the vocal tract (a higher voice)."""
    audible = [[(f * scale, bw) for f, bw in vowel if f * scale < 0.45 * sr] for vowel in VOWELS]
    return [np.stack([resonator(f, bw, sr) for f, bw in formants]) for formants in audible]


def resonator(freq: float, bandwidth: float, sr: int) -> np.ndarray:
    """One second-order section with unit gain at its resonance."""
    r = math.exp(-math.pi * bandwidth / sr)
    theta = 2 * math.pi * freq / sr
    b0 = (1 - r) * math.sqrt(1 - 2 * r * math.cos(2 * theta) + r * r)
    return np.array([b0, 0.0, 0.0, 1.0, -2 * r * math.cos(theta), r * r])


def drum_kit(sr: int, electronic: bool, ride: bool, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One sample per piece (kick, snare, hat, open_hat), peak-normalized; a track reuses them."""
    def decay(seconds: float, tau: float) -> np.ndarray:
        return np.exp(-np.arange(int(seconds * sr)) / (tau * sr))

    def noise(seconds: float) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, int(seconds * sr))

    t = np.arange(int(0.6 * sr)) / sr
    if electronic:  # a drum machine: long sub-heavy kick, clap, tight bright hats
        freq = 45.0 + 110.0 * np.exp(-t / 0.05)
        kick = np.tanh(2.0 * np.sin(2 * np.pi * np.cumsum(freq) / sr) * decay(0.6, 0.35))
        bursts = np.zeros(int(0.3 * sr))
        for lag in (0, int(0.011 * sr), int(0.022 * sr)):
            bursts[lag:] += decay(0.3, 0.012 if lag < 0.02 * sr else 0.1)[: bursts.size - lag]
        snare = signal.sosfilt(butter("bandpass", (900.0, 2600.0), sr), noise(0.3)) * bursts * 3.0
        hat = signal.sosfilt(butter("highpass", 8000.0, sr), noise(0.05)) * decay(0.05, 0.012)
    else:
        freq = 50.0 + 90.0 * np.exp(-t / 0.03)
        kick = np.sin(2 * np.pi * np.cumsum(freq) / sr) * decay(0.6, 0.15)
        kick[: int(0.004 * sr)] += noise(0.004) * 0.5
        body = np.sin(2 * np.pi * 190.0 * np.arange(int(0.25 * sr)) / sr) * decay(0.25, 0.04)
        snare = signal.sosfilt(butter("bandpass", (1000.0, 6000.0), sr), noise(0.25)) * decay(0.25, 0.09)
        snare = 1.5 * snare + 0.6 * body
        if ride:  # jazz rides a cymbal: inharmonic metallic partials with a long shimmer
            tt = np.arange(int(0.8 * sr)) / sr
            ring = sum(np.sign(np.sin(2 * np.pi * f * tt)) for f in (587.0, 845.0, 1174.0, 1593.0, 2207.0))
            hat = signal.sosfilt(butter("highpass", 3000.0, sr), ring * 0.2 + noise(0.8)) * decay(0.8, 0.35)
        else:
            hat = signal.sosfilt(butter("highpass", 6500.0, sr), noise(0.12)) * decay(0.12, 0.03)
    open_hat = signal.sosfilt(butter("highpass", 6000.0, sr), noise(0.35)) * decay(0.35, 0.12)
    kit = {"kick": kick, "snare": snare, "hat": hat, "open_hat": open_hat}
    return {k: (v / np.max(np.abs(v))).astype(np.float32) for k, v in kit.items()}


