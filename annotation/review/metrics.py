"""What the corrections say about the model's tags: precision against threshold among the judged tracks, and
an unbiased estimate of a tag's precision from a random sample of the tracks it was given ("verify a sample").

Reviewers choose what they look at (the review-next queue picks the unsure), so the curve describes the
judged tracks, not the catalog. The sample does: for each tag, the tracks the machine gave it are put in a
random order fixed by the tag's name and the run's ids, and the first N are the sample; asking for more
extends it, keeping the tracks already judged. Its precision is the share of judged sample tracks whose tag
was right, with a Wilson score interval (Wilson 1927), which stays inside [0, 1] and is honest at small N.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from annotation.review.run import Run
from annotation.review.store import Store
from tagging.labels import MULTILABEL

Z95 = 1.959963984540054
MAX_POINTS = 100


def truth(run: Run, i: int, group: str, j: int, action: str) -> bool | None:
    """Whether a tag applies according to a correction: a confirm says the machine's decision stands, an add
    that it applies, a remove that it does not; None for other actions."""
    if action == "confirm":
        return bool(run.decided[group][i, j])
    if action in ("add", "remove"):
        return action == "add"
    return None


def precision_curves(run: Run, store: Store) -> dict[str, dict[str, list[dict]]]:
    """Per judged tag: precision of "probability >= t" among its judged tracks, at each probability one of
    them has (highest first; at most `MAX_POINTS` of them, evenly spaced), with the number of judged tracks
    at or above it."""
    judged: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for (track, group, tag), row in store.effective().items():
        if row.action in ("confirm", "add", "remove") and track in run.index:
            judged.setdefault((group, tag), []).append((run.index[track], row.action))
    curves: dict[str, dict[str, list[dict]]] = {}
    for (group, tag), items in sorted(judged.items()):
        spec = run.labels.groups.get(group)
        if spec is None or spec.type != MULTILABEL:
            continue
        j = spec.labels.index(tag)
        rows = np.array([i for i, _ in items])
        actions = np.array([action for _, action in items])
        right = np.where(actions == "confirm", run.decided[group][rows, j], actions == "add")  # as `truth` says
        p = run.probabilities[group][rows, j]
        known = ~np.isnan(p)
        p, right = p[known], right[known]
        order = np.argsort(-p, kind="stable")
        p, hits = p[order], np.cumsum(right[order])
        ends = np.flatnonzero(np.append(p[1:] != p[:-1], True))  # tied probabilities enter together
        if len(ends) > MAX_POINTS:  # more than a small chart shows: evenly spaced ones, the last kept
            ends = ends[np.unique(np.linspace(0, len(ends) - 1, MAX_POINTS).round().astype(int))]
        curves.setdefault(group, {})[tag] = [{"threshold": float(p[k]), "precision": float(hits[k] / (k + 1)),
                                              "n": int(k + 1)} for k in ends]
    return curves


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion; (0, 1) without trials."""
    if trials == 0:
        return 0.0, 1.0
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def sample(run: Run, store: Store, group: str, tag: str, n: int) -> dict:
    """The first ``n`` tracks of the tag's fixed random order among those the machine gave it, how each was
    judged, and the precision they give with its 95 % interval."""
    spec = run.labels.groups.get(group)
    if spec is None or spec.type != MULTILABEL or tag not in spec.labels:
        raise ValueError(f"{group}/{tag} is not a tag of a tag group in the vocabulary")
    if n < 1:
        raise ValueError(f"the sample size must be >= 1, got {n}")
    j = spec.labels.index(tag)
    given = np.flatnonzero(run.decided[group][:, j] & ~run.failed)
    seed = int.from_bytes(hashlib.sha256(f"{group}/{tag}".encode()).digest()[:8], "little")
    order = given[np.random.default_rng(seed).permutation(len(given))] if len(given) else given
    state = store.effective()
    tracks, right, judged = [], 0, 0
    for i in order[:n]:
        track = run.ids[i]
        row = state.get((track, group, tag))
        verdict = None if row is None else truth(run, int(i), group, j, row.action)
        if verdict is not None:
            judged += 1
            right += verdict
        tracks.append({"id": track, "probability": float(run.probabilities[group][i, j]), "right": verdict})
    low, high = wilson(right, judged)
    return {"group": group, "tag": tag, "given": len(given), "tracks": tracks, "judged": judged, "right": right,
            "precision": right / judged if judged else None, "interval": [low, high]}
