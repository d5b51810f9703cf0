"""From a seed to a catalog: artists, their tracks' traits, the labels an annotator would give, and splits.

A genre is a prior over traits, an artist a draw from that prior (so an artist's tracks resemble each other
more than their genre does), a track a draw around its artist. Labels are functions of the traits, never
of the genre directly; moods add noise on top, and the annotated columns flip a few percent of the binary
attributes, so no label is trivially determined by another.
"""

import math
from dataclasses import dataclass

import numpy as np

from toycatalog.synth import HARMONIC_INSTRUMENTS, INSTRUMENTS, METERS, SAMPLE_RATES, TrackSpec, Voice

GENRES = ("folk", "rock", "metal", "electronic", "jazz", "classical", "hiphop", "pop")
MOODS = ("happy", "sad", "energetic", "calm", "dark", "romantic")
ATTRIBUTES = (
    *INSTRUMENTS,
    "odd_meter", "triple_meter", "swing", "syncopation", "four_on_the_floor", "fast_tempo", "slow_tempo",
    "minor_key", "breathy_voice", "nasal_voice", "high_pitched_voice",
    "acoustic", "electronic", "dense_arrangement", "sparse_arrangement", "heavy_reverb", "lo_fi",
)
GRADED = ("tempo", "energy", "brightness", "valence")
GRADED_RANGES = ((60.0, 200.0), (0.0, 1.0), (0.0, 1.0), (0.0, 1.0))
FORMATS = ("wav", "flac", "mp3")

# Each genre's prior: the probability of each instrument and binary trait, the tempo (mean, sd in BPM),
# how busy (density) and how bright (tone) it tends to be, and how often each meter occurs.
_GENRE_TABLE = """
genre       banjo acoustic_guitar piano distorted_guitar synth_pad bass drums vocals
folk          .55     .85          .10     .01            .03     .55  .35   .65
rock          .03     .30          .20     .60            .12     .95  .95   .80
metal         .01     .06          .05     .97            .20     .92  .98   .65
electronic    .01     .03          .20     .04            .90     .90  .92   .30
jazz          .02     .20          .85     .02            .06     .90  .80   .35
classical     .01     .25          .75     .01            .25     .20  .05   .12
hiphop        .02     .08          .40     .05            .35     .95  .98   .85
pop           .04     .35          .45     .10            .50     .90  .88   .92

genre       minor swing syncopation electronic_drums synth_bass four_on_the_floor heavy_reverb lo_fi
folk          .30   .30     .15           .02            .02          .05            .15      .25
rock          .40   .12     .30           .03            .03          .10            .25      .12
metal         .88   .03     .35           .03            .03          .05            .30      .10
electronic    .50   .12     .45           .92            .85          .65            .50      .10
jazz          .45   .75     .55           .03            .03          .02            .30      .30
classical     .45   .02     .05           .01            .02          .01            .75      .15
hiphop        .60   .45     .60           .65            .60          .08            .20      .45
pop           .30   .10     .35           .45            .35          .30            .35      .08

genre       high_voice breathy nasal bpm_mean bpm_sd density tone 3/4  4/4  5/4  7/8
folk           .45       .25    .45    115      25     .45   .60  .35  .55  .05  .05
rock           .45       .15    .30    128      22     .65   .70  .08  .85  .04  .03
metal          .50       .05    .20    160      25     .85   .75  .10  .65  .10  .15
electronic     .70       .50    .10    125      15     .60   .70  .03  .93  .02  .02
jazz           .45       .60    .15    140      40     .55   .50  .20  .55  .15  .10
classical      .80       .10    .05     95      25     .35   .45  .40  .45  .08  .07
hiphop         .20       .20    .30     90       8     .55   .50  .02  .97  .01  .00
pop            .65       .40    .20    112      15     .60   .75  .08  .90  .01  .01
"""


def _parse_genre_table(text: str) -> dict[str, dict]:
    rows: dict[str, dict[str, float]] = {}
    for block in text.strip().split("\n\n"):
        header, *lines = block.splitlines()
        names = header.split()[1:]
        for line in lines:
            genre, *values = line.split()
            rows.setdefault(genre, {}).update(zip(names, map(float, values), strict=True))
    priors = {}
    for genre, row in rows.items():
        priors[genre] = {
            "p": {k: v for k, v in row.items() if k in INSTRUMENTS or k in _FLAGS},
            "bpm": (row["bpm_mean"], row["bpm_sd"]),
            "density": row["density"],
            "tone": row["tone"],
            "meters": {m: row[m] for m in METERS},
        }
    return priors


_FLAGS = ("minor", "swing", "syncopation", "electronic_drums", "synth_bass", "four_on_the_floor",
          "heavy_reverb", "lo_fi", "high_voice", "breathy", "nasal")
GENRE_PRIORS = _parse_genre_table(_GENRE_TABLE)
ARTIST_CONCENTRATION = 3.0  # Beta concentration of an artist's trait probabilities around its genre's
CROSSOVER_SHARE = 0.12  # artists (and so tracks) with two genres
# Lengths are whole MP3 frames: FFmpeg then trims the encoder's padding exactly and every format decodes
# to the same number of samples.
_MP3_FRAME = 1152
FLIP_POSITIVE, FLIP_NEGATIVE = 0.05, 0.02  # annotators miss present traits more often than they invent them
# Ranges a track's continuous traits are drawn from; `hidden_traits` places a track within its range.
SWING_RANGE = (0.09, 0.17)  # off-beat delay of a swung track, in beats
ROOM_SECONDS = {False: (0.2, 1.0), True: (1.8, 3.0)}  # RT60, by heavy_reverb
ROOM_WET = {False: (0.04, 0.18), True: (0.3, 0.5)}  # reverb level, by heavy_reverb
LOUDNESS_SD_DB = 1.5  # mastering level around what the track's energy calls for


@dataclass
class Artist:
    artist_id: str
    genres: list[str]
    probs: dict[str, float]
    bpm: float
    density: float
    tone: float
    meters: dict[str, float]


def make_artists(n_tracks: int, tracks_per_artist: float, rng: np.random.Generator):
    """Artists with their track counts (1 + Poisson), cycling through the genres so every genre appears."""
    out: list[tuple[Artist, int]] = []
    total = 0
    while total < n_tracks:
        i = len(out)
        genres = [GENRES[i % len(GENRES)]]
        if rng.random() < CROSSOVER_SHARE:
            genres.append(str(rng.choice([g for g in GENRES if g != genres[0]])))
        priors = [GENRE_PRIORS[g] for g in genres]
        mean = {k: float(np.mean([p["p"][k] for p in priors])) for k in priors[0]["p"]}
        probs = {}
        for k, p in mean.items():
            p = min(max(p, 0.01), 0.99)
            probs[k] = float(rng.beta(ARTIST_CONCENTRATION * p, ARTIST_CONCENTRATION * (1 - p)))
        bpm_mean = np.mean([p["bpm"][0] for p in priors])
        bpm_sd = np.mean([p["bpm"][1] for p in priors])
        meters = np.mean([list(p["meters"].values()) for p in priors], axis=0)
        meters = rng.dirichlet(8.0 * meters + 0.05)
        artist = Artist(
            artist_id=f"a{i:04d}",
            genres=genres,
            probs=probs,
            bpm=float(rng.normal(bpm_mean, 0.7 * bpm_sd)),
            density=float(np.clip(np.mean([p["density"] for p in priors]) + rng.normal(0, 0.12), 0.05, 0.95)),
            tone=float(np.clip(np.mean([p["tone"] for p in priors]) + rng.normal(0, 0.15), 0.0, 1.0)),
            meters=dict(zip(METERS, meters.tolist(), strict=True)),
        )
        count = min(1 + int(rng.poisson(tracks_per_artist - 1)), n_tracks - total)
        out.append((artist, count))
        total += count
    return out


def draw_spec(artist: Artist, duration: float, rng: np.random.Generator) -> TrackSpec:
    """One track's synthesis parameters, sampled around its artist's profile."""
    p = artist.probs
    has = {k: bool(rng.random() < v) for k, v in p.items()}
    instruments = {name for name in INSTRUMENTS if has[name]}
    if not instruments & set(HARMONIC_INSTRUMENTS):
        instruments.add(max(HARMONIC_INSTRUMENTS, key=lambda name: p[name]))
    meter = str(rng.choice(list(artist.meters), p=list(artist.meters.values())))
    bpm = float(np.clip(rng.normal(artist.bpm, 0.5 * GENRE_PRIORS[artist.genres[0]]["bpm"][1]), 60.0, 200.0))
    density = float(np.clip(artist.density + rng.normal(0, 0.12), 0.05, 0.98))
    heavy = has["heavy_reverb"]
    voice = Voice(has["high_voice"], has["breathy"], has["nasal"]) if "vocals" in instruments else None
    energy = energy_of(bpm, density, instruments)
    sample_rate = int(rng.choice(SAMPLE_RATES))
    # Swing delays the off-beat between quarter-note beats; 7/8 already counts in eighths, so it has none.
    swing = float(rng.uniform(*SWING_RANGE)) if has["swing"] and meter != "7/8" else 0.0
    return TrackSpec(
        duration=round(duration * sample_rate / _MP3_FRAME) * _MP3_FRAME / sample_rate,
        sample_rate=sample_rate,
        channels=2 if rng.random() < 0.6 else 1,
        bpm=round(bpm, 2),
        meter=meter,
        swing=swing,
        syncopation=has["syncopation"],
        key_root=int(rng.integers(12)),
        mode="minor" if has["minor"] else "major",
        instruments=frozenset(instruments),
        electronic_drums=has["electronic_drums"] and "drums" in instruments,
        synth_bass=has["synth_bass"] and "bass" in instruments,
        four_on_the_floor=has["four_on_the_floor"] and meter == "4/4" and "drums" in instruments,
        density=density,
        voice=voice,
        reverb_seconds=float(rng.uniform(*ROOM_SECONDS[heavy])),
        reverb_wet=float(rng.uniform(*ROOM_WET[heavy])),
        lo_fi=has["lo_fi"],
        tone=float(np.clip(artist.tone + rng.normal(0, 0.1), 0.0, 1.0)),
        loudness_db=float(np.clip(loudness_for(energy) + rng.normal(0, LOUDNESS_SD_DB), -26.0, -10.0)),
    )


def energy_of(bpm: float, density: float, instruments) -> float:
    """Perceived energy: mostly tempo and busyness, raised by distortion and drums."""
    tempo = (bpm - 60.0) / 140.0
    return float(np.clip(0.15 + 0.3 * tempo + 0.25 * density + 0.2 * ("distorted_guitar" in instruments)
                         + 0.15 * ("drums" in instruments) - 0.15 * ("drums" not in instruments), 0.0, 1.0))


def loudness_for(energy: float) -> float:
    """The mastering level (dBFS RMS) a track of this energy gets before its own spread."""
    return -22.0 + 10.0 * energy


def true_attributes(spec: TrackSpec) -> list[str]:
    """The binary attributes a perfect listener would hear, in ATTRIBUTES order."""
    inst = spec.instruments
    electronic = ("synth_pad" in inst) or spec.electronic_drums or spec.synth_bass
    layers = len(inst)
    on = {
        **{name: name in inst for name in INSTRUMENTS},
        "odd_meter": spec.meter in ("5/4", "7/8"),
        "triple_meter": spec.meter == "3/4",
        "swing": spec.swing > 0,
        "syncopation": spec.syncopation,
        "four_on_the_floor": spec.four_on_the_floor,
        "fast_tempo": spec.bpm >= 140.0,
        "slow_tempo": spec.bpm < 90.0,
        "minor_key": spec.mode == "minor",
        "breathy_voice": spec.voice is not None and spec.voice.breathy,
        "nasal_voice": spec.voice is not None and spec.voice.nasal,
        "high_pitched_voice": spec.voice is not None and spec.voice.high,
        "acoustic": not electronic and "distorted_guitar" not in inst,
        "electronic": electronic,
        "dense_arrangement": layers >= 6 or (layers >= 4 and spec.density >= 0.7),
        "sparse_arrangement": layers <= 2 or (layers == 3 and spec.density < 0.35),
        "heavy_reverb": spec.reverb_seconds >= 1.5 and spec.reverb_wet >= 0.25,
        "lo_fi": spec.lo_fi,
    }
    return [a for a in ATTRIBUTES if on[a]]


HIDDEN_TRAITS = ("drum_machine_vs_synth_bass", "swing_depth", "room_size", "reverb_level", "loudness_excess",
                 "key_fifths_cos", "key_fifths_sin")


def hidden_traits(spec: TrackSpec) -> list[float]:
    """What the audio carries and the vocabulary does not list, in HIDDEN_TRAITS order.

    Each trait is audible in the 16 kHz mono downmix a tagger hears (so not the stereo width, the panning
    or the sample rate) and as good as unpredictable from the listed traits: a linear fit from the genres,
    true attributes, tempo, energy and tone explains under a fifth of any one's variance (tested). Where the
    raw parameter mostly restates a listed label, the trait is its part the label leaves open:

    - drum_machine_vs_synth_bass: +1 electronic drums without a synth bass, -1 the reverse, 0 both or
      neither. The vocabulary merges pad, drum machine and synth bass into one `electronic`; the kit's
      timbre and its quantized timing, and a saw bass against a sine one, tell which. The two flags alone
      are half predictable from `electronic`, `drums`, `bass` and the genre; their contrast is not.
    - swing_depth: -1 .. 1 over SWING_RANGE for swung tracks, 0 for straight ones: how far the off-beats
      are late (onset timing), where the vocabulary says only whether they are.
    - room_size, reverb_level: -1 .. 1 over the RT60 and wet ranges of the track's kind of room (ROOM_SECONDS,
      ROOM_WET): the length and level of the reverb tail, beyond the listed `heavy_reverb`.
    - loudness_excess: dB the master sits above the level its energy calls for (`loudness_for`); the
      tagger's log-mel input is not level-normalized, and the listed energy carries only the rest.
    - key_fifths_cos, key_fifths_sin: the key signature (a minor key's relative major) as a point on the
      circle of fifths, so that neighbouring keys are near; chroma hears it, the vocabulary lists only the
      mode.

    Left out: the continuous density, since energy is a function of tempo, density and instrumentation
    (a linear fit recovers density almost exactly from listed traits), and the tone, which the listed
    brightness measures.
    """
    heavy = spec.reverb_seconds >= ROOM_SECONDS[True][0]
    signature = (spec.key_root + (3 if spec.mode == "minor" else 0)) % 12
    angle = 2 * math.pi * (7 * signature % 12) / 12  # a fifth up is one step round the circle
    return [
        float(spec.electronic_drums) - float(spec.synth_bass),
        _position(spec.swing, *SWING_RANGE) if spec.swing > 0 else 0.0,
        _position(spec.reverb_seconds, *ROOM_SECONDS[heavy]),
        _position(spec.reverb_wet, *ROOM_WET[heavy]),
        spec.loudness_db - loudness_for(energy_of(spec.bpm, spec.density, spec.instruments)),
        math.cos(angle),
        math.sin(angle),
    ]


def _position(value: float, lo: float, hi: float) -> float:
    """-1 at lo, 1 at hi."""
    return (2.0 * value - lo - hi) / (hi - lo)


# Spectral centroids (Hz, 0-8 kHz band) that map to brightness 0 and 1; the catalog spans about this range.
CENTROID_DARK, CENTROID_BRIGHT = 550.0, 3000.0


def spectral_centroid(audio: np.ndarray, sample_rate: int) -> float:
    """Centroid of the mix's average magnitude spectrum below 8 kHz.

    The band stops at 8 kHz so that a track's brightness does not depend on its sample rate: a 16 kHz
    file and a 44.1 kHz one of the same music measure the same, as a 16 kHz tagger front-end hears them.
    """
    n_fft = 2048
    frames = np.lib.stride_tricks.sliding_window_view(audio.mean(axis=0), n_fft)[:: n_fft // 2]
    magnitude = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)).mean(axis=0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    band = (freqs >= 20.0) & (freqs <= 8000.0)
    return float((freqs[band] * magnitude[band]).sum() / magnitude[band].sum())


def graded(spec: TrackSpec, centroid: float) -> dict[str, float]:
    """True graded attributes; brightness is the measured centroid of the rendered mix on a log scale."""
    span = math.log(CENTROID_BRIGHT / CENTROID_DARK)
    brightness = float(np.clip(math.log(centroid / CENTROID_DARK) / span, 0.0, 1.0))
    valence = (0.45 * (spec.mode == "major") + 0.25 * (spec.bpm - 60.0) / 140.0 + 0.2 * brightness
               + 0.1 * ("distorted_guitar" not in spec.instruments))
    return {"tempo": spec.bpm, "energy": energy_of(spec.bpm, spec.density, spec.instruments),
            "brightness": brightness, "valence": float(np.clip(valence, 0.0, 1.0))}


def moods(spec: TrackSpec, attrs: list[str], grades: dict[str, float], rng: np.random.Generator) -> list[str]:
    """Moods follow the music loosely: a noisy score per mood, at least one mood per track."""
    e, b, v = grades["energy"], grades["brightness"], grades["valence"]
    a = set(attrs)
    score = {
        "happy": v,
        "sad": 0.6 * (1 - v) + 0.4 * (1 - e),
        "energetic": e,
        "calm": 0.7 * (1 - e) + 0.3 * ("sparse_arrangement" in a),
        "dark": 0.45 * ("minor_key" in a) + 0.3 * (1 - b) + 0.2 * ("distorted_guitar" in a)
        + 0.1 * ("heavy_reverb" in a),
        "romantic": 0.3 * (spec.bpm < 110) + 0.25 * bool(a & {"piano", "acoustic_guitar"})
        + 0.25 * ("breathy_voice" in a) + 0.2 * (1 - e) - 0.3 * ("distorted_guitar" in a),
    }
    threshold = {"happy": 0.7, "sad": 0.58, "energetic": 0.65, "calm": 0.6, "dark": 0.63, "romantic": 0.55}
    noisy = {m: s + rng.normal(0, 0.1) for m, s in score.items()}
    out = [m for m in MOODS if noisy[m] > threshold[m]]
    return out or [max(MOODS, key=lambda m: noisy[m] - threshold[m])]


def annotate(attrs: list[str], grades: dict[str, float], rng: np.random.Generator):
    """What a (good, human) annotator writes down: a few attribute flips, a little graded jitter."""
    present = set(attrs)
    flips = rng.random(len(ATTRIBUTES))
    noisy = [a for a, u in zip(ATTRIBUTES, flips, strict=True)
             if (a in present and u >= FLIP_POSITIVE) or (a not in present and u < FLIP_NEGATIVE)]
    tempo = grades["tempo"] * (1.0 + rng.normal(0, 0.01))
    if rng.random() < 0.03:  # the classic tapping error: half or double time
        doubled = tempo * (2.0 if rng.random() < 0.5 else 0.5)
        tempo = doubled if 60.0 <= doubled <= 200.0 else tempo
    out = {"tempo": float(np.clip(round(tempo, 1), 60.0, 200.0))}
    for k in ("energy", "brightness", "valence"):
        out[k] = float(np.clip(round(grades[k] + rng.normal(0, 0.06), 3), 0.0, 1.0))
    return noisy, out


def assign_splits(artist_ids: list[str], primary_genres: list[str], rng: np.random.Generator):
    """Artist-disjoint 80/10/10 split, spread over genres.

    Artists sorted by genre (shuffled within) are dealt out in a repeating pattern of ten, so each split
    takes every tenth artist of every genre instead of whole genres.
    """
    order = sorted(range(len(artist_ids)), key=lambda i: (primary_genres[i], rng.random()))
    offset = int(rng.integers(10))
    out = {}
    for rank, i in enumerate(order):
        slot = (rank + offset) % 10
        out[artist_ids[i]] = "test" if slot == 0 else ("val" if slot == 5 else "train")
    return out
