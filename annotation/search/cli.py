"""``coldtag search`` and ``coldtag playlist``: find annotated tracks with a sentence, and write theme playlists.

    coldtag search "calm piano, no drums, around 80 bpm" annotations/ -n 20
    coldtag playlist themes.yaml annotations/ --out playlists/ --catalog manifest.csv

ANNOTATIONS is the ``--out`` folder of ``coldtag annotate``. The query is read into wanted and unwanted tags
of the model that wrote the annotations, graded values and tempo ranges (`annotation.search.query`); each hit
comes with what counted for it. Exit codes: 0, 1 when the query names nothing in the vocabulary, 2 for a bad
argument, annotations folder or theme file (one line).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from annotation.search.playlist import ThemeError, load_themes, write_playlists
from annotation.search.query import THRESHOLD, NoMatch, WordList
from annotation.search.rank import SearchIndex, for_listener

_READERS = {".csv": pd.read_csv, ".tsv": lambda p: pd.read_csv(p, sep="\t"), ".parquet": pd.read_parquet,
            ".jsonl": lambda p: pd.read_json(p, lines=True)}


class UsageError(ValueError):
    """A bad argument or file: one line, exit code 2."""


def search_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coldtag search", description=__doc__.split("\n")[0])
    parser.add_argument("query", help='what to look for, e.g. "sad piano without drums, around 70 bpm"')
    parser.add_argument("annotations", help="the --out folder of a coldtag annotate run")
    parser.add_argument("-n", type=int, default=20, help="how many tracks (default 20)")
    parser.add_argument("--threshold", type=float, default=THRESHOLD,
                        help=f"similarity at which words name a tag (default {THRESHOLD})")
    parser.add_argument("--words", default=None,
                        help="YAML word list of the vocabulary: other words for tags, words for their absence "
                             "and for graded values' ends (docs/search.md)")
    parser.add_argument("--json", action="store_true", help="print the query as read and the hits as JSON")
    toward = parser.add_mutually_exclusive_group()
    toward.add_argument("--like", metavar="TRACK_ID",
                        help="more like this track: also rank by the cosine of the tracks' predicted factors to its "
                             "own (the annotations of a cold-start pipeline have factors)")
    toward.add_argument("--listener", metavar="USER_ID",
                        help="for this listener: also rank by the cosine of the tracks' factors to the listener's "
                             "factors in --recommender")
    parser.add_argument("--recommender", help="the recommender.npz of the pipeline that wrote the annotations "
                                              "(with --listener)")
    parser.add_argument("--factor-weight", type=float, default=1.0,
                        help="what a cosine of 1 to --like or --listener counts against a tag probability of 1 "
                             "(default 1)")
    return parser


def playlist_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coldtag playlist",
                                     description="one M3U and one JSON playlist per theme of a theme file")
    parser.add_argument("themes", help="YAML: themes: [{name, query, length, per_artist, per_album}, ...]")
    parser.add_argument("annotations", help="the --out folder of a coldtag annotate run")
    parser.add_argument("--out", required=True, help="the folder to write <theme>.m3u and <theme>.json to")
    parser.add_argument("--catalog", default=None,
                        help="CSV/TSV/Parquet/JSONL with track_id and the artist and album columns (default: a "
                             "track's artist and album are the names of its audio file's grandparent and parent "
                             "folders)")
    parser.add_argument("--artist-column", default="artist", help="the catalog's artist column (default artist)")
    parser.add_argument("--album-column", default="album",
                        help="the catalog's album column (default album; absent: no album cap)")
    parser.add_argument("--words", default=None, help="the vocabulary's word list, as coldtag search --words")
    return parser


def search_main(args: list[str] | None = None) -> int:
    options = search_parser().parse_args(args)
    try:
        if options.n < 1:
            raise UsageError(f"-n must be >= 1, got {options.n}")
        if not 0 < options.threshold <= 1:
            raise UsageError(f"--threshold must be in (0, 1], got {options.threshold}")
        words = WordList.load(options.words) if options.words else None
        index = _index(options.annotations, words)
        if options.listener is not None and options.recommender is None:
            raise UsageError("--listener needs --recommender (a pipeline's recommender.npz)")
        query = index.parse(options.query, options.threshold)
        toward = (index.like_track(options.like, options.factor_weight) if options.like is not None else
                  for_listener(options.recommender, options.listener, options.factor_weight)
                  if options.listener is not None else None)
        hits = index.search(query, options.n, toward)
    except NoMatch as error:
        print(f"coldtag search: {error}", file=sys.stderr)
        return 1
    except (UsageError, ValueError) as error:
        print(f"coldtag search: error: {error}", file=sys.stderr)
        return 2
    if options.json:
        print(json.dumps({"query": options.query, "read_as": query.describe(),
                          "hits": [hit.to_json() for hit in hits]}, indent=2))
        return 0
    print(f"read as: {query.describe()}")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:3d}. {hit.id}  {hit.score:+.3f}  {hit.path}\n       {hit.explain()}")
    return 0


def playlist_main(args: list[str] | None = None) -> int:
    options = playlist_parser().parse_args(args)
    try:
        themes = load_themes(options.themes)
        index = _index(options.annotations, WordList.load(options.words) if options.words else None)
        artists, albums = _artists_albums(index, options)
        written = write_playlists(index, themes, options.out, artists, albums, source=options.themes)
    except (ThemeError, UsageError, ValueError) as error:
        print(f"coldtag playlist: error: {error}", file=sys.stderr)
        return 2
    print(f"coldtag playlist: {len(themes)} themes -> {len(written)} files in {options.out}", file=sys.stderr)
    return 0


def _index(annotations: str, words: WordList | None = None) -> SearchIndex:
    if not Path(annotations).is_dir():
        raise UsageError(f"ANNOTATIONS {annotations}: no such folder (the --out of a coldtag annotate run)")
    try:
        return SearchIndex.from_annotations(annotations, words=words)
    except FileNotFoundError as error:
        raise UsageError(f"ANNOTATIONS {error}") from None


def _artists_albums(index: SearchIndex, options: argparse.Namespace) -> tuple[list, list]:
    if options.catalog is None:
        paths = [Path(p) for p in index.paths]
        return [p.parent.parent.name or None for p in paths], [p.parent.name or None for p in paths]
    path = Path(options.catalog)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise UsageError(f"--catalog {path}: not a CSV, TSV, Parquet or JSONL file")
    try:
        table = reader(path)
    except (OSError, ValueError) as error:
        raise UsageError(f"--catalog {path}: cannot be read ({error})") from None
    for column, option in (("track_id", None), (options.artist_column, "--artist-column")):
        if column not in table.columns:
            raise UsageError(f"--catalog {path}: no {column!r} column" + (f" (see {option})" if option else ""))
    table = table.drop_duplicates("track_id").set_index("track_id")
    artist = table[options.artist_column].to_dict()
    album = table[options.album_column].to_dict() if options.album_column in table.columns else {}
    return [_name(artist.get(i)) for i in index.ids], [_name(album.get(i)) for i in index.ids]


def _name(value) -> str | None:
    return None if value is None or (isinstance(value, float) and value != value) else str(value)
