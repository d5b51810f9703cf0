"""A smaller musicnn that starts as its teacher: the front-end filters that count most, with their weights.

Most of musicnn's time goes to its front-end (204 timbral filters per shape over every frame; the
temporal ones are cheaper), so a student keeps the teacher's whole network but only ``front_filters`` of those
filters per timbral shape and a quarter as many per temporal shape (`MusiCNN`'s ``front_filters``). Each filter
is ranked without data, by how much of it reaches the layers that read it (after Li et al., "Pruning filters
for efficient ConvNets", ICLR 2017, who rank by a filter's own weight norm): every front-end convolution ends in
ReLU and batch norm, so a feature's spread is its norm's ``|gamma|``; the mid-end's first convolution reads it
through its weights, and the back-end through the pooling norm (each feature's max and mean) and the dense
layer. A feature's score is ``|gamma| * ||mid-end weights on it|| + sum over its max and mean of |pool gamma|
* ||dense weights on it||``; the best of each filter shape are kept, in their order. With the published number
the student is the teacher (`tests/tagging/test_distil.py`).
"""

from __future__ import annotations

import itertools

import torch

from tagging.models.musicnn import MusiCNN


def feature_scores(backbone: MusiCNN) -> torch.Tensor:
    """``(front-end features,)``: how much of each front-end feature reaches the layers that read it."""
    norms = [block[2].weight.abs() for block in (*backbone.timbral, *backbone.temporal)]
    spread = torch.cat(norms)  # (561,) as published
    mid = backbone.midend[0][0].weight  # (width, 561 + ..., 7)
    through_mid = spread * mid[:, :len(spread)].pow(2).sum(dim=(0, 2)).sqrt()
    dense = backbone.dense[0].weight  # (embedding, 2 * features): each feature's max beside its mean
    pooled = backbone.pool_norm.weight.abs() * dense.pow(2).sum(dim=0).sqrt()
    through_dense = pooled.view(-1, 2).sum(dim=1)[:len(spread)]
    return (through_mid + through_dense).detach()


def kept_filters(backbone: MusiCNN, front_filters: int) -> list[torch.Tensor]:
    """Per front-end block (timbral shapes, then temporal), the indices of the filters a student with
    ``front_filters`` keeps: the best by `feature_scores`, in their original order."""
    timbral, temporal = MusiCNN.front_sizes(front_filters)
    sizes = [block[0].out_channels for block in (*backbone.timbral, *backbone.temporal)]
    wanted = [timbral] * len(backbone.timbral) + [temporal] * len(backbone.temporal)
    scores = feature_scores(backbone).split(sizes)
    return [score.topk(k).indices.sort().values for score, k in zip(scores, wanted, strict=True)]


@torch.no_grad()
def prune_musicnn(backbone: MusiCNN, front_filters: int, n_mels: int) -> MusiCNN:
    """A `MusiCNN` with ``front_filters`` (`MusiCNN`'s argument) whose weights are ``backbone``'s (built for
    ``n_mels`` bands): the kept front-end filters, the mid-end and back-end's weights on them, everything else
    as it was."""
    student = MusiCNN(width=backbone.midend[1][0].out_channels, embedding_dim=backbone.dense[0].out_features,
                      n_mels=n_mels, front_filters=front_filters)
    kept = kept_filters(backbone, front_filters)
    teacher_blocks = (*backbone.timbral, *backbone.temporal)
    for source, target, index in zip(teacher_blocks, (*student.timbral, *student.temporal), kept, strict=True):
        target[0].weight.copy_(source[0].weight[index])
        target[0].bias.copy_(source[0].bias[index])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(target[2], name).copy_(getattr(source[2], name)[index])
        target[2].num_batches_tracked.copy_(source[2].num_batches_tracked)
    sizes = [block[0].out_channels for block in teacher_blocks]
    offsets = [0, *itertools.accumulate(sizes)][:-1]
    front = torch.cat([index + offset for index, offset in zip(kept, offsets, strict=True)])
    # The pooled features: the kept front-end ones, then every mid-end one, each as (max, mean).
    features = torch.cat([front, torch.arange(sum(sizes), backbone.pool_norm.num_features // 2)])
    pooled = torch.stack([2 * features, 2 * features + 1], dim=1).flatten()
    state = backbone.state_dict()
    state["midend.0.0.weight"] = state["midend.0.0.weight"][:, front]
    for name in ("weight", "bias", "running_mean", "running_var"):
        state[f"pool_norm.{name}"] = state[f"pool_norm.{name}"][pooled]
    state["dense.0.weight"] = state["dense.0.weight"][:, pooled]
    own = {k: v for k, v in state.items() if not k.startswith(("timbral.", "temporal."))}
    student.load_state_dict({**student.state_dict(), **own})
    return student
