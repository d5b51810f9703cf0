"""Content -> collaborative-filtering factors, by late fusion.

Oramas, Nieto, Sordo & Serra, "A Deep Multimodal Approach for Cold-start Music Recommendation"
(DLRS @ RecSys 2017): one dense branch per input (batch norm, ReLU, 50 % dropout), the branches
concatenated and mapped by one dense layer to the factor dimension, L2-normalised, trained with the
cosine distance to the item factors of weighted matrix factorisation. A track that lacks an input
(no lyrics, no cover) has that branch's output set to zero, so one model serves every subset.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn


def cosine_distance(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(batch, f), (batch, f) -> (batch,)`` one minus the cosine similarity."""
    return 1.0 - F.cosine_similarity(predicted.float(), target.float(), dim=-1, eps=1e-8)


class LateFusionRegressor(nn.Module):
    """``{input: (batch, dim_input)}`` (+ presence masks) -> ``(batch, n_factors)`` unit vectors.

    Args:
        input_dims: size of each input vector, by name (e.g. ``{"audio": 256, "mlg": 28}``); the order
            is part of the model.
        n_factors: dimension of the collaborative factors to regress.
        hidden: width of each input's dense branch.
        dropout: dropout after each branch (0.5 in the paper).
    """

    def __init__(self, input_dims: dict[str, int], n_factors: int, hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        if not input_dims:
            raise ValueError("input_dims is empty: the fusion model needs at least one input")
        for name, dim in input_dims.items():
            if dim < 1:
                raise ValueError(f"input_dims[{name!r}] must be >= 1, got {dim}")
        if n_factors < 1:
            raise ValueError(f"n_factors must be >= 1, got {n_factors}")
        self.config = {"input_dims": dict(input_dims), "n_factors": n_factors, "hidden": hidden,
                       "dropout": dropout}
        self.branches = nn.ModuleDict({
            name: nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout))
            for name, dim in input_dims.items()})
        self.output = nn.Linear(hidden * len(input_dims), n_factors)

    @property
    def inputs(self) -> list[str]:
        return list(self.branches)

    def forward(self, inputs: dict[str, torch.Tensor],
                present: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``present[name]`` is a ``(batch,)`` boolean mask; an absent input may also be left out of
        ``inputs`` entirely (then it is absent for the whole batch)."""
        reference = next(iter(inputs.values()))
        batch = reference.shape[0]
        parts = []
        for name, branch in self.branches.items():
            hidden = branch[0].out_features
            mask = present.get(name) if present and name in inputs else None
            if name not in inputs:
                parts.append(reference.new_zeros(batch, hidden))
            elif mask is None:
                parts.append(branch(inputs[name]))  # (batch, hidden)
            else:
                # Only the rows that have the input go through the branch, so absent rows (often NaN
                # placeholders) never reach batch norm's statistics; they stay zero.
                rows = mask.nonzero().squeeze(1)
                # Batch norm cannot train on a single row, so a lone present row is treated as absent.
                if len(rows) == 0 or (self.training and len(rows) == 1):
                    parts.append(reference.new_zeros(batch, hidden))
                    continue
                out = branch(inputs[name][rows])
                parts.append(out.new_zeros(batch, hidden).index_copy(0, rows, out))
        return F.normalize(self.output(torch.cat(parts, dim=1)), dim=1)  # (batch, n_factors)

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  directory / "model.safetensors")
        (directory / "config.json").write_text(json.dumps(self.config, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu") -> LateFusionRegressor:
        directory = Path(directory)
        if not (directory / "config.json").is_file() or not (directory / "model.safetensors").is_file():
            raise FileNotFoundError(f"{directory}: not a saved LateFusionRegressor")
        model = cls(**json.loads((directory / "config.json").read_text()))
        model.load_state_dict(load_file(directory / "model.safetensors", device=map_location))
        return model.eval()
