"""`coldtag annotate` over whole albums, model by model: the held-out albums of the real-recording corpus by
default, every track of them end to end (listing, decoding workers, the model on its 16-chunk grid, Parquet).

    .venv/bin/python benchmarks/annotate_albums.py --manifest data/real/test.csv \\
        --model musicnn-mtt musicnn-distil-s musicnn-distil-m [--workers 1] [--threads 2]

Prints one row per model: tracks annotated and failed, the audio's hours (the manifest's durations), wall
seconds, x real time (hours of audio per hour of wall time), the decided tags per track on average, and the
1-minute load average at the start (on a shared machine wall time also counts waiting for CPUs). The models
run one after the other on the same files, after one warm-up pass of decoding alone.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from annotation import cli as annotate_command  # noqa: E402
from annotation.records import read_annotations  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=Path("data/real/test.csv"),
                        help="a manifest coldtag annotate reads (scripts/real_corpus.py writes data/real/test.csv)")
    parser.add_argument("--model", nargs="+", required=True, help="package folders or pretrained names")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the command's own)")
    parser.add_argument("--batch-size", type=int, default=8)
    options = parser.parse_args(argv)
    if not options.manifest.is_file():
        parser.error(f"--manifest {options.manifest}: no such file (python scripts/real_corpus.py writes it)")
    with open(options.manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    hours = sum(float(row["duration_seconds"]) for row in rows) / 3600
    print(f"{len(rows)} tracks, {hours:.2f} h of audio ({options.manifest}); {os.cpu_count()} CPUs, "
          f"{options.workers} decoding worker(s), batch {options.batch_size}\n")
    print("| model | tracks | failed | audio, h | wall, s | x real time | decided tags per track | load (1 min) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="bench-albums-") as scratch:
        for name in options.model:
            out = Path(scratch) / name.replace("/", "_")
            extra = [] if options.threads is None else ["--threads", str(options.threads)]
            load = os.getloadavg()[0]
            started = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):
                code = annotate_command.cli_main([str(options.manifest), "--allow-outside", "--model", name, "--out",
                                                  str(out), "--workers", str(options.workers), "--batch-size",
                                                  str(options.batch_size), "--no-progress", *extra])
            wall = time.perf_counter() - started
            if code != 0:
                raise SystemExit(f"coldtag annotate --model {name} exited with {code} (see {out}/annotate.log)")
            summary = json.loads((out / "summary.json").read_text())
            records = read_annotations(out).to_pylist()
            groups = [k for k, v in records[0].items() if isinstance(v, dict) and "tags" in v]
            decided = sum(len(r[g]["tags"]) for r in records if r["error"] is None for g in groups)
            print(f"| {name} | {summary['done']} | {summary['failed']} | {hours:.2f} | {wall:.0f} | "
                  f"{hours * 3600 / wall:.0f} | {decided / max(1, summary['done']):.1f} | {load:.1f} |", flush=True)


if __name__ == "__main__":
    main()
