"""Tagging from whatever a track has: audio, lyrics, cover, fused.

Oramas, Nieto, Barbieri & Serra, "Multi-label Music Genre Classification From Audio, Text, and Images
Using Deep Features" (ISMIR 2017): each modality is first turned into an embedding by its own network
(here the audio tagger, a sentence transformer and an image CNN, frozen), then a small network learns
to tag from the embeddings together. We fuse by a masked mean of per-modality projections, so a track
with any subset of modalities gets a prediction, and train with modality dropout so that every subset
is one the model has seen.
"""

from __future__ import annotations

import torch
from torch import nn

from tagging.models.tagger import TaggerBase


class MultimodalTagger(TaggerBase):
    """``{modality: (batch, dim)}`` embeddings + ``{modality: (batch,)}`` presence -> logits per group.

    Args:
        vocab: label vocabulary (see `tagging.labels`).
        input_dims: embedding size per modality, e.g. ``{"audio": 256, "lyrics": 384, "cover": 1280}``.
        hidden: size of the shared space the modalities are projected into (the fused embedding).
        dropout: dropout in the projections and before the heads.
        modality_dropout: in training, the chance of hiding each present modality (one is always kept).
    """

    def __init__(self, vocab: dict, input_dims: dict[str, int], hidden: int = 256, dropout: float = 0.3,
                 modality_dropout: float = 0.3):
        super().__init__()
        if not input_dims:
            raise ValueError("input_dims is empty: name at least one modality and its embedding size")
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        self.config = {"vocab": vocab, "input_dims": dict(input_dims), "hidden": hidden, "dropout": dropout,
                       "modality_dropout": modality_dropout}
        self.modality_dropout = modality_dropout
        self.projections = nn.ModuleDict({
            name: nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout))
            for name, dim in input_dims.items()})
        self.mix = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU())
        self._init_heads(vocab, hidden, dropout)

    @property
    def modalities(self) -> list[str]:
        return list(self.projections)

    def presence(self, inputs: dict[str, torch.Tensor],
                 present: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """A boolean ``(batch,)`` mask per modality of the model; a modality missing from ``inputs`` is
        absent for the whole batch, and the masks are thinned by modality dropout in training."""
        batch = next(iter(inputs.values())).shape[0]
        device = next(iter(inputs.values())).device
        masks = {}
        for name in self.projections:
            if name not in inputs:
                masks[name] = torch.zeros(batch, dtype=torch.bool, device=device)
            elif present is not None and name in present:
                masks[name] = present[name].to(device=device, dtype=torch.bool)
            else:
                masks[name] = torch.ones(batch, dtype=torch.bool, device=device)
        if self.training and self.modality_dropout > 0:
            stacked = torch.stack(list(masks.values()), dim=1)  # (batch, modalities)
            keep = torch.rand(stacked.shape, device=device) >= self.modality_dropout
            thinned = stacked & keep
            # A track left with nothing keeps one of its own modalities, chosen at random.
            empty = ~thinned.any(dim=1) & stacked.any(dim=1)
            if empty.any():
                choice = torch.multinomial(stacked[empty].float(), 1).squeeze(1)
                thinned[empty.nonzero().squeeze(1), choice] = True
            masks = {name: thinned[:, i] for i, name in enumerate(masks)}
        return masks

    def forward_features(self, inputs: dict[str, torch.Tensor],
                         present: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``-> (batch, hidden)``: masked mean of the present modalities' projections."""
        masks = self.presence(inputs, present)
        total, count = None, None
        for name, projection in self.projections.items():
            mask = masks[name].unsqueeze(1)
            if not mask.any():
                continue
            # Absent rows may hold NaN or zeros; they are replaced before the projection sees them.
            x = torch.where(mask, inputs[name].float(), torch.zeros_like(inputs[name].float()))
            part = projection(x) * mask  # (batch, hidden)
            total = part if total is None else total + part
            count = mask.float() if count is None else count + mask.float()
        if total is None:
            raise ValueError("no modality is present for any track of the batch")
        if (count == 0).any():
            raise ValueError(f"{int((count == 0).sum())} track(s) of the batch have no modality present")
        return self.mix(total / count)

    def forward(self, inputs: dict[str, torch.Tensor],
                present: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(inputs, present))

    @torch.no_grad()
    def annotate(self, inputs: dict[str, torch.Tensor]) -> dict:
        """One track's embeddings ``{modality: (dim,)}``, any subset -> JSON-ready record, with the
        modalities it used."""
        used = [m for m in self.modalities if inputs.get(m) is not None]
        if not used:
            raise ValueError(f"annotate needs at least one of {self.modalities}, got none")
        was_training = self.training
        self.eval()
        try:
            logits = self({m: inputs[m].unsqueeze(0) for m in used})
        finally:
            self.train(was_training)
        record = self.record({name: value[0] for name, value in self.scores(logits).items()})
        record["modalities"] = used
        return record
