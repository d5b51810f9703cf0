"""A search query read into wanted and unwanted tags, graded values and tempo ranges.

The vocabulary is the one of the annotations searched (`Vocabulary.from_schema`): every tag group and graded
group the model that wrote them has, whatever model that was. A query is read in four passes:

1. Tempo rules, by pattern: "around 70 bpm" (70 ± 8 %), "70 bpm", "faster than / over / at least 120 bpm",
   "slower than / under / at most 90 bpm", "between 90 and 110 bpm", "90-110 bpm". Ranges are over the
   records' own ``tempo`` column (beats per minute by signal processing).
2. Tag names written out ("acoustic guitar", "lo-fi", "drums"; a final plural s is ignored) are taken as
   they are, before anything else, so a vocabulary tag that itself holds a negation ("no vocals") is found;
   so are the phrases of an optional word list (`WordList`, ``--words``): other words for a tag, words that
   say its absence ("instrumental": not vocals) and words for a graded value's high or low end.
3. Cue words: a negation ("no", "not", "without", "nothing", "never", ...) makes what follows unwanted up to
   the next clause break ("," "and" "but" "with"); an intensifier ("very", "really", ...) doubles the weight
   of the next term, a softener ("slightly", "a bit", ...) halves it; "high"/"more" and "low"/"less" before
   a graded value ("high energy") set its direction.
4. The other words, alone and in runs of up to three, are embedded with the MiniLM sentence encoder
   (`tagging.models.text.LyricsEncoder`, offline), as is each tag in several phrasings (`PHRASINGS`); a span's
   similarity to a tag is its best over those. Greedily, the most similar
   (words, tag) pair at or above `THRESHOLD` is taken, its words leave the pool, and neighbouring words that
   are as close to the same tag are taken with it ("heavy metal" -> metal). Generic words ("music", "songs")
   are left out first. Words that share a word with a tag's name of several words without holding all of
   it never name that tag by similarity ("heavy" is not "heavy reverb", "tempo" not "fast tempo"): the
   shared word makes them look close whatever they mean; a word list can still name it.

A query of which nothing is read raises `NoMatch`, naming the words and the threshold, rather than ranking
every track by noise.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

# Cosine similarity at or above which words are taken to name a tag; chosen on the templated queries of
# scripts/search_eval.py (docs/search.md), never on the free-form ones.
THRESHOLD = 0.50
# How a tag's name is put into words for the encoder; a span's similarity to a tag is its best over these.
PHRASINGS = ("{tag}", "{tag} music", "music that is {tag}", "{group}: {tag}")
TEMPO_TOLERANCE = 0.08  # "around X bpm": X ± 8 %
MAX_SPAN = 3  # words

NEGATIONS = frozenset({"no", "not", "without", "non", "never", "nothing", "none", "minus", "except", "excluding",
                       "exclude", "avoid", "lacking"})
BREAKS = frozenset({",", ";", ".", "!", "?", "and", "but", "with", "yet", "plus"})
INTENSIFIERS = {"very": 2.0, "really": 2.0, "extremely": 2.0, "super": 2.0, "highly": 2.0, "so": 2.0,
                "totally": 2.0, "heavily": 2.0, "slightly": 0.5, "somewhat": 0.5, "bit": 0.5, "mildly": 0.5,
                "fairly": 0.5, "kinda": 0.5}
UP, DOWN = "high", "low"
DIRECTIONS = {"high": UP, "higher": UP, "more": UP, "max": UP, "maximum": UP,
              "low": DOWN, "lower": DOWN, "less": DOWN, "min": DOWN, "minimal": DOWN}
# Words that say "a piece of music" or glue a request together: they name no tag of any vocabulary.
GENERIC = frozenset("""a an the of in on at to for from by is are be been that this these those which who whose
some something anything any me i my we our you your want wants like likes play give show find please can
could would should music musical song songs track tracks tune tunes piece pieces stuff sound sounds sounding
kind sort type style feel feeling vibe vibes lots lot plenty full one ones it its there has have having
featuring feature features or either recording recordings rhythm rhythms playlist playlists""".split())

_NUMBER = r"(\d+(?:\.\d+)?)"
_BPM = r"\s*(?:bpm|beats per minute|beats a minute)\b"
_TEMPO_PATTERNS = (  # (pattern, kind) tried in this order; each match leaves a clause break behind
    (rf"\b(?:between|from)\s+{_NUMBER}(?:{_BPM})?\s+(?:and|to)\s+{_NUMBER}{_BPM}", "between"),
    (rf"\b{_NUMBER}\s*(?:-|–|to)\s*{_NUMBER}{_BPM}", "between"),
    (rf"(?:\b(?:faster|quicker|more|greater|higher) than|\bover|\babove|\bat least|>=?)\s*{_NUMBER}{_BPM}", "above"),
    (rf"(?:\b(?:slower|less|lower) than|\bunder|\bbelow|\bat most|<=?)\s*{_NUMBER}{_BPM}", "below"),
    (rf"(?:\b(?:around|about|approximately|approx|roughly|near|close to)\s*|~\s*)?\b{_NUMBER}{_BPM}", "around"),
)


class NoMatch(ValueError):
    """A query of which no word names a tag of the vocabulary, and which gives no tempo."""


@dataclass(frozen=True)
class Tag:
    """One entry of a vocabulary: ``label`` of tag group ``group``, or of a graded group (``graded``)."""

    group: str
    label: str
    graded: bool = False

    @property
    def name(self) -> str:
        return f"{self.group}/{self.label}"

    @property
    def text(self) -> str:
        """The label as words: "acoustic_guitar" -> "acoustic guitar"."""
        return " ".join(words_of(self.label))


@dataclass(frozen=True)
class Vocabulary:
    """The tags a search can name, in the annotations' column order."""

    tags: tuple[Tag, ...]

    @classmethod
    def from_schema(cls, schema: pa.Schema, record_columns: Sequence[str]) -> Vocabulary:
        """The model's columns of an annotate record schema (those not in ``record_columns``): a struct of
        ``probabilities`` and ``tags`` is a tag group, a struct of numbers a graded group; the rest (a
        pipeline's factors, users, similar tracks) names nothing to search for."""
        tags = []
        for column in schema:
            if column.name in record_columns or not pa.types.is_struct(column.type):
                continue
            kind = column.type
            names = [kind.field(i).name for i in range(kind.num_fields)]
            if "probabilities" in names and "tags" in names:
                tags += [Tag(column.name, f.name) for f in kind.field("probabilities").type]
            elif names and all(pa.types.is_floating(f.type) or pa.types.is_integer(f.type) for f in kind):
                tags += [Tag(column.name, name, graded=True) for name in names]
        return cls(tuple(tags))

    def __len__(self) -> int:
        return len(self.tags)


@dataclass(frozen=True)
class Term:
    """A tag the query names: ``wanted`` or not, its ``weight``, the ``phrase`` it was read from and how
    ``similar`` the phrase is to the tag's name (1 for the name itself). A graded tag has a ``direction``:
    "high" or "low"."""

    tag: Tag
    wanted: bool
    weight: float
    phrase: str
    similarity: float
    direction: str | None = None


@dataclass(frozen=True)
class TempoRange:
    """Beats per minute from ``low`` to ``high`` (None: open), read from ``phrase``."""

    low: float | None
    high: float | None
    phrase: str
    weight: float = 1.0

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g}-{self.high:g} bpm"
        return f">= {self.low:g} bpm" if self.low is not None else f"<= {self.high:g} bpm"


class WordListError(ValueError):
    """A word list file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class WordList:
    """Extra words for a vocabulary's tags, given by a catalog (``coldtag search --words FILE``).

    ``entries`` maps a tag (its label, as "acoustic guitar" or "acoustic_guitar", or "group/label") to
    ``words`` that name it, ``not`` words that name its absence ("instrumental" for vocals) and, for a
    graded value, ``high`` and ``low`` words for its two ends. Entries naming no tag of the searched
    vocabulary are left alone, so one list can serve several vocabularies."""

    entries: dict[str, dict[str, tuple[str, ...]]]

    KINDS = ("words", "not", "high", "low")

    @classmethod
    def load(cls, path: str | Path) -> WordList:
        """A YAML (or JSON) file ``{tags: {TAG: {words: [...], not: [...], high: [...], low: [...]}}}``."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise WordListError(f"{path}: cannot be read as YAML or JSON ({error})") from None
        if not isinstance(data, dict) or not isinstance(data.get("tags"), dict):
            raise WordListError(f"{path}: expected a mapping with a 'tags' mapping, got {type(data).__name__}")
        return cls.from_dict(data["tags"], source=str(path))

    @classmethod
    def from_dict(cls, tags: dict, source: str = "word list") -> WordList:
        entries = {}
        for tag, kinds in tags.items():
            if not isinstance(kinds, dict) or not kinds or set(kinds) - set(cls.KINDS):
                raise WordListError(f"{source}: tags.{tag}: expected a mapping of {', '.join(cls.KINDS)} to lists "
                                    f"of words, got {kinds!r}")
            entry = {}
            for kind, words in kinds.items():
                if not isinstance(words, list) or not all(isinstance(w, str) and words_of(w) for w in words):
                    raise WordListError(f"{source}: tags.{tag}.{kind}: expected a list of words, got {words!r}")
                entry[kind] = tuple(words)
            entries[str(tag)] = entry
        return cls(entries)

    def for_tag(self, tag: Tag) -> dict[str, tuple[str, ...]]:
        """The words of every entry naming ``tag`` (by "group/label" or by its label's words)."""
        found: dict[str, tuple[str, ...]] = {}
        for key, entry in self.entries.items():
            if key == tag.name or (("/" not in key) and words_of(key) == words_of(tag.label)):
                for kind, words in entry.items():
                    found[kind] = found.get(kind, ()) + words
        return found


@dataclass(frozen=True)
class Query:
    """What a query was read into, and the words that named nothing (``ignored``)."""

    text: str
    terms: tuple[Term, ...] = ()
    tempo: tuple[TempoRange, ...] = ()
    ignored: tuple[str, ...] = ()
    threshold: float = THRESHOLD

    def describe(self) -> str:
        parts = [f"{'' if t.wanted else 'not '}{t.tag.name}{f' {t.direction}' if t.direction else ''}"
                 f"{f' x{t.weight:g}' if t.weight != 1 else ''} (from {t.phrase!r}, similarity {t.similarity:.2f})"
                 for t in self.terms]
        parts += [f"tempo {r} (from {r.phrase!r})" for r in self.tempo]
        text = "; ".join(parts)
        return text + (f"; ignored: {' '.join(self.ignored)}" if self.ignored else "")


class TextMatcher:
    """Similarities of phrases to a vocabulary's tag names by a sentence encoder.

    ``embed`` maps texts to vectors (default: `tagging.models.text.LyricsEncoder`'s mean-pooled MiniLM states, loaded
    on first use from the installed package; nothing is downloaded). ``words`` is the catalog's optional
    `WordList`: its phrases are read as tag names are (`exact_spans`)."""

    def __init__(self, vocabulary: Vocabulary, embed: Callable[[list[str]], np.ndarray] | None = None,
                 words: WordList | None = None):
        self.vocabulary = vocabulary
        self.words = words
        self._embed = embed
        self._tags: list[np.ndarray] | None = None
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) unit vectors."""
        if self._embed is None:
            self._embed = _minilm()
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = np.asarray(self._embed(missing), dtype=np.float64)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            self._cache.update(zip(missing, vectors, strict=True))
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 0))

    def phrasings(self, tag: Tag) -> list[str]:
        """``tag``'s name in each of `PHRASINGS`. (A word list's words are read exactly, not embedded: as
        phrasings they brought everyday words within the threshold, "car" of energetic by "high octane".)"""
        group = " ".join(words_of(tag.group))
        return list(dict.fromkeys(p.format(tag=tag.text, group=group) for p in PHRASINGS))

    def similarities(self, phrases: list[str]) -> np.ndarray:
        """(len(phrases), len(vocabulary)) cosine similarities of each phrase to each tag: the best over the
        tag's `phrasings`."""
        if self._tags is None:
            self._tags = [self.embed(self.phrasings(tag)) for tag in self.vocabulary.tags]
        if not phrases:
            return np.zeros((0, len(self.vocabulary)))
        vectors = self.embed(phrases)
        return np.stack([(vectors @ tag.T).max(axis=1) for tag in self._tags], axis=1)


@functools.cache
def _minilm() -> Callable[[list[str]], np.ndarray]:
    """One encoder per process: the server and a playlist run of many themes load it once."""
    import torch

    from tagging.models.text import LyricsEncoder

    encoder = LyricsEncoder(max_length=32)

    @torch.inference_mode()
    def embed(texts: list[str]) -> np.ndarray:
        return encoder(**encoder.tokenize(texts)).numpy()

    return embed


@dataclass
class _Word:
    text: str
    wanted: bool = True
    weight: float = 1.0
    direction: str | None = None  # a direction cue just before it
    clause: int = 0
    taken: bool = False


@dataclass
class _Reading:
    words: list[_Word] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)


def parse_query(text: str, matcher: TextMatcher, threshold: float = THRESHOLD) -> Query:
    """Read ``text`` into a `Query` over ``matcher``'s vocabulary (module docstring); `NoMatch` if nothing
    of it names a tag or a tempo, `ValueError` for an empty query or an impossible tempo."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("query: empty; say what to look for, e.g. 'calm piano, no drums, around 80 bpm'")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    lowered = re.sub(r"n't\b", " not", text.lower())
    lowered, tempo = _tempo_rules(lowered)
    tokens = words_of(lowered, keep_breaks=True)
    reading = _Reading()
    exact = exact_spans(tokens, matcher.vocabulary, matcher.words)
    wanted, weight, direction, clause, i = True, 1.0, None, 0, 0
    negation_open = False  # a negation not yet followed by anything it negates
    while i < len(tokens):
        token = tokens[i]
        if i in exact:
            length, found = exact[i]
            phrase = " ".join(tokens[i:i + length])
            for tag, absent, said in found:
                _add(reading.terms, _term(tag, wanted != absent, weight, phrase, 1.0, said or direction))
            weight, direction, negation_open, i = 1.0, None, False, i + length
            continue
        if token in BREAKS and negation_open and token.isalpha():
            pass  # "nothing with distortion": a break word right after a negation belongs to it
        elif token in BREAKS:
            wanted, weight, direction, clause, negation_open = True, 1.0, None, clause + 1, False
        elif token in NEGATIONS:
            wanted, negation_open = False, True
        elif token in INTENSIFIERS:
            weight *= INTENSIFIERS[token]
        elif token in DIRECTIONS:
            direction = DIRECTIONS[token]
        elif token not in GENERIC and not token.isdigit():
            reading.words.append(_Word(token, wanted, weight, direction, clause))
            weight, direction, negation_open = 1.0, None, False
        i += 1
    _match_words(reading, matcher, threshold)
    ignored = tuple(w.text for w in reading.words if not w.taken)
    if not reading.terms and not tempo:
        raise NoMatch(f"query {text!r} names nothing in the vocabulary of these annotations: no word is within "
                      f"similarity {threshold:g} of a tag's name and no tempo is given (tags: "
                      f"{', '.join(t.text for t in matcher.vocabulary.tags[:12])}"
                      f"{', ...' if len(matcher.vocabulary) > 12 else ''})")
    return Query(text, tuple(reading.terms), tuple(tempo), ignored, threshold)


def _add(terms: list[Term], term: Term) -> None:
    """``term`` appended, unless the query already names its tag the same way ("synthesizer pads": one
    synth pad); then the one that counts more stays."""
    for k, other in enumerate(terms):
        if (other.tag, other.wanted, other.direction) == (term.tag, term.wanted, term.direction):
            if term.weight > other.weight:
                terms[k] = term
            return
    terms.append(term)


def _term(tag: Tag, wanted: bool, weight: float, phrase: str, similarity: float, direction: str | None) -> Term:
    if not tag.graded:
        return Term(tag, wanted, weight, phrase, similarity)
    # Graded: "not high energy" is low energy; an unwanted graded value is wanted low.
    direction = direction or UP
    if not wanted:
        direction = DOWN if direction == UP else UP
    return Term(tag, True, weight, phrase, similarity, direction)


def _match_words(reading: _Reading, matcher: TextMatcher, threshold: float) -> None:
    """Greedy matching of the remaining words' spans to tags (module docstring, pass 4)."""
    words = reading.words
    spans = [(start, length) for start in range(len(words)) for length in range(1, MAX_SPAN + 1)
             if start + length <= len(words) and len({w.clause for w in words[start:start + length]}) == 1
             and len({w.wanted for w in words[start:start + length]}) == 1]
    if not spans:
        return
    phrases = [" ".join(w.text for w in words[s:s + n]) for s, n in spans]
    similarity = matcher.similarities(phrases)
    tags = matcher.vocabulary.tags
    named = {term.tag for term in reading.terms}
    # A graded tag is named only by words after a direction cue or by its own name; "energetic" alone
    # says a tag, "high energy" a value.
    graded = np.array([tag.graded for tag in tags])
    names = [{_stem(w) for w in words_of(tag.label)} for tag in tags]
    for row, (start, length) in enumerate(spans):
        if words[start].direction is None:
            similarity[row, graded] = np.where(similarity[row, graded] >= 0.999, similarity[row, graded], -1)
        # A span sharing a word with a tag's name of several words, without holding all of it, does not name it.
        span = {_stem(w.text) for w in words[start:start + length]}
        for j, name in enumerate(names):
            if len(name) > 1 and span & name and not name <= span:
                similarity[row, j] = -1
    order = sorted(((similarity[r, j], n, r, j) for r, (_, n) in enumerate(spans) for j in range(len(tags))
                    if similarity[r, j] >= threshold), key=lambda x: (-x[0], -x[1]))
    for score, _, row, j in order:
        start, length = spans[row]
        chosen = words[start:start + length]
        if any(w.taken for w in chosen) or tags[j] in named:
            continue
        # Tags with the same name in several groups are all named by it.
        same = [k for k in range(len(tags)) if tags[k].text == tags[j].text and tags[k] not in named]
        start, length = _absorb(spans, similarity, words, start, length, j, threshold)
        chosen = words[start:start + length]
        for w in chosen:
            w.taken = True
        phrase = " ".join(w.text for w in chosen)
        weight = float(np.prod([w.weight for w in chosen]))
        for k in same:
            reading.terms.append(_term(tags[k], chosen[0].wanted, weight, phrase, float(score), chosen[0].direction))
            named.add(tags[k])


def _absorb(spans: list[tuple[int, int]], similarity: np.ndarray, words: list[_Word], start: int, length: int,
            j: int, threshold: float) -> tuple[int, int]:
    """The longest free span around ``(start, length)`` still at least ``threshold`` close to tag ``j``."""
    index = {span: row for row, span in enumerate(spans)}
    best = (start, length)
    for s, n in spans:
        if s <= start and s + n >= start + length and n > best[1] and similarity[index[(s, n)], j] >= threshold \
                and not any(w.taken for w in words[s:s + n]):
            best = (s, n)
    return best


def exact_spans(tokens: list[str], vocabulary: Vocabulary, words: WordList | None = None,
                ) -> dict[int, tuple[int, list[tuple[Tag, bool, str | None]]]]:
    """Where a tag's name or a phrase of the word list is written out: start -> (length, [(tag, absent,
    direction)]) with ``absent`` for a word naming the tag's absence and ``direction`` for a graded value's
    word ("high" or "low", None for its name); longest phrases first, not overlapping. A tag's own name
    wins over a word list phrase of the same words."""
    names: dict[tuple[str, ...], list[tuple[Tag, bool, str | None]]] = {}
    for tag in vocabulary.tags:
        names.setdefault(_key(tag.label), []).append((tag, False, None))
    if words is not None:
        own = set(names)
        for tag in vocabulary.tags:
            for kind, phrases in words.for_tag(tag).items():
                absent, said = kind == "not", {"high": UP, "low": DOWN}.get(kind)
                if not tag.graded and said is not None:
                    absent, said = said == DOWN, None  # "high"/"low" words of a tag: present / absent
                if tag.graded and kind in ("words", "not"):
                    absent, said = False, DOWN if kind == "not" else UP
                for phrase in phrases:
                    key = _key(phrase)
                    if key not in own and (tag, absent, said) not in names.get(key, []):
                        names.setdefault(key, []).append((tag, absent, said))
    stems = [_stem(t) for t in tokens]
    found, used = {}, set()
    for length in sorted({len(n) for n in names}, reverse=True):
        for start in range(len(tokens) - length + 1):
            key = tuple(stems[start:start + length])
            if key in names and not used & set(range(start, start + length)):
                found[start] = (length, names[key])
                used |= set(range(start, start + length))
    # A word beside a phrase that is part of the name of the tag the phrase names goes with it: "guitar
    # distortion" is distorted guitar, and "guitar" is not left to name another tag.
    grown = {}
    for start, (length, tags) in sorted(found.items()):
        name = {_stem(w) for tag, _, _ in tags for w in words_of(tag.label)}
        end = start + length
        if end < len(tokens) and end not in used and stems[end] in name:
            used.add(end)
            end += 1
        if start > 0 and start - 1 not in used and stems[start - 1] in name:
            used.add(start - 1)
            start -= 1
        grown[start] = (end - start, tags)
    return dict(sorted(grown.items()))


def _key(text: str) -> tuple[str, ...]:
    return tuple(_stem(w) for w in words_of(text))


def _tempo_rules(text: str) -> tuple[str, list[TempoRange]]:
    rules = []
    for pattern, kind in _TEMPO_PATTERNS:
        def found(match: re.Match, kind: str = kind) -> str:
            numbers = [float(x) for x in match.groups() if x is not None]
            for bpm in numbers:
                if not 0 < bpm <= 1000:
                    raise ValueError(f"query: tempo {bpm:g} bpm in {match.group(0)!r} is not a tempo")
            phrase = match.group(0).strip()
            if kind == "between":
                low, high = sorted(numbers)
                rules.append(TempoRange(low, high, phrase))
            elif kind == "above":
                rules.append(TempoRange(numbers[0], None, phrase))
            elif kind == "below":
                rules.append(TempoRange(None, numbers[0], phrase))
            else:
                bpm = numbers[0]
                rules.append(TempoRange(round(bpm * (1 - TEMPO_TOLERANCE), 2), round(bpm * (1 + TEMPO_TOLERANCE), 2),
                                        phrase))
            return " , "
        text = re.sub(pattern, found, text)
    return text, rules


def words_of(text: str, keep_breaks: bool = False) -> list[str]:
    """Lower-case words of ``text``; hyphens, underscores and slashes split words ("lo-fi" -> "lo fi")."""
    text = re.sub(r"[-_/–]", " ", text.lower())
    return re.findall(r"[a-z0-9]+|[,;.!?]" if keep_breaks else r"[a-z0-9]+", text)


def _stem(word: str) -> str:
    """A final plural s dropped ("drums" -> "drum"), on both sides of a comparison."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word
