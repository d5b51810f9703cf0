"""The toy catalog: its files follow the contract, its audio carries its labels, its bytes follow its seed."""

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from torchcodec.decoders import AudioDecoder

import toycatalog.build
from toycatalog import PRESETS, build_catalog, load_manifest
from toycatalog.artwork import draw_cover
from toycatalog.catalog import (
    ATTRIBUTES,
    GENRES,
    HIDDEN_TRAITS,
    MOODS,
    draw_spec,
    energy_of,
    hidden_traits,
    loudness_for,
    make_artists,
    true_attributes,
)
from toycatalog.cli import main
from toycatalog.synth import TrackSpec, render

SR = 16000
# Krumhansl-Kessler key profiles, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@pytest.fixture(scope="module")
def catalog(tiny_catalog) -> Path:
    """The session's tiny catalog (seed 0, default workers), from conftest."""
    return tiny_catalog


@pytest.fixture(scope="module")
def manifest(catalog) -> pd.DataFrame:
    return load_manifest(catalog)


@pytest.fixture(scope="module")
def mono(catalog, manifest) -> dict[str, np.ndarray]:
    """Every track decoded to 16 kHz mono, as a tagger front-end would read it."""
    return {
        row.track_id: AudioDecoder(str(catalog / row.audio_path), sample_rate=SR, num_channels=1)
        .get_all_samples().data[0].numpy()
        for row in manifest.itertuples()
    }


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("summary.")  # the summary records the build's wall time
    }


def _spectrogram(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(samples,) -> (frames, n_fft // 2 + 1) magnitudes."""
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop] * np.hanning(n_fft)
    return np.abs(np.fft.rfft(frames, axis=1))


def _tempo(y: np.ndarray) -> float:
    """Tempo from the autocorrelation of a spectral-flux onset envelope, with a broad prior around 120 BPM."""
    log_spec = np.log1p(100 * _spectrogram(y, 1024, 160))  # 100 frames per second
    flux = np.maximum(np.diff(log_spec, axis=0), 0).sum(1)
    env = np.maximum(flux - np.convolve(flux, np.ones(41) / 41, "same"), 0)
    env -= env.mean()
    n = env.size
    acf = np.correlate(env, env, "full")[n - 1 :] / (n - np.arange(n))
    lags = np.arange(25, 150)  # 240 .. 40 BPM
    bpms = 6000.0 / lags
    return float(bpms[np.argmax(acf[lags] * np.exp(-0.5 * np.log2(bpms / 120) ** 2))])


def _chroma(y: np.ndarray) -> np.ndarray:
    magnitude = _spectrogram(y, 4096, 1024).mean(0) ** 0.5
    freqs = np.fft.rfftfreq(4096, 1 / SR)
    band = (freqs > 100) & (freqs < 1000)
    pitch_class = (np.round(12 * np.log2(freqs[band] / 440.0)) + 9) % 12
    return np.array([magnitude[band][pitch_class == k].sum() for k in range(12)])


def _centroid(y: np.ndarray) -> float:
    magnitude = _spectrogram(y, 1024, 256).mean(0)
    return float((magnitude * np.fft.rfftfreq(1024, 1 / SR)).sum() / magnitude.sum())


def test_manifest_and_vocab_follow_the_contract(catalog, manifest):
    vocab = json.loads((catalog / "vocab.json").read_text())["groups"]
    assert vocab["genre"]["labels"] == list(GENRES) and vocab["mood"]["labels"] == list(MOODS)
    assert vocab["attribute"]["labels"] == list(ATTRIBUTES) and len(ATTRIBUTES) >= 24
    assert vocab["graded"] == {"type": "regression", "labels": ["tempo", "energy", "brightness", "valence"],
                               "ranges": [[60.0, 200.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]}
    assert len(manifest) == PRESETS["tiny"].n_tracks and manifest["track_id"].is_unique
    for group in ("genre", "mood", "attribute"):
        assert vocab[group]["type"] == "multilabel"
        used = set(manifest[group].explode().dropna())
        assert used <= set(vocab[group]["labels"]), group
    assert set(manifest["genre"].explode()) == set(GENRES)  # tiny still covers every genre
    assert manifest["mood"].map(len).min() >= 1 and manifest["genre"].map(len).max() <= 2
    for label, (lo, hi) in zip(vocab["graded"]["labels"], vocab["graded"]["ranges"], strict=True):
        assert manifest[label].between(lo, hi).all(), label

    pairs = set(zip(manifest["split"], manifest["item_split"], strict=True))
    assert pairs == {("train", "warm"), ("val", "cold_val"), ("test", "cold_test")}
    assert manifest.groupby("artist_id")["split"].nunique().max() == 1  # artist-disjoint
    assert 0.6 < (manifest["split"] == "train").mean() < 0.95

    assert manifest["audio_path"].map(lambda p: (catalog / p).is_file()).all()
    vocal = manifest["true_attribute"].map(lambda a: "vocals" in a)
    assert (manifest["lyrics_path"].notna() == vocal).all()  # lyrics exactly for sung tracks
    lyrics = manifest["lyrics_path"].dropna().map(lambda p: (catalog / p).read_text("utf-8"))
    assert lyrics.map(lambda text: len(text.split()) > 40).all()
    covers = manifest["cover_path"].dropna()
    assert 0.6 < len(covers) / len(manifest) < 1.0
    for path in covers:
        with Image.open(catalog / path) as img:
            assert img.mode == "RGB" and img.width == img.height and 128 <= img.width <= 300
    assert set(manifest["format"]) == {"wav", "flac", "mp3"} and set(manifest["channels"]) == {1, 2}
    assert set(manifest["sample_rate"]) == {16000, 22050, 32000, 44100}
    assert set(manifest["meter"]) <= {"3/4", "4/4", "5/4", "7/8"}
    assert manifest["key_root"].between(0, 11).all()

    plays = pd.read_parquet(catalog / "plays.parquet")
    users = pd.read_parquet(catalog / "users.parquet")
    assert list(plays.columns) == ["user_id", "track_id", "plays"] and (plays["plays"] > 0).all()
    assert set(plays["track_id"]) <= set(manifest["track_id"])
    assert set(plays["user_id"]) <= set(users["user_id"])
    assert not plays.duplicated(["user_id", "track_id"]).any()
    assert len(users) == PRESETS["tiny"].n_users and users["liked"].map(len).min() >= 1
    summary = json.loads((catalog / "summary.json").read_text())
    assert summary["tracks"] == len(manifest) and summary["plays_rows"] == len(plays)


def test_labels_are_noisy_but_close_to_the_truth(manifest):
    pairs = zip(manifest["attribute"], manifest["true_attribute"], strict=True)
    flips = [len(set(a) ^ set(t)) for a, t in pairs]
    rate = sum(flips) / (len(manifest) * len(ATTRIBUTES))
    assert 0.002 < rate < 0.08
    assert (manifest["tempo"] - manifest["bpm"]).abs().median() < 0.03 * manifest["bpm"].median()
    # A genre is a prior, not a rule: no attribute is constant within every genre.
    per_genre = manifest.assign(g=manifest["genre"].str[0]).groupby("g")["true_attribute"]
    share = {(g, a): attrs.map(lambda x, a=a: a in x).mean() for g, attrs in per_genre for a in ATTRIBUTES}
    varies = {a for (_, a), p in share.items() if 0 < p < 1}
    assert len(varies) > len(ATTRIBUTES) // 2


def test_an_artists_tracks_resemble_each_other(manifest):
    sets = [set(a) for a in manifest["true_attribute"]]
    artists = manifest["artist_id"].to_numpy()
    same, other = [], []
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            jaccard = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
            (same if artists[i] == artists[j] else other).append(jaccard)
    assert np.mean(same) > np.mean(other) + 0.1


def test_files_decode_to_their_stated_duration(catalog, manifest):
    for fmt, rows in manifest.groupby("format"):
        for row in rows.itertuples():
            samples = AudioDecoder(str(catalog / row.audio_path)).get_all_samples()
            assert samples.sample_rate == row.sample_rate, fmt
            assert samples.data.shape[0] == row.channels, fmt
            assert abs(samples.duration_seconds - row.duration) < 0.002, (fmt, row.track_id)
            assert 0.01 < float(samples.data.abs().max()) <= 1.0


def test_onset_tempo_matches_bpm(manifest, mono):
    tracks = zip(manifest["track_id"], manifest["bpm"], strict=True)
    ratios = np.array([_tempo(mono[t]) / bpm for t, bpm in tracks])
    near_octave = np.min(np.abs(ratios[:, None] / np.array([0.5, 1.0, 2.0]) - 1.0), axis=1) < 0.06
    assert near_octave.mean() >= 0.8, np.round(ratios, 2)


def test_chroma_fits_the_mode(manifest, mono):
    margins = []
    for row in manifest.itertuples():
        chroma = _chroma(mono[row.track_id])
        fit_minor = np.corrcoef(chroma, np.roll(KK_MINOR, row.key_root))[0, 1]
        fit_major = np.corrcoef(chroma, np.roll(KK_MAJOR, row.key_root))[0, 1]
        margins.append((fit_minor - fit_major) * (1 if row.mode == "minor" else -1))
    margins = np.array(margins)
    assert (manifest["mode"] == "minor").sum() >= 8
    assert (margins > 0).mean() >= 0.8 and np.median(margins) > 0.1


def test_brightness_is_audible(manifest, mono):
    """The brightness label is the centroid a listener measures; distortion makes a mix brighter."""
    log_centroid = np.log([_centroid(mono[t]) for t in manifest["track_id"]])
    assert np.corrcoef(log_centroid, manifest["true_brightness"])[0, 1] > 0.9
    assert np.corrcoef(log_centroid, manifest["brightness"])[0, 1] > 0.8
    distorted = manifest["true_attribute"].map(lambda a: "distorted_guitar" in a).to_numpy()
    assert log_centroid[distorted].mean() > log_centroid[~distorted].mean() + 0.1


def test_banjo_is_bright_and_plucked_the_pad_dark_and_sustained():
    """Same track, one instrument at a time: the timbres differ as the instruments' names promise."""
    base = TrackSpec(
        duration=3.0, sample_rate=SR, channels=1, bpm=90.0, meter="4/4", swing=0.0, syncopation=False,
        key_root=2, mode="major", instruments=frozenset(), electronic_drums=False, synth_bass=False,
        four_on_the_floor=False, density=0.2, voice=None, reverb_seconds=0.2, reverb_wet=0.0, lo_fi=False,
        tone=1.0, loudness_db=-18.0,
    )
    solo = {}
    for name in ("banjo", "synth_pad", "acoustic_guitar"):
        audio = render(replace(base, instruments=frozenset([name])), np.random.default_rng(0))
        solo[name] = audio[0]
    assert _centroid(solo["banjo"]) > 2 * _centroid(solo["synth_pad"])
    assert _centroid(solo["banjo"]) > 1.3 * _centroid(solo["acoustic_guitar"])

    def rms_drop_db(y: np.ndarray) -> float:
        """Level 150 ms after each eighth-note onset relative to just after it (banjo plays eighths here)."""
        frames = y[: 7 * (SR // 3)].reshape(7, SR // 3)  # one eighth at 90 BPM per row
        head, tail = frames[:, : SR // 50], frames[:, int(0.15 * SR) : int(0.15 * SR) + SR // 50]
        return float(10 * np.log10((tail**2).mean() / (head**2).mean()))

    assert rms_drop_db(solo["banjo"]) < -8.0 < rms_drop_db(solo["synth_pad"])


def test_same_seed_same_bytes_whatever_the_workers(catalog, tmp_path, capsys):
    again = tmp_path / "again"
    assert main(["build", "--preset", "tiny", "--out", str(again), "--seed", "0", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "| tracks | 40 by" in printed and "wall time" in printed and "| attribute | banjo |" in printed
    assert _digests(again) == _digests(catalog)
    assert not list(tmp_path.glob("again.tmp-*"))


def test_another_seed_gives_another_catalog(catalog, tmp_path):
    other = tmp_path / "other"
    build_catalog(other, "tiny", seed=1, workers=1)
    a, b = _digests(catalog), _digests(other)
    shared = [k for k in a if k.startswith("audio/") and k in b]
    assert shared and all(a[k] != b[k] for k in shared)
    assert a["manifest.parquet"] != b["manifest.parquet"]


def test_existing_or_failed_builds_leave_no_half_catalog(catalog, tmp_path, monkeypatch):
    before = _digests(catalog)
    with pytest.raises(FileExistsError, match="overwrite"):
        build_catalog(catalog, "tiny", seed=0, workers=1)
    assert _digests(catalog) == before

    calls = []

    def failing_render(spec, rng):
        calls.append(spec)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        return render(spec, rng)

    monkeypatch.setattr(toycatalog.build, "render", failing_render)
    with pytest.raises(RuntimeError, match="disk full"):
        build_catalog(tmp_path / "broken", "tiny", seed=0, workers=1)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        build_catalog(tmp_path / "x", "huge")


def test_lyrics_and_covers_lean_on_mood_and_genre(catalog, manifest):
    from toycatalog.artwork import _BANKS

    hits, misses = 0, 0
    for row in manifest.dropna(subset=["lyrics_path"]).itertuples():
        words = set((catalog / row.lyrics_path).read_text("utf-8").lower().replace(",", "").split())
        own = {w for m in row.mood for part in _BANKS[m] for w in part}
        others = {w for m in MOODS if m not in row.mood for part in _BANKS[m] for w in part} - own
        hits += len(words & own) / len(own)
        misses += len(words & others) / max(len(others), 1)
    assert hits > 3 * misses

    def luminance(genre: str, mood: str) -> float:
        covers = [draw_cover([genre], [mood], 64, np.random.default_rng(s)).convert("L") for s in range(5)]
        return float(np.mean([np.asarray(c) for c in covers]))

    assert luminance("metal", "dark") < 0.5 * luminance("pop", "happy")


def test_hidden_traits_of_a_known_spec():
    spec = TrackSpec(
        duration=3.0, sample_rate=SR, channels=1, bpm=90.0, meter="4/4", swing=0.17, syncopation=False,
        key_root=9, mode="minor", instruments=frozenset(["drums", "bass", "piano"]), electronic_drums=True,
        synth_bass=False, four_on_the_floor=False, density=0.4, voice=None, reverb_seconds=2.4, reverb_wet=0.3,
        lo_fi=False, tone=0.5, loudness_db=0.0,
    )
    spec = replace(spec, loudness_db=loudness_for(energy_of(90.0, 0.4, spec.instruments)) + 2.0)
    traits = dict(zip(HIDDEN_TRAITS, hidden_traits(spec), strict=True))
    # A minor has C major's signature: the top of the circle of fifths; G major is one fifth round it.
    assert traits == pytest.approx({"drum_machine_vs_synth_bass": 1.0, "swing_depth": 1.0, "room_size": 0.0,
                                    "reverb_level": -1.0, "loudness_excess": 2.0, "key_fifths_cos": 1.0,
                                    "key_fifths_sin": 0.0})
    straight_g = dict(zip(HIDDEN_TRAITS, hidden_traits(replace(spec, swing=0.0, key_root=7, mode="major",
                                                                  synth_bass=True)), strict=True))
    assert straight_g["swing_depth"] == 0.0 and straight_g["drum_machine_vs_synth_bass"] == 0.0
    assert (straight_g["key_fifths_cos"], straight_g["key_fifths_sin"]) == pytest.approx((3**0.5 / 2, 0.5))


def test_hidden_traits_are_not_listed_traits_in_disguise():
    """No hidden trait is linearly predictable from the noiseless listed ones; density would be."""
    rng = np.random.default_rng(1)
    listed, hidden, density = [], [], []
    for artist, count in make_artists(1200, 6.0, np.random.default_rng(0)):
        for _ in range(count):
            spec = draw_spec(artist, 10.0, rng)
            attrs = set(true_attributes(spec))
            listed.append([a in attrs for a in ATTRIBUTES] + [g in artist.genres for g in GENRES]
                          + [spec.bpm, energy_of(spec.bpm, spec.density, spec.instruments), spec.tone, 1.0])
            hidden.append(hidden_traits(spec))
            density.append(spec.density)
    x, y = np.array(listed, float), np.c_[np.array(hidden), density]
    residual = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    r2 = dict(zip([*HIDDEN_TRAITS, "density"], 1 - residual.var(0) / y.var(0), strict=True))
    assert max(v for k, v in r2.items() if k != "density") < 0.2, r2
    assert r2["density"] > 0.95


def _stderr_line(capsys, argv) -> str:
    """Run the CLI expecting exit status 2; the last line of stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_plays_command_at_share_0_gives_back_the_catalogs_plays(catalog, tmp_path, capsys):
    out = tmp_path / "share0" / "plays.parquet"
    assert main(["plays", "--catalog", str(catalog), "--hidden-taste", "0", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"60 users, {len(pd.read_parquet(out))} user-track pairs")
    assert out.read_bytes() == (catalog / "plays.parquet").read_bytes()
    users, built = pd.read_parquet(out.with_name("users.parquet")), pd.read_parquet(catalog / "users.parquet")
    assert users[["user_id", "n_tracks", "total_plays"]].equals(built[["user_id", "n_tracks", "total_plays"]])
    # The same users, whose hidden likes are now listed beside their listed ones: 3 liked, 1 disliked.
    for column, n_hidden in (("liked", 3), ("disliked", 1)):
        hidden = users[column].map(lambda names: [n for n in names if n.startswith("hidden:")])
        listed = users[column].map(lambda names: [n for n in names if not n.startswith("hidden:")])
        assert (hidden.map(len) == n_hidden).all()
        assert listed.tolist() == built[column].map(list).tolist()


def test_a_catalog_built_with_hidden_taste_differs_in_its_listeners_only(catalog, tmp_path, capsys):
    built = tmp_path / "hidden"
    assert main(["build", "--preset", "tiny", "--out", str(built), "--hidden-taste", "0.5"]) == 0
    assert "| hidden taste | 0.50 of the listeners' taste" in capsys.readouterr().out
    assert json.loads((built / "summary.json").read_text())["hidden_taste"] == 0.5
    ours, theirs = _digests(built), _digests(catalog)
    assert {k for k in ours if ours[k] != theirs[k]} == {"plays.parquet", "users.parquet"}
    again = tmp_path / "again" / "plays.parquet"
    assert main(["plays", "--catalog", str(built), "--hidden-taste", "0.5", "--out", str(again)]) == 0
    assert again.read_bytes() == (built / "plays.parquet").read_bytes()
    assert again.with_name("users.parquet").read_bytes() == (built / "users.parquet").read_bytes()


def test_plays_command_names_what_is_wrong(catalog, tmp_path, capsys):
    out = str(tmp_path / "out" / "plays.parquet")
    line = _stderr_line(capsys, ["plays", "--catalog", str(catalog), "--hidden-taste", "1.5", "--out", out])
    assert "argument --hidden-taste: must be between 0 and 1, both included; got 1.5" in line
    line = _stderr_line(capsys, ["plays", "--catalog", str(catalog), "--hidden-taste", "0", "--out", "p.csv"])
    assert "--out must be a .parquet file" in line
    line = _stderr_line(capsys, ["plays", "--catalog", str(catalog), "--hidden-taste", "0",
                                 "--out", str(catalog / "plays2.parquet")])
    assert "inside the catalog" in line
    missing = tmp_path / "nowhere"
    line = _stderr_line(capsys, ["plays", "--catalog", str(missing), "--hidden-taste", "0", "--out", out])
    assert line == f"python -m toycatalog plays: error: {missing}: no such catalog folder"

    # A catalog whose summary names another seed than the one its tracks came from cannot be re-planned.
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.parquet").write_bytes((catalog / "manifest.parquet").read_bytes())
    (other / "summary.json").write_text(json.dumps({"preset": "tiny", "seed": 1}))
    line = _stderr_line(capsys, ["plays", "--catalog", str(other), "--hidden-taste", "0", "--out", out])
    assert line.startswith(f"python -m toycatalog plays: error: {other}: its tracks are not those preset 'tiny' seed 1")
    (other / "summary.json").write_text(json.dumps({"seed": 0}))
    line = _stderr_line(capsys, ["plays", "--catalog", str(other), "--hidden-taste", "0", "--out", out])
    assert "summary.json: needs a known preset and a seed, got preset None" in line
    assert not (tmp_path / "out").exists()

    with pytest.raises(ValueError, match=r"hidden_taste must be in \[0, 1\], got 1.2"):
        build_catalog(tmp_path / "never", "tiny", hidden_taste=1.2)
    assert not (tmp_path / "never").exists()
