"""Audio synthesis for the toy catalog: one `TrackSpec` in, one waveform out, every label audible.

A track is a grid of beats (meter, tempo, swing), a chord per bar in a key and mode, and a part per
instrument written on that grid: banjo rolls, strummed guitar, piano comping, palm-muted power chords, a pad,
a bass line, a drum groove whose accents carry the meter, and a sung melody. The parts play the sources of
`toycatalog.sounds`, then get mixed, panned, put in a room (an exponentially decaying noise impulse
response), filtered to the track's tone and, for lo-fi tracks, degraded.

Nothing here knows genres or moods: `toycatalog.catalog` decides a spec, `render` plays it.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import signal

from toycatalog.sounds import (
    butter,
    drum_kit,
    formant_filters,
    glottal,
    midi_hz,
    piano,
    pluck,
    resonator,
    saw,
)

SAMPLE_RATES = (16000, 22050, 32000, 44100)
METERS = {"3/4": 3, "4/4": 4, "5/4": 5, "7/8": 7}
MODES = ("major", "minor")
HARMONIC_INSTRUMENTS = ("banjo", "acoustic_guitar", "piano", "distorted_guitar", "synth_pad")
INSTRUMENTS = (*HARMONIC_INSTRUMENTS, "bass", "drums", "vocals")

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Scale degrees per bar, all starting on the tonic so the key is stated before it wanders.
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 0), (0, 5, 3, 4), (0, 3, 0, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 5, 3, 4), (0, 6, 5, 6), (0, 3, 0, 6)),
}
# (beat in bar, piece, velocity): the loud kicks on group starts are what tells 3/4 from 5/4 from 7/8 (2+2+3).
_GROOVES = {
    "4/4": ((0, "kick", 1.0), (1, "snare", 0.8), (2, "kick", 0.75), (3, "snare", 0.8)),
    "3/4": ((0, "kick", 1.0), (1, "snare", 0.4), (2, "snare", 0.4)),
    "5/4": ((0, "kick", 1.0), (2, "snare", 0.7), (3, "kick", 0.8), (4, "snare", 0.55)),
    "7/8": ((0, "kick", 1.0), (2, "snare", 0.65), (4, "kick", 0.85), (6, "snare", 0.4)),
}
_GROUP_STARTS = {"3/4": (0,), "4/4": (0, 2), "5/4": (0, 3), "7/8": (0, 2, 4)}
# Mix level (dBFS RMS) of each stem before the per-track spread; the pad sits back, the voice in front.
_LEVELS_DB = {
    "banjo": -17.0, "acoustic_guitar": -16.0, "piano": -16.0, "distorted_guitar": -15.0,
    "synth_pad": -19.0, "bass": -16.0, "drums": -14.0, "vocals": -13.0,
}
_CENTERED = ("bass", "drums", "vocals")
_FADE = np.linspace(1.0, 0.0, 64, dtype=np.float32)  # end of a cut-short note: long enough not to click


@dataclass(frozen=True)
class Voice:
    high: bool
    breathy: bool
    nasal: bool


@dataclass(frozen=True)
class TrackSpec:
    """Everything that decides how a track sounds: the ground truth behind its labels."""

    duration: float
    sample_rate: int
    channels: int
    bpm: float  # beats per minute of the meter's beat unit (the eighth note in 7/8)
    meter: str
    swing: float  # delay of off-beat eighths, in beats: 0 straight, 1/6 triplet feel
    syncopation: bool
    key_root: int  # pitch class, 0 = C
    mode: str
    instruments: frozenset[str]
    electronic_drums: bool
    synth_bass: bool
    four_on_the_floor: bool
    density: float  # 0 sparse .. 1 busy: how many of the grid's subdivisions carry notes
    voice: Voice | None
    reverb_seconds: float  # RT60 of the room
    reverb_wet: float
    lo_fi: bool
    tone: float  # 0 dark .. 1 bright: cutoff of the master low-pass
    loudness_db: float  # target RMS in dBFS

    def __post_init__(self):
        if self.sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {SAMPLE_RATES}, got {self.sample_rate}")
        if self.channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {self.channels}")
        if self.meter not in METERS:
            raise ValueError(f"meter must be one of {list(METERS)}, got {self.meter!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        unknown = set(self.instruments) - set(INSTRUMENTS)
        if unknown:
            raise ValueError(f"unknown instruments {sorted(unknown)}; known: {INSTRUMENTS}")
        if ("vocals" in self.instruments) != (self.voice is not None):
            raise ValueError("a voice must be given exactly when 'vocals' is among the instruments")
        if self.four_on_the_floor and self.meter != "4/4":
            raise ValueError(f"four_on_the_floor needs 4/4, got {self.meter}")
        if not 0.0 < self.duration <= 600.0 or not 30.0 <= self.bpm <= 300.0:
            raise ValueError(f"duration {self.duration} s or bpm {self.bpm} out of range")


def _place(pc: int, lo: int) -> int:
    """The lowest MIDI note >= lo with pitch class pc."""
    return lo + (pc - lo) % 12


def _fade_add(buf: np.ndarray, note: np.ndarray, start: int, length: int, gain: float) -> None:
    """Add a note cut to `length` samples, with a short fade so the cut does not click."""
    start = max(start, 0)
    length = min(length, note.size, buf.size - start)
    if length <= 0:
        return
    seg = note[:length] * gain
    fade = min(length, _FADE.size)
    seg[-fade:] *= _FADE[-fade:]
    buf[start : start + length] += seg


class _Context:
    """What every stem needs: the spec, the grid that turns beats into samples, the chord of each bar."""

    def __init__(self, spec: TrackSpec, rng: np.random.Generator):
        self.spec, self.rng = spec, rng
        self.n = round(spec.duration * spec.sample_rate)
        self.beat = 60.0 / spec.bpm
        self.per_bar = METERS[spec.meter]
        self.n_bars = int(spec.duration / (self.beat * self.per_bar)) + 1
        progressions = _PROGRESSIONS[spec.mode]
        prog = progressions[rng.integers(len(progressions))]
        bars_per_chord = 2 if self.beat * self.per_bar < 1.6 else 1  # short bars: harmony moves slower
        scale = [(spec.key_root + d) % 12 for d in SCALES[spec.mode]]
        self.chords = [
            tuple(scale[(prog[(b // bars_per_chord) % len(prog)] + i) % 7] for i in (0, 2, 4))
            for b in range(self.n_bars)
        ]

    @property
    def sr(self) -> int:
        return self.spec.sample_rate

    def sample(self, beats: float) -> int:
        """Sample index of a position counted in beats; swing delays whatever falls on the off-beat."""
        k = math.floor(beats)
        f = beats - k
        s = self.spec.swing
        warped = f * (0.5 + s) / 0.5 if f < 0.5 else 0.5 + s + (f - 0.5) * (0.5 - s) / 0.5
        return round((k + warped) * self.beat * self.sr)

    def onsets(self, step: float):
        """(beat position, position within its bar) every `step` beats over the whole track."""
        total = self.n_bars * self.per_bar
        for i in range(round(total / step)):
            pos = i * step
            yield pos, pos - self.per_bar * int(pos // self.per_bar)

    def chord_at(self, pos: float) -> tuple[int, ...]:
        return self.chords[min(int(pos // self.per_bar), self.n_bars - 1)]

    def humanize(self) -> int:
        """A few ms of timing slop for played instruments; electronic parts sit on the grid."""
        return 0 if self.spec.electronic_drums else int(self.rng.normal(0.0, 0.004) * self.sr)


def _melody(ctx: _Context, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """(start sample, length in samples, MIDI note): a scale-wise random walk that lands on chord tones."""
    s, rng = ctx.spec, ctx.rng
    scale_pcs = {(s.key_root + d) % 12 for d in SCALES[s.mode]}
    notes = [m for m in range(lo, hi + 1) if m % 12 in scale_pcs]
    idx = notes.index(_place(s.key_root, lo + 5)) if _place(s.key_root, lo + 5) in notes else len(notes) // 2
    out = []
    pos, total = 0.0, ctx.n_bars * ctx.per_bar
    while pos < total:
        in_bar = pos - ctx.per_bar * int(pos // ctx.per_bar)
        step = 0.5 if rng.random() < 0.5 * max(s.density, 2 * s.swing) else 1.0
        length = step * float(rng.choice([1, 1, 2]))
        crosses_bar = in_bar > 0 and in_bar + length > ctx.per_bar + 0.01
        if crosses_bar or rng.random() < 0.1 + 0.3 * (1.0 - s.density):
            pos += step
            continue
        idx = int(np.clip(idx + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, len(notes) - 1))
        chord = ctx.chord_at(pos)
        if in_bar == 0 or rng.random() < 0.5:
            tones = [i for i, m in enumerate(notes) if m % 12 in chord]
            idx = min(tones, key=lambda i: abs(i - idx))
        start = pos - 0.5 if s.syncopation and in_bar == 0 and pos > 0 and rng.random() < 0.4 else pos
        a, b = ctx.sample(start), ctx.sample(pos + length)
        out.append((a, b - a, notes[idx]))
        pos += length
    return out


def _banjo(ctx: _Context) -> np.ndarray:
    """Forward rolls through the chord, as fast as a picking hand manages (<= 12 notes/s)."""
    buf = np.zeros(ctx.n, np.float32)
    step = 0.25 if ctx.spec.density > 0.5 and ctx.beat / 4 > 1 / 12 else 0.5
    cache: dict[int, np.ndarray] = {}
    pattern = (1, 2, 3, 0, 1, 2, 1, 3)  # the third comes often: it is what says major or minor
    for i, (pos, in_bar) in enumerate(ctx.onsets(step)):
        chord = ctx.chord_at(pos)
        voicing = [_place(chord[0], 55), _place(chord[1], 59), _place(chord[2], 62), _place(chord[0], 67)]
        midi = voicing[pattern[i % len(pattern)]]
        if midi not in cache:
            cache[midi] = pluck(midi_hz(midi), ctx.sr, 0.7, ctx.rng.uniform(0.3, 0.45), 0.95, ctx.rng)
        gain = (1.0 if in_bar == int(in_bar) else 0.7) * ctx.rng.uniform(0.8, 1.0)
        _fade_add(buf, cache[midi], ctx.sample(pos) + ctx.humanize(), cache[midi].size, gain)
    return buf


def _acoustic_guitar(ctx: _Context) -> np.ndarray:
    """Strummed open chords; each strum rolls over the strings and mutes the previous one."""
    buf = np.zeros(ctx.n, np.float32)
    # Swung tracks strum eighths: swing lives on the off-beats, so something must play them.
    step = 0.5 if ctx.spec.density > 0.55 or ctx.spec.swing else (1.0 if ctx.spec.density > 0.25 else 2.0)
    cache: dict[int, np.ndarray] = {}
    spread = int(ctx.rng.uniform(0.008, 0.02) * ctx.sr)
    for pos, in_bar in ctx.onsets(step):
        chord = ctx.chord_at(pos)
        voicing = [_place(chord[0], 40), _place(chord[2], 47), _place(chord[0], 52), _place(chord[1], 55),
                   _place(chord[2], 59)]
        up = in_bar != int(in_bar)
        start = ctx.sample(pos) + ctx.humanize()
        length = ctx.sample(pos + step) - ctx.sample(pos) + int(0.03 * ctx.sr)
        for j, midi in enumerate(voicing[::-1] if up else voicing):
            if midi not in cache:
                cache[midi] = pluck(midi_hz(midi), ctx.sr, 2.0, ctx.rng.uniform(1.2, 2.0), 0.35, ctx.rng)
            _fade_add(buf, cache[midi], start + j * spread, length, 0.55 if up else 1.0)
    return buf


def _piano(ctx: _Context) -> np.ndarray:
    """Left-hand chords on strong beats; the right hand plays the tune when nobody sings it."""
    buf = np.zeros(ctx.n, np.float32)
    s = ctx.spec
    cache: dict[int, np.ndarray] = {}

    def strike(midi: int, start: int, length: int, gain: float) -> None:
        if midi not in cache:
            cache[midi] = piano(midi_hz(midi), ctx.sr, 1.2, ctx.rng)
        _fade_add(buf, cache[midi], start, length, gain)

    step = 1.0 if s.density > 0.7 else float(max(1, ctx.per_bar // 2))
    for pos, in_bar in ctx.onsets(step):
        if in_bar + step > ctx.per_bar:
            continue
        chord = ctx.chord_at(pos)
        start, length = ctx.sample(pos) + ctx.humanize(), ctx.sample(pos + step) - ctx.sample(pos)
        for midi in (_place(chord[0], 48), _place(chord[1], 55), _place(chord[2], 55)):
            strike(midi, start, length, 0.6)
        if "bass" not in s.instruments and in_bar == 0:
            strike(_place(chord[0], 36), start, length, 0.8)
    if "vocals" not in s.instruments:
        for start, length, midi in _melody(ctx, 64, 84):
            strike(midi, start, length, 1.0)
    return buf


def _distorted_guitar(ctx: _Context) -> np.ndarray:
    """Power chords (root, fifth, octave) into a tanh amp and a guitar cabinet's band-pass."""
    buf = np.zeros(ctx.n, np.float32)
    sr, rng = ctx.sr, ctx.rng
    drive = rng.uniform(5.0, 15.0)
    cab = butter("bandpass", (90.0, rng.uniform(3000.0, 4500.0)), sr)
    palm_muted = ctx.spec.density > 0.5
    step = 0.5 if palm_muted else float(max(1, ctx.per_bar // 2))
    cache: dict[int, np.ndarray] = {}
    for pos, in_bar in ctx.onsets(step):
        root = _place(ctx.chord_at(pos)[0], 40)
        if root not in cache:
            n = int(min(2.5, (step + 0.1) * ctx.beat) * sr)
            freqs = [midi_hz(root + i) * d for i in (0, 7, 12) for d in (0.997, 1.003)]  # double-tracked
            raw = sum(saw(f, sr, n, rng.random()) for f in freqs)
            note = signal.sosfilt(cab, np.tanh(drive * raw / 6.0))
            if palm_muted:
                note *= np.exp(-np.arange(n) / (0.07 * sr))
            cache[root] = note.astype(np.float32)
        note = cache[root]
        accent = 1.0 if in_bar == int(in_bar) else 0.75
        _fade_add(buf, note, ctx.sample(pos), ctx.sample(pos + step) - ctx.sample(pos), accent)
    return buf


def _synth_pad(ctx: _Context) -> np.ndarray:
    """Detuned saws per chord tone, slow attack, low-passed: a sustained wash under the whole bar."""
    buf = np.zeros(ctx.n, np.float32)
    sr, rng = ctx.sr, ctx.rng
    lowpass = butter("lowpass", rng.uniform(900.0, 2500.0), sr)
    attack = rng.uniform(0.25, 0.8)
    cache: dict[tuple[int, ...], np.ndarray] = {}
    for pos, _ in ctx.onsets(ctx.per_bar):
        chord = ctx.chord_at(pos)
        if chord not in cache:
            n = int((ctx.per_bar * ctx.beat + 0.4) * sr)
            midis = (_place(chord[0], 48), _place(chord[1], 55), _place(chord[2], 55), _place(chord[0], 36))
            raw = sum(saw(midi_hz(m) * 2 ** (c / 1200), sr, n, rng.random()) for m in midis for c in (-9, 9))
            env = np.minimum(1.0, np.arange(n, dtype=np.float32) / (attack * sr))
            cache[chord] = signal.sosfilt(lowpass, raw * env).astype(np.float32)
        note = cache[chord]
        _fade_add(buf, note, ctx.sample(pos), note.size, 1.0)
    return buf


def _bass(ctx: _Context) -> np.ndarray:
    """Roots on the beat (walking through the scale when the track swings); synth or finger tone."""
    buf = np.zeros(ctx.n, np.float32)
    s, sr, rng = ctx.spec, ctx.sr, ctx.rng
    scale = [(s.key_root + d) % 12 for d in SCALES[s.mode]]
    walking = s.swing > 0 and not s.synth_bass
    lowpass = butter("lowpass", rng.uniform(350.0, 900.0), sr)
    cache: dict[int, np.ndarray] = {}
    if s.syncopation and ctx.per_bar >= 4:
        hits = (0.0, 1.5, *range(3, ctx.per_bar))
    elif s.density > 0.35 or walking:
        hits = tuple(range(ctx.per_bar))
    else:
        hits = _GROUP_STARTS[s.meter]
    positions = [bar * ctx.per_bar + h for bar in range(ctx.n_bars) for h in hits]
    for i, pos in enumerate(positions):
        chord = ctx.chord_at(pos)
        pc = chord[0] if not walking or pos % ctx.per_bar == 0 else scale[(scale.index(chord[0]) + i) % 7]
        midi = _place(pc, 28)
        if midi not in cache:
            n = int(min(2.0, ctx.per_bar * ctx.beat) * sr)
            t = np.arange(n, dtype=np.float32) / sr
            f0 = midi_hz(midi)
            if s.synth_bass:
                tone = signal.sosfilt(lowpass, saw(f0, sr, n, 0.0)).astype(np.float32)
                env = np.minimum(1.0, t / 0.005) * (0.7 + 0.3 * np.exp(-t / 0.2))
            else:
                tone = sum(a * np.sin(2 * np.pi * k * f0 * t) for k, a in ((1, 1.0), (2, 0.5), (3, 0.2)))
                env = np.minimum(1.0, t / 0.004) * np.exp(-t / 0.6)
            cache[midi] = (tone * env).astype(np.float32)
        nxt = positions[i + 1] if i + 1 < len(positions) else pos + 1
        _fade_add(buf, cache[midi], ctx.sample(pos) + ctx.humanize(), ctx.sample(nxt) - ctx.sample(pos), 1.0)
    return buf


def _drums(ctx: _Context) -> np.ndarray:
    buf = np.zeros(ctx.n, np.float32)
    s = ctx.spec
    kit = drum_kit(ctx.sr, s.electronic_drums, s.swing > 0 and not s.electronic_drums, ctx.rng)
    if s.four_on_the_floor:
        groove = [(b, "kick", 1.0 if b == 0 else 0.85) for b in range(4)]
        groove += [(1, "snare", 0.8), (3, "snare", 0.8)] + [(b + 0.5, "open_hat", 0.5) for b in range(4)]
    else:
        groove = list(_GROOVES[s.meter])
    if s.syncopation:
        groove += [(ctx.per_bar - 0.5, "kick", 0.6), (1.5, "kick", 0.55)]
    hat_step = 0.5 if (s.density > 0.45 or s.swing) and s.meter != "7/8" else 1.0
    accents = _GROUP_STARTS[s.meter]
    groove += [
        (i * hat_step, "hat", 0.9 if i * hat_step in accents else (0.6 if (i * hat_step) % 1 == 0 else 0.4))
        for i in range(round(ctx.per_bar / hat_step))
    ]
    for bar in range(ctx.n_bars):
        for pos, piece, vel in groove:
            start = ctx.sample(bar * ctx.per_bar + pos) + ctx.humanize()
            sample = kit[piece]
            _fade_add(buf, sample, start, sample.size, vel * ctx.rng.uniform(0.85, 1.0))
    return buf


def _vocals(ctx: _Context) -> np.ndarray:
    """Sung syllables: vibrato glottal pulses through one vowel's formants each, some after a consonant."""
    buf = np.zeros(ctx.n, np.float32)
    voice, sr, rng = ctx.spec.voice, ctx.sr, ctx.rng
    lo, hi = (62, 77) if voice.high else (45, 60)
    banks = formant_filters(sr, 1.17 if voice.high else 1.0)
    hiss = butter("highpass", min(4000.0, 0.3 * sr), sr)
    open_quotient = 0.8 if voice.breathy else 0.55
    vibrato = rng.uniform(0.2, 0.45), rng.uniform(4.8, 6.2)
    for start, length, midi in _melody(ctx, lo, hi):
        m = int(length * 0.92)
        if m < int(0.05 * sr):
            continue
        t = np.arange(m) / sr
        wobble = vibrato[0] * np.sin(2 * np.pi * vibrato[1] * t) * np.clip(t / 0.3, 0.0, 1.0)
        f0 = midi_hz(midi) * 2.0 ** (wobble / 12.0)
        flow = glottal(np.cumsum(f0 / sr), open_quotient) * (sr / midi_hz(midi))
        if voice.breathy:
            flow = 0.6 * flow + 0.5 * rng.normal(0.0, 1.0, m) * np.std(flow)
        sung = signal.sosfilt(banks[rng.integers(len(banks))], flow)
        env = np.minimum(1.0, t / 0.03) * np.minimum(1.0, (t[-1] - t) / 0.06)
        sung = (sung * env).astype(np.float32)
        if rng.random() < 0.5:
            c = min(m, int(rng.uniform(0.02, 0.05) * sr))
            sung[:c] += signal.sosfilt(hiss, rng.normal(0.0, 1.0, c)).astype(np.float32) * np.std(sung) * 2.0
        _fade_add(buf, sung, start + ctx.humanize(), m, 1.0)
    if voice.nasal:  # a nasal pole near 270 Hz and an anti-resonance near 1 kHz
        zero = resonator(1000.0, 200.0, sr)
        pole = resonator(270.0, 100.0, sr)
        anti = np.array([1.0, zero[4], zero[5], 1.0, 0.0, 0.0])
        buf = (signal.sosfilt(np.stack([anti, pole]), buf) + 0.5 * buf).astype(np.float32)
    return buf


_STEMS: dict[str, Callable[[_Context], np.ndarray]] = {
    "banjo": _banjo, "acoustic_guitar": _acoustic_guitar, "piano": _piano,
    "distorted_guitar": _distorted_guitar, "synth_pad": _synth_pad, "bass": _bass, "drums": _drums,
    "vocals": _vocals,
}


def _reverb(x: np.ndarray, spec: TrackSpec, rng: np.random.Generator) -> np.ndarray:
    """Convolve each channel with its own decaying noise tail (decorrelated channels sound wide)."""
    sr = spec.sample_rate
    n_ir = int(min(spec.reverb_seconds, 3.0) * sr)
    t = np.arange(n_ir) / sr
    tail = rng.normal(0.0, 1.0, (x.shape[0], n_ir)) * np.exp(-6.91 * t / spec.reverb_seconds)
    tail = signal.sosfilt(butter("lowpass", 5000.0, sr), tail, axis=-1)
    tail /= np.sqrt(np.sum(tail**2, axis=-1, keepdims=True))
    predelay = int(0.015 * sr)
    wet = signal.oaconvolve(x, tail.astype(np.float32), axes=-1)[:, : x.shape[1] - predelay]
    out = x.copy()
    out[:, predelay:] += spec.reverb_wet * wet
    return out


def render(spec: TrackSpec, rng: np.random.Generator) -> np.ndarray:
    """Play a spec: (channels, round(duration * sample_rate)) float32 in [-1, 1]."""
    ctx = _Context(spec, rng)
    sr = spec.sample_rate
    mix = np.zeros((spec.channels, ctx.n), np.float32)
    for name in INSTRUMENTS:
        if name not in spec.instruments:
            continue
        stem = _STEMS[name](ctx)
        rms = float(np.sqrt(np.mean(stem**2)))
        if rms == 0.0:
            continue
        gain = 10 ** ((_LEVELS_DB[name] + rng.uniform(-3.0, 3.0)) / 20) / rms
        if spec.channels == 2:
            pan = 0.0 if name in _CENTERED else rng.uniform(-0.8, 0.8)
            angle = (pan + 1.0) * np.pi / 4
            mix[0] += stem * (gain * math.cos(angle) * math.sqrt(2))
            mix[1] += stem * (gain * math.sin(angle) * math.sqrt(2))
        else:
            mix[0] += stem * gain
    mix = _reverb(mix, spec, rng)
    if spec.tone < 0.97:
        mix = signal.sosfilt(butter("lowpass", 1200.0 * 2.0 ** (4.0 * spec.tone), sr), mix, axis=-1)
    if spec.lo_fi:  # a worn cassette: narrow band, hiss, crackle
        mix = signal.sosfilt(butter("bandpass", (250.0, rng.uniform(3200.0, 4500.0)), sr, 3), mix, axis=-1)
        crackle = (rng.random(mix.shape) < 6.0 / sr) * rng.uniform(-0.3, 0.3, mix.shape)
        floor_db = rng.uniform(-32.0, -24.0)
    else:
        crackle = 0.0
        floor_db = rng.uniform(-72.0, -55.0)
    level = 10 ** (spec.loudness_db / 20)
    rms = float(np.sqrt(np.mean(mix**2))) or 1.0
    mix = mix * (level / rms) + crackle * level + rng.normal(0.0, 10 ** (floor_db / 20) * level, mix.shape)
    peak = float(np.max(np.abs(mix)))
    if peak > 0.98:
        mix *= 0.98 / peak
    return mix.astype(np.float32)
