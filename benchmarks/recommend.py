"""Benchmark: chunked top-k over a large catalog, and the WMF fit on a large play matrix.

    .venv/bin/python benchmarks/recommend.py            # ~5.5 min on 2 busy cores

1. Chunk-size sweep: top-100 over 1,000,000 items with 64 random float32 factors, one subprocess per
   chunk size, each reporting its wall time and peak RSS. Memory does not depend on the number of users
   (they go in batches of ``user_batch``) and time grows linearly with them, so the sweep uses
   ``--sweep-users`` users; the chosen chunk size then serves all ``--users`` users, next to implicit's
   own C++ top-k as a reference.
2. ALS fit time on data/large/plays.parquet if it exists (columns user_id, track_id, plays), else on a
   synthetic matrix of 50,000 users × 10,000 items with ~2M nonzeros and Zipf-like item popularity.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]


def child(options: argparse.Namespace) -> None:
    """Run one top-k in this process and print its figures as JSON."""
    from threadpoolctl import threadpool_limits

    from recsys import topk

    rng = np.random.default_rng(0)
    # float32 straight from the generator: no float64 temporary to inflate the peak.
    items = rng.standard_normal((options.items, options.factors), dtype=np.float32)
    users = rng.standard_normal((options.users, options.factors), dtype=np.float32)
    setup_rss = _rss_mb()
    start = time.perf_counter()
    if options.method == "implicit":
        from implicit.cpu.topk import topk as implicit_topk

        with threadpool_limits(1, "blas"):
            ids, _ = implicit_topk(items, users, options.N, num_threads=0)
    else:
        ids, _ = topk(users, items, options.N, chunk_size=options.chunk_size, user_batch=options.user_batch)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    assert ids.shape == (options.users, options.N)
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "setup_mb": setup_rss}))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_child(method: str, users: int, options: argparse.Namespace, chunk_size: int = 0) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        "--method",
        method,
        "--users",
        str(users),
        "--items",
        str(options.items),
        "--factors",
        str(options.factors),
        "--N",
        str(options.N),
        "--chunk-size",
        str(chunk_size),
        "--user-batch",
        str(options.user_batch),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def topk_tables(options: argparse.Namespace) -> None:
    scores = options.sweep_users * options.items
    print(
        f"## Top-{options.N} over {options.items:,} items, {options.factors} factors: chunk-size sweep "
        f"({options.sweep_users:,} users, batches of {options.user_batch})\n"
    )
    print("| chunk size | wall time (s) | ns per score | peak RSS (MB) | top-k working set (MB) |")
    print("|---:|---:|---:|---:|---:|")
    results = {}
    for chunk_size in options.chunk_sizes:
        r = run_child("chunked", options.sweep_users, options, chunk_size)
        results[chunk_size] = r
        print(
            f"| {chunk_size:,} | {r['seconds']:.1f} | {r['seconds'] / scores * 1e9:.2f} | {r['peak_mb']:.0f} "
            f"| {r['peak_mb'] - r['setup_mb']:.0f} |",
            flush=True,
        )
    # Fastest, unless a smaller chunk is within 10 %: then the smaller working set wins.
    fastest = min(r["seconds"] for r in results.values())
    best = min(c for c, r in results.items() if r["seconds"] <= 1.1 * fastest)
    print(f"\nchosen chunk size: {best:,}\n")

    print(f"## Top-{options.N} for {options.users:,} users over {options.items:,} items\n")
    print("| method | wall time (s) | users per second | peak RSS (MB) | top-k working set (MB) |")
    print("|---|---:|---:|---:|---:|")
    rows = [(f"recsys.topk, chunk {best:,}", run_child("chunked", options.users, options, best))]
    if not options.skip_implicit:
        rows.append(("implicit.cpu.topk (C++)", run_child("implicit", options.users, options)))
    for name, r in rows:
        print(
            f"| {name} | {r['seconds']:.1f} | {options.users / r['seconds']:.0f} | {r['peak_mb']:.0f} "
            f"| {r['peak_mb'] - r['setup_mb']:.0f} |",
            flush=True,
        )


def synthetic_plays(n_users: int, n_items: int, draws: int, seed: int = 0) -> sp.csr_matrix:
    """Users with lognormal activity, items with Zipf popularity, geometric play counts.

    Repeated (user, item) draws merge, so there are fewer nonzeros than draws.
    """
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, n_users)
    per_user = np.maximum(1, np.round(activity / activity.sum() * draws)).astype(np.int64)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    rows = np.repeat(np.arange(n_users), per_user)
    cols = rng.permutation(n_items)[rng.choice(n_items, size=len(rows), p=popularity / popularity.sum())]
    counts = rng.geometric(0.3, size=len(rows)).astype(np.float32)
    return sp.csr_matrix((counts, (rows, cols)), shape=(n_users, n_items))


def als_table(options: argparse.Namespace) -> None:
    from recsys import WMF, load_interactions

    large = ROOT / "data" / "large" / "plays.parquet"
    if large.exists():
        plays = load_interactions(large, "user_id", "track_id", "plays").user_items
        source = str(large.relative_to(ROOT))
    else:
        plays = synthetic_plays(50_000, 10_000, 2_400_000)  # ~2.0M distinct (user, item) pairs
        source = "synthetic (Zipf items, lognormal users)"
    model = WMF(factors=options.factors, regularization=0.1, alpha=20.0, iterations=options.iterations)
    model.fit(plays)
    cold = plays[:, : plays.shape[1] // 10].T.tocsr()
    start = time.perf_counter()
    model.fold_in_items(cold)
    fold_seconds = time.perf_counter() - start
    print(f"\n## WMF (implicit ALS, CPU) on {source}\n")
    print("| users | items | nonzeros | factors | iterations | fit (s) | s per iteration | fold-in of 10 % items (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {plays.shape[0]:,} | {plays.shape[1]:,} | {plays.nnz:,} | {options.factors} | {options.iterations} "
        f"| {model.fit_seconds:.1f} | {model.fit_seconds / options.iterations:.2f} | {fold_seconds:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--sweep-users", type=int, default=2_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--N", type=int, default=100)
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[4_096, 16_384, 65_536, 262_144, 1_048_576])
    parser.add_argument("--user-batch", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--skip-implicit", action="store_true", help="no implicit top-k reference row")
    parser.add_argument("--skip-als", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="chunked", help=argparse.SUPPRESS)
    parser.add_argument("--chunk-size", type=int, default=0, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options)
        return
    topk_tables(options)
    if not options.skip_als:
        als_table(options)


if __name__ == "__main__":
    main()
