"""The realistic rendering mode: the generated music written as MIDI and played by sampled instruments.

A track is the toy catalog's grid (meter, tempo, swing) and harmony (a chord per bar from a progression in
its key and mode), written as a General MIDI file with `mido`: a bass line on the chord roots, chords on
one or two comping instruments, melodies (a scale-wise walk landing on chord tones) on the melodic ones,
and, for some genres, a GM drum kit whose accents carry the meter. FluidSynth renders the file through a
General MIDI soundfont (Debian's `fluid-soundfont-gm`), so the instruments are recorded samples, not the
synthesized timbres of `toycatalog.synth`. Each track has 2 to 4 of the ten instruments of `GM_PROGRAMS`;
they are its `instrument` tags. Its `mode` tag is the mode whose scale and progression were written.

Needs the `fluidsynth` command and a GM soundfont (`scripts/setup.sh realistic` installs both on
Debian/Ubuntu as root); `fluidsynth_missing()` says what is missing, or None.
"""

import itertools
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
from scipy import signal
from scipy.io import wavfile

from tagging.keys import best_key
from toycatalog.synth import METERS, SCALES

# Instrument tag -> General MIDI program (0-based): ten timbres a listener names without hesitating.
GM_PROGRAMS = {
    "piano": 0, "organ": 19, "acoustic_guitar": 25, "bass": 33, "violin": 40, "strings": 48, "trumpet": 56,
    "saxophone": 65, "clarinet": 71, "flute": 73,
}
INSTRUMENTS = tuple(GM_PROGRAMS)
# The GM programs a tag covers: recordings of different instruments of one kind, as a catalog has them.
GM_VARIANTS = {
    "piano": (0, 1, 2), "organ": (16, 17, 19), "acoustic_guitar": (24, 25), "bass": (32, 33, 34), "violin": (40,),
    "strings": (48, 49), "trumpet": (56,), "saxophone": (64, 65, 66), "clarinet": (71,), "flute": (73,),
}
CHORD_INSTRUMENTS = ("piano", "organ", "acoustic_guitar", "strings")
MELODY_INSTRUMENTS = ("violin", "trumpet", "saxophone", "clarinet", "flute")
# The range (MIDI notes) each instrument plays its part in: inside the instrument's natural compass.
RANGES = {
    "piano": (48, 67), "organ": (48, 67), "acoustic_guitar": (40, 64), "strings": (50, 72), "bass": (28, 43),
    "violin": (67, 88), "flute": (72, 93), "trumpet": (58, 77), "saxophone": (56, 74), "clarinet": (55, 77),
}
GENRES = ("classical", "jazz", "folk", "pop", "latin", "blues")
# Each genre's prior: probability of each instrument and of drums, minor mode and swing; tempo (mean, sd);
# meter shares. An artist is a draw around it, a track a draw around its artist (as in toycatalog.catalog).
_GENRE_TABLE = """
genre      piano organ acoustic_guitar bass violin strings trumpet saxophone clarinet flute
classical   .60   .15      .10         .25   .70    .80     .15     .02       .45     .55
jazz        .85   .15      .10         .95   .05    .05     .60     .85       .30     .10
folk        .15   .05      .90         .50   .65    .05     .02     .02       .20     .50
pop         .75   .25      .55         .90   .10    .50     .15     .20       .05     .20
latin       .50   .05      .70         .85   .15    .10     .65     .40       .10     .35
blues       .55   .70      .45         .90   .02    .02     .25     .55       .15     .02

genre      drums minor swing bpm_mean bpm_sd 3/4  4/4  5/4  7/8
classical   .02   .45   .02     95      25   .45  .45  .05  .05
jazz        .80   .45   .80    140      35   .20  .60  .15  .05
folk        .30   .35   .20    115      25   .40  .50  .05  .05
pop         .85   .30   .05    112      15   .10  .88  .01  .01
latin       .90   .55   .05    120      20   .10  .70  .05  .15
blues       .75   .50   .75     95      20   .15  .80  .03  .02
"""
ARTIST_CONCENTRATION = 3.0
SAMPLE_RATE = 22050
TICKS = 480  # per beat
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
              "/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/sounds/sf2/MuseScore_General.sf2")
_DRUMS_CHANNEL = 9
_KICK, _SNARE, _HAT, _RIDE = 36, 38, 42, 51
# (beat in bar, drum, velocity): the loudest kicks start the meter's groups, as in toycatalog.synth.
_GROOVES = {
    "4/4": ((0, _KICK, 110), (1, _SNARE, 90), (2, _KICK, 90), (3, _SNARE, 90)),
    "3/4": ((0, _KICK, 110), (1, _SNARE, 60), (2, _SNARE, 60)),
    "5/4": ((0, _KICK, 110), (2, _SNARE, 80), (3, _KICK, 95), (4, _SNARE, 70)),
    "7/8": ((0, _KICK, 110), (2, _SNARE, 80), (4, _KICK, 100), (6, _SNARE, 60)),
}
_GROUP_STARTS = {"3/4": (0,), "4/4": (0, 2), "5/4": (0, 3), "7/8": (0, 2, 4)}
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 0), (0, 5, 3, 4), (0, 3, 0, 4)),
    "minor": ((0, 6, 5, 4), (0, 3, 4, 0), (0, 5, 3, 4), (0, 3, 0, 4)),  # i-VII-VI-V: the Andalusian cadence
}


def _parse_genre_table(text: str) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for block in text.strip().split("\n\n"):
        header, *lines = block.splitlines()
        for line in lines:
            genre, *values = line.split()
            rows.setdefault(genre, {}).update(zip(header.split()[1:], map(float, values), strict=True))
    return rows


GENRE_PRIORS = _parse_genre_table(_GENRE_TABLE)


@dataclass(frozen=True)
class Piece:
    """Everything that decides how a realistic track sounds: the ground truth behind its labels."""

    duration: float
    bpm: float  # beats per minute of the meter's beat unit (the eighth note in 7/8)
    meter: str
    swing: float  # delay of off-beat eighths, in beats
    key_root: int  # pitch class, 0 = C
    mode: str
    instruments: tuple[str, ...]  # in INSTRUMENTS order
    drums: bool
    density: float  # 0 sparse .. 1 busy
    reverb: int  # MIDI CC 91 send, 0-127
    channels: int
    programs: tuple[int, ...] | None = None  # GM program per instrument (one of GM_VARIANTS); None: GM_PROGRAMS
    levels_db: tuple[float, ...] | None = None  # mix level per instrument, 0 = full MIDI volume; None: all 0
    lowpass_hz: float | None = None  # the master's low-pass (a dull recording or a small speaker); None: none

    def __post_init__(self):
        unknown = set(self.instruments) - set(INSTRUMENTS)
        if unknown or not self.instruments:
            raise ValueError(f"instruments must be a non-empty subset of {INSTRUMENTS}, got {self.instruments}")
        if self.meter not in METERS or self.mode not in SCALES:
            raise ValueError(f"unknown meter {self.meter!r} or mode {self.mode!r}")
        pairs = zip(self.instruments, self.programs or (), strict=False)
        if self.programs is not None and (len(self.programs) != len(self.instruments)
                                          or any(program not in GM_VARIANTS[name] for name, program in pairs)):
            raise ValueError(f"programs {self.programs} are not GM variants of {self.instruments}: {GM_VARIANTS}")
        if self.levels_db is not None and len(self.levels_db) != len(self.instruments):
            raise ValueError(f"levels_db {self.levels_db}: one level per instrument of {self.instruments}")


@dataclass(frozen=True)
class RealisticArtist:
    artist_id: str
    genres: list[str]
    probs: dict[str, float]
    bpm: float
    meters: dict[str, float]
    density: float


def make_artists(n_tracks: int, tracks_per_artist: float, rng: np.random.Generator):
    """Artists with their track counts (1 + Poisson), one genre each, cycling through GENRES."""
    out: list[tuple[RealisticArtist, int]] = []
    total = 0
    while total < n_tracks:
        i = len(out)
        genre = GENRES[i % len(GENRES)]
        prior = GENRE_PRIORS[genre]
        probs = {}
        for name in (*INSTRUMENTS, "drums", "minor", "swing"):
            p = min(max(prior[name], 0.01), 0.99)
            probs[name] = float(rng.beta(ARTIST_CONCENTRATION * p, ARTIST_CONCENTRATION * (1 - p)))
        meters = rng.dirichlet(8.0 * np.array([prior[m] for m in METERS]) + 0.05)
        artist = RealisticArtist(
            artist_id=f"a{i:04d}", genres=[genre], probs=probs,
            bpm=float(rng.normal(prior["bpm_mean"], 0.7 * prior["bpm_sd"])),
            meters=dict(zip(METERS, meters.tolist(), strict=True)),
            density=float(rng.uniform(0.2, 0.9)),
        )
        count = min(1 + int(rng.poisson(tracks_per_artist - 1)), n_tracks - total)
        out.append((artist, count))
        total += count
    return out


def draw_piece(artist: RealisticArtist, duration: float, rng: np.random.Generator) -> Piece:
    """2 to 4 instruments drawn by the artist's preferences, at least one of them playing chords."""
    weights = np.array([artist.probs[name] for name in INSTRUMENTS])
    k = int(rng.integers(2, 5))
    chosen = set(rng.choice(INSTRUMENTS, size=k, replace=False, p=weights / weights.sum()).tolist())
    if not chosen & set(CHORD_INSTRUMENTS):
        # The harmony must be written by someone: the artist's likeliest comping instrument replaces the
        # least likely of the drawn ones.
        chosen.remove(min(chosen, key=lambda name: artist.probs[name]))
        chosen.add(max(CHORD_INSTRUMENTS, key=lambda name: artist.probs[name]))
    meter = str(rng.choice(list(artist.meters), p=list(artist.meters.values())))
    swing = rng.random() < artist.probs["swing"] and meter != "7/8"
    genre = artist.genres[0]
    bpm = float(np.clip(rng.normal(artist.bpm, 0.5 * GENRE_PRIORS[genre]["bpm_sd"]), 60.0, 200.0))
    return Piece(
        duration=duration, bpm=round(bpm, 2), meter=meter, swing=float(rng.uniform(0.09, 0.17)) if swing else 0.0,
        key_root=int(rng.integers(12)), mode="minor" if rng.random() < artist.probs["minor"] else "major",
        instruments=tuple(name for name in INSTRUMENTS if name in chosen),
        drums=bool(rng.random() < artist.probs["drums"]),
        density=float(np.clip(artist.density + rng.normal(0, 0.1), 0.05, 0.95)),
        reverb=int(rng.integers(20, 90)), channels=2 if rng.random() < 0.6 else 1,
        # Recordings differ: which instrument of a kind, how loud each sits in the mix, how dull the master.
        programs=tuple(int(rng.choice(GM_VARIANTS[name])) for name in INSTRUMENTS if name in chosen),
        levels_db=tuple(float(rng.uniform(-12.0, 0.0)) for name in INSTRUMENTS if name in chosen),
        lowpass_hz=float(2 ** rng.uniform(np.log2(2500.0), np.log2(12000.0))) if rng.random() < 0.5 else None,
    )


def _place(pc: int, lo: int) -> int:
    """The lowest MIDI note >= lo with pitch class pc."""
    return lo + (pc - lo) % 12


class _Score:
    """Notes on the piece's grid: (channel, start beat, length in beats, MIDI note, velocity)."""

    def __init__(self, piece: Piece, rng: np.random.Generator):
        self.piece, self.rng = piece, rng
        self.per_bar = METERS[piece.meter]
        self.n_beats = piece.duration * piece.bpm / 60.0
        self.n_bars = int(self.n_beats / self.per_bar) + 1
        prog = _PROGRESSIONS[piece.mode][rng.integers(len(_PROGRESSIONS[piece.mode]))]
        bars_per_chord = 2 if self.per_bar * 60.0 / piece.bpm < 1.6 else 1  # short bars: harmony moves slower
        self.scale = [(piece.key_root + d) % 12 for d in SCALES[piece.mode]]
        self.chords = [self._triad(prog[(b // bars_per_chord) % len(prog)]) for b in range(self.n_bars)]
        self.notes: list[tuple[int, float, float, int, int]] = []

    def _triad(self, degree: int) -> tuple[int, ...]:
        """The triad on a scale degree; in minor the dominant is major (the harmonic minor's leading tone),
        as in common-practice harmony: a natural-minor piece sounds too much like its relative major."""
        triad = [self.scale[(degree + i) % 7] for i in (0, 2, 4)]
        if self.piece.mode == "minor" and degree == 4:
            triad[1] = (triad[1] + 1) % 12
        return tuple(triad)

    def chord_at(self, beat: float) -> tuple[int, ...]:
        return self.chords[min(int(beat // self.per_bar), self.n_bars - 1)]

    def accent(self, beat: float) -> int:
        """Velocity: group starts of the meter loudest, other beats middling, off-beats softer."""
        in_bar = beat - self.per_bar * int(beat // self.per_bar)
        base = 100 if in_bar in _GROUP_STARTS[self.piece.meter] else (80 if in_bar == int(in_bar) else 65)
        return int(np.clip(base + self.rng.integers(-6, 7), 1, 127))

    def add(self, channel: int, start: float, length: float, note: int, velocity: int) -> None:
        if start < self.n_beats:
            self.notes.append((channel, start, length, note, velocity))

    def bass(self, channel: int, lo: int) -> None:
        hits = range(self.per_bar) if self.piece.density > 0.4 else _GROUP_STARTS[self.piece.meter]
        for bar in range(self.n_bars):
            for h in hits:
                beat = bar * self.per_bar + h
                chord = self.chord_at(beat)
                pc = chord[2] if h and self.rng.random() < 0.25 else chord[0]
                self.add(channel, beat, 0.9, _place(pc, lo), self.accent(beat))

    def chords_part(self, channel: int, name: str, lo: int) -> None:
        """Block chords: sustained a bar (organ, strings), on group starts (piano) or strummed (guitar)."""
        sustained = name in ("organ", "strings")
        for bar in range(self.n_bars):
            if sustained:
                starts = [(0.0, float(self.per_bar))]
            elif name == "acoustic_guitar" and self.piece.density > 0.5:
                starts = [(float(b), 1.0) for b in range(self.per_bar)]
            else:
                groups = [*_GROUP_STARTS[self.piece.meter], self.per_bar]
                starts = [(float(a), float(b - a)) for a, b in itertools.pairwise(groups)]
            for offset, length in starts:
                beat = bar * self.per_bar + offset
                chord = self.chord_at(beat)
                voicing = [_place(chord[0], lo), _place(chord[1], lo + 4), _place(chord[2], lo + 7)]
                velocity = self.accent(beat) - (15 if sustained else 0)
                for j, note in enumerate(voicing):
                    roll = 0.03 * j if name == "acoustic_guitar" else 0.0
                    self.add(channel, beat + roll, length * 0.95 - roll, note, velocity)

    def melody(self, channel: int, lo: int, hi: int) -> None:
        """A scale-wise random walk in [lo, hi] that lands on chord tones on downbeats and often between."""
        notes = [m for m in range(lo, hi + 1) if m % 12 in self.scale]
        idx = len(notes) // 2
        beat, total = 0.0, self.n_bars * self.per_bar
        while beat < total:
            in_bar = beat - self.per_bar * int(beat // self.per_bar)
            step = 0.5 if self.rng.random() < 0.5 * self.piece.density else 1.0
            length = step * float(self.rng.choice([1, 1, 2]))
            if in_bar + length > self.per_bar + 0.01 or self.rng.random() < 0.1 + 0.3 * (1 - self.piece.density):
                beat += step
                continue
            idx = int(np.clip(idx + self.rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, len(notes) - 1))
            chord = self.chord_at(beat)
            if in_bar == 0 or self.rng.random() < 0.5:
                tones = [i for i, m in enumerate(notes) if m % 12 in chord]
                idx = min(tones, key=lambda i: abs(i - idx))
            self.add(channel, beat, length * 0.95, notes[idx], self.accent(beat))
            beat += length

    def drums(self) -> None:
        hat = _RIDE if self.piece.swing else _HAT
        hat_step = 0.5 if self.piece.density > 0.45 and self.piece.meter != "7/8" else 1.0
        for bar in range(self.n_bars):
            for offset, drum, velocity in _GROOVES[self.piece.meter]:
                self.add(_DRUMS_CHANNEL, bar * self.per_bar + offset, 0.25, drum, velocity)
            for i in range(round(self.per_bar / hat_step)):
                beat = bar * self.per_bar + i * hat_step
                self.add(_DRUMS_CHANNEL, beat, 0.25, hat, self.accent(beat) - 20)


def write_score(piece: Piece, rng: np.random.Generator) -> list[tuple[int, float, float, int, int]]:
    """The piece's notes, (channel, start beat, length in beats, MIDI note, velocity); channel i plays
    `piece.instruments[i]` and channel 9 the drums. The first chord instrument plays the chords, a second
    one doubles them an octave up; every melodic instrument plays its own line, and without one the first
    chord instrument plays a melody too."""
    score = _Score(piece, rng)
    comping = [name for name in piece.instruments if name in CHORD_INSTRUMENTS]
    has_tune = any(name in MELODY_INSTRUMENTS for name in piece.instruments)
    for channel, name in enumerate(piece.instruments):
        lo, hi = RANGES[name]
        if name == "bass":
            score.bass(channel, lo)
        elif name in MELODY_INSTRUMENTS:
            score.melody(channel, lo, hi)
        else:
            score.chords_part(channel, name, lo if name == comping[0] else lo + 12)
            if name == comping[0] and not has_tune:
                score.melody(channel, hi - 12, hi + 12)
    if piece.drums:
        score.drums()
    return score.notes


def _swung(beat: float, swing: float) -> float:
    """Swing delays whatever falls on the off-beat eighth (as toycatalog.synth does)."""
    k = math.floor(beat)
    f = beat - k
    return k + (f * (0.5 + swing) / 0.5 if f < 0.5 else 0.5 + swing + (f - 0.5) * (0.5 - swing) / 0.5)


def midi_file(piece: Piece, notes) -> mido.MidiFile:
    """A type-0 MIDI file: tempo, time signature, a program and reverb send per channel, then the notes,
    cut at the piece's duration."""
    numerator, denominator = (int(x) for x in piece.meter.split("/"))
    events = [(0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(piece.bpm))),
              (0, mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator))]
    for channel, name in enumerate(piece.instruments):
        program = GM_PROGRAMS[name] if piece.programs is None else piece.programs[channel]
        level_db = 0.0 if piece.levels_db is None else piece.levels_db[channel]
        events.append((0, mido.Message("program_change", channel=channel, program=program)))
        events.append((0, mido.Message("control_change", channel=channel, control=91, value=piece.reverb)))
        # FluidSynth's default volume curve: 40 log10(CC7 / 127) dB.
        volume = round(127 * 10 ** (level_db / 40))
        events.append((0, mido.Message("control_change", channel=channel, control=7, value=volume)))
    events.append((0, mido.Message("control_change", channel=_DRUMS_CHANNEL, control=91, value=piece.reverb // 2)))
    end = round(piece.duration * piece.bpm / 60.0 * TICKS)
    for channel, start, length, note, velocity in notes:
        on = round(_swung(start, piece.swing) * TICKS)
        off = min(round(_swung(start + length, piece.swing) * TICKS), end)
        if off <= on:
            continue
        events.append((on, mido.Message("note_on", channel=channel, note=note, velocity=velocity)))
        events.append((off, mido.Message("note_off", channel=channel, note=note, velocity=0)))
    # note_off before note_on at the same tick, so a repeated note is not cut by its predecessor's end.
    events.sort(key=lambda e: (e[0], e[1].type == "note_on"))
    track = mido.MidiTrack()
    now = 0
    for tick, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, end - now)))
    midi = mido.MidiFile(type=0, ticks_per_beat=TICKS)
    midi.tracks.append(track)
    return midi


def soundfont() -> str | None:
    """The first General MIDI soundfont found ($COLDTAG_SOUNDFONT first), or None."""
    candidates = [os.environ.get("COLDTAG_SOUNDFONT", ""), *SOUNDFONTS]
    return next((path for path in candidates if path and Path(path).is_file()), None)


def fluidsynth_missing() -> str | None:
    """Why the realistic mode cannot render here, or None when it can."""
    if shutil.which("fluidsynth") is None:
        return "the fluidsynth command is not installed (Debian: apt-get install fluidsynth)"
    if soundfont() is None:
        return (f"no General MIDI soundfont at {', '.join(SOUNDFONTS)} (Debian: apt-get install fluid-soundfont-gm, "
                "or set COLDTAG_SOUNDFONT)")
    return None


def render_midi(midi: mido.MidiFile, duration: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Play a MIDI file through FluidSynth and the GM soundfont: (2, round(duration * sample_rate)) float32."""
    missing = fluidsynth_missing()
    if missing:
        raise RuntimeError(f"cannot render realistic audio: {missing}")
    with tempfile.TemporaryDirectory(prefix="coldtag-fluidsynth-") as tmp:
        mid, wav = Path(tmp) / "piece.mid", Path(tmp) / "piece.wav"
        midi.save(mid)
        command = ["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(sample_rate), "-F", str(wav), "-T", "wav",
                   "-O", "s16", "-o", "synth.cpu-cores=1", soundfont(), str(mid)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"fluidsynth failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        rate, data = wavfile.read(wav)
    if rate != sample_rate:
        raise RuntimeError(f"fluidsynth wrote {rate} Hz, asked for {sample_rate}")
    audio = data.T.astype(np.float32) / 32768.0  # (2, samples)
    n = round(duration * sample_rate)
    out = np.zeros((audio.shape[0], n), np.float32)
    out[:, : min(n, audio.shape[1])] = audio[:, :n]
    return out


def render_piece(piece: Piece, notes, sample_rate: int = SAMPLE_RATE, loudness_db: float = -20.0) -> np.ndarray:
    """Render and master a piece's notes (from `write_score`): (piece.channels, samples) float32 at
    `loudness_db` RMS, peaks <= 0.98."""
    audio = render_midi(midi_file(piece, notes), piece.duration, sample_rate)
    if piece.lowpass_hz is not None and piece.lowpass_hz < 0.45 * sample_rate:
        audio = signal.sosfilt(signal.butter(2, piece.lowpass_hz, "lowpass", fs=sample_rate, output="sos"),
                               audio, axis=-1).astype(np.float32)
    if piece.channels == 1:
        audio = audio.mean(axis=0, keepdims=True)
    rms = float(np.sqrt(np.mean(audio**2)))
    if rms > 0:
        audio *= 10 ** (loudness_db / 20) / rms
    peak = float(np.max(np.abs(audio)))
    if peak > 0.98:
        audio *= 0.98 / peak
    return audio


def written_key(notes) -> tuple[int, str]:
    """The key the pitched notes of `write_score` fit best, each weighted by its length in beats (Krumhansl-Kessler
    profiles, `tagging.keys.best_key`: the profiles live apart from the tagger, which reads them too)."""
    chroma = np.zeros(12)
    for channel, _, length, note, _ in notes:
        if channel != _DRUMS_CHANNEL:
            chroma[note % 12] += length
    return best_key(chroma)
