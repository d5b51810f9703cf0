"""Recommendations a listener can steer and understand: facet sliders, modes and explanations
(`recsys.exposure` re-ranks them for fair exposure).

The mixer scores item i for a query (a listener, or a seed track) as a sum of terms:

    score = w_cf · cf_z + Σ_j taste · ẑ_j · z_ij + Σ_j slider_j(i) + w_nov · novelty_z_i

- ``cf_z``: the collaborative score (x_uᵀy_i, or the cosine to a seed track) standardised over the
  catalog for this query, so its scale is that of the other terms whatever the norm of x_u.
- ``z_ij``: column j of the caller's item-by-label matrix (e.g. predicted tag scores from
  ``tagging.data.features``), standardised over the catalog; columns are ``(group, label)`` pairs and
  nothing here knows which groups exist.
- ``ẑ_j``: the listener's profile in that space, the play-weighted mean of the attributes of what they
  played (a seed track's own attributes), standardised with the catalog's mean and spread.
- sliders: a weight w on a column adds w·z_ij (tracks with more of it move up); a range (low, high) on
  a column subtracts the distance of a_ij outside the range, in catalog standard deviations.
- novelty of an item = 1 − log(1 + plays_i) / log(1 + max plays): 0 for the most played, 1 for unplayed.

An explanation is that sum, term by term, for one (query, item) pair. Ranking is a dense pass over the
catalog per batch of queries (``batch × n_items`` floats), fine up to a few hundred thousand items.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .recommend import Recommender

__all__ = ["MODES", "Explanation", "Mixer", "novelty"]

# Slider presets of the modes; "deep_cuts" also keeps only one artist's tracks, "similar" queries
# with a seed track instead of the listener.
MODES: dict[str, dict] = {
    "explore": {"novelty": 1.0},
    "popular": {"novelty": -1.0},
    "deep_cuts": {"novelty": 1.0},
    "similar": {},
}
NOVELTY = "novelty"
_SCORES_PER_BLOCK = 1 << 22  # users x items scores held at once (float64: 32 MB)
COLLABORATIVE = "collaborative"


def novelty(item_plays: np.ndarray) -> np.ndarray:
    """1 − log(1 + plays) / log(1 + max plays), per item: 0 for the most played item, 1 for an unplayed one."""
    plays = np.asarray(item_plays, dtype=np.float64)
    if plays.size and plays.min() < 0:
        raise ValueError(f"play counts must be >= 0, got {plays.min()}")
    top = np.log1p(plays.max(initial=0.0))
    return 1.0 - np.log1p(plays) / top if top > 0 else np.ones_like(plays)


@dataclass(frozen=True)
class Explanation:
    """Why ``item`` scored ``score``: ``terms`` maps ``"collaborative"``, ``"novelty"`` and each facet
    ``"group/label"`` to its part of the score (largest first by size; they add up to ``score``);
    ``top`` the few facets that raised it most; ``shares`` each term's share of Σ|terms|."""

    item: int
    score: float
    terms: dict[str, float]
    top: list[str]
    shares: dict[str, float]
    cold: bool
    sentence: str


@dataclass(frozen=True)
class _Query:
    factors: np.ndarray  # (n, f)
    profile: np.ndarray  # (n, n_columns), standardised
    cosine: bool


class Mixer:
    """Steerable, explainable ranking on top of a :class:`Recommender`.

    Args:
        recommender: factors of listeners and items.
        attributes: ``(n_items, n_columns)`` item-by-label values (predicted tag scores, tempo, ...).
        columns: ``(group, label)`` of each column; sliders name a group, a ``"group/label"`` or a label
            found in one group only.
        item_plays: ``(n_items,)`` play counts, for novelty; without them novelty sliders raise.
        artists: ``(n_items,)`` artist of each item (None/NaN unknown); without them ``deep_cuts`` raises.
        cold: ``(n_items,)`` True for items nobody has played (their factors come from content).
        taste: weight of the listener-profile terms; default 1/√n_columns, which keeps their sum on
            the scale of the standardised collaborative score.
        collaborative: weight w_cf of the collaborative term.
    """

    def __init__(self, recommender: Recommender, attributes: np.ndarray, columns: Sequence[tuple[str, str]],
                 item_plays: np.ndarray | None = None, artists: Sequence | None = None,
                 cold: np.ndarray | None = None, *, taste: float | None = None, collaborative: float = 1.0):
        attributes = np.asarray(attributes, dtype=np.float64)
        columns = [(str(group), str(label)) for group, label in columns]
        n_items = recommender.n_items
        if attributes.shape != (n_items, len(columns)):
            raise ValueError(f"attributes has shape {attributes.shape}, expected ({n_items}, {len(columns)}) "
                             f"for the recommender's items and the {len(columns)} columns")
        if len(set(columns)) != len(columns):
            raise ValueError("columns repeat a (group, label)")
        for name, value in (("item_plays", item_plays), ("artists", artists), ("cold", cold)):
            if value is not None and len(value) != n_items:
                raise ValueError(f"{name} has {len(value)} entries for {n_items} items")
        self.recommender = recommender
        self.columns = columns
        self.attributes = attributes
        self.mean = attributes.mean(axis=0)
        spread = attributes.std(axis=0)
        self.spread = np.where(spread > 0, spread, 1.0)  # a constant column carries no signal: z = 0
        self.z = ((attributes - self.mean) / self.spread).astype(np.float32)
        self.novelty = None if item_plays is None else novelty(item_plays)
        self.artists = None if artists is None else pd.Series(list(artists), dtype=object)
        self.cold = np.zeros(n_items, bool) if cold is None else np.asarray(cold, dtype=bool)
        self.taste = 1 / math.sqrt(max(len(columns), 1)) if taste is None else float(taste)
        self.collaborative = float(collaborative)

    # ---- public API ----------------------------------------------------------------------------------

    def recommend(self, userid, user_items: sp.csr_matrix, N: int = 10, filter_already_liked_items: bool = True,
                  filter_items=None, recalculate_user: bool = False, items=None, *, sliders: Mapping | None = None,
                  mode: str | None = None, artist=None, track: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """implicit's ``recommend`` (same arguments, int32 ids, float32 scores) with the mixer's score.

        ``sliders`` map facets to weights or ranges, e.g. ``{"energy": 0.5, "tempo": (120, 140),
        "genre": {"folk": 1.0, "metal": -1.0}, "novelty": 0.7}``; ``mode`` adds a preset of
        :data:`MODES` under them: ``"explore"`` (novel tracks up), ``"popular"``, ``"deep_cuts"`` (only
        ``artist``'s tracks, least played first; needs ``artists``), ``"similar"`` (like item ``track``).
        ``user_items`` rows are the listeners' plays: they build the taste profile and are filtered.
        """
        scalar = np.ndim(userid) == 0
        users = np.atleast_1d(np.asarray(userid))
        if not sp.issparse(user_items) or user_items.shape[0] != len(users):
            raise ValueError("user_items must be a sparse matrix with one row per requested user")
        block = max(1, _SCORES_PER_BLOCK // self.recommender.n_items)
        if len(users) > block:
            # Scores are dense (users x items): many users are ranked a block at a time, in bounded memory.
            user_items = sp.csr_matrix(user_items)
            parts = [self.recommend(users[lo:lo + block], user_items[lo:lo + block], N, filter_already_liked_items,
                                    filter_items, recalculate_user, items, sliders=sliders, mode=mode,
                                    artist=artist, track=track) for lo in range(0, len(users), block)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        user_items = self._pad(user_items)
        query = self._query(users, user_items, recalculate_user, mode, track)
        weights, ranges, novelty_weight = self._resolve(sliders, mode)
        scores = self._score(query, weights, ranges, novelty_weight)
        allowed = np.ones(self.recommender.n_items, dtype=bool)
        if items is not None and filter_items is not None:
            raise ValueError("give items or filter_items, not both (as in implicit)")
        if items is not None:
            allowed[:] = False
            allowed[self.recommender._check_items(items)] = True
        if filter_items is not None:
            allowed[self.recommender._check_items(filter_items)] = False
        if mode == "deep_cuts":
            allowed &= self._artist_items(artist)
        if track is not None:
            allowed[track] = False  # a track is not its own recommendation
        scores[:, ~allowed] = -np.inf
        if filter_already_liked_items:
            liked = user_items.tocoo()
            scores[liked.row, liked.col] = -np.inf
        N = min(N, scores.shape[1])
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :N]
        best = np.take_along_axis(scores, ids, axis=1).astype(np.float32)
        ids = np.where(np.isneginf(best), -1, ids).astype(np.int32)
        if scalar:
            keep = ids[0] >= 0
            return ids[0][keep], best[0][keep]
        return ids, best

    def explain(self, userid, user_items: sp.csr_matrix, itemid: int, *, sliders: Mapping | None = None,
                mode: str | None = None, track: int | None = None, recalculate_user: bool = False,
                top: int = 3) -> Explanation:
        """The score of item ``itemid`` for one listener (or seed ``track``), term by term, and a sentence.

        Same arguments as :meth:`recommend` for one user. The facets named are the ``top`` largest
        positive facet terms (taste and slider parts of a column together); for a ``cold`` item the
        sentence says its attributes are predicted and the item has no plays yet.
        """
        user_items = self._pad(sp.csr_matrix(user_items))
        if user_items.shape[0] != 1:
            raise ValueError("explain takes one user: user_items must have one row")
        query = self._query(np.atleast_1d(userid), user_items, recalculate_user, mode, track)
        weights, ranges, novelty_weight = self._resolve(sliders, mode)
        cf = self.collaborative * self._collaborative(query)[0, itemid]
        per_column = (self.taste * query.profile[0] + weights) * self.z[itemid] + self._range_terms(ranges, [itemid])[0]
        terms = {COLLABORATIVE: float(cf)}
        terms.update({f"{g}/{label}": float(v) for (g, label), v in zip(self.columns, per_column, strict=True)})
        if novelty_weight:
            terms[NOVELTY] = float(novelty_weight * self._novelty_z()[itemid])
        terms = dict(sorted(terms.items(), key=lambda kv: -abs(kv[1])))
        total = sum(abs(v) for v in terms.values()) or 1.0
        shares = {name: abs(v) / total for name, v in terms.items()}
        raised = [name for name, v in terms.items() if name != COLLABORATIVE and v > 0][:top]
        cold = bool(self.cold[itemid])
        # A facet can raise the score because the track has little of what the listener avoids: say so.
        below = {f"{g}/{label}" for (g, label), z in zip(self.columns, self.z[itemid], strict=True) if z < 0}
        return Explanation(item=int(itemid), score=float(sum(terms.values())), terms=terms, top=raised,
                           shares=shares, cold=cold,
                           sentence=_sentence(raised, shares, cold, track is not None, below))

    # ---- scoring ------------------------------------------------------------------------------------

    def _pad(self, user_items: sp.spmatrix) -> sp.csr_matrix:
        user_items = sp.csr_matrix(user_items, dtype=np.float64)
        n_items = self.recommender.n_items
        if user_items.shape[1] > n_items:
            raise ValueError(f"user_items has {user_items.shape[1]} item columns, the model {n_items}")
        # Items added to the recommender later were never played: their columns are empty.
        return sp.csr_matrix((user_items.data, user_items.indices, user_items.indptr),
                             shape=(user_items.shape[0], n_items))

    def _query(self, users, user_items, recalculate_user, mode, track) -> _Query:
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
        if (mode == "similar") != (track is not None):
            raise ValueError("mode 'similar' needs track=<item index>, and track goes with mode 'similar' only")
        if track is not None:
            factors = self.recommender.item_factors[[track]]
            profile = self.z[[track]].astype(np.float64)
            return _Query(np.repeat(factors, len(users), axis=0), np.repeat(profile, len(users), axis=0), True)
        if recalculate_user:
            factors = np.atleast_2d(self.recommender.recalculate_user(users, user_items))
        else:
            if users.size and (users.min() < 0 or users.max() >= self.recommender.n_users):
                raise IndexError(f"user index out of range [0, {self.recommender.n_users}): {users}")
            factors = self.recommender.user_factors[users]
        played = np.asarray(user_items.sum(axis=1)).ravel()
        mean = np.asarray(user_items @ self.attributes) / np.where(played > 0, played, 1.0)[:, None]
        # A listener with no plays has the catalog's average taste: no pull either way.
        profile = np.where(played[:, None] > 0, (mean - self.mean) / self.spread, 0.0)
        return _Query(factors, profile, False)

    def _collaborative(self, query: _Query) -> np.ndarray:
        """``(n, n_items)`` collaborative scores standardised over the catalog, per query."""
        items = self.recommender.item_factors.astype(np.float64)
        if query.cosine:
            norms = np.linalg.norm(items, axis=1)
            items = items / np.where(norms > 0, norms, 1.0)[:, None]
        raw = query.factors.astype(np.float64) @ items.T
        spread = raw.std(axis=1, keepdims=True)
        return (raw - raw.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)

    def _score(self, query: _Query, weights, ranges, novelty_weight) -> np.ndarray:
        scores = self.collaborative * self._collaborative(query)
        scores += (self.taste * query.profile + weights) @ self.z.T
        scores += self._range_terms(ranges, slice(None)).sum(axis=1)
        if novelty_weight:
            scores += novelty_weight * self._novelty_z()
        return scores

    def _range_terms(self, ranges, rows) -> np.ndarray:
        """``(n_rows, n_columns)``: minus the distance outside each targeted range, in standard deviations."""
        values = self.attributes[rows]
        terms = np.zeros_like(values)
        for column, low, high, weight in ranges:
            outside = np.maximum(np.maximum(low - values[:, column], values[:, column] - high), 0.0)
            terms[:, column] = -weight * outside / self.spread[column]
        return terms

    def _novelty_z(self) -> np.ndarray:
        if self.novelty is None:
            raise ValueError("a novelty slider or mode needs item_plays; this Mixer was built without them")
        spread = self.novelty.std()
        return (self.novelty - self.novelty.mean()) / (spread if spread > 0 else 1.0)

    def _artist_items(self, artist) -> np.ndarray:
        if self.artists is None:
            raise ValueError("mode 'deep_cuts' needs item artists; this Mixer was built without them")
        if artist is None:
            raise ValueError("mode 'deep_cuts' needs artist=<artist id>")
        mine = (self.artists == artist).to_numpy()
        if not mine.any():
            raise ValueError(f"no item of artist {artist!r}")
        return mine

    def _resolve(self, sliders: Mapping | None, mode: str | None):
        """Sliders -> per-column weights ``(n_columns,)``, ranges ``[(column, low, high, weight)]``, novelty."""
        merged = {**MODES.get(mode or "", {}), **dict(sliders or {})}
        weights = np.zeros(len(self.columns))
        ranges = []
        novelty_weight = 0.0
        groups = {group for group, _ in self.columns}
        for key, value in merged.items():
            if key == NOVELTY:
                novelty_weight = float(value)
                continue
            if key in groups and isinstance(value, Mapping):
                targets = [(self._column(f"{key}/{label}"), v) for label, v in value.items()]
            else:
                targets = [(self._column(key), value)]
            for column, target in targets:
                if isinstance(target, tuple | list):
                    low, high, *weight = target
                    if low > high or len(weight) > 1:
                        raise ValueError(f"slider {key!r}: a range is (low, high[, weight]) with low <= high, "
                                         f"got {target}")
                    ranges.append((column, float(low), float(high), float(weight[0]) if weight else 1.0))
                else:
                    weights[column] += float(target)
        if novelty_weight:
            self._novelty_z()  # says clearly that plays are missing
        return weights, ranges, novelty_weight

    def _column(self, key: str) -> int:
        group, _, label = key.rpartition("/")
        found = [j for j, (g, lab) in enumerate(self.columns) if lab == label and (not group or g == group)]
        if len(found) == 1:
            return found[0]
        if not found:
            groups = sorted({g for g, _ in self.columns})
            raise ValueError(f"no facet {key!r}: name a group ({', '.join(groups)}) with a dict of labels, "
                             f"a 'group/label' or a label, or 'novelty'")
        raise ValueError(f"label {label!r} is in groups {[self.columns[j][0] for j in found]}: say 'group/{label}'")


def _sentence(raised: list[str], shares: dict[str, float], cold: bool, seeded: bool, below: set[str]) -> str:
    names = [("lack of " if name in below else "") + (name.rpartition("/")[2] if "/" in name else name)
             for name in raised]
    facets = ", ".join(names) if names else "no single facet"
    facet_share = sum(shares[name] for name in raised)
    if cold:
        return (f"New track, no plays yet: suggested for its predicted {facets} "
                f"({facet_share:.0%} of the score).")
    who = "listeners of that track" if seeded else "listeners with your taste"
    return (f"Suggested for its {facets} ({facet_share:.0%} of the score); "
            f"{shares[COLLABORATIVE]:.0%} from {who}.")
