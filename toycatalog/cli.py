"""Command line:

- `python -m toycatalog build --preset demo --out data/demo [--seed 0] [--workers 2] [--hidden-taste S]`;
  `--preset realistic` renders sampled General MIDI instruments with FluidSynth (toycatalog.realistic)
- `python -m toycatalog plays --catalog data/demo --hidden-taste S --out FILE.parquet`: the catalog's listeners
  simulated again, with a share S of their taste following traits the audio carries and the vocabulary does
  not list; the plays go to FILE.parquet and the users (liked and disliked traits, hidden ones too) to
  users.parquet beside it. The users and seed are the build's: the share the catalog was built with gives
  back its plays.parquet.
- `python -m toycatalog demo [--preset demo|tiny] [--only STAGE ...] [--set CONFIG.KEY=VALUE]`: every stage of
  the system on the demo catalog and runs/demo/report.md (toycatalog.demo; what `make demo` runs).

A bad argument or file ends the command with exit status 2 and a line on stderr naming it.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from coldtag.storage import atomic_path
from toycatalog import demo as demo_module
from toycatalog.build import PRESETS, build_catalog, replay_listeners, summary_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toycatalog", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="synthesize a catalog into a new directory")
    build.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    build.add_argument("--out", required=True, help="directory to create (written atomically)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                       help="rendering processes (default: min(2, cpu count))")
    build.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    build.add_argument("--hidden-taste", type=share, default=0.0,
                       help="share of the listeners' taste that follows audio traits the vocabulary does not list")
    plays = commands.add_parser("plays", help="simulate a built catalog's listeners again with another hidden taste")
    plays.add_argument("--catalog", type=Path, required=True, help="a folder written by build")
    plays.add_argument("--hidden-taste", type=share, required=True,
                       help="share of the listeners' taste that follows audio traits the vocabulary does not list")
    plays.add_argument("--out", type=Path, required=True,
                       help="plays .parquet to write (user_id, track_id, plays); users.parquet goes beside it")
    demo = commands.add_parser("demo", help="every stage on the demo catalog, then runs/demo/report.md",
                               description=demo_module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo_module.add_arguments(demo)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo_module.main(args)
    if args.command == "plays":
        return _plays(parser, args)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    started = time.perf_counter()
    try:
        summary = build_catalog(
            args.out, args.preset, args.seed, workers=args.workers, overwrite=args.overwrite,
            hidden_taste=args.hidden_taste,
        )
    except (FileExistsError, RuntimeError) as err:  # RuntimeError: FluidSynth missing or failing
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    sys.stdout.write(summary_markdown(summary))
    sys.stdout.write(f"\nwrote {args.out} in {time.perf_counter() - started:.1f} s (wall time)\n")
    return 0


def share(text: str) -> float:
    """A number from 0 to 1, both included (an argparse type)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, both included; got {text}")
    return value


def _plays(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    out, users_path = args.out, args.out.with_name("users.parquet")
    if out.suffix != ".parquet" or out.name == "users.parquet":
        parser.error(f"--out must be a .parquet file other than users.parquet (written beside it), got {out}")
    if out.resolve().parent == args.catalog.resolve():
        parser.error(f"--out {out}: inside the catalog, whose plays.parquet and users.parquet stay as built; "
                     "write elsewhere")
    try:
        plays, users = replay_listeners(args.catalog, args.hidden_taste)
        with atomic_path(out) as temporary:
            plays.to_parquet(temporary, index=False)
        with atomic_path(users_path) as temporary:
            users.to_parquet(temporary, index=False)
    except (ValueError, OSError) as error:
        # A catalog that is not one, or cannot be re-planned, is the user's to fix: one line naming it.
        parser.exit(2, f"{parser.prog} plays: error: {error}\n")
    print(f"{len(users)} users, {len(plays)} user-track pairs, {int(plays['plays'].sum())} listens with hidden taste "
          f"{args.hidden_taste} -> {out} (users: {users_path})")
    return 0

