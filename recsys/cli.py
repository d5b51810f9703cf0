"""Command line: ``python -m recsys fit ...`` and ``python -m recsys coldstart ...``.

``fit`` factorizes a play file into a factors ``.npz`` that :meth:`Recommender.load` reads.

``coldstart`` runs the item cold-start protocol on a play file and writes the targets of a fusion stage
(``coldstart.npz``, read by :meth:`ColdStartSplit.load`) and the baseline table (``baselines.md``,
``baselines.csv``). Both read plays alike: ``--plays`` CSV/TSV (optionally compressed) or Parquet,
with ``--user-col``, ``--item-col``, ``--count-col`` (``none``: one play per row) or
``--layout music4all`` for Music4All's listening history. Exactly one option chooses the cold items:

- ``--cold-items FILE``: their ids, one per line;
- ``--cold-fraction F``: floor(F × n_items + 0.5) items, drawn at random with ``--seed``;
- ``--manifest FILE --split-col COL``: a column of ``warm``, ``cold_val`` or ``cold_test`` per item.

The first two deal the cold items at random (``--seed``) into ``cold_test``, the larger half when
they are odd in number, and ``cold_val``. A ``--manifest`` (Parquet or CSV/TSV, one row per item,
keyed by ``--manifest-item-col``) fixes the items, unplayed ones included; with ``--artist-col`` it
gives the artists behind the ``popularity`` row (each item scored by its artist's warm plays), which
is left out when no item has a known artist. ``--catalog DIR`` is short for a toy catalog folder:
``--plays DIR/plays.parquet --user-col user_id --item-col track_id --count-col plays
--manifest DIR/manifest.parquet --split-col item_split --artist-col artist_id``.

A bad argument or file ends the command with exit status 2 and one line on stderr naming it.
"""

from __future__ import annotations

import argparse
import codecs
from pathlib import Path

import numpy as np
import pandas as pd

from coldtag.storage import atomic_write

from .evaluation import (
    SPLITS,
    artist_prior,
    baseline_metrics,
    make_cold_start_split,
    metrics_table,
)
from .interactions import MUSIC4ALL, Interactions, load_interactions
from .recommend import Recommender
from .tables import read_table
from .wmf import WMF

_CATALOG = {
    "user_col": "user_id",
    "item_col": "track_id",
    "count_col": "plays",
    "split_col": "item_split",
    "artist_col": "artist_id",
}
_PLAIN = {"user_col": "user", "item_col": "item", "count_col": "count", "timestamp_col": None}
_LAYOUTS = {"plain": _PLAIN, "music4all": MUSIC4ALL}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="factorize a play file into factors.npz")
    fit.add_argument("--plays", type=Path, required=True, help="CSV/TSV (sniffed delimiter) or Parquet")
    plays_arguments(fit)
    fit.add_argument("--out", type=Path, required=True, help="factors .npz")
    model_arguments(fit)
    fit.add_argument("--seed", type=int, default=0, help="of the initial factors")

    cold = commands.add_parser(
        "coldstart",
        help="item cold-start targets and baselines of a play file",
        description=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = cold.add_mutually_exclusive_group(required=True)
    source.add_argument("--plays", type=Path, help="CSV/TSV (sniffed delimiter) or Parquet")
    source.add_argument("--catalog", type=Path, help="toy catalog folder: plays.parquet, manifest.parquet")
    plays_arguments(cold)
    cold_arguments(cold)
    cold.add_argument("--manifest", type=Path, help="one row per item (Parquet or CSV/TSV): the item list")
    cold.add_argument("--manifest-item-col", help="item id column of --manifest (default: --item-col)")
    cold.add_argument("--artist-col", help="--manifest column of artist ids, for the popularity row")
    cold.add_argument("--out", type=Path, required=True, help="output folder")
    model_arguments(cold)
    cold.add_argument("--seed", type=int, default=0, help="of the initial factors and of the cold items' draw")

    options = parser.parse_args(argv)
    if options.command == "coldstart":
        _check_coldstart(cold, options)
    try:
        return _fit(options, wmf(options)) if options.command == "fit" else coldstart(options)
    except (ValueError, OSError, KeyError) as error:
        # Bad files and columns are the user's to fix: one line naming them, not a traceback.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        parser.exit(2, f"{parser.prog} {options.command}: error: {message}\n")


def wmf(options: argparse.Namespace) -> WMF:
    """The factorization `model_arguments` and ``--seed`` describe."""
    return WMF(factors=options.factors, regularization=options.regularization, alpha=options.alpha,
               iterations=options.iterations, scaling=options.scaling, random_state=options.seed)


def cold_arguments(parser: argparse.ArgumentParser) -> None:
    """How the cold items are chosen (exactly one, checked by the command) and the baselines' cut-offs."""
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--cold-items", type=Path, help="file of cold item ids, one per line")
    choice.add_argument(
        "--cold-fraction",
        type=fraction,
        help="share of the items made cold, 0 < F < 1: floor(F × n_items + 0.5) items drawn with --seed, "
        "dealt into cold_test (the larger half) and cold_val",
    )
    choice.add_argument("--split-col", help="--manifest column of warm / cold_val / cold_test")
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 50], help="cut-offs of Recall@k and NDCG@k")
    parser.add_argument("--map-k", type=int, default=500)


def fraction(text: str) -> float:
    """A number strictly between 0 and 1 (an argparse type)."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, both excluded; got {text}")
    return value


def plays_arguments(parser: argparse.ArgumentParser) -> None:
    """How a play file is read: its layout, columns, delimiter, encoding and bad rows."""
    parser.add_argument(
        "--layout",
        choices=tuple(_LAYOUTS),
        default="plain",
        help="column names: plain user,item,count; music4all user,song,timestamp events (flags below override)",
    )
    parser.add_argument("--user-col")
    parser.add_argument("--item-col")
    parser.add_argument("--count-col", help="'none': one play per row (listening events)")
    parser.add_argument("--timestamp-col")
    parser.add_argument("--sep", default=None, help="delimiter of a text file (default: sniffed)")
    parser.add_argument("--encoding", type=_encoding, default="utf-8", help="of a text file without a byte-order mark")
    parser.add_argument("--duplicates", choices=("sum", "error"), default="sum")
    parser.add_argument("--on-bad-rows", choices=("raise", "skip"), default="raise")


def _encoding(text: str) -> str:
    try:
        codecs.lookup(text)
    except LookupError:
        raise argparse.ArgumentTypeError(f"unknown encoding {text!r}") from None
    return text


def _check_coldstart(parser: argparse.ArgumentParser, options: argparse.Namespace) -> None:
    """Argument combinations argparse cannot express; ``--catalog`` becomes the flags it stands for."""
    if options.catalog is not None:
        given = [f"--{name.replace('_', '-')}" for name in (*_CATALOG, "manifest", "cold_items", "cold_fraction")
                 if getattr(options, name) is not None]
        if given:
            parser.error(f"--catalog sets its own columns and split; drop {', '.join(given)}")
        options.plays = options.catalog / "plays.parquet"
        options.manifest = options.catalog / "manifest.parquet"
        for name, value in _CATALOG.items():
            setattr(options, name, value)
    if options.cold_items is None and options.cold_fraction is None and options.split_col is None:
        parser.error("choose the cold items: one of --cold-items, --cold-fraction, --split-col (with --manifest)")
    for flag, value in (("--split-col", options.split_col), ("--artist-col", options.artist_col),
                        ("--manifest-item-col", options.manifest_item_col)):
        if value is not None and options.manifest is None:
            parser.error(f"{flag} needs --manifest")


def model_arguments(parser: argparse.ArgumentParser) -> None:
    """The weighted matrix factorization's settings (`wmf` adds ``--seed``)."""
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--regularization", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=20.0, help="confidence c = 1 + alpha * plays")
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--scaling", choices=("linear", "log"), default="linear")


def _fit(options: argparse.Namespace, model: WMF) -> int:
    plays = _load_plays(options)
    model.fit(plays.user_items)
    Recommender(model.user_factors, model.item_factors, plays.user_ids, plays.item_ids, params=model.get_params()).save(
        options.out
    )
    matrix = plays.user_items
    print(
        f"{plays.n_users} users × {plays.n_items} items, {matrix.nnz} pairs, {int(matrix.sum())} plays"
        f" ({_report(plays)}); fit {model.fit_seconds:.1f} s -> {options.out}"
    )
    return 0


def coldstart(options: argparse.Namespace) -> int:
    """The ``coldstart`` command on parsed options: the split, its factors and the baselines in ``options.out``."""
    model = wmf(options)
    manifest = None if options.manifest is None else _read_manifest(options)
    item_col = options.manifest_item_col or _columns(options)["item_col"]
    plays = _load_plays(options, item_ids=None if manifest is None else manifest[item_col])
    rng = np.random.default_rng(options.seed)
    if options.split_col is not None:
        split_labels = manifest[options.split_col].to_numpy(str)
    elif options.cold_items is not None:
        split_labels = _deal(plays.n_items, _read_cold_items(options.cold_items, plays, options.encoding), rng)
    else:
        n_cold = int(np.floor(options.cold_fraction * plays.n_items + 0.5))
        if not 0 < n_cold < plays.n_items:
            raise ValueError(f"--cold-fraction {options.cold_fraction} of {plays.n_items} items makes {n_cold} "
                             "cold: none would be " + ("cold" if n_cold == 0 else "warm"))
        split_labels = _deal(plays.n_items, rng.choice(plays.n_items, n_cold, replace=False), rng)
    artists = None if options.artist_col is None else manifest[options.artist_col].to_numpy()
    # Without a known artist the prior is 0 everywhere: a popularity row that ranks at random says nothing.
    known = artists is not None and pd.notna(artists).any()
    prior = artist_prior(plays.user_items, artists, split_labels == "warm") if known else None
    split = make_cold_start_split(plays, split_labels, model, prior)

    table = metrics_table(baseline_metrics(split, options.ks, options.map_k, subset="cold_test"))
    markdown = _markdown(table)
    if prior is not None and not (prior[split.items("cold_test")] > 0).any():
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
    print(f"{options.plays}: {plays.report.rows} rows, {_report(plays)}")
    print(
        f"{len(split.user_ids)} users ({split.params['cold_users_dropped']} with only cold plays dropped), "
        f"items {counts}; warm WMF fit ({model.factors} factors, {model.iterations} iterations): "
        f"{model.fit_seconds:.2f} s"
    )
    print(f"cold_test items, {int(table['users'].iloc[0])} users with held-out plays:\n")
    print(markdown)
    print(f"\nwrote {options.out / 'coldstart.npz'}, baselines.md, baselines.csv")
    return 0


def _columns(options: argparse.Namespace) -> dict:
    """Column names of the plays: the layout's, each overridden by its flag; count 'none' is no count."""
    columns = {name: getattr(options, name) or default for name, default in _LAYOUTS[options.layout].items()}
    if columns["count_col"] is not None and columns["count_col"].lower() == "none":
        columns["count_col"] = None
    return columns


def _load_plays(options: argparse.Namespace, item_ids=None) -> Interactions:
    _require_file(options.plays, "--plays")
    return load_interactions(
        options.plays,
        **_columns(options),
        sep=options.sep,
        encoding=options.encoding,
        duplicates=options.duplicates,
        on_bad_rows=options.on_bad_rows,
        item_ids=item_ids,
    )


def _report(plays: Interactions) -> str:
    report = plays.report
    return f"{report.skipped} bad rows skipped, {report.duplicates_summed} repeated (user, item) rows summed"


def _require_file(path: Path, flag: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path}: no such file")


def _read_manifest(options: argparse.Namespace) -> pd.DataFrame:
    """The manifest's item, split and artist columns, checked: unique items, known splits."""
    path = options.manifest
    _require_file(path, "--manifest")
    item_col = options.manifest_item_col or _columns(options)["item_col"]
    columns = list(dict.fromkeys(c for c in (item_col, options.split_col, options.artist_col) if c is not None))
    frame, line_of = read_table(path, columns, sep=None, encoding=options.encoding)

    def where(k: int) -> str:
        return f"{path}: row {k + 1}" if line_of is None else f"{path}:{line_of(k)}"

    repeated = np.flatnonzero(frame[item_col].duplicated().to_numpy())
    if repeated.size:
        k = int(repeated[0])
        raise ValueError(f"{where(k)}: {item_col} {frame[item_col].iat[k]!r} repeats an earlier row")
    if options.split_col is not None:
        unknown = np.flatnonzero(~frame[options.split_col].isin(SPLITS).to_numpy())
        if unknown.size:
            k = int(unknown[0])
            raise ValueError(
                f"{where(k)}: {options.split_col} must be one of {SPLITS}, got {frame[options.split_col].iat[k]!r}"
            )
    if options.artist_col is not None and line_of is not None:
        # An empty field of a text file is an unknown artist, as a null is in Parquet.
        artists = frame[options.artist_col].str.strip()
        frame[options.artist_col] = artists.where(artists != "")
    return frame


def _read_cold_items(path: Path, plays: Interactions, encoding: str) -> np.ndarray:
    """Column indices of the ids listed in ``path``, one per line (blank lines ignored), compared as text."""
    _require_file(path, "--cold-items")
    try:
        # utf-8-sig reads UTF-8 with or without a byte-order mark.
        text = path.read_text(encoding="utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not {encoding} text at byte {error.start}; pass --encoding") from error
    column = {str(item): k for k, item in enumerate(plays.item_ids)}
    cold = []
    for number, line in enumerate(text.splitlines(), 1):
        item = line.strip()
        if not item:
            continue
        if item not in column:
            raise ValueError(f"{path}:{number}: item {item!r} is not among the {plays.n_items} items of the plays")
        cold.append(column[item])
    cold = np.unique(cold)
    if not 0 < len(cold) < plays.n_items:
        raise ValueError(f"{path}: lists {len(cold)} of the {plays.n_items} items; cold and warm items must both exist")
    return cold


def _deal(n_items: int, cold: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split labels: ``cold`` items dealt at random into cold_test (the larger half) and cold_val."""
    labels = np.full(n_items, "warm", dtype=f"<U{max(map(len, SPLITS))}")
    cold = rng.permutation(cold)
    n_test = len(cold) - len(cold) // 2
    labels[cold[:n_test]] = "cold_test"
    labels[cold[n_test:]] = "cold_val"
    return labels


def _markdown(table: pd.DataFrame) -> str:
    columns = [c for c in table.columns if c != "users"]
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, row in table[columns].iterrows():
        cells = ["—" if pd.isna(value) else f"{value:.4f}" for value in row]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

