"""Command line: ``python -m recsys fit ...`` and ``python -m recsys coldstart ...``.

``fit`` factorizes a play file into a factors ``.npz`` that :meth:`Recommender.load` reads.
``coldstart`` runs the item cold-start protocol on a catalog folder (``plays.parquet`` with user_id,
track_id, plays; ``manifest.parquet`` with track_id, artist_id, item_split) and writes the targets of a
fusion stage (``coldstart.npz``, read by :meth:`ColdStartSplit.load`) and the baseline table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from coldtag.storage import atomic_write

from .evaluation import (
    SPLITS,
    artist_prior,
    baseline_metrics,
    make_cold_start_split,
    metrics_table,
)
from .interactions import load_interactions
from .recommend import Recommender
from .wmf import WMF


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="factorize a play file into factors.npz")
    fit.add_argument("--plays", type=Path, required=True, help="CSV/TSV (sniffed delimiter) or Parquet")
    fit.add_argument("--user-col", default="user")
    fit.add_argument("--item-col", default="item")
    fit.add_argument("--count-col", default="count", help="'none': one play per row (listening events)")
    fit.add_argument("--timestamp-col", default=None)
    fit.add_argument("--sep", default=None, help="delimiter of a text file (default: sniffed)")
    fit.add_argument("--duplicates", choices=("sum", "error"), default="sum")
    fit.add_argument("--on-bad-rows", choices=("raise", "skip"), default="raise")
    fit.add_argument("--out", type=Path, required=True, help="factors .npz")
    _model_arguments(fit)

    cold = commands.add_parser("coldstart", help="item cold-start targets and baselines of a catalog")
    cold.add_argument("--catalog", type=Path, required=True, help="folder with plays.parquet, manifest.parquet")
    cold.add_argument("--out", type=Path, required=True, help="output folder")
    cold.add_argument("--ks", type=int, nargs="+", default=[10, 50], help="cut-offs of Recall@k and NDCG@k")
    cold.add_argument("--map-k", type=int, default=500)
    _model_arguments(cold)

    options = parser.parse_args(args)
    model = WMF(
        factors=options.factors,
        regularization=options.regularization,
        alpha=options.alpha,
        iterations=options.iterations,
        scaling=options.scaling,
        random_state=options.seed,
    )
    return _fit(options, model) if options.command == "fit" else _coldstart(options, model)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--regularization", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=20.0, help="confidence c = 1 + alpha * plays")
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--scaling", choices=("linear", "log"), default="linear")
    parser.add_argument("--seed", type=int, default=0)


def _fit(options: argparse.Namespace, model: WMF) -> int:
    count_col = None if options.count_col.lower() == "none" else options.count_col
    plays = load_interactions(
        options.plays,
        options.user_col,
        options.item_col,
        count_col,
        timestamp_col=options.timestamp_col,
        sep=options.sep,
        duplicates=options.duplicates,
        on_bad_rows=options.on_bad_rows,
    )
    model.fit(plays.user_items)
    Recommender(model.user_factors, model.item_factors, plays.user_ids, plays.item_ids, params=model.get_params()).save(
        options.out
    )
    matrix = plays.user_items
    print(
        f"{plays.n_users} users × {plays.n_items} items, {matrix.nnz} pairs, {int(matrix.sum())} plays"
        f" ({plays.report.skipped} bad rows skipped); fit {model.fit_seconds:.1f} s -> {options.out}"
    )
    return 0


def _coldstart(options: argparse.Namespace, model: WMF) -> int:
    manifest_path = options.catalog / "manifest.parquet"
    manifest = pd.read_parquet(manifest_path, columns=["track_id", "artist_id", "item_split"])
    unknown = sorted(set(manifest["item_split"].unique()) - set(SPLITS))
    if unknown:
        raise ValueError(f"{manifest_path}: item_split must be one of {SPLITS}, got {unknown}")
    if manifest["track_id"].duplicated().any():
        repeated = manifest.loc[manifest["track_id"].duplicated(), "track_id"].head().tolist()
        raise ValueError(f"{manifest_path}: repeated track_id {repeated}")
    plays = load_interactions(
        options.catalog / "plays.parquet", "user_id", "track_id", "plays", item_ids=manifest["track_id"]
    )
    split_labels = manifest["item_split"].to_numpy(str)
    prior = artist_prior(plays.user_items, manifest["artist_id"].to_numpy(), split_labels == "warm")
    split = make_cold_start_split(plays, split_labels, model, prior)

    table = metrics_table(baseline_metrics(split, options.ks, options.map_k, subset="cold_test"))
    markdown = _markdown(table)
    if not (prior[split.items("cold_test")] > 0).any():
        markdown += (
            "\n\nNo cold_test track has an artist with warm plays (an artist-disjoint split), so the"
            " artist prior is 0 for all of them and the popularity row ranks at random."
        )
    options.out.mkdir(parents=True, exist_ok=True)
    split.save(options.out / "coldstart.npz")
    atomic_write(options.out / "baselines.csv", table.to_csv())
    # Last: the Makefile's target for this stage, so its existence means everything else is written.
    atomic_write(options.out / "baselines.md", markdown + "\n")
    counts = {name: int((split_labels == name).sum()) for name in SPLITS}
    print(
        f"{len(split.user_ids)} users ({split.params['cold_users_dropped']} with only cold plays dropped), "
        f"items {counts}; warm WMF fit ({model.factors} factors, {model.iterations} iterations): "
        f"{model.fit_seconds:.2f} s"
    )
    print(f"cold_test items, {int(table['users'].iloc[0])} users with held-out plays:\n")
    print(markdown)
    print(f"\nwrote {options.out / 'coldstart.npz'}, baselines.md, baselines.csv")
    return 0


def _markdown(table: pd.DataFrame) -> str:
    columns = [c for c in table.columns if c != "users"]
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, row in table[columns].iterrows():
        cells = ["—" if pd.isna(value) else f"{value:.4f}" for value in row]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
