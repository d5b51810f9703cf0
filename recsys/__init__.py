"""Collaborative filtering: play counts in, WMF item factors out, cold-start recommendation measured.

This package knows nothing of audio; ``fusion`` regresses its item factors from content.
"""

from .evaluation import (
    SPLITS,
    ColdStartSplit,
    artist_prior,
    baseline_metrics,
    evaluate_cold_start,
    make_cold_start_split,
    metrics_table,
    paired_ranking_difference,
    ranking_metrics,
)
from .interactions import MUSIC4ALL, Interactions, LoadReport, load_interactions
from .recommend import DEFAULT_CHUNK_SIZE, Recommender, topk
from .wmf import WMF, load_npz, save_npz

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MUSIC4ALL",
    "SPLITS",
    "WMF",
    "ColdStartSplit",
    "Interactions",
    "LoadReport",
    "Recommender",
    "artist_prior",
    "baseline_metrics",
    "evaluate_cold_start",
    "load_interactions",
    "load_npz",
    "make_cold_start_split",
    "metrics_table",
    "paired_ranking_difference",
    "ranking_metrics",
    "save_npz",
    "topk",
]
