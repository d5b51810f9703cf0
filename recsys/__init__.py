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
from .exposure import Reranked, gini, list_metrics, long_tail_mask, rerank, run_metrics
from .interactions import MUSIC4ALL, Interactions, LoadReport, load_interactions
from .mixer import MODES, Explanation, Mixer, novelty
from .recommend import DEFAULT_CHUNK_SIZE, Recommender, topk
from .wmf import WMF, load_npz, save_npz

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MODES",
    "MUSIC4ALL",
    "SPLITS",
    "WMF",
    "ColdStartSplit",
    "Explanation",
    "Interactions",
    "LoadReport",
    "Mixer",
    "Recommender",
    "Reranked",
    "artist_prior",
    "baseline_metrics",
    "evaluate_cold_start",
    "gini",
    "list_metrics",
    "load_interactions",
    "load_npz",
    "long_tail_mask",
    "make_cold_start_split",
    "metrics_table",
    "novelty",
    "paired_ranking_difference",
    "ranking_metrics",
    "rerank",
    "run_metrics",
    "save_npz",
    "topk",
]
