"""What to annotate: a folder, a manifest or a glob -> `Item`\\ s, confined to the input root.

A folder gives its audio files below it, with lyrics ``.txt`` and cover ``.jpg``/``.png`` sidecars of the
same stem, a track's id being its path relative to the folder; a manifest (CSV/TSV/JSONL/Parquet) gives
``track_id`` and ``audio_path`` (optional ``lyrics_path``, ``cover_path``) relative to its folder.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NewType

import pandas as pd

from coldtag.storage import is_inside
from tagging.audio import AUDIO_SUFFIXES

MANIFEST_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl")
LYRICS_SUFFIXES = (".txt",)
COVER_SUFFIXES = (".jpg", ".jpeg", ".png")


class InputError(ValueError):
    """An input that cannot be listed at all (no such folder, an unreadable manifest): exit code 2."""


# What a track's record was made from, as JSON text: the path, size and mtime of its audio and of the sidecars
# its model reads (`annotation.reader.input_key`). A re-run skips a track whose latest record has the same key.
InputKey = NewType("InputKey", str)


@dataclass(frozen=True)
class Item:
    """One track to annotate: its id (its record's, from run to run), audio file and sidecars; ``refused`` says
    why the track is not read, ``refused_sidecars`` which sidecar is not read and why
    (``((modality, reason), ...)``)."""

    id: str
    path: str
    lyrics: str | None = None
    cover: str | None = None
    refused: str | None = None
    refused_sidecars: tuple[tuple[str, str], ...] = ()


def list_inputs(source: str | Path, allow_outside: bool = False) -> tuple[list[Item], list[str]]:
    """The tracks of a folder, manifest or glob, sorted by id, and the problems that left rows out
    (a repeated id: the first row is kept).

    A manifest has ``track_id`` (or ``id``) and ``audio_path`` (or ``path``) columns and optional
    ``lyrics_path`` and ``cover_path``, relative to its folder. Every file read must lie inside the input
    root (the folder, the manifest's folder, the pattern's fixed part) once links are followed: a path
    with ``..``, an absolute one or a link leading elsewhere is refused, as the record says (a sidecar:
    the audio is still read), unless ``allow_outside``.
    """
    source = Path(source)
    if source.is_dir():
        return _confined(source, _folder_items(source, _walk(source)), allow_outside), []
    if source.suffix.lower() in MANIFEST_SUFFIXES and source.is_file():
        items, problems = _manifest_items(source)
        return _confined(source.parent, items, allow_outside), problems
    if glob.has_magic(str(source)):
        root = _glob_root(str(source))
        found = [Path(p) for p in glob.glob(str(source), recursive=True)]
        found = [p for p in found if p.suffix.lower() in AUDIO_SUFFIXES or p.is_symlink()]
        if not found:
            raise InputError(f"{source}: the pattern matches no audio file")
        return _confined(root, _folder_items(root, found), allow_outside), []
    if not source.exists():
        raise InputError(f"{source}: no such folder, manifest or pattern")
    raise InputError(f"{source}: not a folder, a manifest ({', '.join(MANIFEST_SUFFIXES)}) or a pattern")


def _walk(root: Path) -> list[Path]:
    found = []
    for directory, folders, files in os.walk(root):
        folders.sort()
        # A folder named like an audio file is listed too: it becomes an error record, not silence.
        found += [Path(directory) / name for name in files + folders if Path(name).suffix.lower() in AUDIO_SUFFIXES]
    return found


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    plain = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    return Path(*parts[:plain]) if plain else Path(".")


def _folder_items(root: Path, paths: Iterable[Path]) -> list[Item]:
    items = []
    for path in paths:
        items.append(Item(path.relative_to(root).as_posix(), str(path),
                          lyrics=_sidecar(path, LYRICS_SUFFIXES), cover=_sidecar(path, COVER_SUFFIXES)))
    return sorted(items, key=lambda item: item.id)


def _sidecar(audio: Path, suffixes: tuple[str, ...]) -> str | None:
    for suffix in suffixes:
        for candidate in (audio.with_suffix(suffix), audio.with_suffix(suffix.upper())):
            if os.path.lexists(candidate):
                return str(candidate)
    return None


def _confined(root: Path, items: list[Item], allow_outside: bool) -> list[Item]:
    if allow_outside:
        return items
    root = Path(os.path.realpath(root))

    def outside(path: str) -> str:
        return f"outside: {path} leads out of the input root {root} (--allow-outside reads it)"

    confined = []
    for item in items:
        if item.refused is None and item.path and not is_inside(item.path, root):
            item = replace(item, refused=outside(item.path))
        sidecars = {m: p for m, p in (("lyrics", item.lyrics), ("cover", item.cover))
                    if p is not None and not is_inside(p, root)}
        if sidecars:
            item = replace(item, refused_sidecars=tuple((m, outside(p)) for m, p in sidecars.items()),
                           **dict.fromkeys(sidecars))
        confined.append(item)
    return confined


def _manifest_items(path: Path) -> tuple[list[Item], list[str]]:
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        elif path.suffix.lower() == ".jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read the manifest ({error})") from None
    id_column = next((c for c in ("track_id", "id") if c in frame.columns), None)
    path_column = next((c for c in ("audio_path", "path") if c in frame.columns), None)
    if id_column is None or path_column is None:
        raise InputError(f"{path}: a manifest needs track_id (or id) and audio_path (or path) columns; it has "
                         f"{list(frame.columns)}")
    root = path.parent.resolve()
    items, problems, seen = [], [], set()
    for line, row in enumerate(frame.to_dict("records"), start=2 if path.suffix.lower() != ".parquet" else 1):
        track = _text(row.get(id_column))
        where = f"{path}: row {line}"
        if track is None:
            problems.append(f"{where}: no {id_column}")
            continue
        if track in seen:
            problems.append(f"{where}: {id_column} {track!r} repeats an earlier row; that row is annotated")
            continue
        seen.add(track)
        resolved = {name: _text(row.get(column)) for name, column in
                    (("audio", path_column), ("lyrics", "lyrics_path"), ("cover", "cover_path"))}
        resolved = {name: None if value is None else str(root / value) for name, value in resolved.items()}
        refused = None if resolved["audio"] is not None else f"missing: no {path_column} in the manifest"
        items.append(Item(track, resolved["audio"] or "", resolved["lyrics"], resolved["cover"], refused))
    return sorted(items, key=lambda item: item.id), problems


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        return None
    return str(value)


def file_facts(path: str | None) -> tuple[int | None, float | None]:
    """Size and mtime of ``path`` (following links), None for each when it cannot be seen."""
    if path is None:
        return None, None
    try:
        facts = os.stat(path)
    except OSError:
        return None, None
    return facts.st_size, facts.st_mtime
