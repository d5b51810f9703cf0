"""Tagging metrics as torchmetrics states, so that DDP gathers every prediction exactly once.

Kept apart from `tagging.labels` so that loading a model to annotate does not import torchmetrics.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc, binary_average_precision
from torchmetrics.functional.regression import spearman_corrcoef
from torchmetrics.utilities import dim_zero_cat

from tagging.labels import LabelGroup, f1_optimal_thresholds, nanmean


class MultilabelScores(Metric):
    """Macro and per-tag ROC-AUC / PR-AUC of one multilabel group, plus F1-optimal thresholds.

    Predictions are gathered whole (``cat`` state), so the numbers are exact and DDP-synced. A tag
    with no positive or no negative example among the annotated tracks has no AUC; it is left out of
    the macro average and reported as NaN.
    """

    full_state_update = False

    def __init__(self, labels: list[str]):
        super().__init__()
        self.labels = list(labels)
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        annotated = ~torch.isnan(targets).all(dim=1)
        self.probs.append(probs[annotated].detach().float())
        self.targets.append(targets[annotated].detach().float())

    def compute(self) -> dict:
        probs, targets = dim_zero_cat(self.probs).cpu(), dim_zero_cat(self.targets).cpu()
        roc, pr = [], []
        for tag in range(len(self.labels)):
            t = targets[:, tag]
            keep = ~torch.isnan(t)
            t, p = t[keep].long(), probs[keep, tag]
            if len(t) == 0 or t.min() == t.max():
                roc.append(math.nan)
                pr.append(math.nan)
                continue
            roc.append(float(binary_auroc(p, t)))
            pr.append(float(binary_average_precision(p, t)))
        return {
            "roc_auc": nanmean(roc), "pr_auc": nanmean(pr), "tracks": len(probs),
            "per_tag": {"roc_auc": roc, "pr_auc": pr},
            "thresholds": f1_optimal_thresholds(probs, targets) if len(probs) else torch.full(
                (len(self.labels),), 0.5),
        }


class GradedScores(Metric):
    """Mean absolute error (in the labels' own units) and Spearman correlation per graded label."""

    full_state_update = False

    def __init__(self, group: LabelGroup):
        super().__init__()
        self.labels = list(group.labels)
        self.register_buffer("low", torch.tensor([r[0] for r in group.ranges], dtype=torch.float32))
        self.register_buffer("span", torch.tensor([r[1] - r[0] for r in group.ranges], dtype=torch.float32))
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        self.preds.append(preds.detach().float())
        self.targets.append(targets.detach().float())

    def compute(self) -> dict:
        preds, targets = dim_zero_cat(self.preds), dim_zero_cat(self.targets)
        mae, rho = [], []
        for i in range(len(self.labels)):
            keep = ~torch.isnan(targets[:, i])
            p, t = preds[keep, i], targets[keep, i]
            if len(t) < 2:
                mae.append(math.nan)
                rho.append(math.nan)
                continue
            # In float64, so the mean does not depend on the order in which processes gathered the rows.
            mae.append(float((p - t).abs().double().mean() * self.span[i]))
            rho.append(float(spearman_corrcoef(p, t)) if t.std() > 0 and p.std() > 0 else math.nan)
        return {"mae": mae, "spearman": rho, "spearman_mean": nanmean(rho), "tracks": len(preds)}
