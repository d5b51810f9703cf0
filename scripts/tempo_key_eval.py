"""Tempo and key estimators (`tagging.tempo_key`) on real recordings and on the realistic toy catalog (issue 35).

    python scripts/tempo_key_eval.py real --manifest data/real/test.csv --out runs/tempo_key
    python scripts/tempo_key_eval.py real --manifest data/real/test.csv --out runs/tempo_key --limit 3 \
        --album warzone2100-aftermath
    python scripts/tempo_key_eval.py toy --manifest data/realistic/manifest.parquet --out runs/tempo_key

``real``: recordings carry no tempo or key labels, but a stretched recording's tempo must scale by the
stretch and a shifted one's key must move by the shift. Each track of the manifest (``audio_path``, ``album``,
``split``; ``--split``, default test) is cut to a ``--excerpt``-second excerpt from its middle (45 s: the
cost of ten rubberband passes per track stays a few seconds), time-stretched with the rubberband command
(Debian's ``rubberband-cli``) by duration ratios 0.8, 0.9, 1.1 and 1.25 and pitch-shifted by -3..+3
semitones. Reported per method: the share of stretches whose estimated tempo ratio (stretched / original)
is within 4 % of the true one (1 / duration ratio), and the share of shifts whose estimated tonic moved by
exactly k with the mode unchanged, each with a 95 % interval from resampling albums
(`coldtag.intervals.cluster_bootstrap`).

``toy``: the realistic catalog's tracks of ``--split`` against their labels (``tempo``; ``key_root`` and
``mode``, the key the written notes fit): MIREX tempo Accuracy1 and Accuracy2 and the MIREX weighted key
score (`mir_eval.key.weighted_score`), with 95 % intervals from resampling artists. The realistic label is a
Krumhansl-profile fit of the score, which favours Krumhansl-profile key finders there by construction:
judge key finders first on the real recordings' shifts.

Methods, all in the same run: ``tempo_key`` (`estimate_tempo`; `estimate_key`'s STFT chroma with
Temperley's profiles), ``tempo_key+krumhansl`` (the same chroma with Krumhansl-Kessler profiles),
``tempo_key+harmonic`` (the harmonic-sum chroma, ``chroma="harmonic"``, with Krumhansl-Kessler profiles),
and the baselines ``beat_track`` (librosa's plain `librosa.beat.beat_track` tempo) and ``stft+krumhansl``
(librosa's default STFT chroma with Krumhansl-Kessler profiles). Each key row names its chroma, whichever
`estimate_key` uses by default (`tagging.tempo_key.KEY_CHROMA`). Printed, and written to ``OUT/<part>.md``,
``OUT/<part>.json`` and the per-item ``OUT/<part>_items.csv``. Needs librosa and mir_eval (``pip install
coldtag[bench]``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from coldtag.intervals import cluster_bootstrap  # noqa: E402
from tagging.audio import audio_info, load_audio  # noqa: E402
from tagging.keys import KEY_PROFILES, PITCH_CLASSES, best_key  # noqa: E402
from tagging.tempo_key import (  # noqa: E402
    estimate_tempo,
    key_of_profile,
    mirex_tempo_accuracy,
    pitch_class_profile,
)

RATE = 22050  # librosa's default rate, so the baselines run as their users run them
STRETCHES = (0.8, 0.9, 1.1, 1.25)  # duration ratios: the tempo scales by 1 / ratio
SHIFTS = (-3, -2, -1, 1, 2, 3)
TOLERANCE = 0.04


def tempo_methods(y: np.ndarray) -> dict[str, float]:
    import librosa

    tempo, _ = librosa.beat.beat_track(y=y, sr=RATE)
    return {"tempo_key": estimate_tempo(y, RATE).bpm, "beat_track": float(np.atleast_1d(tempo)[0])}


def key_methods(y: np.ndarray) -> dict[str, tuple[int, str]]:
    import librosa

    profile = pitch_class_profile(y, RATE, chroma="stft")
    ours = key_of_profile(profile, "temperley")
    krumhansl = key_of_profile(profile, "krumhansl")
    harmonic = key_of_profile(pitch_class_profile(y, RATE, chroma="harmonic"), "krumhansl")
    stft = librosa.feature.chroma_stft(y=y, sr=RATE).mean(axis=1)
    return {"tempo_key": (ours.tonic, ours.mode), "tempo_key+krumhansl": (krumhansl.tonic, krumhansl.mode),
            "tempo_key+harmonic": (harmonic.tonic, harmonic.mode), "stft+krumhansl": best_key(stft, KEY_PROFILES)}


def rubberband(y: np.ndarray, folder: Path, *options: str) -> np.ndarray:
    """``y`` through the rubberband command with ``options`` (``-t RATIO``: duration, ``-p K``: semitones)."""
    source, target = folder / "in.wav", folder / "out.wav"
    soundfile.write(source, y, RATE, subtype="FLOAT")
    subprocess.run(["rubberband", "-q", *options, str(source), str(target)], check=True, capture_output=True)
    out, _ = soundfile.read(target, dtype="float32", always_2d=True)
    return out.mean(axis=1)


def excerpt(path: str, seconds: float) -> np.ndarray:
    duration = audio_info(path).duration or seconds
    offset = max(0.0, (duration - seconds) / 2)
    return load_audio(path, RATE, offset=offset, duration=min(seconds, duration)).numpy()


def real_items(manifest: pd.DataFrame, seconds: float) -> pd.DataFrame:
    """One row per (track, transformation, method): whether the estimate moved as the transformation did."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for track in manifest.itertuples():
            started = time.perf_counter()
            y = excerpt(track.audio_path, seconds)
            tempo0, key0 = tempo_methods(y), key_methods(y)
            for ratio in STRETCHES:
                tempo = tempo_methods(rubberband(y, Path(tmp), "-t", str(ratio)))
                for method, bpm in tempo.items():
                    # No tempo in the original (no onsets; beat_track's 0): nothing to scale, not judged.
                    judged = np.isfinite(tempo0[method]) and tempo0[method] > 0
                    ok = bool(abs(bpm / tempo0[method] * ratio - 1) <= TOLERANCE) if judged else None
                    rows.append({"track": track.audio_path, "album": track.album, "test": "stretch",
                                 "change": ratio, "method": method, "before": tempo0[method], "after": bpm,
                                 "ok": ok})
            for k in SHIFTS:
                key = key_methods(rubberband(y, Path(tmp), "-p", str(k)))
                for method, (tonic, mode) in key.items():
                    tonic0, mode0 = key0[method]
                    rows.append({"track": track.audio_path, "album": track.album, "test": "shift", "change": k,
                                 "method": method, "before": f"{PITCH_CLASSES[tonic0]} {mode0}",
                                 "after": f"{PITCH_CLASSES[tonic]} {mode}",
                                 "ok": (tonic - tonic0) % 12 == k % 12 and mode == mode0})
            print(f"{track.audio_path}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return pd.DataFrame(rows)


def toy_items(manifest: pd.DataFrame, root: Path) -> pd.DataFrame:
    import mir_eval

    rows = []
    for track in manifest.itertuples():
        y = load_audio(root / track.audio_path, RATE).numpy()
        truth = f"{PITCH_CLASSES[track.key_root]} {track.mode}"
        for method, bpm in tempo_methods(y).items():
            acc1, acc2 = mirex_tempo_accuracy(bpm, track.tempo, TOLERANCE)
            rows.append({"track": track.track_id, "artist": track.artist_id, "method": method, "metric": "accuracy1",
                         "estimate": bpm, "truth": track.tempo, "score": float(acc1)})
            rows.append({"track": track.track_id, "artist": track.artist_id, "method": method, "metric": "accuracy2",
                         "estimate": bpm, "truth": track.tempo, "score": float(acc2)})
        for method, (tonic, mode) in key_methods(y).items():
            estimate = f"{PITCH_CLASSES[tonic]} {mode}"
            rows.append({"track": track.track_id, "artist": track.artist_id, "method": method,
                         "metric": "key_weighted", "estimate": estimate, "truth": truth,
                         "score": mir_eval.key.weighted_score(truth, estimate)})
    return pd.DataFrame(rows)


def summary(items: pd.DataFrame, by: list[str], cluster: str, value: str) -> pd.DataFrame:
    """The mean of ``value`` per ``by`` group with a 95 % interval from resampling ``cluster``; items whose
    ``value`` is missing (not judged) are left out and counted."""
    rows = []
    for keys, everything in items.groupby(by, sort=False):
        group = everything[everything[value].notna()]
        scores = group[value].astype(float).to_numpy()
        mean, low, high, _ = cluster_bootstrap(lambda r, s=scores: float(s[r].mean()), group[cluster].tolist())
        rows.append({**dict(zip(by, keys, strict=True)), "score": round(mean, 3), "low": round(low, 3),
                     "high": round(high, 3), "items": len(group), "not judged": len(everything) - len(group),
                     f"{cluster}s": group[cluster].nunique()})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def write(out: Path, part: str, items: pd.DataFrame, table: pd.DataFrame, facts: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    items.to_csv(out / f"{part}_items.csv", index=False)
    text = markdown(table)
    (out / f"{part}.md").write_text(text + "\n")
    (out / f"{part}.json").write_text(json.dumps({**facts, "rows": table.to_dict("records")}, indent=2) + "\n")
    print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=("real", "toy"))
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--album", action="append", help="real: only these albums (repeatable)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many tracks")
    parser.add_argument("--excerpt", type=float, default=45.0, help="real: seconds from the middle of each track")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    options = parser.parse_args(argv)
    torch.set_num_threads(options.threads)
    if options.part == "real" and shutil.which("rubberband") is None:
        parser.error("the rubberband command is missing: apt-get install rubberband-cli")
    if options.manifest.suffix == ".parquet":
        manifest = pd.read_parquet(options.manifest)
    else:
        manifest = pd.read_csv(options.manifest)
    manifest = manifest[manifest["split"] == options.split]
    if options.album:
        manifest = manifest[manifest["album"].isin(options.album)]
    manifest = manifest.head(options.limit)
    if manifest.empty:
        parser.error(f"{options.manifest}: no tracks of split {options.split!r} (and the albums asked for)")
    started = time.perf_counter()
    facts = {"manifest": str(options.manifest), "split": options.split, "tracks": len(manifest)}
    if options.part == "real":
        items = real_items(manifest, options.excerpt)
        table = summary(items, ["test", "method"], "album", "ok")
        facts["excerpt_seconds"] = options.excerpt
    else:
        items = toy_items(manifest, options.manifest.parent)
        table = summary(items, ["metric", "method"], "artist", "score")
    facts["seconds"] = round(time.perf_counter() - started, 1)
    write(options.out, options.part, items, table, facts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
