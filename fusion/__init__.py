"""Content -> collaborative factors: the cold-start stage that joins ``tagging`` and ``recsys``.

A late-fusion network (Oramas, Nieto et al., DLRS 2017) regresses a track's WMF item factors from its
content, so a track nobody has played gets recommendations. ``fusion.ablation`` reproduces the paper's
table on a catalog; `ColdStartPipeline` packages the chosen model for new tracks. The models and the
pipeline import no Lightning; only ``fusion.lightning`` and ``fusion.ablation`` do.
"""

from fusion.model import AudioFactorRegressor, LateFusionRegressor, cosine_distance
from fusion.pipeline import ColdStartPipeline

__all__ = ["AudioFactorRegressor", "ColdStartPipeline", "LateFusionRegressor", "cosine_distance"]
