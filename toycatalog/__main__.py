"""Command line: `python -m toycatalog build --preset demo --out data/demo [--seed 0] [--workers 2]`."""

import argparse
import os
import sys
import time

from toycatalog.build import PRESETS, build_catalog, summary_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toycatalog", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="synthesize a catalog into a new directory")
    build.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    build.add_argument("--out", required=True, help="directory to create (written atomically)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                       help="rendering processes (default: min(2, cpu count))")
    build.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    started = time.perf_counter()
    try:
        summary = build_catalog(
            args.out, args.preset, args.seed, workers=args.workers, overwrite=args.overwrite
        )
    except FileExistsError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    sys.stdout.write(summary_markdown(summary))
    sys.stdout.write(f"\nwrote {args.out} in {time.perf_counter() - started:.1f} s (wall time)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
