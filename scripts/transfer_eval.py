"""From scratch, frozen linear probe and fine-tuned from a pretrained tagger, side by side against the
log-mel-statistics baseline, on unseen artists (issue 24).

    python scripts/transfer_eval.py --manifest data/realistic/manifest.parquet --out runs/transfer --seeds 0 1 2
    python scripts/transfer_eval.py --manifest ... --out runs/transfer --only probe --train-only

Trains every ``--seeds`` seed of each variant (default: ``scratch`` = configs/tagger.yaml, ``probe`` =
configs/transfer_probe.yaml, ``finetune`` = configs/transfer_finetune.yaml) with ``train.py fit`` into
``OUT/<variant>/seed-<n>`` (`tagging.runs.seed_config`: the seed, the manifest and every output folder are the
only changes, plus ``--set VARIANT:DOTTED.KEY=VALUE``), in the order the variants are given. A seed whose
package (``model/``) exists is reused, and so are a package's cached track scores (``scores_<split>.npz``), so
an interrupted run picks up at the seed it stopped in; ``--no-train`` compares only the seeds already
finished. The baseline (`tagging.evaluation.baseline`, ``--features``) is fitted on the train split, its clip features
cached in ``OUT``.

Then, per split (test: the final figures; validation: where settings are chosen), per group: each variant's
seed mean (sd) and its difference from the baseline with a 95 % interval from resampling the split's artists
(`tagging.evaluation.comparison.transfer_rows`), the error ratio to the baseline (1 - ROC-AUC over the baseline's), and
each variant against the one before it (`variant_rows`). Printed, and written to ``OUT/transfer_eval.md`` and
``.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tagging.data.modules import split_of  # noqa: E402
from tagging.evaluation.baseline import FEATURES, clip_features  # noqa: E402
from tagging.evaluation.comparison import (  # noqa: E402
    baseline_scores,
    transfer_markdown,
    transfer_rows,
    variant_rows,
    variants_markdown,
)
from tagging.evaluation.evaluate import resampling_clusters, tagger_scores  # noqa: E402
from tagging.labels import read_manifest  # noqa: E402
from tagging.models.tagger import AudioTagger  # noqa: E402
from tagging.runs import apply_setting, parse_setting, seed_config  # noqa: E402

VARIANTS = {"scratch": "configs/tagger.yaml", "probe": "configs/transfer_probe.yaml",
            "finetune": "configs/transfer_finetune.yaml"}
SPLIT_NAMES = {"test": "Test", "val": "Validation"}


def train(config: Path, seed: int, folder: Path, manifest: Path, changes: list) -> Path:
    """The package of ``config`` fitted with ``seed`` into ``folder`` (reused if it exists)."""
    package = folder / "model"
    if (package / "config.json").is_file():
        return package
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    settings = seed_config(yaml.safe_load(config.read_text()), seed, folder)
    settings["data"]["init_args"]["manifest"] = str(manifest.resolve())
    for path, value in changes:
        apply_setting(settings, path, value)
    seeded = folder / "config.yaml"
    seeded.write_text(yaml.safe_dump(settings))
    subprocess.run([sys.executable, "train.py", "fit", "--config", str(seeded)], cwd=ROOT, check=True)
    seconds = time.perf_counter() - started
    (folder / "fit_seconds.json").write_text(json.dumps({"seconds": round(seconds, 1)}))
    print(f"{folder}: {seconds:.0f} s", file=sys.stderr)
    return package


def scores(package: Path, split: str, track_ids: list[str], paths: list[str]) -> dict[str, np.ndarray]:
    """The package's whole-track scores on ``paths``, cached beside it as ``scores_<split>.npz``."""
    cache = package.parent / f"scores_{split}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as stored:
            if stored["track_id"].tolist() == track_ids:
                return {key: stored[key] for key in stored.files if key != "track_id"}
    with torch.inference_mode():  # no autograd graph: scoring takes several seconds a track on a busy CPU
        result = tagger_scores(AudioTagger.from_pretrained(package).eval(), paths)
    np.savez(cache, track_id=np.array(track_ids), **result)
    return result


def features(out: Path, frame, kind: str) -> np.ndarray:
    """The baseline's clip features of every track, cached in ``out`` for the same track ids."""
    cache = out / f"features_{kind}.npz"
    ids = frame["track_id"].astype(str).tolist()
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as stored:
            if stored["track_id"].tolist() == ids:
                return stored["x"]
    x = clip_features(frame["audio_path"].tolist(), kind)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(cache, track_id=np.array(ids), x=x)
    return x


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variant", action="append", default=None, metavar="NAME=CONFIG",
                        help=f"a variant and its config, repeated in the table's order (default {VARIANTS})")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", help="train only these variants")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="VARIANT:DOTTED.KEY=VALUE",
                        help="change one setting of one variant's config, e.g. scratch:trainer.max_epochs=20")
    parser.add_argument("--train-only", action="store_true", help="train, print no table")
    parser.add_argument("--no-train", action="store_true", help="compare the seeds already trained")
    parser.add_argument("--focus", default="instrument", help="the group whose error ratio is the headline")
    parser.add_argument("--features", choices=FEATURES, default="logmel_stats")
    parser.add_argument("--artist-col", default=None)
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args(argv)
    variants = dict(VARIANTS)
    if args.variant:
        variants = {}
        for text in args.variant:
            name, sep, config = text.partition("=")
            if not sep or not (ROOT / config).is_file():
                parser.error(f"--variant: expected NAME=CONFIG with an existing config, got {text!r}")
            variants[name] = config
    changes = {name: [] for name in variants}
    for text in args.settings:
        name, sep, setting = text.partition(":")
        if not sep or name not in variants:
            parser.error(f"--set: expected VARIANT:DOTTED.KEY=VALUE with a variant of {list(variants)}, got {text!r}")
        try:
            changes[name].append(parse_setting(setting))
        except ValueError as error:
            parser.error(f"--set: {error}")
    for name in args.only or []:
        if name not in variants:
            parser.error(f"--only: {name!r} is not a variant ({list(variants)})")

    packages = {name: {} for name in variants}
    for name, config in variants.items():
        for seed in args.seeds:
            folder = args.out / name / f"seed-{seed}"
            if not args.no_train and (args.only is None or name in args.only):
                train(ROOT / config, seed, folder, args.manifest, changes[name])
            if (folder / "model" / "config.json").is_file():
                packages[name][seed] = folder / "model"
    if args.train_only:
        return
    packages = {name: seeds for name, seeds in packages.items() if seeds}
    if not packages:
        parser.error(f"no finished seed under {args.out}")
    report(args, packages)


def report(args: argparse.Namespace, packages: dict[str, dict[int, Path]]) -> None:
    labels = AudioTagger.from_pretrained(next(iter(next(iter(packages.values())).values()))).labels
    frame = read_manifest(args.manifest)
    targets = labels.encode(frame, source=str(args.manifest))
    split = split_of(frame, "split", args.manifest).to_numpy()
    x = features(args.out, frame, args.features)
    usable = ~np.isnan(x).any(axis=1)
    train_rows = usable & (split == "train")
    clusters, column = resampling_clusters(frame, args.artist_col, args.manifest)
    seeds_line = "; ".join(f"{name}: seed {', '.join(str(s) for s in seeds)}" for name, seeds in packages.items())
    sections, results = [f"Seeds finished: {seeds_line}."], {"seeds": {n: list(s) for n, s in packages.items()}}
    for name in ("test", "val"):
        rows = np.flatnonzero(usable & (split == name))
        truth = {group: y[rows] for group, y in targets.items()}
        ids = frame["track_id"].astype(str).iloc[rows].tolist()
        paths = frame["audio_path"].iloc[rows].tolist()
        runs = {variant: [scores(package, name, ids, paths) for package in seeds.values()]
                for variant, seeds in packages.items()}
        base = baseline_scores(labels, x, targets, train_rows, rows)
        table = transfer_rows(labels, truth, runs, base, clusters[rows], resamples=args.resamples)
        changes = variant_rows(labels, truth, runs, clusters[rows], resamples=args.resamples)
        focus = [row for row in table if row["what"].startswith(f"{args.focus} ")]
        ratios = "; ".join(f"{row['variant']} {1 - row['tagger_mean']:.4f} = x{row['error_ratio']:.2f}"
                           for row in focus if row["error_ratio"] is not None)
        headline = (f"{args.focus} error (1 - macro ROC-AUC): baseline {1 - focus[0]['baseline']:.4f}; {ratios}"
                    if focus else f"no group {args.focus!r}")
        results[SPLIT_NAMES[name].lower()] = {"against_baseline": table, "variants": changes}
        sections.append(f"{SPLIT_NAMES[name]} split: {len(rows)} tracks, {len(set(clusters[rows]))} "
                        f"{'artists' if column else 'tracks as clusters'}\n\n{transfer_markdown(table)}\n\n"
                        f"{headline}\n\nEach variant against the one above it:\n\n{variants_markdown(changes)}")
    note = (f"Baseline: logistic regression (ridge for regression) on `{args.features}` clip features fitted on the "
            f"{int(train_rows.sum())} train tracks. Cells: the mean over the variant's seeds (sd); its difference from "
            f"the baseline (or from the variant above), 95 % interval from {args.resamples} resamples of the split's "
            f"{column or 'tracks'}, every seed of both sides scored on the same resample "
            "(`coldtag.intervals.runs_difference`); error x: (1 - mean) / (1 - baseline).")
    text = "\n\n".join(sections) + f"\n\n{note}\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transfer_eval.md").write_text(text)
    (args.out / "transfer_eval.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
