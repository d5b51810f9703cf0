"""A folder per label: ``root/<label>/<file>`` (files may sit in subfolders of a label folder).

One multilabel group (``--group``, default ``genre``) whose labels are the label folders holding audio.
A track is a path below its label folder (``album/song.mp3`` in ``rock/`` and in ``pop/`` is one track
with both tags; its ``track_id`` is that relative path and its audio the copy under the first label by
name). Splits are drawn per track with `fraction_split` (``--val-fraction``, ``--test-fraction``,
``--seed``), so a track in two label folders is in one split. Hidden files and folders are skipped; a
listed file that is not there (a dangling link) is reported as missing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tagging.datasets.catalog import Catalog, assemble, check_fractions, fraction_split

AUDIO_EXTENSIONS = (".mp3", ".wav", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".au", ".wma")


def build_folders(root: str | Path, group: str = "genre", val_fraction: float = 0.1, test_fraction: float = 0.1,
                  seed: int = 0, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> Catalog:
    root = Path(root).absolute()
    if not root.is_dir():
        raise ValueError(f"--root {root}: not a folder")
    check_fractions(val_fraction, test_fraction)
    suffixes = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    tracks: dict[str, dict] = {}
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(label_dir.rglob("*")):
            relative = path.relative_to(label_dir)
            if path.suffix.lower() not in suffixes or any(part.startswith(".") for part in relative.parts):
                continue
            if path.is_dir():
                continue
            key = relative.as_posix()
            track = tracks.setdefault(key, {"track_id": key, "audio_path": str(path), group: []})
            track[group].append(label_dir.name)
    if not tracks:
        raise ValueError(f"--root {root}: no audio files ({', '.join(sorted(suffixes))}) in label folders "
                         "root/<label>/")
    splits = fraction_split(list(tracks), val_fraction, test_fraction, seed)
    rows = [{**track, "split": splits[key]} for key, track in tracks.items()]
    labels = sorted({label for track in tracks.values() for label in track[group]})
    return assemble(rows, {group: labels}, source=f"--root {root}",
                    notes=[f"split: val {val_fraction}, test {test_fraction}, seed {seed}"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="folder holding one folder per label")
    parser.add_argument("--group", default="genre", help="label group (manifest column) name (default: genre)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extensions", nargs="+", default=list(AUDIO_EXTENSIONS),
                        help="audio file suffixes to list (default: common audio formats)")


def from_args(args: argparse.Namespace) -> Catalog:
    return build_folders(args.root, group=args.group, val_fraction=args.val_fraction,
                         test_fraction=args.test_fraction, seed=args.seed, extensions=tuple(args.extensions))
