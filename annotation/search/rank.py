"""Ranking annotated tracks for a `Query`, with the reason of every hit.

A track's score is the sum of what each part of the query counts for it, each part at most its weight:

- a wanted tag: ``+weight x p`` (the model's probability of the tag); an unwanted one ``-weight x p``;
- a graded value: ``+weight x r`` for "high", ``+weight x (1 - r)`` for "low", r the track's rank among the
  searched tracks from 0 (lowest value) to 1 (highest), so units and ranges do not matter;
- a tempo range: ``+weight`` inside it, falling off outside as ``exp(-d² / 2s²)``, d the distance to the
  range in bpm and s 5 % of the nearest bound; 0 for a track without a tempo.

Ties are broken by track id. Failed records (no tags) are not searched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotation.records import RECORD_COLUMNS, read_annotations
from annotation.search.query import (
    THRESHOLD,
    UP,
    NoMatch,
    Query,
    TempoRange,
    Term,
    TextMatcher,
    Vocabulary,
    WordList,
    exact_spans,
    parse_query,
    words_of,
)

TEMPO_FALLOFF = 0.05  # of the bound


@dataclass(frozen=True)
class Reason:
    """What one part of the query counted for a hit: ``what`` it is ("mood/sad", "not vocals", "tempo
    60-80 bpm"), the track's ``value`` (probability, graded value or bpm; None if it has none) and the amount
    ``counted`` in its score."""

    what: str
    value: float | None
    counted: float

    def __str__(self) -> str:
        value = "no value" if self.value is None else f"{self.value:.3g}"
        return f"{self.what} = {value}: {self.counted:+.2f}"


@dataclass(frozen=True)
class Hit:
    """A track found, its ``score`` and ``reasons`` (largest amounts first)."""

    id: str
    path: str
    score: float
    reasons: tuple[Reason, ...]

    def explain(self) -> str:
        return "; ".join(str(reason) for reason in self.reasons)

    def to_json(self) -> dict:
        return {"id": self.id, "path": self.path, "score": round(self.score, 4), "why": self.explain(),
                "reasons": [{"what": r.what, "value": None if r.value is None else round(r.value, 4),
                             "counted": round(r.counted, 4)} for r in self.reasons]}


@dataclass(frozen=True)
class Toward:
    """A direction in the factors' space that a search also ranks by: ``what`` names it in the reasons,
    ``weight`` times the cosine to ``vector`` is what it counts, ``track`` (a seed track) is left out."""

    what: str
    vector: np.ndarray
    weight: float = 1.0
    track: str | None = None


def for_listener(recommender_file: str | Path, user: str, weight: float = 1.0) -> Toward:
    """"For this listener": the user's factors in a pipeline's ``recommender.npz`` (`recsys.Recommender`)."""
    from recsys import Recommender

    recommender = Recommender.load(recommender_file)
    ids = [str(u) for u in recommender.user_ids]
    if str(user) not in ids:
        raise ValueError(f"--listener {user!r}: no such listener in {recommender_file}")
    return Toward(f"listener {user}", recommender.user_factors[ids.index(str(user))], weight)


class SearchIndex:
    """The searchable records of an annotate output folder: ids, paths, each tag's probability, each graded
    value (and its rank) and the tempo, as arrays over tracks."""

    def __init__(self, ids: list[str], paths: list[str], vocabulary: Vocabulary, values: np.ndarray,
                 tempo: np.ndarray, matcher: TextMatcher | None = None, factors: np.ndarray | None = None):
        """``values`` (tracks, tags): probabilities of tags and graded values in the vocabulary's order, NaN
        where missing; ``tempo`` (tracks,) bpm, NaN where missing; ``factors`` (tracks, f): the collaborative
        factors a cold-start pipeline predicted (NaN rows where missing), None without any."""
        values, tempo = np.asarray(values, dtype=np.float64), np.asarray(tempo, dtype=np.float64)
        if values.shape != (len(ids), len(vocabulary)) or tempo.shape != (len(ids),) or len(paths) != len(ids):
            raise ValueError(f"values {values.shape}, tempo {tempo.shape} and {len(paths)} paths do not fit "
                             f"{len(ids)} tracks and {len(vocabulary)} tags")
        self.ids, self.paths, self.vocabulary = list(ids), list(paths), vocabulary
        self.values, self.tempo = values, tempo
        self.column = {tag: j for j, tag in enumerate(vocabulary.tags)}
        self.ranks = np.full_like(values, np.nan)
        for j, tag in enumerate(vocabulary.tags):
            if tag.graded:
                self.ranks[:, j] = _rank(values[:, j])
        self.matcher = matcher or TextMatcher(vocabulary)
        self.order = np.argsort(np.array(self.ids, dtype=object), kind="stable")
        self.factors = None if factors is None else np.asarray(factors, dtype=np.float64)
        if self.factors is not None and (self.factors.ndim != 2 or len(self.factors) != len(ids)):
            raise ValueError(f"factors {self.factors.shape} do not fit {len(ids)} tracks")

    @classmethod
    def from_annotations(cls, out: str | Path, matcher: TextMatcher | None = None,
                         words: WordList | None = None) -> SearchIndex:
        """The index of the records `coldtag annotate` wrote to ``out``, its query reader given the catalog's
        word list ``words`` if any; `FileNotFoundError` without any record."""
        table = read_annotations(out)
        vocabulary = Vocabulary.from_schema(table.schema, RECORD_COLUMNS)
        if not len(vocabulary):
            raise ValueError(f"{out}: its records have no tag or graded columns to search")
        rows = table.to_pylist()
        usable = [r for r in rows if r["error"] is None and any(r.get(t.group) is not None for t in vocabulary.tags)]
        if not usable:
            raise ValueError(f"{out}: no record with tags (every record failed)")
        values = np.full((len(usable), len(vocabulary)), np.nan)
        for i, row in enumerate(usable):
            for j, tag in enumerate(vocabulary.tags):
                group = row.get(tag.group)
                if group is None:
                    continue
                value = group[tag.label] if tag.graded else group["probabilities"][tag.label]
                values[i, j] = np.nan if value is None else value
        tempo = np.array([np.nan if not r.get("tempo") or r["tempo"]["bpm"] is None else r["tempo"]["bpm"]
                          for r in usable], dtype=np.float64)
        if matcher is None and words is not None:
            matcher = TextMatcher(vocabulary, words=words)
        factors = None
        sizes = {len(r["factors"]) for r in usable if r.get("factors")}
        if len(sizes) == 1:
            size = sizes.pop()
            factors = np.array([r["factors"] if r.get("factors") else [np.nan] * size for r in usable],
                               dtype=np.float64)
        return cls([r["id"] for r in usable], [r["path"] or "" for r in usable], vocabulary, values, tempo, matcher,
                   factors)

    def __len__(self) -> int:
        return len(self.ids)

    def parse(self, text: str, threshold: float = THRESHOLD) -> Query:
        return parse_query(text, self.matcher, threshold)

    def scores(self, query: Query) -> np.ndarray:
        """(tracks,) the score of every track; its parts are in `contributions`."""
        return sum(self.contributions(query).values(), np.zeros(len(self)))

    def contributions(self, query: Query) -> dict[str, np.ndarray]:
        """Per part of the query (named as in `Reason.what`), what it counts for every track."""
        parts = {}
        for term in query.terms:
            parts[_what(term)] = term.weight * self._term(term)
        for rule in query.tempo:
            parts[f"tempo {rule}"] = rule.weight * tempo_closeness(self.tempo, rule)
        return parts

    def search(self, query: str | Query, n: int = 20, toward: Toward | None = None) -> list[Hit]:
        """The ``n`` best tracks for ``query`` (text or parsed), best first, each with its reasons;
        `NoMatch` for a query that names nothing in the vocabulary. ``toward``: also rank by closeness of the
        tracks' factors to a seed track's or a listener's (`like_track`, `for_listener`); a seed track is not
        one of its own hits."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        query = self.parse(query) if isinstance(query, str) else query
        parts = self.contributions(query)
        candidates, measured = self.order, {}
        if toward is not None:
            measured[toward.what] = self.closeness(toward.vector)
            parts[toward.what] = toward.weight * measured[toward.what]
            candidates = candidates[np.array([self.ids[i] != toward.track for i in candidates], dtype=bool)]
        total = sum(parts.values(), np.zeros(len(self)))
        top = candidates[np.argsort(-total[candidates], kind="stable")][:n]  # ties in id order
        return [self.hit(int(i), query, parts, measured) for i in top]

    def closeness(self, vector: np.ndarray) -> np.ndarray:
        """(tracks,) the cosine of each track's factors with ``vector``; 0 for a track without factors."""
        factors = self._factors()
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (factors.shape[1],):
            raise ValueError(f"a vector of {vector.shape} cannot be compared with {factors.shape[1]} factors")
        norms = np.linalg.norm(factors, axis=1) * np.linalg.norm(vector)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nan_to_num(factors @ vector / norms, nan=0.0)

    def like_track(self, track: str, weight: float = 1.0) -> Toward:
        """"More like this track": its predicted factors, which the hits are ranked toward."""
        factors = self._factors()
        if track not in self.ids:
            raise ValueError(f"--like {track!r}: no such track among these annotations")
        vector = factors[self.ids.index(track)]
        if np.isnan(vector).any():
            raise ValueError(f"--like {track!r}: this track's record has no factors")
        return Toward(f"like {track}", vector, weight, track)

    def _factors(self) -> np.ndarray:
        if self.factors is None:
            raise ValueError("these annotations have no factors: those of a cold-start pipeline have them "
                             "(coldtag annotate --model PIPELINE)")
        return self.factors

    def _term(self, term: Term) -> np.ndarray:
        j = self.column[term.tag]
        if term.tag.graded:
            rank = np.nan_to_num(self.ranks[:, j], nan=0.5)
            return rank if term.direction == UP else 1 - rank
        probability = np.nan_to_num(self.values[:, j], nan=0.0)
        return probability if term.wanted else -probability

    def hit(self, i: int, query: Query, parts: dict[str, np.ndarray] | None = None,
            measured: dict[str, np.ndarray] | None = None) -> Hit:
        """Track ``i`` as a hit of ``query``, with its reasons (``parts``: `contributions`, if known, and any
        other part; ``measured``: the value behind such a part, e.g. a cosine)."""
        parts = self.contributions(query) if parts is None else parts
        values = {what: value[i] for what, value in (measured or {}).items()}
        for term in query.terms:
            values[_what(term)] = self.values[i, self.column[term.tag]]
        for rule in query.tempo:
            values[f"tempo {rule}"] = self.tempo[i]
        reasons = [Reason(what, None if math.isnan(values[what]) else float(values[what]), float(amount[i]))
                   for what, amount in parts.items()]
        reasons.sort(key=lambda r: -abs(r.counted))
        return Hit(self.ids[i], self.paths[i], float(sum(r.counted for r in reasons)), tuple(reasons))


def tempo_closeness(bpm: np.ndarray, rule: TempoRange) -> np.ndarray:
    """1 inside ``rule``'s range, ``exp(-d² / 2s²)`` outside (d bpm away from the bound, s `TEMPO_FALLOFF` of
    it), 0 without a tempo."""
    bpm = np.asarray(bpm, dtype=np.float64)
    closeness = np.ones_like(bpm)
    for bound, outside in ((rule.low, lambda b, x: b < x), (rule.high, lambda b, x: b > x)):
        if bound is None:
            continue
        with np.errstate(invalid="ignore"):
            far = outside(bpm, bound)
        distance = np.abs(bpm - bound)
        closeness = np.where(far, np.exp(-0.5 * (distance / (TEMPO_FALLOFF * bound)) ** 2), closeness)
    return np.where(np.isnan(bpm), 0.0, closeness)


def keyword_query(text: str, vocabulary: Vocabulary) -> Query:
    """The keyword baseline: every tag whose name the query writes out (a final plural s ignored) is wanted,
    without negation, numbers or similar words; `NoMatch` if the query writes out none."""
    found = exact_spans(words_of(text), vocabulary)
    terms = tuple(Term(tag, True, 1.0, tag.text, 1.0, UP if tag.graded else None)
                  for _, tags in found.values() for tag, _, _ in tags)
    if not terms:
        raise NoMatch(f"query {text!r} writes out no tag name")
    return Query(text, terms)


def _what(term: Term) -> str:
    if term.tag.graded:
        return f"{term.tag.name} {term.direction}"
    return term.tag.name if term.wanted else f"not {term.tag.name}"


def _rank(values: np.ndarray) -> np.ndarray:
    """0 for the lowest value to 1 for the highest (ties share their mean rank); NaN stays NaN."""
    ranks = np.full(len(values), np.nan)
    known = ~np.isnan(values)
    if known.sum() == 1:
        ranks[known] = 0.5
    elif known.any():
        order = values[known]
        below = np.searchsorted(np.sort(order), order, side="left")
        above = np.searchsorted(np.sort(order), order, side="right") - 1
        ranks[known] = (below + above) / 2 / (known.sum() - 1)
    return ranks



