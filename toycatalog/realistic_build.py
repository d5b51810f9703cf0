"""Write a realistic toy catalog: sampled-instrument audio (`toycatalog.realistic`), manifest, vocabulary, summary.

The layout is the other presets' (``audio/``, ``manifest.parquet``, ``vocab.json``, ``summary.{json,md}``,
artists dealt to artist-disjoint splits by `toycatalog.catalog.assign_splits`), with other label groups:
genre, instrument (the GM programs that play), meter, mode and tempo. There are no lyrics, covers or
listeners: this catalog is the yardstick for tagging, not for recommendation.

Every random choice comes from a generator seeded by (seed, stream, track index), so the bytes of the MIDI
written do not depend on the number of workers; FluidSynth renders a file the same way every time.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchcodec.encoders import AudioEncoder

from toycatalog.catalog import FORMATS, assign_splits
from toycatalog.realistic import (
    GENRES,
    INSTRUMENTS,
    SAMPLE_RATE,
    Piece,
    draw_piece,
    fluidsynth_missing,
    make_artists,
    render_piece,
    write_score,
    written_key,
)
from toycatalog.synth import METERS, MODES
from toycatalog.workers import worker_pool

__all__ = ["build_into", "fluidsynth_missing", "summarize", "summary_markdown", "vocab"]

ITEM_SPLIT = {"train": "warm", "val": "cold_val", "test": "cold_test"}
TEMPO_RANGE = (60.0, 200.0)
_MP3_FRAME = 1152  # lengths are whole MP3 frames, so every format decodes to the same number of samples
_TRAITS, _AUDIO, _SPLITS, _ARTISTS = 100, 101, 102, 103  # seed streams apart from the synth presets' ones


@dataclass(frozen=True)
class _Job:
    index: int
    seed: int
    piece: Piece
    path: Path
    bit_rate: int | None


def _write(job: _Job) -> tuple[int, tuple[int, str]]:
    """Render and encode one track; return its index and the key its written notes fit best."""
    rng = np.random.default_rng([job.seed, _AUDIO, job.index])
    notes = write_score(job.piece, rng)
    audio = render_piece(job.piece, notes, SAMPLE_RATE, loudness_db=float(rng.uniform(-24.0, -14.0)))
    AudioEncoder(torch.from_numpy(audio), sample_rate=SAMPLE_RATE).to_file(job.path, bit_rate=job.bit_rate)
    return job.index, written_key(notes)


def vocab() -> dict:
    return {"groups": {
        "genre": {"type": "multilabel", "labels": list(GENRES)},
        "instrument": {"type": "multilabel", "labels": list(INSTRUMENTS)},
        "meter": {"type": "multilabel", "labels": list(METERS)},
        "mode": {"type": "multilabel", "labels": list(MODES)},
        "graded": {"type": "regression", "labels": ["tempo"], "ranges": [list(TEMPO_RANGE)]},
    }}


def build_into(root: Path, preset, seed: int, workers: int) -> dict:
    """Fill `root` with the catalog `preset` (a `toycatalog.build.Preset`) and return its summary."""
    (root / "audio").mkdir()
    artists = make_artists(preset.n_tracks, preset.tracks_per_artist, np.random.default_rng([seed, _ARTISTS]))
    split_of = assign_splits([a.artist_id for a, _ in artists], [a.genres[0] for a, _ in artists],
                             np.random.default_rng([seed, _SPLITS]))
    rows, jobs = [], []
    for artist, count in artists:
        for _ in range(count):
            i = len(rows)
            tid = f"t{i:05d}"
            rng = np.random.default_rng([seed, _TRAITS, i])
            nominal = preset.duration * rng.uniform(0.9, 1.1)
            piece = draw_piece(artist, round(nominal * SAMPLE_RATE / _MP3_FRAME) * _MP3_FRAME / SAMPLE_RATE, rng)
            fmt = str(rng.choice(FORMATS, p=preset.formats))
            bit_rate = int(rng.choice([96000, 128000, 192000])) if fmt == "mp3" else None
            split = split_of[artist.artist_id]
            rows.append({
                "track_id": tid, "artist_id": artist.artist_id, "audio_path": f"audio/{tid}.{fmt}",
                "lyrics_path": None, "cover_path": None, "duration": piece.duration, "sample_rate": SAMPLE_RATE,
                "channels": piece.channels, "format": fmt, "split": split, "item_split": ITEM_SPLIT[split],
                "genre": list(artist.genres), "instrument": list(piece.instruments), "meter": piece.meter,
                "mode": piece.mode, "key_root": piece.key_root, "tempo": piece.bpm, "bpm": piece.bpm,
                "swing": piece.swing, "drums": piece.drums, "density": piece.density,
            })
            jobs.append(_Job(i, seed, piece, root / rows[-1]["audio_path"], bit_rate))
    if workers == 1:
        keys = dict(map(_write, jobs))
    else:
        # Workers only run FluidSynth and FFmpeg; one torch thread each on a shared machine.
        with worker_pool(workers, torch.set_num_threads, (1,), preload=__name__) as pool:
            keys = dict(pool.imap_unordered(_write, jobs, chunksize=4))
    manifest = pd.DataFrame(rows)
    manifest.to_parquet(root / "manifest.parquet", index=False)
    (root / "vocab.json").write_text(json.dumps(vocab(), indent=2) + "\n")
    agree = np.mean([keys[i] == (row["key_root"], row["mode"]) for i, row in enumerate(rows)])
    return summarize(manifest) | {"written_key_agreement": round(float(agree), 4)}


def summarize(manifest: pd.DataFrame) -> dict:
    def counts(column: str, labels) -> dict[str, int]:
        exploded = manifest[column].explode()
        return {label: int((exploded == label).sum()) for label in labels}

    return {
        "tracks": len(manifest),
        "artists": int(manifest["artist_id"].nunique()),
        "hours": round(float(manifest["duration"].sum()) / 3600, 3),
        "formats": {f: int((manifest["format"] == f).sum()) for f in FORMATS},
        "stereo": int((manifest["channels"] == 2).sum()),
        "splits": {s: int((manifest["split"] == s).sum()) for s in ITEM_SPLIT},
        "genre": counts("genre", GENRES),
        "instrument": counts("instrument", INSTRUMENTS),
        "meter": counts("meter", METERS),
        "mode": counts("mode", MODES),
        "drums": int(manifest["drums"].sum()),
        "tempo": [round(float(manifest["tempo"].min()), 1), round(float(manifest["tempo"].mean()), 1),
                  round(float(manifest["tempo"].max()), 1)],
    }


def summary_markdown(s: dict) -> str:
    n = s["tracks"]
    lines = [
        f"# Realistic toy catalog `{s['preset']}` (seed {s['seed']})", "",
        "| what | value |", "|---|---|",
        f"| tracks | {n} by {s['artists']} artists |",
        f"| audio | {s['hours']:.2f} h at {SAMPLE_RATE} Hz; " + ", ".join(f"{k} {v}" for k, v in s["formats"].items())
        + f"; stereo {s['stereo']}, mono {n - s['stereo']} |",
        "| splits | " + " / ".join(f"{k} {v}" for k, v in s["splits"].items()) + " (artist-disjoint) |",
        f"| drums | {s['drums']} tracks |",
        "| tempo | min {} / mean {} / max {} BPM |".format(*s["tempo"]),
        f"| written notes fit their labelled key | {100 * s['written_key_agreement']:.1f} % of tracks |",
        f"| build | {s['build_seconds']} s with {s['workers']} worker(s) |",
        "", "| group | label | tracks | share |", "|---|---|---|---|",
    ]
    for group in ("genre", "instrument", "meter", "mode"):
        lines += [f"| {group} | {label} | {count} | {100 * count / n:.0f} % |" for label, count in s[group].items()]
    return "\n".join(lines) + "\n"
