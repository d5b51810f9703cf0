"""Theme playlists: a theme is a search query with a length and diversity rules, its playlist the best tracks for
the query that keep to the rules, written as M3U and JSON.

A theme file (YAML) lists the themes::

    themes:
      - name: rainy sunday
        query: calm piano, no drums, around 80 bpm
        length: 20          # tracks (default 20)
        per_artist: 2       # at most this many tracks by one artist (default: no limit)
        per_album: 1        # at most this many from one album (default: no limit)

Diversity goes through the exposure re-ranker (`recsys.exposure.rerank`): walking the candidates (the best
``10 x length`` tracks for the query) in score order, a track is eligible while its artist and album are under
their caps; the re-ranker keeps the best eligible tracks, in score order. A playlist that runs out of eligible
tracks is shorter than its length, and its JSON says by how many (``shortfall``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import yaml

from annotation.search.query import NoMatch, Query
from annotation.search.rank import Hit, SearchIndex
from coldtag.storage import atomic_path
from recsys.exposure import rerank, run_metrics

CANDIDATES_PER_SLOT = 10


class ThemeError(ValueError):
    """A theme file with a bad entry; the message names the file, the theme and the key."""


@dataclass(frozen=True)
class Theme:
    name: str
    query: str
    length: int = 20
    per_artist: int | None = None
    per_album: int | None = None


_KEYS = tuple(f.name for f in fields(Theme))


@dataclass(frozen=True)
class Playlist:
    """A theme's tracks (``hits``, best first) with their ``artists`` and ``albums``, the query as it was read,
    and how many tracks it lacks of the theme's length (``shortfall``)."""

    theme: Theme
    query: Query
    hits: tuple[Hit, ...]
    artists: tuple[str | None, ...]
    albums: tuple[str | None, ...]
    shortfall: int

    def to_json(self) -> dict:
        metrics = run_metrics(np.arange(len(self.hits))[None], max(len(self.hits), 1), artists=self.artists)
        return {"name": self.theme.name, "query": self.theme.query, "read_as": self.query.describe(),
                "length": self.theme.length, "per_artist": self.theme.per_artist, "per_album": self.theme.per_album,
                "shortfall": self.shortfall, "artists": len(set(self.artists) - {None}),
                "artist_gini": None if np.isnan(metrics["artist_gini"]) else round(metrics["artist_gini"], 4),
                "tracks": [{**hit.to_json(), "artist": artist, "album": album}
                           for hit, artist, album in zip(self.hits, self.artists, self.albums, strict=True)]}

    def m3u(self) -> str:
        lines = ["#EXTM3U", f"#PLAYLIST:{self.theme.name}"]
        for hit, artist in zip(self.hits, self.artists, strict=True):
            lines += [f"#EXTINF:-1,{f'{artist} - ' if artist else ''}{hit.id}", hit.path]
        return "\n".join(lines) + "\n"


def load_themes(path: str | Path) -> list[Theme]:
    """The themes of a YAML theme file; `ThemeError` naming the theme and key of a bad entry."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ThemeError(f"{path}: cannot read the theme file ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise ThemeError(f"{path}: not YAML ({error})") from None
    entries = document.get("themes") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ThemeError(f"{path}: needs a 'themes' list of themes, each with a name and a query")
    themes, names = [], set()
    for position, entry in enumerate(entries, 1):
        where = f"{path}: theme {position}"
        if not isinstance(entry, dict):
            raise ThemeError(f"{where}: must be a mapping of {', '.join(_KEYS)}, got {entry!r}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ThemeError(f"{where}: key 'name' must be a non-empty string, got {name!r}")
        where = f"{path}: theme {name!r}"
        for key in entry:
            if key not in _KEYS:
                raise ThemeError(f"{where}: unknown key {key!r} (known: {', '.join(_KEYS)})")
        if name in names:
            raise ThemeError(f"{where}: key 'name' is used by an earlier theme too")
        names.add(name)
        query = entry.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ThemeError(f"{where}: key 'query' must be a non-empty string, got {query!r}")
        numbers = {}
        for key, default in (("length", 20), ("per_artist", None), ("per_album", None)):
            value = entry.get(key, default)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ThemeError(f"{where}: key {key!r} must be a positive integer, got {value!r}")
            numbers[key] = value
        themes.append(Theme(name, query, **numbers))
    return themes


def build_playlist(index: SearchIndex, theme: Theme, artists: Sequence[str | None],
                   albums: Sequence[str | None], query: Query | None = None) -> Playlist:
    """``theme``'s playlist from ``index``; ``artists`` and ``albums`` per track of the index (None: unknown,
    never capped)."""
    if len(artists) != len(index) or len(albums) != len(index):
        raise ValueError(f"artists ({len(artists)}) and albums ({len(albums)}) must have one entry per track of "
                         f"the index ({len(index)})")
    query = query or index.parse(theme.query)
    scores = index.scores(query)
    order = index.order[np.argsort(-scores[index.order], kind="stable")][:CANDIDATES_PER_SLOT * theme.length]
    eligible = np.zeros(len(index), dtype=bool)
    per_artist, per_album = Counter(), Counter()
    for i in order:
        artist, album = artists[i], albums[i]
        if _under(per_artist, artist, theme.per_artist) and _under(per_album, album, theme.per_album):
            eligible[i] = True
            per_artist[artist] += 1
            per_album[album] += 1
    reranked = rerank(order[None], scores[order][None], eligible, share=1.0, N=theme.length)
    # With too few eligible candidates the re-ranker fills up with the rest; those would break the caps.
    chosen = [int(i) for i in reranked.ids[0] if i >= 0 and eligible[i]]
    hits = tuple(index.hit(i, query) for i in chosen)
    return Playlist(theme, query, hits, tuple(artists[i] for i in chosen), tuple(albums[i] for i in chosen),
                    shortfall=theme.length - len(chosen))


def _under(counts: Counter, key: str | None, cap: int | None) -> bool:
    return key is None or cap is None or counts[key] < cap


def write_playlists(index: SearchIndex, themes: list[Theme], out: str | Path, artists: Sequence[str | None],
                    albums: Sequence[str | None], source: str | Path = "themes") -> list[Path]:
    """One ``<name>.m3u`` and ``<name>.json`` per theme in ``out``. Every theme's query is read before anything
    is written: a query that names nothing is a `ThemeError` naming its theme."""
    queries = []
    for theme in themes:
        try:
            queries.append(index.parse(theme.query))
        except NoMatch as error:
            raise ThemeError(f"{source}: theme {theme.name!r}: key 'query': {error}") from None
        except ValueError as error:
            raise ThemeError(f"{source}: theme {theme.name!r}: key 'query': {error}") from None
    stems = [_file_stem(theme.name) for theme in themes]
    for stem, count in Counter(stems).items():
        if count > 1:
            clash = [t.name for t, s in zip(themes, stems, strict=True) if s == stem]
            raise ThemeError(f"{source}: themes {clash} would share the file name {stem!r}; rename one")
    out = Path(out)
    written = []
    for theme, query, stem in zip(themes, queries, stems, strict=True):
        playlist = build_playlist(index, theme, artists, albums, query)
        for suffix, text in ((".m3u", playlist.m3u()),
                             (".json", json.dumps(playlist.to_json(), indent=2, ensure_ascii=False) + "\n")):
            with atomic_path(out / f"{stem}{suffix}") as temporary:
                temporary.write_text(text, encoding="utf-8")
            written.append(out / f"{stem}{suffix}")
    return written


def _file_stem(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name.strip(), flags=re.UNICODE).strip("-.").lower() or "theme"
