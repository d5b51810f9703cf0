"""Any table of tracks (CSV, TSV or Parquet) with a path column and tag columns, normalised to our manifest.

- ``--path-column``: audio path, relative to ``--audio-root`` (default: the table's folder) or absolute.
- ``--tag-column GROUP=COLUMN`` (repeatable; ``COLUMN`` alone names the group like the column): a
  multilabel group. A text cell holds tags separated by ``--tag-sep`` (default ``;``), blanks and repeats
  dropped; a list cell (Parquet) is taken as it is; an empty cell means "not annotated" (masked out of the
  loss), as in our own CSV manifests.
- ``--id-column`` (default: the path column), ``--artist-column``, ``--duration-column``: optional.
- ``--split-column``: values ``train``/``training``, ``val``/``valid``/``validation``/``dev``,
  ``test``/``testing`` (any case). Without it, splits are drawn per track as in `folders`.

The delimiter of a text table is ``--delimiter``, else sniffed from its first lines (``csv.Sniffer``).
Rows are named in errors by their number among the data rows (1 = first row after the header).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd

from tagging.datasets.catalog import Catalog, assemble, check_fractions, fraction_split, unique

SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test"}


def read_table(path: str | Path, delimiter: str | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--table {path}: not found")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if delimiter is None:
        with open(path, newline="", encoding="utf-8") as handle:
            sample = handle.read(64 * 1024)
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
        except csv.Error:
            raise ValueError(f"--table {path}: cannot tell its delimiter; give --delimiter") from None
    # Strings throughout: ids like 007 and paths stay as written.
    return pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False)


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str)
                                                                                 and not value.strip())


def parse_tags(value, separator: str) -> list[str] | None:
    """A cell as a tag list; None for an empty cell (not annotated)."""
    if isinstance(value, list | tuple | np.ndarray):
        return unique(str(tag).strip() for tag in value)
    if _blank(value):
        return None
    return unique(tag.strip() for tag in str(value).split(separator))


def parse_tag_columns(specs: list[str]) -> dict[str, str]:
    """``["genre=Genres", "mood"]`` -> ``{"genre": "Genres", "mood": "mood"}`` (group -> column)."""
    groups = {}
    for spec in specs:
        group, _, column = spec.partition("=") if "=" in spec else (spec, "", spec)
        if not group or not column:
            raise ValueError(f"--tag-column {spec!r}: expected GROUP=COLUMN or COLUMN")
        if group in groups:
            raise ValueError(f"--tag-column {spec!r}: group {group!r} is given twice")
        groups[group] = column
    return groups


def build_manifest(table: str | Path, path_column: str, tag_columns: list[str], tag_sep: str = ";",
                   audio_root: str | Path | None = None, id_column: str | None = None,
                   split_column: str | None = None, artist_column: str | None = None,
                   duration_column: str | None = None, val_fraction: float = 0.1, test_fraction: float = 0.1,
                   seed: int = 0, delimiter: str | None = None) -> Catalog:
    table = Path(table)
    if not tag_columns:
        raise ValueError("give at least one --tag-column")
    if not tag_sep:
        raise ValueError("--tag-sep must not be empty")
    if split_column is None:
        check_fractions(val_fraction, test_fraction)
    groups = parse_tag_columns(tag_columns)
    frame = read_table(table, delimiter)
    wanted = {"--path-column": path_column, "--id-column": id_column, "--split-column": split_column,
              "--artist-column": artist_column, "--duration-column": duration_column,
              **{f"--tag-column {group}": column for group, column in groups.items()}}
    for option, column in wanted.items():
        if column is not None and column not in frame.columns:
            raise ValueError(f"{table}: no column {column!r} ({option}); it has {list(frame.columns)}")
    audio_root = Path(audio_root if audio_root is not None else table.parent).absolute()

    rows, seen = [], {}
    for number, record in enumerate(frame.to_dict("records"), start=1):
        where = f"{table}: row {number}"
        if _blank(record[path_column]):
            raise ValueError(f"{where}: empty {path_column!r}")
        audio = str(record[path_column]).strip()
        track_id = audio if id_column is None else str(record[id_column]).strip()
        if track_id in seen:
            raise ValueError(f"{where}: track {track_id!r} is already on row {seen[track_id]}")
        seen[track_id] = number
        row = {"track_id": track_id, "audio_path": str(audio_root / audio),
               **{group: parse_tags(record[column], tag_sep) for group, column in groups.items()}}
        if split_column is not None:
            value = str(record[split_column]).strip()
            if value.lower() not in SPLIT_NAMES:
                raise ValueError(f"{where}: split {value!r} is not one of {sorted(SPLIT_NAMES)}")
            row["split"] = SPLIT_NAMES[value.lower()]
        if artist_column is not None and not _blank(record[artist_column]):
            row["artist_id"] = str(record[artist_column]).strip()
        if duration_column is not None and not _blank(record[duration_column]):
            try:
                row["duration"] = float(record[duration_column])
            except ValueError:
                raise ValueError(f"{where}: {duration_column} {record[duration_column]!r} is not a number") from None
        rows.append(row)

    notes = [f"table: {table}; audio under {audio_root}"]
    if split_column is None:
        splits = fraction_split([row["track_id"] for row in rows], val_fraction, test_fraction, seed)
        for row in rows:
            row["split"] = splits[row["track_id"]]
        notes.append(f"split: val {val_fraction}, test {test_fraction}, seed {seed}")
    labels = {group: sorted({tag for row in rows for tag in row[group] or []}) for group in groups}
    return assemble(rows, labels, source=str(table), notes=notes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", required=True, help="the CSV, TSV or Parquet file of tracks")
    parser.add_argument("--path-column", required=True, help="column of audio paths")
    parser.add_argument("--tag-column", action="append", default=[], metavar="GROUP=COLUMN",
                        help="a multilabel group and its column (repeatable; COLUMN alone: group named alike)")
    parser.add_argument("--tag-sep", default=";", help="separator of the tags within a cell (default ';')")
    parser.add_argument("--audio-root", help="folder the paths are relative to (default: the table's folder)")
    parser.add_argument("--id-column", help="column of track ids (default: the path)")
    parser.add_argument("--split-column", help="column of split names (default: drawn with the fractions)")
    parser.add_argument("--artist-column")
    parser.add_argument("--duration-column")
    parser.add_argument("--delimiter", help="of a text table (default: sniffed)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)


def from_args(args: argparse.Namespace) -> Catalog:
    return build_manifest(args.table, args.path_column, args.tag_column, tag_sep=args.tag_sep,
                          audio_root=args.audio_root, id_column=args.id_column, split_column=args.split_column,
                          artist_column=args.artist_column, duration_column=args.duration_column,
                          val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
                          delimiter=args.delimiter)
