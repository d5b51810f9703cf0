"""Content -> collaborative-filtering factors, by late fusion.

Oramas, Nieto, Sordo & Serra, "A Deep Multimodal Approach for Cold-start Music Recommendation"
(DLRS @ RecSys 2017): one dense branch per input (batch norm, ReLU, 50 % dropout), the branches
concatenated and mapped by one dense layer to the factor dimension, L2-normalised, trained with the
cosine distance to the item factors of weighted matrix factorisation. A track that lacks an input
(no lyrics, no cover) has that branch's output set to zero, so one model serves every subset.

`AudioFactorRegressor` is the paper's end-to-end audio row (after van den Oord, Dieleman & Schrauwen,
"Deep content-based music recommendation", NeurIPS 2013): a CNN on spectrogram patches that regresses
the factors directly, here the project's front-end and short-chunk ResNet with a linear head.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from coldtag.storage import read_package, save_model
from tagging.frontend import Frontend
from tagging.grid import grid_chunks
from tagging.models.backbones import ShortChunkResNet

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRACK_POOLINGS = ("centre", "track")


def cosine_distance(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(batch, f), (batch, f) -> (batch,)`` one minus the cosine similarity."""
    return 1.0 - F.cosine_similarity(predicted.float(), target.float(), dim=-1, eps=1e-8)


class _Packaged(nn.Module):
    """What both models share: ``save_pretrained`` / ``from_pretrained`` with a `coldtag.storage` record."""

    config: dict
    package: dict | None = None  # the package record it was loaded from or last saved as
    package_path: Path | None = None

    def save_pretrained(self, directory: str | Path, inputs: dict | None = None, overwrite: bool = False) -> dict:
        """Weights as safetensors, the constructor's arguments as JSON beside them, and ``package.json``:
        what made the model and, in ``inputs``, which packages produced its input features
        (`coldtag.storage.reference`)."""
        def write(folder: Path) -> None:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, folder / WEIGHTS_FILE)
            (folder / CONFIG_FILE).write_text(json.dumps(self.config, indent=2))
        return save_model(self, directory, write, inputs, overwrite)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu"):
        directory = Path(directory)
        record = read_package(directory, cls.__name__)
        model = cls(**json.loads((directory / CONFIG_FILE).read_text()))
        model.load_state_dict(load_file(directory / WEIGHTS_FILE, device=map_location))
        model.package, model.package_path = record, directory.resolve()
        return model.to(map_location).eval()


class LateFusionRegressor(_Packaged):
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


class AudioFactorRegressor(_Packaged):
    """Waveform patches ``(batch, patch_samples)`` at ``sample_rate`` -> ``(batch, n_factors)`` unit vectors.

    Trained on random patches of ``patch_seconds``; `predict_tracks` scores whole tracks either by their
    centre patch (the paper's "patches" row) or by the mean over the fixed chunk grid of
    `tagging.grid.grid_chunks`, re-normalised (its "full track" row).

    Args:
        n_factors: dimension of the collaborative factors to regress.
        sample_rate, n_fft, hop_length, n_mels: the log-mel front-end (`tagging.frontend.Frontend`).
        width, embedding_dim: the short-chunk ResNet backbone.
        dropout: before the linear head (0.5 in the paper).
        patch_seconds: length of one patch.
        max_chunks: thin the full-track grid to this many patches (None: every patch).
    """

    def __init__(self, n_factors: int, sample_rate: int = 16000, n_fft: int = 512, hop_length: int = 256,
                 n_mels: int = 96, width: int = 32, embedding_dim: int = 256, dropout: float = 0.5,
                 patch_seconds: float = 3.0, max_chunks: int | None = None):
        super().__init__()
        if n_factors < 1:
            raise ValueError(f"n_factors must be >= 1, got {n_factors}")
        if patch_seconds <= 0:
            raise ValueError(f"patch_seconds must be > 0, got {patch_seconds}")
        if max_chunks is not None and max_chunks < 1:
            raise ValueError(f"max_chunks must be >= 1 or None, got {max_chunks}")
        self.config = {"n_factors": n_factors, "sample_rate": sample_rate, "n_fft": n_fft,
                       "hop_length": hop_length, "n_mels": n_mels, "width": width, "embedding_dim": embedding_dim,
                       "dropout": dropout, "patch_seconds": patch_seconds, "max_chunks": max_chunks}
        self.sample_rate = sample_rate
        self.patch_samples = round(patch_seconds * sample_rate)
        self.max_chunks = max_chunks
        self.frontend = Frontend(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
        self.backbone = ShortChunkResNet(width=width, embedding_dim=embedding_dim)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embedding_dim, n_factors))

    def forward_features(self, wave: torch.Tensor) -> torch.Tensor:
        """``(batch, time) -> (batch, embedding_dim)``."""
        return self.backbone(self.frontend(wave))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.forward_features(wave)), dim=1)  # (batch, n_factors)

    def predict_tracks(self, waves: torch.Tensor, lengths: torch.Tensor | None = None, pooling: str = "track",
                       chunk_batch: int = 64) -> torch.Tensor:
        """Whole tracks ``(tracks, time)`` (zero-padded, true ``lengths``) -> ``(tracks, n_factors)``.

        ``pooling="centre"``: the patch in the middle of each track; ``"track"``: the mean of the unit
        predictions over the track's chunk grid, re-normalised.
        """
        if pooling not in TRACK_POOLINGS:
            raise ValueError(f"pooling must be one of {TRACK_POOLINGS}, got {pooling!r}")
        if lengths is None:
            lengths = torch.full((len(waves),), waves.shape[1], dtype=torch.long)
        max_chunks = 1 if pooling == "centre" else self.max_chunks
        patches, owner = [], []
        for track, length in enumerate(lengths.tolist()):
            if length == 0:
                raise ValueError(f"track {track} has no samples")
            chunks = grid_chunks(waves[track, :length], self.patch_samples, max_chunks)
            patches.extend(chunks)
            owner.extend([track] * len(chunks))
        owner = torch.tensor(owner, device=waves.device)
        total = waves.new_zeros(len(waves), self.config["n_factors"], dtype=torch.float32)
        for begin in range(0, len(patches), chunk_batch):
            total.index_add_(0, owner[begin:begin + chunk_batch], self(torch.stack(patches[begin:begin + chunk_batch])))
        return F.normalize(total, dim=1)
