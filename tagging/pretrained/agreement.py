"""How closely a student tagger follows its teacher, track by track, and per-tag thresholds without labels.

Every function takes track-level probabilities ``(tracks, tags)`` of one vocabulary, the teacher's and the
student's in the same tag order. The rules are fixed here, before any student is scored:

- A tag *varies* on a set of tracks when the teacher's probabilities of it have a standard deviation of at
  least `MIN_STD` (two points of probability) across them; a rank correlation of a tag the teacher gives
  every track alike measures noise.
- `spearman_per_tag`: Spearman's rank correlation of student and teacher across tracks, per varying tag.
- `top_k_overlap`: per track, how many of the teacher's ``k`` most probable tags are among the student's.
- `decided_auc`: macro ROC-AUC of the student's probabilities against the tags the teacher decides (its
  per-tag thresholds), over tags decided on some but not all tracks.
- `expected_share_thresholds`: the per-tag thresholds a package ships without labels: each tag is decided
  on the share of the corpus's tracks equal to the tag's mean probability there (the model's own expected
  frequency), so a tag the model finds on a fifth of the music on average is decided on the fifth where it
  is most probable.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

MIN_STD = 0.02


def varying_tags(teacher: np.ndarray, min_std: float = MIN_STD) -> np.ndarray:
    """Indices of the tags whose teacher probabilities vary across the tracks (see the module notes)."""
    return np.flatnonzero(np.asarray(teacher).std(axis=0) >= min_std)


def spearman_per_tag(student: np.ndarray, teacher: np.ndarray, tags: np.ndarray | None = None) -> np.ndarray:
    """Spearman's rho between student and teacher across tracks, one value per tag of ``tags`` (default: the
    varying ones); NaN where either side is constant on these tracks."""
    student, teacher = np.asarray(student, dtype=float), np.asarray(teacher, dtype=float)
    tags = varying_tags(teacher) if tags is None else np.asarray(tags)
    values = []
    for tag in tags:
        a, b = rankdata(student[:, tag]), rankdata(teacher[:, tag])
        a, b = a - a.mean(), b - b.mean()
        denominator = np.sqrt((a * a).sum() * (b * b).sum())
        values.append((a * b).sum() / denominator if denominator > 0 else np.nan)
    return np.array(values)


def top_k_overlap(student: np.ndarray, teacher: np.ndarray, k: int = 3) -> np.ndarray:
    """Per track, the number of the teacher's top-``k`` tags that are among the student's top ``k``."""
    student, teacher = np.asarray(student), np.asarray(teacher)
    if not 1 <= k <= student.shape[1]:
        raise ValueError(f"k must be in [1, {student.shape[1]}], got {k}")
    top_s = np.argsort(-student, axis=1, kind="stable")[:, :k]
    top_t = np.argsort(-teacher, axis=1, kind="stable")[:, :k]
    return np.array([len(set(s) & set(t)) for s, t in zip(top_s, top_t, strict=True)], dtype=float)


def decided_auc(student: np.ndarray, decided: np.ndarray) -> float:
    """Macro ROC-AUC of ``student`` probabilities against the teacher's decided tags ``(tracks, tags)`` of 0/1,
    over the tags decided on some but not all tracks; NaN if there is none."""
    student, decided = np.asarray(student), np.asarray(decided).astype(bool)
    scores = [roc_auc_score(decided[:, tag], student[:, tag]) for tag in range(decided.shape[1])
              if 0 < decided[:, tag].sum() < len(decided)]
    return float(np.mean(scores)) if scores else float("nan")


def expected_share_thresholds(probabilities: np.ndarray) -> np.ndarray:
    """Per tag, the threshold that decides the tag on a share of these tracks equal to its mean probability:
    the midpoint between the last track decided and the first not, ranked by probability. A tag whose mean
    rounds to no track gets a threshold above every track's probability (capped at 1)."""
    probabilities = np.asarray(probabilities, dtype=float)
    tracks = len(probabilities)
    thresholds = np.empty(probabilities.shape[1])
    for tag in range(probabilities.shape[1]):
        ranked = np.sort(probabilities[:, tag])[::-1]
        decided = round(ranked.mean() * tracks)
        if decided == 0:
            thresholds[tag] = min(1.0, ranked[0] + 1e-6)
        elif decided >= tracks:
            thresholds[tag] = ranked[-1]
        else:
            thresholds[tag] = (ranked[decided - 1] + ranked[decided]) / 2
    return thresholds
