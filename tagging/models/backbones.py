"""Backbones: a log-mel ``(batch, n_mels, frames)`` (and a chroma, for the harmonic branch) -> one embedding
per chunk. The default is the short-chunk ResNet of Won, Ferraro, Bogdanov & Serra, "Evaluation of CNN-based
Automatic Music Tagging Models" (SMC 2020), the best model of that comparison on MagnaTagATune and
MTG-Jamendo; `BACKBONES` names every backbone a package's config can ask for."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from tagging.models.layers import BandStatistics, HarmonicBranch, RhythmBranch
from tagging.models.musicnn import VGG, MusiCNN


class _ResBlock(nn.Module):
    """Two 3x3 convolutions with a (strided, projected when needed) shortcut: Res_2d of Won et al."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


FEATURE_POOLINGS = ("max", "mean_max")


def _pool(x: torch.Tensor, pooling: str) -> torch.Tensor:
    """``(batch, channels, height, width)`` -> ``(batch, channels)`` (max) or ``(batch, 2 * channels)``."""
    if pooling == "max":
        return x.amax(dim=(2, 3))
    return torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)


class _Branched(nn.Module):
    """What both backbones do with their CNN's feature map: pool it, and join the branches asked for.

    The branch modules are attributes of the backbone itself (``rhythm``, ``harmony``, ``band_stats``):
    their names are the weights' keys in a package."""

    def _init_branches(self, channels: int, width: int, pooling: str, rhythm: bool, frame_rate: float,
                       timbre_dropout: float, harmony: bool, band_stats: bool, n_mels: int) -> int:
        """Build the branches; the width of the vector `_pool_and_join` returns (the projection's input)."""
        if pooling not in FEATURE_POOLINGS:
            raise ValueError(f"pooling must be one of {FEATURE_POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.rhythm = RhythmBranch(frame_rate, 4 * width, timbre_dropout) if rhythm else None
        self.harmony = HarmonicBranch(4 * width) if harmony else None
        self.band_stats = BandStatistics(n_mels, 4 * width) if band_stats else None
        return channels * (2 if pooling == "mean_max" else 1) + 4 * width * (rhythm + harmony + band_stats)

    def _pool_and_join(self, x: torch.Tensor, spec: torch.Tensor, chroma: torch.Tensor | None) -> torch.Tensor:
        """``(batch, channels, height, width)`` feature map -> pooled vector, band statistics (both hidden
        together by timbre dropout), rhythm and harmony features."""
        x = _pool(x, self.pooling)
        if self.band_stats is not None:
            x = torch.cat([x, self.band_stats(spec)], dim=1)
        if self.rhythm is not None:
            x = self.rhythm(x, spec)
        if self.harmony is not None:
            x = torch.cat([x, self.harmony(chroma)], dim=1)
        return x


class ShortChunkResNet(_Branched):
    """Seven strided residual blocks over the log-mel image, pooled to one vector per chunk.

    ``(batch, n_mels, frames) -> (batch, embedding_dim)``. Channels double at blocks 3 and 7 as in the
    paper (width 128 there; smaller widths train on a CPU). ``pooling="max"`` is the paper's global max;
    ``"mean_max"`` joins the mean to it, which keeps how much of the chunk a sound fills (a sustained
    instrument under a louder one) where the maximum keeps only its strongest moment; on the realistic
    catalog it did not help, and the band statistics were what gave instruments their gain (docs/realistic.md).
    ``rhythm=True`` adds a `RhythmBranch` beside the pooled CNN vector (spectrogram ``frame_rate`` frames
    per second) and ``harmony=True`` a `HarmonicBranch` on the chroma passed beside the spectrogram, and
    ``band_stats=True`` the `BandStatistics` of its ``n_mels`` bands beside the CNN vector, hidden with it
    by the rhythm branch's timbre dropout (our additions, off by default).
    """

    def __init__(self, width: int = 128, embedding_dim: int = 512, n_blocks: int = 7, rhythm: bool = False,
                 frame_rate: float = 0.0, timbre_dropout: float = 0.0, pooling: str = "max", harmony: bool = False,
                 band_stats: bool = False, n_mels: int = 0):
        super().__init__()
        channels = [1, width, width] + [2 * width] * (n_blocks - 3) + [4 * width]
        self.input_norm = nn.BatchNorm2d(1)
        self.blocks = nn.Sequential(*[_ResBlock(c_in, c_out) for c_in, c_out in itertools.pairwise(channels)])
        joined = self._init_branches(channels[-1], width, pooling, rhythm, frame_rate, timbre_dropout, harmony,
                                     band_stats, n_mels)
        self.project = nn.Sequential(nn.Linear(joined, embedding_dim), nn.BatchNorm1d(embedding_dim), nn.ReLU())

    def forward(self, spec: torch.Tensor, chroma: torch.Tensor | None = None) -> torch.Tensor:
        x = self.blocks(self.input_norm(spec.unsqueeze(1)))  # (batch, channels, mels', frames')
        return self.project(self._pool_and_join(x, spec, chroma))


class TinyCNN(_Branched):
    """Two convolutions and a pooled projection: for tests and smoke runs, not for results."""

    def __init__(self, width: int = 8, embedding_dim: int = 32, rhythm: bool = False, frame_rate: float = 0.0,
                 timbre_dropout: float = 0.0, pooling: str = "mean_max", harmony: bool = False,
                 band_stats: bool = False, n_mels: int = 0):
        super().__init__()
        self.input_norm = nn.BatchNorm2d(1)
        self.conv = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        joined = self._init_branches(2 * width, width, pooling, rhythm, frame_rate, timbre_dropout, harmony,
                                     band_stats, n_mels)
        self.project = nn.Sequential(nn.Linear(joined, embedding_dim), nn.ReLU())

    def forward(self, spec: torch.Tensor, chroma: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(self.input_norm(spec.unsqueeze(1)))  # (batch, 2*width, mels/4, frames/4)
        return self.project(self._pool_and_join(x, spec, chroma))


BACKBONES = {"short_chunk_resnet": ShortChunkResNet, "tiny": TinyCNN, "musicnn": MusiCNN, "vgg": VGG}
