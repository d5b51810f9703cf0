"""Command line: ``python -m tagging datasets NAME --root ... --out DIR [options]``.

Writes ``DIR/manifest.parquet`` and ``DIR/vocab.json`` (each atomically) and prints tracks per split,
tags per group and the tracks listed but missing on disk. ``python -m tagging datasets NAME -h`` lists
an adapter's options.
"""

from __future__ import annotations

import argparse
import sys

from tagging.datasets import folders, magnatagatune, manifest, mtg_jamendo
from tagging.datasets.catalog import write_catalog

ADAPTERS = {"mtg_jamendo": mtg_jamendo, "magnatagatune": magnatagatune, "folders": folders, "manifest": manifest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tagging datasets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    names = parser.add_subparsers(dest="name", required=True, metavar="NAME")
    for name, module in ADAPTERS.items():
        sub = names.add_parser(name, help=module.__doc__.splitlines()[0], description=module.__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.add_argument("--out", required=True, help="folder for manifest.parquet and vocab.json")
    args = parser.parse_args(argv)
    try:
        catalog = ADAPTERS[args.name].from_args(args)
    except (ValueError, OSError) as error:
        parser.exit(2, f"{parser.prog} {args.name}: error: {error}\n")
    manifest_path, vocab_path = write_catalog(catalog, args.out)
    sys.stdout.write(catalog.summary())
    sys.stdout.write(f"wrote {manifest_path} and {vocab_path}\n")
    return 0

