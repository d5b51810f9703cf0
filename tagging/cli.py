"""Command line: ``python -m tagging COMMAND ...``, one command per stage of a tagger's life.

    python -m tagging datasets mtg_jamendo --root mtg-jamendo-dataset --audio-root /data/mtg-jamendo --out data/mtg
    python -m tagging baseline --manifest data/realistic/manifest.parquet --features logmel_stats
    python -m tagging evaluate baseline --help
    python -m tagging features --manifest runs/demo/manifest.parquet --tagger runs/demo/tagger/model --out F.npz
    python -m tagging pretrained list
    python -m tagging distil --teacher musicnn-mtt --manifest data/real/manifest.csv --out STUDENT

Each command's options are its own module's (``python -m tagging COMMAND --help``); training itself is
``python train.py`` (LightningCLI).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module whose ``main(argv)`` runs it, what it does)
COMMANDS = {
    "datasets": ("tagging.datasets.cli", "write a manifest of a public data set or of a folder or table of tracks"),
    "baseline": ("tagging.evaluation.baseline", "the log-mel statistics baseline of a catalog's tags"),
    "evaluate": ("tagging.evaluation.evaluate", "score a trained tagger beside the baseline, or per modality"),
    "features": ("tagging.data.features", "cache every track's tagger, lyrics and cover embeddings"),
    "pretrained": ("tagging.pretrained.convert", "list, cache or convert the pretrained taggers"),
    "distil": ("tagging.pretrained.distil", "distil one or more teachers into a small student"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m tagging", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND",
                        help="; ".join(f"{name}: {text}" for name, (_, text) in COMMANDS.items()))
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.parse_args(argv[:1] or ["--help"])
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:]) or 0
