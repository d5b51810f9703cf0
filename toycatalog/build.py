"""Write a toy catalog directory: audio, lyrics, covers, manifest, vocabulary, plays, users, summary.

Every random choice comes from a generator seeded by (seed, stream, track index), so the bytes written do
not depend on how many workers render or in which order they finish. The directory appears atomically:
everything is written into a sibling `DIR.tmp-XXXX` that is renamed into place at the end.

`replay_listeners` simulates a built catalog's listeners again with another hidden taste; the same seed
stream makes the catalog's own share give back its plays.
"""

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchcodec.encoders import AudioEncoder

from toycatalog.artwork import draw_cover, write_lyrics
from toycatalog.catalog import (
    ATTRIBUTES,
    FORMATS,
    GENRES,
    GRADED,
    GRADED_RANGES,
    MOODS,
    annotate,
    assign_splits,
    draw_spec,
    graded,
    make_artists,
    moods,
    spectral_centroid,
    true_attributes,
)
from toycatalog.listeners import simulate_listeners
from toycatalog.synth import TrackSpec, render
from toycatalog.workers import worker_pool


@dataclass(frozen=True)
class Preset:
    n_tracks: int
    duration: float  # nominal seconds; each track is 0.9-1.1 times this
    n_users: int
    tracks_per_artist: float
    items_per_user: float
    formats: tuple[float, float, float]  # shares of wav, flac, mp3
    # "synth": toycatalog.synth's timbres, with lyrics, covers and listeners; "fluidsynth": sampled GM
    # instruments (toycatalog.realistic), audio and tagging labels only.
    renderer: str = "synth"


PRESETS = {
    "tiny": Preset(n_tracks=40, duration=4.0, n_users=60, tracks_per_artist=2.5, items_per_user=8.0,
                   formats=(0.3, 0.3, 0.4)),
    "demo": Preset(n_tracks=1200, duration=10.0, n_users=3000, tracks_per_artist=6.0, items_per_user=30.0,
                   formats=(0.15, 0.25, 0.6)),
    "large": Preset(n_tracks=10000, duration=30.0, n_users=50000, tracks_per_artist=10.0, items_per_user=40.0,
                    formats=(0.05, 0.15, 0.8)),
    # The yardstick of issue 15, frozen with seed 0: 20 s clips of 2-4 sampled instruments each.
    "realistic": Preset(n_tracks=800, duration=20.0, n_users=0, tracks_per_artist=6.0, items_per_user=0.0,
                        formats=(0.15, 0.25, 0.6), renderer="fluidsynth"),
}
COVER_SHARE = 0.85
ITEM_SPLIT = {"train": "warm", "val": "cold_val", "test": "cold_test"}
# Seed streams: one generator per (seed, stream, track) so no stream's draws shift another's.
_TRAITS, _AUDIO, _ART, _LYRICS, _SPLITS, _PLAYS, _ARTISTS, _LABELS = range(8)


@dataclass(frozen=True)
class _AudioJob:
    index: int
    seed: int
    spec: TrackSpec
    path: Path
    bit_rate: int | None


@dataclass(frozen=True)
class _ArtJob:
    index: int
    seed: int
    genres: tuple[str, ...]
    moods: tuple[str, ...]
    cover_path: Path | None
    cover_size: int
    lyrics_path: Path | None


def _write_audio(job: _AudioJob) -> tuple[int, float]:
    """Render and encode one track; return its index and measured spectral centroid."""
    audio = render(job.spec, np.random.default_rng([job.seed, _AUDIO, job.index]))
    encoder = AudioEncoder(torch.from_numpy(audio), sample_rate=job.spec.sample_rate)
    encoder.to_file(job.path, bit_rate=job.bit_rate)
    return job.index, spectral_centroid(audio, job.spec.sample_rate)


def _write_art(job: _ArtJob) -> None:
    if job.cover_path is not None:
        cover = draw_cover(list(job.genres), list(job.moods), job.cover_size,
                           np.random.default_rng([job.seed, _ART, job.index]))
        if job.cover_path.suffix == ".jpg":
            cover.save(job.cover_path, quality=88)
        else:
            cover.save(job.cover_path)
    if job.lyrics_path is not None:
        rng = np.random.default_rng([job.seed, _LYRICS, job.index])
        job.lyrics_path.write_text(write_lyrics(list(job.genres), list(job.moods), rng), encoding="utf-8")


def _init_worker() -> None:
    # Each worker is one of `workers` processes on a shared machine: one thread each.
    torch.set_num_threads(1)


def _plan(preset: Preset, seed: int, root: Path) -> tuple[list[dict], list[_AudioJob], np.ndarray]:
    """Decide every track's traits and files; labels that depend on the rendered audio come later."""
    artists = make_artists(preset.n_tracks, preset.tracks_per_artist, np.random.default_rng([seed, _ARTISTS]))
    split_of = assign_splits([a.artist_id for a, _ in artists], [a.genres[0] for a, _ in artists],
                             np.random.default_rng([seed, _SPLITS]))
    rows, jobs, artist_index = [], [], []
    for a_idx, (artist, count) in enumerate(artists):
        for _ in range(count):
            i = len(rows)
            tid = f"t{i:05d}"
            rng = np.random.default_rng([seed, _TRAITS, i])
            spec = draw_spec(artist, preset.duration * rng.uniform(0.9, 1.1), rng)
            fmt = str(rng.choice(FORMATS, p=preset.formats))
            bit_rate = None
            if fmt == "mp3":
                bit_rate = 64000 if spec.lo_fi else int(rng.choice([96000, 128000, 192000]))
            cover_ext = "png" if rng.random() < 0.4 else "jpg"
            cover = f"covers/{tid}.{cover_ext}" if rng.random() < COVER_SHARE else None
            split = split_of[artist.artist_id]
            rows.append({
                "track_id": tid, "artist_id": artist.artist_id, "audio_path": f"audio/{tid}.{fmt}",
                "lyrics_path": f"lyrics/{tid}.txt" if spec.voice is not None else None, "cover_path": cover,
                "duration": spec.duration, "sample_rate": spec.sample_rate, "channels": spec.channels,
                "format": fmt, "split": split, "item_split": ITEM_SPLIT[split], "genre": list(artist.genres),
                "cover_size": int(rng.choice([128, 160, 200, 256, 300])), "spec": spec,
            })
            jobs.append(_AudioJob(i, seed, spec, root / rows[-1]["audio_path"], bit_rate))
            artist_index.append(a_idx)
    return rows, jobs, np.asarray(artist_index)


def _label(row: dict, centroid: float, seed: int, index: int, root: Path) -> _ArtJob:
    """Fill in a planned row's labels, now that its audio's brightness is known."""
    spec: TrackSpec = row.pop("spec")
    cover_size = row.pop("cover_size")
    rng = np.random.default_rng([seed, _LABELS, index])
    truth = true_attributes(spec)
    grades = graded(spec, centroid)
    mood = moods(spec, truth, grades, rng)
    attrs, noisy_grades = annotate(truth, grades, rng)
    row.update(
        mood=mood, attribute=attrs, **noisy_grades, true_attribute=truth, bpm=spec.bpm, meter=spec.meter,
        key_root=spec.key_root, mode=spec.mode, **{f"true_{k}": v for k, v in grades.items() if k != "tempo"},
    )
    cover, lyrics = row["cover_path"], row["lyrics_path"]
    return _ArtJob(index, seed, tuple(row["genre"]), tuple(mood), cover and root / cover, cover_size,
                   lyrics and root / lyrics)


def _vocab() -> dict:
    return {"groups": {
        "genre": {"type": "multilabel", "labels": list(GENRES)},
        "mood": {"type": "multilabel", "labels": list(MOODS)},
        "attribute": {"type": "multilabel", "labels": list(ATTRIBUTES)},
        "graded": {"type": "regression", "labels": list(GRADED), "ranges": [list(r) for r in GRADED_RANGES]},
    }}


def build_catalog(out_dir, preset: str = "tiny", seed: int = 0, *, workers: int | None = None,
                  overwrite: bool = False, hidden_taste: float = 0.0) -> dict:
    """Build the toy catalog `preset` into `out_dir` and return its summary (also in summary.json).

    Refuses to touch an existing `out_dir` unless `overwrite`; on any error, nothing is left behind.
    `workers` defaults to min(2, cpu_count); 1 renders in this process. `hidden_taste` in [0, 1]: how much
    of the listeners' taste follows traits the audio carries and the vocabulary does not list
    (`toycatalog.listeners`); at 0 every file but the summary is what it was before the option existed.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _check_share(hidden_taste)
    if PRESETS[preset].renderer == "fluidsynth":
        if hidden_taste:
            raise ValueError(f"preset {preset!r} has no listeners, so no hidden taste; got {hidden_taste}")
        missing = _realistic().fluidsynth_missing()
        if missing:
            raise RuntimeError(f"preset {preset!r} renders with FluidSynth, but {missing}; "
                               "'make setup' installs it as root")
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir).absolute()
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)
        if PRESETS[preset].renderer == "fluidsynth":
            summary = _realistic().build_into(tmp, PRESETS[preset], seed, workers)
        else:
            summary = _build_into(tmp, PRESETS[preset], seed, workers, hidden_taste)
        summary.update(preset=preset, seed=seed, hidden_taste=hidden_taste, workers=workers,
                       build_seconds=round(time.perf_counter() - started, 1))
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (tmp / "summary.md").write_text(summary_markdown(summary))
        if out.exists():
            old = tmp.with_name(tmp.name.replace(".tmp-", ".old-"))
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _realistic():
    """toycatalog.realistic_build, imported on first use: the synth presets need neither mido nor FluidSynth."""
    import toycatalog.realistic_build

    return toycatalog.realistic_build


def _check_share(hidden_taste: float) -> None:
    if not 0.0 <= hidden_taste <= 1.0:
        raise ValueError(f"hidden_taste must be in [0, 1], got {hidden_taste}")


def _build_into(root: Path, preset: Preset, seed: int, workers: int, hidden_taste: float) -> dict:
    for sub in ("audio", "lyrics", "covers"):
        (root / sub).mkdir()
    rows, audio_jobs, artist_index = _plan(preset, seed, root)
    if workers == 1:
        centroids = dict(map(_write_audio, audio_jobs))
        for i, row in enumerate(rows):
            _write_art(_label(row, centroids[i], seed, i, root))
    else:
        with worker_pool(workers, _init_worker, preload=__name__) as pool:
            centroids = dict(pool.imap_unordered(_write_audio, audio_jobs, chunksize=4))
            art_jobs = [_label(row, centroids[i], seed, i, root) for i, row in enumerate(rows)]
            for _ in pool.imap_unordered(_write_art, art_jobs, chunksize=16):
                pass
    manifest = pd.DataFrame(rows)
    manifest.to_parquet(root / "manifest.parquet", index=False)
    (root / "vocab.json").write_text(json.dumps(_vocab(), indent=2) + "\n")

    # Without hidden taste the users are left as catalogs built before hidden traits had them.
    specs = [job.spec for job in audio_jobs] if hidden_taste > 0 else None
    plays, users = _listeners(manifest, artist_index, preset, seed, specs, hidden_taste)
    plays.to_parquet(root / "plays.parquet", index=False)
    users.to_parquet(root / "users.parquet", index=False)
    return _summarize(manifest, plays, preset.n_users)


def _listeners(manifest: pd.DataFrame, artist_index: np.ndarray, preset: Preset, seed: int,
               specs: list[TrackSpec] | None, hidden_taste: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    plays_seed = int(np.random.SeedSequence([seed, _PLAYS]).generate_state(1)[0])
    return simulate_listeners(manifest, artist_index, preset.n_users, seed=plays_seed,
                              items_per_user=preset.items_per_user, specs=specs, hidden_taste=hidden_taste)


def replay_listeners(catalog, hidden_taste: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The plays and users (as plays.parquet and users.parquet hold them) of the built catalog `catalog`,
    simulated again with `hidden_taste`: the same users and seed, so the share the catalog was built with
    gives back its plays exactly. Users' hidden likes are listed whatever the share.

    The hidden traits need every track's spec, more than the manifest keeps; the specs are planned again,
    without rendering, from the preset and seed summary.json records, and must give the manifest's tracks.
    """
    _check_share(hidden_taste)
    root = Path(catalog)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such catalog folder")
    for name in ("summary.json", "manifest.parquet"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root}: not a toy catalog (no {name})")
    try:
        summary = json.loads((root / "summary.json").read_text())
    except ValueError as error:
        raise ValueError(f"{root / 'summary.json'}: unreadable ({error})") from None
    preset_name, seed = (summary.get("preset"), summary.get("seed")) if isinstance(summary, dict) else (None, None)
    if preset_name not in PRESETS or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{root / 'summary.json'}: needs a known preset and a seed, got preset {preset_name!r}, "
                         f"seed {seed!r}")
    preset = PRESETS[preset_name]
    if preset.renderer != "synth":
        raise ValueError(f"{root}: preset {preset_name!r} has no listeners to simulate again")
    rows, jobs, artist_index = _plan(preset, seed, root)
    manifest = load_manifest(root)
    planned = {"track_id": [row["track_id"] for row in rows], "artist_id": [row["artist_id"] for row in rows],
               "duration": [job.spec.duration for job in jobs], "bpm": [job.spec.bpm for job in jobs]}
    if any(manifest[key].tolist() != values for key, values in planned.items()):
        raise ValueError(f"{root}: its tracks are not those preset {preset_name!r} seed {seed} plans (track ids, "
                         "artists, durations or tempi differ): built by another version of toycatalog, or edited "
                         "since, so its hidden traits cannot be recovered")
    return _listeners(manifest, artist_index, preset, seed, [job.spec for job in jobs], hidden_taste)


def _summarize(manifest: pd.DataFrame, plays: pd.DataFrame, n_users: int) -> dict:
    def counts(column: str, labels) -> dict[str, int]:
        exploded = manifest[column].explode()
        return {label: int((exploded == label).sum()) for label in labels}

    n_tracks = len(manifest)
    return {
        "tracks": n_tracks,
        "artists": int(manifest["artist_id"].nunique()),
        "hours": round(float(manifest["duration"].sum()) / 3600, 3),
        "formats": {f: int((manifest["format"] == f).sum()) for f in FORMATS},
        "sample_rates": {str(k): int(v) for k, v in sorted(manifest["sample_rate"].value_counts().items())},
        "stereo": int((manifest["channels"] == 2).sum()),
        "splits": {s: int((manifest["split"] == s).sum()) for s in ITEM_SPLIT},
        "lyrics": int(manifest["lyrics_path"].notna().sum()),
        "covers": int(manifest["cover_path"].notna().sum()),
        "users": n_users,
        "plays_rows": len(plays),
        "plays_total": int(plays["plays"].sum()),
        "sparsity": round(1.0 - len(plays) / (n_users * n_tracks), 4),
        "genre": counts("genre", GENRES),
        "mood": counts("mood", MOODS),
        "attribute": counts("attribute", ATTRIBUTES),
        "true_attribute": counts("true_attribute", ATTRIBUTES),
        "graded": {g: [round(float(manifest[g].min()), 2), round(float(manifest[g].mean()), 2),
                       round(float(manifest[g].max()), 2)] for g in GRADED},
    }


def summary_markdown(s: dict) -> str:
    """The summary as the Markdown the CLI prints and summary.md holds."""
    if PRESETS[s["preset"]].renderer == "fluidsynth":
        return _realistic().summary_markdown(s)
    n = s["tracks"]
    lines = [
        f"# Toy catalog `{s['preset']}` (seed {s['seed']})", "",
        "| what | value |", "|---|---|",
        f"| tracks | {n} by {s['artists']} artists |",
        f"| audio | {s['hours']:.2f} h; " + ", ".join(f"{k} {v}" for k, v in s["formats"].items())
        + f"; stereo {s['stereo']}, mono {n - s['stereo']} |",
        "| sample rates | " + ", ".join(f"{k} Hz: {v}" for k, v in s["sample_rates"].items()) + " |",
        "| splits | " + " / ".join(f"{k} {v}" for k, v in s["splits"].items()) + " (artist-disjoint) |",
        f"| lyrics / covers | {s['lyrics']} / {s['covers']} |",
        f"| users | {s['users']} |",
        *([f"| hidden taste | {s['hidden_taste']:.2f} of the listeners' taste follows unlisted audio traits |"]
          if s.get("hidden_taste", 0.0) > 0 else []),
        f"| plays | {s['plays_rows']} user-track pairs, {s['plays_total']} listens, "
        f"sparsity {100 * s['sparsity']:.2f} % |",
        f"| build | {s['build_seconds']} s with {s['workers']} worker(s) |",
        "", "| group | label | tracks (annotated) | share | noiseless |", "|---|---|---|---|---|",
    ]
    for group in ("genre", "mood", "attribute"):
        for label, count in s[group].items():
            truth = s["true_attribute"][label] if group == "attribute" else ""
            lines.append(f"| {group} | {label} | {count} | {100 * count / n:.0f} % | {truth} |")
    lines += ["", "| graded | min | mean | max |", "|---|---|---|---|"]
    lines += [f"| {g} | {lo} | {mean} | {hi} |" for g, (lo, mean, hi) in s["graded"].items()]
    return "\n".join(lines) + "\n"


def load_manifest(root) -> pd.DataFrame:
    """The manifest with list columns as Python lists."""
    df = pd.read_parquet(Path(root) / "manifest.parquet")
    for column in ("genre", "mood", "attribute", "true_attribute", "instrument"):
        if column in df.columns:
            df[column] = df[column].map(list)
    return df

