"""MagnaTagATune (Law et al., "Evaluation of algorithms using games: the case of music tagging", ISMIR 2009).

``annotations_final.csv`` is *tab*-separated with every value in double quotes: ``clip_id``, 188 binary
tag columns, ``mp3_path`` last (``f/artist-album-01-title-30-59.mp3``, relative to the audio root, which
holds the folders ``0`` to ``f``). 25,863 clips of about 29 s.

Tags: ``top50`` is the 50 tags with the most positive clips over the whole file, most frequent first,
ties broken by name (so the vocabulary is the same on every machine); ``all`` is the 188 columns in file
order. One multilabel group (``--group``, default ``tags``); a clip with none of the chosen tags gets an
empty list.

Splits:

- ``folders``: the older split by the first character of the audio folder (Dieleman & Schrauwen, ICASSP
  2014, and many papers since): ``0``-``b`` train, ``c`` validation, ``d``-``f`` test; every clip is kept.
- ``won2020``: the cleaned split used by Won et al., "Evaluation of CNN-based automatic music tagging
  models" (SMC 2020), as published in ``minzwon/sota-music-tagging-models`` under ``split/mtat``:
  ``train.npy``, ``valid.npy`` and ``test.npy``, NumPy arrays of strings ``"<index>\\t<mp3_path>"``
  (1,529 validation and 4,332 test clips; ``<index>`` is the row of the clip in their ``binary.npy``).
  Plain text lists ``train.txt`` / ``valid.txt`` / ``test.txt`` with one ``<index>\\t<mp3_path>`` or
  ``<mp3_path>`` per line work too. Clips are matched by path and the index is not used; clips in no
  list are left out (that folder's README: clips without a top-50 tag or shorter than 29.1 s were
  removed). When the folder also holds their ``tags.npy``, the summary says whether our top 50 are the
  same tags.

Artists: ``annotations_final.csv`` names none. When ``clip_info_final.csv`` is found (``--clip-info``,
default beside the annotations; tab-separated and quoted, with ``clip_id`` and ``artist`` among its
columns), its artist name becomes ``artist_id``; otherwise the manifest has no ``artist_id``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tagging.datasets.catalog import Catalog, assemble

ANNOTATIONS_FILE = "annotations_final.csv"
CLIP_INFO_FILE = "clip_info_final.csv"
FOLDER_SPLITS = {**dict.fromkeys("0123456789ab", "train"), "c": "val", **dict.fromkeys("def", "test")}
WON2020_LISTS = {"train": "train", "valid": "val", "test": "test"}
TOP_K = 50


class Annotations(NamedTuple):
    clip_ids: list[str]
    tags: list[str]
    labels: np.ndarray  # (clips, tags) uint8
    paths: list[str]  # mp3_path per clip
    lines: list[int]  # the line each clip is on, for errors


def read_annotations(path: str | Path) -> Annotations:
    """The clips, tag names, binary labels and paths of ``annotations_final.csv``.

    Raises ``ValueError`` naming ``path:line`` for a wrong header, a row of another length, a value that
    is not 0 or 1, an empty path or a clip id given twice.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if not header or header[0] != "clip_id" or header[-1] != "mp3_path" or len(header) < 3:
            shown = header if not header or len(header) < 4 else [*header[:2], "...", header[-1]]
            raise ValueError(f"{path}:1: expected a tab-separated header clip_id, <tags>..., mp3_path; "
                             f"got {shown}")
        tags = header[1:-1]
        clip_ids, paths, labels, lines, seen = [], [], [], [], {}
        for row in reader:
            if not any(row):
                continue
            line = reader.line_num
            if len(row) != len(header):
                raise ValueError(f"{path}:{line}: expected {len(header)} tab-separated values, got {len(row)}")
            if row[0] in seen:
                raise ValueError(f"{path}:{line}: clip_id {row[0]} is already on line {seen[row[0]]}")
            bad = next((value for value in row[1:-1] if value not in ("0", "1")), None)
            if bad is not None:
                raise ValueError(f"{path}:{line}: tag values must be 0 or 1, got {bad!r}")
            if not row[-1]:
                raise ValueError(f"{path}:{line}: clip {row[0]} has an empty mp3_path")
            seen[row[0]] = line
            lines.append(line)
            clip_ids.append(row[0])
            labels.append([value == "1" for value in row[1:-1]])
            paths.append(row[-1])
    if not clip_ids:
        raise ValueError(f"{path}: has no clips")
    return Annotations(clip_ids, tags, np.asarray(labels, dtype=np.uint8).reshape(len(clip_ids), len(tags)),
                       paths, lines)


def top_tags(tags: list[str], labels: np.ndarray, k: int = TOP_K) -> list[str]:
    """The ``k`` tags with the most positive clips, most frequent first, ties broken by name."""
    # Signed: the sum of uint8 columns is unsigned, and negating an unsigned count wraps around.
    counts = labels.sum(axis=0, dtype=np.int64)
    return [tag for _, tag in sorted(zip(-counts, tags, strict=True))[:k]]


def read_artists(path: str | Path) -> dict[str, str]:
    """clip_id -> artist name from ``clip_info_final.csv`` (clips with an empty name are left out)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = {"clip_id", "artist"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}:1: no {sorted(missing)} column (tab-separated header has "
                             f"{reader.fieldnames})")
        return {row["clip_id"]: row["artist"] for row in reader if row.get("artist")}


def read_split_list(path: Path) -> list[str]:
    """The mp3 paths of one Won et al. list (``.npy`` of strings, or text), in order."""
    if path.suffix == ".npy":
        try:
            # Strings only: a list that needs unpickling is refused, never unpickled.
            entries = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"{path}: {error}; expected an array of strings '<index>\\t<mp3_path>'") from None
        if entries.ndim != 1 or entries.dtype.kind != "U":
            raise ValueError(f"{path}: expected a 1-d array of strings '<index>\\t<mp3_path>', got "
                             f"{entries.dtype} of shape {entries.shape}")
        entries = [str(entry) for entry in entries]
    else:
        entries = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [entry.split("\t")[-1].strip() for entry in entries]


def won2020_splits(split_dir: str | Path, known: dict[str, int]) -> dict[str, str]:
    """mp3_path -> our split name from the lists in ``split_dir``; every path must be in ``known``."""
    split_dir = Path(split_dir)
    splits: dict[str, str] = {}
    origin: dict[str, str] = {}
    for theirs, ours in WON2020_LISTS.items():
        path = next((p for p in (split_dir / f"{theirs}.npy", split_dir / f"{theirs}.txt") if p.is_file()), None)
        if path is None:
            raise ValueError(f"--split-dir {split_dir}: no {theirs}.npy or {theirs}.txt")
        for entry, mp3_path in enumerate(read_split_list(path), start=1):
            where = f"{path}: entry {entry}"
            if mp3_path not in known:
                raise ValueError(f"{where}: {mp3_path!r} is not an mp3_path of {ANNOTATIONS_FILE}")
            if mp3_path in origin:
                raise ValueError(f"{where}: {mp3_path!r} is already listed in {origin[mp3_path]}")
            origin[mp3_path] = where
            splits[mp3_path] = ours
    return splits


def folder_split(mp3_path: str, where: str) -> str:
    split = FOLDER_SPLITS.get(mp3_path.split("/")[0][:1])
    if split is None:
        raise ValueError(f"{where}: mp3_path {mp3_path!r} is not in a folder 0-f, so it has no split "
                         "under --split folders")
    return split


def build_magnatagatune(root: str | Path, audio_root: str | Path | None = None, tags: str = "top50",
                        split: str = "folders", split_dir: str | Path | None = None,
                        clip_info: str | Path | None = None, group: str = "tags") -> Catalog:
    """The catalog of MagnaTagATune from ``root/annotations_final.csv``; audio under ``audio_root``
    (default ``root``)."""
    if tags not in ("top50", "all"):
        raise ValueError(f"--tags must be 'top50' or 'all', got {tags!r}")
    if split not in ("folders", "won2020"):
        raise ValueError(f"--split must be 'folders' or 'won2020', got {split!r}")
    if split == "won2020" and split_dir is None:
        raise ValueError("--split won2020 needs --split-dir (the folder holding train.npy, valid.npy, test.npy)")
    annotations = Path(root) / ANNOTATIONS_FILE
    if not annotations.is_file():
        raise ValueError(f"--root {root}: no {ANNOTATIONS_FILE}")
    audio_root = Path(audio_root if audio_root is not None else root).absolute()
    clips = read_annotations(annotations)
    clip_ids, labels, paths = clips.clip_ids, clips.labels, clips.paths
    chosen = top_tags(clips.tags, labels) if tags == "top50" else list(clips.tags)
    columns = [clips.tags.index(tag) for tag in chosen]
    notes = [f"tags: {tags} ({len(chosen)}), split: {split}; audio under {audio_root}"]

    if split == "won2020":
        assigned = won2020_splits(split_dir, {p: i for i, p in enumerate(paths)})
        notes.append(f"not in any {split} list (left out): {len(paths) - len(assigned)} clip(s)")
        notes.extend(_compare_with_published(Path(split_dir) / "tags.npy", chosen) if tags == "top50" else [])
    else:
        assigned = {p: folder_split(p, f"{annotations}:{line}") for p, line in zip(paths, clips.lines, strict=True)}

    clip_info = Path(clip_info) if clip_info is not None else Path(root) / CLIP_INFO_FILE
    artists = read_artists(clip_info) if clip_info.is_file() else {}
    notes.append(f"artists: from {clip_info}" if artists else f"artists: none ({clip_info} not found)")

    rows = [{"track_id": clip_ids[i], "audio_path": str(audio_root / paths[i]), "split": assigned[paths[i]],
             "artist_id": artists.get(clip_ids[i]),
             group: [chosen[j] for j in np.flatnonzero(labels[i, columns])]}
            for i in range(len(paths)) if paths[i] in assigned]
    return assemble(rows, {group: chosen}, source=str(annotations), notes=notes)


def _compare_with_published(path: Path, chosen: list[str]) -> list[str]:
    if not path.is_file():
        return []
    published = [str(tag) for tag in np.load(path, allow_pickle=False)]
    if set(published) == set(chosen):
        return [f"top-50 tags: the same set as {path}"]
    return [f"top-50 tags differ from {path}: ours only {sorted(set(chosen) - set(published))}, "
            f"theirs only {sorted(set(published) - set(chosen))}"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help=f"folder holding {ANNOTATIONS_FILE}")
    parser.add_argument("--audio-root", help="folder holding the mp3 folders 0..f (default: --root)")
    parser.add_argument("--tags", choices=("top50", "all"), default="top50")
    parser.add_argument("--split", choices=("folders", "won2020"), default="folders")
    parser.add_argument("--split-dir", help="for won2020: folder with train/valid/test .npy (or .txt) lists")
    parser.add_argument("--clip-info", help=f"{CLIP_INFO_FILE} for artist ids (default: beside the annotations)")
    parser.add_argument("--group", default="tags", help="label group (manifest column) name (default: tags)")


def from_args(args: argparse.Namespace) -> Catalog:
    return build_magnatagatune(args.root, args.audio_root, tags=args.tags, split=args.split,
                               split_dir=args.split_dir, clip_info=args.clip_info, group=args.group)
