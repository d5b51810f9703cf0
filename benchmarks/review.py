"""Benchmark: the review page over a run of 10,000 synthetic records (a 50-tag genre group, a 12-tag mood
group, a 4-label graded group), served by uvicorn on 127.0.0.1 and asked over HTTP as the pages ask.

    .venv/bin/python benchmarks/review.py [--tracks 10000] [--corrections 13000] [--repeats 20]   # ~1 min

A *page load* is what the browser fetches before the page shows its rows: the HTML, then the JSON the
page's script asks for (the list page: ``/api/stats`` and the first page of ``/api/tracks``; a track page:
``/api/track``). The corrections in force are read once per change; "after a correction" adds one (not
timed) before each load, so it reads them all again. The target is under 300 ms for 10,000 records. Prints
a Markdown table of the median and the slowest of ``--repeats`` loads, after the start-up time (reading the
records, building the arrays).
"""

from __future__ import annotations

import argparse
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from report import print_table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def vocabulary() -> dict:
    return {"groups": {"genre": {"type": "multilabel", "labels": [f"genre{k:02d}" for k in range(50)]},
                       "mood": {"type": "multilabel", "labels": [f"mood{k:02d}" for k in range(12)]},
                       "graded": {"type": "regression", "labels": ["tempo", "energy", "valence", "danceability"],
                                  "ranges": [[40, 220], [0, 1], [0, 1], [0, 1]]}}}


def write_records(out: Path, model, tracks: int, seed: int = 0) -> None:
    from annotation.annotators import group_fields
    from annotation.records import AnnotationRecord, Records, record_schema

    rng = np.random.default_rng(seed)
    records = Records(out, record_schema(group_fields(model)))
    for i in range(tracks):
        name = f"artist{i // 10:04d}/track{i:05d}.mp3"
        duration, embedding = float(rng.uniform(60, 400)), rng.standard_normal(64).astype(np.float32).tolist()
        groups = {}
        for group_name, group in model.labels.groups.items():
            if group.type == "multilabel":
                probs = rng.beta(0.4, 2.0, len(group))
                groups[group_name] = {"probabilities": dict(zip(group.labels, probs.tolist(), strict=True)),
                                      "tags": [label for label, p in zip(group.labels, probs, strict=True) if p >= 0.5]}
            else:
                groups[group_name] = {label: float(rng.uniform(low, high))
                                      for label, (low, high) in zip(group.labels, group.ranges, strict=True)}
        if i % 200 == 7:  # failed, after the same draws as the others, so that theirs do not depend on it
            records.add(AnnotationRecord(id=name, path=f"/catalog/{name}",
                                         error={"type": "AudioDecodeError", "message": "truncated"}))
        else:
            records.add(AnnotationRecord(id=name, path=f"/catalog/{name}", duration=duration, modalities=["audio"],
                                         model_columns=groups, model_sha256=model.package["sha256"],
                                         embedding=embedding))
    records.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    # As many as the demo's review loop stored (300 tracks, every tag of each).
    parser.add_argument("--corrections", type=int, default=13_000)
    parser.add_argument("--repeats", type=int, default=20)
    options = parser.parse_args()

    import httpx
    import uvicorn

    from annotation.review.app import create_app
    from annotation.review.run import Run
    from annotation.review.store import DB_FILE, Store
    from tagging.models.tagger import AudioTagger

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model = AudioTagger(vocabulary(), backbone="tiny", width=4, embedding_dim=16, sample_rate=8000, n_fft=256,
                            hop_length=128, n_mels=32, chunk_seconds=1.0)
        model.save_pretrained(root / "model")
        write_records(root / "run", model, options.tracks)
        started = time.perf_counter()
        run = Run(root / "run", root / "model")
        startup = time.perf_counter() - started
        store = Store(root / "run" / DB_FILE, run.ids, run.labels)
        rng = np.random.default_rng(1)
        usable = [t for t, failed in zip(run.ids, run.failed, strict=True) if not failed]
        rows = [(usable[int(rng.integers(len(usable)))], "genre", f"genre{k % 50:02d}",
                 ("confirm", "add", "remove")[k % 3], "bench", "2026-01-01T00:00:00")
                for k in range(options.corrections)]
        with sqlite3.connect(store.path) as connection:  # one transaction: 13,000 of store.add take minutes
            connection.executemany("INSERT INTO corrections (track_id, grp, tag, action, who, at) "
                                   "VALUES (?, ?, ?, ?, ?, ?)", rows)

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(run, store), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        track = run.ids[len(run.ids) // 2]
        loads = {
            "list page": ["/", "/api/stats", "/api/tracks?page=1&per_page=50"],
            "list, least certain first": ["/", "/api/stats", "/api/tracks?sort=certainty&per_page=50"],
            "list, tag + probability filter": ["/", "/api/stats",
                                               "/api/tracks?tag=genre/genre07&p_min=0.5&p_max=0.8&sort=probability"],
            "list, search": ["/", "/api/stats", "/api/tracks?q=artist0042"],
            "review next (queue)": ["/api/queue?limit=1"],
            "track page": [f"/track?id={track}", f"/api/track?id={track}"],
            "list page after a correction": ["/", "/api/stats", "/api/tracks?page=1&per_page=50"],
        }
        rows = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for name, paths in loads.items():
                times = []
                for k in range(options.repeats + 1):
                    if name.endswith("after a correction"):  # the cached corrections are read again
                        client.post("/api/corrections", json={"track_id": usable[k], "group": "mood",
                                                              "tag": "mood00", "action": "add", "who": "bench"})
                    begun = time.perf_counter()
                    for path in paths:
                        client.get(path).raise_for_status()
                    times.append(time.perf_counter() - begun)
                times = times[1:]  # the first warms caches
                rows.append({"load": name, "requests": len(paths),
                             "median ms": f"{1000 * statistics.median(times):.1f}",
                             "slowest ms": f"{1000 * max(times):.1f}"})
        server.should_exit = True
        thread.join()
    print(f"{options.tracks} records, {options.corrections} corrections; start-up (read records, build arrays) "
          f"{startup:.2f} s\n")
    print_table(rows)


if __name__ == "__main__":
    main()
