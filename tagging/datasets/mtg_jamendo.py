"""MTG-Jamendo (Bogdanov et al., "The MTG-Jamendo dataset for automatic music tagging", ICML 2019 ML4MD).

Layout (the ``mtg-jamendo-dataset`` repository is ``root``)::

    root/data/splits/split-<k>/autotagging<subset>-{train,validation,test}.tsv

with ``<subset>`` one of ``""`` (all tags), ``_genre``, ``_instrument``, ``_moodtheme``, ``_top50tags``.
Each file has the header ``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS`` and then, per track, a
*variable* number of tab-separated tags ``category---tag`` (categories ``genre``, ``instrument``,
``mood/theme``). The files end lines in CRLF. ``PATH`` (``14/214.mp3``) is relative to the audio root.

Label groups: one multilabel group per category present, named like the category with non-word
characters as ``_`` (``genre``, ``instrument``, ``mood_theme``), labels the part after ``---``, sorted by
name. ``top50tags`` and ``all`` are split by category the same way (top50tags of split-0: 31 genre,
14 instrument and 5 mood/theme tags), so per-category scores come out of training directly. A track with
no tag of a category has an empty list there (a negative for every tag, as the benchmark scores it).
``validation`` becomes our ``val``; ``artist_id`` and ``duration`` are kept (artist-clustered intervals).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from tagging.datasets.catalog import Catalog, assemble, group_name, unique

SUBSETS = {"all": "autotagging", "genre": "autotagging_genre", "instrument": "autotagging_instrument",
           "moodtheme": "autotagging_moodtheme", "top50tags": "autotagging_top50tags"}
SPLIT_FILES = {"train": "train", "validation": "val", "test": "test"}
HEADER = ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION"]
TAG_SEPARATOR = "---"


def split_files(root: str | Path, subset: str = "top50tags", split: int = 0) -> dict[str, Path]:
    """Our split name -> the TSV holding it; every file must exist."""
    if subset not in SUBSETS:
        raise ValueError(f"--subset must be one of {sorted(SUBSETS)}, got {subset!r}")
    if split not in range(5):
        raise ValueError(f"--split must be 0..4, got {split}")
    folder = Path(root) / "data" / "splits" / f"split-{split}"
    files = {ours: folder / f"{SUBSETS[subset]}-{theirs}.tsv" for theirs, ours in SPLIT_FILES.items()}
    absent = [str(path) for path in files.values() if not path.is_file()]
    if absent:
        raise ValueError(f"--root {root}: split file(s) not found: {', '.join(absent)}")
    return files


def read_split_file(path: Path) -> list[dict]:
    """The rows of one split TSV as ``{"line", "track_id", "artist_id", "path", "duration", "tags"}``.

    ``tags`` maps each category to its tags, each tag once. Raises ``ValueError`` naming ``path:line``
    for a wrong header, a short row, a duration that is no number or a tag that is not ``category---tag``.
    """
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        # csv, not a DataFrame reader: rows are ragged (as many columns as the track has tags).
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or header[:len(HEADER)] != HEADER:
            raise ValueError(f"{path}:1: expected the header {' '.join([*HEADER, 'TAGS'])}, got {header}")
        for row in reader:
            if not any(row):
                continue
            line = reader.line_num
            if len(row) < len(HEADER):
                raise ValueError(f"{path}:{line}: expected at least {len(HEADER)} tab-separated fields "
                                 f"({' '.join(HEADER)}), got {len(row)}")
            try:
                duration = float(row[4])
            except ValueError:
                raise ValueError(f"{path}:{line}: DURATION {row[4]!r} is not a number") from None
            tags: dict[str, list[str]] = {}
            for cell in unique(cell.strip() for cell in row[5:]):
                category, separator, tag = cell.partition(TAG_SEPARATOR)
                if not (separator and category and tag):
                    raise ValueError(f"{path}:{line}: tag {cell!r} is not of the form "
                                     f"'category{TAG_SEPARATOR}tag'")
                tags.setdefault(category, []).append(tag)
            rows.append({"line": line, "track_id": row[0], "artist_id": row[1], "path": row[3],
                         "duration": duration, "tags": tags})
    return rows


def build_mtg_jamendo(root: str | Path, audio_root: str | Path, subset: str = "top50tags",
                      split: int = 0) -> Catalog:
    """The catalog of one subset and split of MTG-Jamendo; audio paths are ``audio_root / PATH``."""
    audio_root = Path(audio_root).absolute()
    seen: dict[str, str] = {}
    listed = []
    for ours, path in split_files(root, subset, split).items():
        for row in read_split_file(path):
            where = f"{path}:{row['line']}"
            if row["track_id"] in seen:
                raise ValueError(f"{where}: track {row['track_id']} is already listed at "
                                 f"{seen[row['track_id']]}; a track belongs to one split")
            seen[row["track_id"]] = where
            listed.append((ours, row))
    categories = sorted({category for _, row in listed for category in row["tags"]})
    names = {category: group_name(category) for category in categories}
    groups = {names[c]: sorted({tag for _, row in listed for tag in row["tags"].get(c, [])}) for c in categories}
    rows = [{"track_id": row["track_id"], "audio_path": str(audio_root / row["path"]), "split": ours,
             "artist_id": row["artist_id"], "duration": row["duration"],
             **{names[c]: row["tags"].get(c, []) for c in categories}}
            for ours, row in listed]
    return assemble(rows, groups, source=f"{Path(root) / 'data' / 'splits' / f'split-{split}'} ({subset})",
                    notes=[f"subset {subset}, split-{split}; audio under {audio_root}"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="the mtg-jamendo-dataset repository (holds data/splits)")
    parser.add_argument("--audio-root", required=True, help="folder the TSV paths (14/214.mp3) are relative to")
    parser.add_argument("--subset", choices=sorted(SUBSETS), default="top50tags")
    parser.add_argument("--split", type=int, choices=range(5), default=0, metavar="{0..4}")


def from_args(args: argparse.Namespace) -> Catalog:
    return build_mtg_jamendo(args.root, args.audio_root, subset=args.subset, split=args.split)
