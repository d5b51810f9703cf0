"""The stages of ``python -m fusion`` as functions of parsed options, with the arguments they share.

`fusion.cli` runs each as its own command; `fusion.chain` runs them in turn on a user's catalog, each with
the arguments its stage declares here (`split_arguments`, `ablation_arguments`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import yaml
from datasets import disable_progress_bars

from coldtag.storage import atomic_path, atomic_write, file_sha256
from fusion.ablation import AUDIO_ROWS_FILE, MERGED_FEATURES, DataPaths, markdown, run_ablation, run_audio_rows
from fusion.data import FUSION_SPLIT, is_content, split_warm_tracks
from fusion.explain import CatalogTags
from fusion.model import LateFusionRegressor
from fusion.pipeline import ColdStartPipeline
from recsys import ColdStartSplit, Recommender
from tagging.data.features import TrackFeatures
from tagging.labels import read_manifest
from tagging.models.multimodal import MultimodalTagger
from tagging.models.tagger import AudioTagger
from tagging.runs import apply_setting, parse_setting

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FUSION_CONFIG, AUDIO_CONFIG = CONFIGS / "fusion_demo.yaml", CONFIGS / "fusion_audio_demo.yaml"


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
    parser.add_argument("--audio-only", action="store_true",
                        help="train only the end-to-end audio rows, which read no --features, into --out (their "
                             "summary in audio_rows.json); a later run with the same --out reuses them, so they "
                             "can train while the tagger that makes the features does")
    parser.add_argument("--references", type=Path, metavar="FILE.npz",
                        help="reference sources of python -m fusion references (log-mel statistics, random features, "
                             "another tagger's tags): one more row each, which the packaged pipeline never picks")
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
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    disable_progress_bars()  # the audio cache's filter bars, one per split
    # Lightning's banners (accelerators, tips) say nothing about the rows; its warnings still show.
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    if options.audio_only and (options.skip_audio or options.references):
        raise ValueError("--audio-only trains the audio rows alone: not with --skip-audio or --references")
    if options.features is None and not options.audio_only:
        raise ValueError("--features is required (all rows but the end-to-end audio ones read it)")
    fusion = _config(options.fusion_config, options.settings, "--set")
    audio = None if options.skip_audio else _config(options.audio_config, options.audio_settings, "--audio-set")
    started = time.perf_counter()
    paths = (DataPaths.catalog(options.catalog, options.features, options.recsys, options.references)
             if options.catalog else
             DataPaths(options.manifest, options.vocab or options.manifest.parent / "vocab.json", options.features,
                       options.recsys, options.references))
    if options.audio_only:
        rows = run_audio_rows(paths, options.out, audio, options.seed, threads=options.threads)
        for row in rows:
            test = row["test_centre" if row["pooling"] == "centre" else "test"]
            print(f"{row['name']}: cold-test cosine distance {test['cosine_distance']:.4f} ({row['epochs']} epochs)")
        print(f"wall time {time.perf_counter() - started:.0f} s; wrote {options.out}/{AUDIO_ROWS_FILE} (python -m "
              "fusion ablation with this --out reuses these rows)")
        return 0
    artist_col = None if options.artist_col == "none" else options.artist_col
    table = run_ablation(paths, options.out, fusion, audio, options.genome, options.seed, threads=options.threads,
                         artist_col=artist_col, resamples=options.resamples)
    print(markdown(table))
    print()
    print((options.out / "differences.md").read_text())
    merged = f", {MERGED_FEATURES}" if options.references else ""
    print(f"wall time {time.perf_counter() - started:.0f} s; wrote {options.out}/table.md, table.csv, table.png, "
          f"rows.json, differences.md, differences.csv{merged}")
    return 0


def _config(path: Path, settings: list[str], flag: str) -> dict:
    """A LightningCLI config file as a dict, with the ``DOTTED.KEY=VALUE`` changes of ``flag``."""
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
    can run (`fusion.data.is_content`: no annotated input, no reference source); the test split plays no part
    in the choice."""
    rows_file = ablation / "rows.json"
    if not rows_file.is_file():
        raise FileNotFoundError(f"{rows_file}: not found; run python -m fusion ablation first")
    rows = [row for row in json.loads(rows_file.read_text())
            if row["inputs"] and all(is_content(name) for name in row["inputs"])]
    if not rows:
        raise ValueError(f"{rows_file}: no fusion row runs on content alone")
    best = min(rows, key=lambda row: row["val"]["cosine_distance"])
    return Path(best["dir"]) / "model"
