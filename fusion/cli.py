"""Command line: ``python -m fusion split | references | ablation | chain | package | coldstart``.

    python -m fusion split --manifest data/demo/manifest.parquet --recsys runs/demo/recsys \
        --artist-col artist_id --out runs/demo/manifest.parquet
    python -m fusion references --manifest runs/demo/manifest.parquet --logmel-stats --random 64 \
        --tagger musicnn-distil-s --out runs/demo/references.npz
    python -m fusion ablation --manifest runs/demo/manifest.parquet --vocab data/demo/vocab.json \
        --features runs/demo/features.npz --recsys runs/demo/recsys --genome attribute graded \
        [--references runs/demo/references.npz] --out runs/demo/fusion
    python -m fusion package --tagger runs/demo/tagger/model --ablation runs/demo/fusion \
        --recsys runs/demo/recsys --features runs/demo/features.npz --out runs/demo/pipeline
    python -m fusion coldstart --pipeline runs/demo/pipeline --audio new.mp3 [--lyrics new.txt] [--cover new.jpg]
    python -m fusion coldstart --manifest my/manifest.csv --plays my/listens.csv --tagger musicnn-mtt \
        --cold-fraction 0.1 --out runs/mine

``coldstart`` with ``--manifest`` instead of ``--pipeline`` builds a pipeline from a catalog: it is
``chain --package`` (see ``python -m fusion chain --help``), the pipeline in ``OUT/pipeline``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from fusion import chain as whole_chain
from fusion.pipeline import ColdStartPipeline
from fusion.references import write_references
from fusion.stages import ablation, ablation_arguments, package_pipeline, split_arguments, split_tracks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fusion", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    split = commands.add_parser("split", help="deal the warm tracks between the audio tagger and the fusion stage")
    split.add_argument("--manifest", type=Path, required=True, help="the catalog manifest (Parquet, CSV or TSV)")
    split.add_argument("--recsys", type=Path, required=True, help="output folder of python -m recsys coldstart")
    split_arguments(split)
    split.add_argument("--artist-col", help="manifest column of artists, dealt whole (default: none)")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--vocab", type=Path, help="vocabulary JSON (default: vocab.json beside --manifest); "
                                                  "copied beside --out, where the other commands look for it")
    split.add_argument("--out", type=Path, required=True, help="the manifest to write (.parquet)")

    references = commands.add_parser("references", help="reference sources for the ablation, which a packaged "
                                                        "pipeline cannot compute: log-mel statistics, random "
                                                        "features, another tagger's tags")
    references.add_argument("--manifest", type=Path, required=True,
                            help="the ablation's manifest (Parquet, CSV or TSV): its tracks' audio")
    references.add_argument("--logmel-stats", action="store_true",
                            help="log-mel statistics of each track (python -m tagging baseline's logmel_stats)")
    references.add_argument("--random", type=int, metavar="DIM",
                            help="DIM Gaussian values per track, drawn from --seed and the track's id")
    references.add_argument("--tagger", action="append", metavar="NAME|DIR|NAME=DIR",
                            help="a packaged AudioTagger (pretrained name or save_pretrained folder) whose tag "
                                 "probabilities are a source; repeatable")
    references.add_argument("--seed", type=int, default=0, help="seed of the random features")
    references.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                            help="where the taggers run")
    references.add_argument("--out", type=Path, required=True, help="the reference features to write (.npz)")

    ablation_parser = commands.add_parser("ablation", help="train every row of the ablation and write its table")
    source = ablation_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--catalog", type=Path, help="toy catalog folder: its manifest.parquet and vocab.json")
    source.add_argument("--manifest", type=Path, help="manifest (Parquet, CSV or TSV), e.g. of python -m fusion split")
    ablation_parser.add_argument("--vocab", type=Path, help="vocabulary JSON (default: vocab.json beside --manifest)")
    ablation_parser.add_argument("--features", type=Path,
                                 help="features .npz of python -m tagging features (not read with --audio-only)")
    ablation_parser.add_argument("--recsys", type=Path, required=True,
                                 help="output folder of python -m recsys coldstart")
    ablation_parser.add_argument("--out", type=Path, required=True)
    ablation_parser.add_argument("--artist-col", default="auto",
                                 help="manifest column of artists for the intervals (default: artist_id if "
                                      "present; none: every item its own)")
    ablation_parser.add_argument("--seed", type=int, default=0)
    ablation_arguments(ablation_parser)

    package = commands.add_parser("package", help="bundle tagger, fusion model and recommender into a pipeline")
    package.add_argument("--tagger", type=Path, required=True, help="save_pretrained AudioTagger directory")
    package.add_argument("--multimodal", type=Path, help="save_pretrained MultimodalTagger directory (optional)")
    package.add_argument("--recsys", type=Path, required=True, help="output folder of python -m recsys coldstart")
    which = package.add_mutually_exclusive_group(required=True)
    which.add_argument("--fusion", type=Path, help="save_pretrained LateFusionRegressor directory")
    which.add_argument("--ablation", type=Path,
                       help="ablation output: take the row of lowest validation cosine distance a new track can run")
    package.add_argument("--features", type=Path,
                         help="features .npz of python -m tagging features by this --tagger: its tags of the "
                              "catalog's tracks explain each similar track (optional)")
    package.add_argument("--out", type=Path, required=True)
    package.add_argument("--lyrics-model", default=None, help="local transformer directory (default: MiniLM)")
    package.add_argument("--cover-arch", default="efficientnet_lite0")
    package.add_argument("--cover-weights", default=None, help="local state dict (default: packaged ImageNet)")
    package.add_argument("--cover-size", type=int, default=224)
    package.add_argument("--n-users", type=int, default=10)
    package.add_argument("--n-tracks", type=int, default=10)

    chain = commands.add_parser("chain", help="the whole chain on a catalog: manifest and plays in, ablation out",
                                description=whole_chain.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    whole_chain.add_arguments(chain)

    cold = commands.add_parser("coldstart", help="tags, factors, users and similar tracks of a new track (JSON); "
                                                 "with --manifest instead of --pipeline: chain --package")
    cold.add_argument("--pipeline", type=Path, required=True)
    cold.add_argument("--audio", type=Path)
    cold.add_argument("--lyrics", type=Path)
    cold.add_argument("--cover", type=Path)

    options = parser.parse_args(coldstart_form(sys.argv[1:] if argv is None else argv))
    if options.command == "coldstart" and not (options.audio or options.lyrics or options.cover):
        parser.error("coldstart needs at least one of --audio, --lyrics, --cover")
    command = {"split": split_tracks, "references": write_references, "ablation": ablation,
               "chain": whole_chain.run_chain, "package": package_pipeline, "coldstart": _coldstart}[options.command]
    try:
        return command(options)
    except (FileNotFoundError, ValueError) as error:  # ProvenanceError is a ValueError
        # A bad argument or file: one line naming it, not a traceback.
        print(f"python -m fusion {options.command}: {error}", file=sys.stderr)
        return 2


def coldstart_form(args: list[str]) -> list[str]:
    """``coldstart`` given a catalog (``--manifest``) rather than a package (``--pipeline``) builds the
    pipeline: the arguments of ``chain --package``. Any other command line is returned as it is."""
    if not args or args[0] != "coldstart":
        return args
    flags = {a.split("=", 1)[0] for a in args[1:]}
    if "--manifest" in flags and "--pipeline" not in flags:
        return ["chain", "--package", *args[1:]]
    return args


def _coldstart(options: argparse.Namespace) -> int:
    pipeline = ColdStartPipeline.from_pretrained(options.pipeline)
    record = pipeline(audio=options.audio, lyrics=options.lyrics, cover=options.cover)
    print(json.dumps(record, indent=2))
    return 0 if record["factors"] is not None else 1
