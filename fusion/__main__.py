"""Command line: ``python -m fusion split | ablation | chain | package | coldstart``.

    python -m fusion split --manifest data/demo/manifest.parquet --recsys runs/demo/recsys \
        --artist-col artist_id --out runs/demo/manifest.parquet
    python -m fusion ablation --manifest runs/demo/manifest.parquet --vocab data/demo/vocab.json \
        --features runs/demo/features.npz --recsys runs/demo/recsys --genome attribute graded \
        --out runs/demo/fusion
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
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from coldtag.storage import atomic_path, atomic_write
from fusion import chain as whole_chain
from fusion.data import is_content

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FUSION_CONFIG, AUDIO_CONFIG = CONFIGS / "fusion_demo.yaml", CONFIGS / "fusion_audio_demo.yaml"


def main(args: list[str] | None = None) -> int:
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

    ablation_parser = commands.add_parser("ablation", help="train every row of the ablation and write its table")
    source = ablation_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--catalog", type=Path, help="toy catalog folder: its manifest.parquet and vocab.json")
    source.add_argument("--manifest", type=Path, help="manifest (Parquet, CSV or TSV), e.g. of python -m fusion split")
    ablation_parser.add_argument("--vocab", type=Path, help="vocabulary JSON (default: vocab.json beside --manifest)")
    ablation_parser.add_argument("--features", type=Path, required=True,
                                 help="features .npz of python -m tagging.features")
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
                         help="features .npz of python -m tagging.features by this --tagger: its tags of the "
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

    options = parser.parse_args(coldstart_form(sys.argv[1:] if args is None else args))
    if options.command == "coldstart" and not (options.audio or options.lyrics or options.cover):
        parser.error("coldstart needs at least one of --audio, --lyrics, --cover")
    command = {"split": split_tracks, "ablation": ablation, "chain": whole_chain.run_chain, "package": package_pipeline,
               "coldstart": _coldstart}[options.command]
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


def split_arguments(parser: argparse.ArgumentParser) -> None:
    """How the warm tracks are dealt between the audio tagger and the fusion stage."""
    parser.add_argument("--tagger-share", type=float, default=0.5,
                        help="share of the warm tracks the tagger learns from; 1: every one (in-sample features)")


def ablation_arguments(parser: argparse.ArgumentParser) -> None:
    """Which rows the ablation trains, with which configs, and its intervals."""
    parser.add_argument("--genome", nargs="+", metavar="GROUP",
                        help="label groups that stand for the paper's attributes (default: every group)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the intervals")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one is fastest on a busy machine)")
    parser.add_argument("--skip-audio", action="store_true", help="leave out the end-to-end audio rows (slow)")
    parser.add_argument("--fusion-config", type=Path, default=FUSION_CONFIG,
                        help="LightningCLI config of the late-fusion rows (train.py); each row sets its inputs")
    parser.add_argument("--audio-config", type=Path, default=AUDIO_CONFIG,
                        help="LightningCLI config of the end-to-end audio rows")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="DOTTED.KEY=VALUE",
                        help="change a setting of the late-fusion rows' config, e.g. trainer.max_epochs=50")
    parser.add_argument("--audio-set", dest="audio_settings", action="append", default=[],
                        metavar="DOTTED.KEY=VALUE", help="change a setting of the audio rows' config")


def split_tracks(options: argparse.Namespace) -> int:
    """``python -m fusion split`` on parsed options."""
    from fusion.data import FUSION_SPLIT, split_warm_tracks
    from recsys import ColdStartSplit
    from tagging.labels import read_manifest

    if options.out.suffix != ".parquet":
        raise ValueError(f"--out {options.out}: the split manifest is written as Parquet (.parquet)")
    coldstart = options.recsys / "coldstart.npz"
    if not coldstart.is_file():
        raise FileNotFoundError(f"{coldstart}: not found; run python -m recsys coldstart first")
    vocab = options.vocab or options.manifest.parent / "vocab.json"
    if not vocab.is_file():
        raise FileNotFoundError(f"{vocab}: vocabulary not found (--vocab)")
    beside = options.out.parent / "vocab.json"
    if beside.is_file() and beside.read_bytes() != vocab.read_bytes():
        raise ValueError(f"{beside} exists and differs from {vocab}; write the split manifest to another folder")
    manifest = read_manifest(options.manifest)
    frame = split_warm_tracks(manifest, ColdStartSplit.load(coldstart), options.tagger_share, options.seed,
                              options.artist_col)
    # Paths relative to the new manifest's folder, as read_manifest resolves them.
    folder = options.out.absolute().parent
    for column in ("audio_path", "lyrics_path", "cover_path"):
        if column in frame.columns:
            frame[column] = [None if p is None else os.path.relpath(p, folder) for p in frame[column]]
    with atomic_path(options.out) as tmp:
        frame.to_parquet(tmp, index=False)
    if not beside.is_file():
        atomic_write(beside, vocab.read_text())
    counts = {column: frame[column].value_counts().to_dict() for column in ("split", FUSION_SPLIT)}
    print(f"{options.out}: tagger {counts['split']}, fusion {counts[FUSION_SPLIT]}")
    return 0


def ablation(options: argparse.Namespace) -> int:
    """``python -m fusion ablation`` on parsed options."""
    from datasets import disable_progress_bars

    from fusion.ablation import DataPaths, markdown, run_ablation

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    disable_progress_bars()  # the audio cache's filter bars, one per split
    # Lightning's banners (accelerators, tips) say nothing about the rows; its warnings still show.
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    fusion = _config(options.fusion_config, options.settings, "--set")
    audio = None if options.skip_audio else _config(options.audio_config, options.audio_settings, "--audio-set")
    started = time.perf_counter()
    paths = (DataPaths.catalog(options.catalog, options.features, options.recsys) if options.catalog else
             DataPaths(options.manifest, options.vocab or options.manifest.parent / "vocab.json", options.features,
                       options.recsys))
    artist_col = None if options.artist_col == "none" else options.artist_col
    table = run_ablation(paths, options.out, fusion, audio, options.genome, options.seed, threads=options.threads,
                         artist_col=artist_col, resamples=options.resamples)
    print(markdown(table))
    print()
    print((options.out / "differences.md").read_text())
    print(f"wall time {time.perf_counter() - started:.0f} s; wrote {options.out}/table.md, table.csv, table.png, "
          f"rows.json, differences.md, differences.csv")
    return 0


def _config(path: Path, settings: list[str], flag: str) -> dict:
    """A LightningCLI config file as a dict, with the ``DOTTED.KEY=VALUE`` changes of ``flag``."""
    import yaml

    from tagging.runs import apply_setting, parse_setting

    if not path.is_file():
        raise FileNotFoundError(f"{path}: config not found")
    config = yaml.safe_load(path.read_text())
    for text in settings:
        try:
            apply_setting(config, *parse_setting(text))
        except ValueError as error:
            raise ValueError(f"{flag} {text}: {error}") from None
    return config


def package_pipeline(options: argparse.Namespace) -> int:
    """``python -m fusion package`` on parsed options."""
    from coldtag.storage import file_sha256
    from fusion.explain import CatalogTags
    from fusion.model import LateFusionRegressor
    from fusion.pipeline import ColdStartPipeline
    from recsys import ColdStartSplit, Recommender
    from tagging.features import TrackFeatures
    from tagging.models import AudioTagger
    from tagging.multimodal import MultimodalTagger

    fusion_dir = options.fusion or best_content_row(options.ablation)
    split_file = options.recsys / "coldstart.npz"
    split = ColdStartSplit.load(split_file)
    # Every item with plays is in the catalog, the cold ones by their fold-in factors; an item nobody
    # played has no direction and is left out.
    played = np.linalg.norm(split.item_factors, axis=1) > 0
    recommender = Recommender(split.user_factors, split.item_factors[played], split.user_ids,
                              split.item_ids[played], params=split.params)
    multimodal = MultimodalTagger.from_pretrained(options.multimodal) if options.multimodal else None
    tagger = AudioTagger.from_pretrained(options.tagger)
    catalog_tags = None
    if options.features is not None:
        if not options.features.is_file():
            raise FileNotFoundError(f"--features {options.features}: not found")
        catalog_tags = CatalogTags.from_features(TrackFeatures.load(options.features), tagger,
                                                 f"--features {options.features}")
    pipeline = ColdStartPipeline(tagger,
                                 LateFusionRegressor.from_pretrained(fusion_dir), recommender, multimodal,
                                 lyrics_model=options.lyrics_model, cover_arch=options.cover_arch,
                                 cover_weights=options.cover_weights, cover_size=options.cover_size,
                                 n_users=options.n_users, n_tracks=options.n_tracks,
                                 factors_sha256=file_sha256(split_file), catalog_tags=catalog_tags)
    pipeline.save_pretrained(options.out)
    print(f"{options.out}: fusion {fusion_dir} (inputs {pipeline.fusion.inputs}), {recommender.n_users} users, "
          f"{recommender.n_items} catalog tracks, tags from {'multimodal' if multimodal else 'audio'} tagger"
          + (f", similar tracks explained by the tags of {options.tagger}" if catalog_tags else ""))
    return 0


def best_content_row(ablation: Path) -> Path:
    """The model of the fusion row with the lowest *validation* cosine distance among those a new track
    can run (no annotated input); the test split plays no part in the choice."""
    rows_file = ablation / "rows.json"
    if not rows_file.is_file():
        raise FileNotFoundError(f"{rows_file}: not found; run python -m fusion ablation first")
    rows = [row for row in json.loads(rows_file.read_text())
            if row["inputs"] and all(is_content(name) for name in row["inputs"])]
    if not rows:
        raise ValueError(f"{rows_file}: no fusion row runs on content alone")
    best = min(rows, key=lambda row: row["val"]["cosine_distance"])
    return Path(best["dir"]) / "model"


def _coldstart(options: argparse.Namespace) -> int:
    from fusion.pipeline import ColdStartPipeline

    pipeline = ColdStartPipeline.from_pretrained(options.pipeline)
    record = pipeline(audio=options.audio, lyrics=options.lyrics, cover=options.cover)
    print(json.dumps(record, indent=2))
    return 0 if record["factors"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
