"""The musicnn and VGG-like taggers of Pons & Serra, "musicnn: pre-trained convolutional neural networks for
music audio tagging" (ISMIR 2019 late-breaking demo), as backbones of `tagging.models.tagger.AudioTagger`.

Layer for layer the graph of the ``musicnn`` 0.1.0 wheel (``musicnn/models.py``), so its TensorFlow
checkpoints load into them (`tagging.pretrained.convert`): every convolution is followed by ReLU and *then* batch
norm (epsilon 0.001, TensorFlow's default), as there. Input: the log-mel ``(batch, n_mels, frames)``, 96
bands of ``log10(1 + 10000 * power)`` (`tagging.frontend.Frontend` with ``compression="logC"``) over 187
frames (3 s at 16 kHz, hop 256) as trained; musicnn takes any number of frames, VGG exactly 187.

- `MusiCNN`: a musically motivated front-end (Pons et al., "Timbre analysis of music audio signals with
  convolutional neural networks", EUSIPCO 2017): timbral filters 7 frames x 38 and 67 bands, temporal
  filters 128, 64 and 32 frames x 1 band, each max-pooled over frequency; a mid-end of three 7-frame 1-d
  convolutions with residual connections, densely joined; a back-end of max and mean over time, a dense layer
  (the embedding, "penultimate") and the tag layer (`TaggerBase`'s heads).
- `VGG`: five 3x3 convolutions with max pooling (Choi et al., "Automatic tagging using deep convolutional
  neural networks", ISMIR 2016, as the wheel's baseline), flattened (the embedding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default
PATCH_FRAMES = 187  # the wheel's input_length of 3 s: librosa.time_to_frames(3, sr=16000, hop_length=256) + 1


def _no_branches(name: str, rhythm: bool, harmony: bool, band_stats: bool, pooling: str | None) -> None:
    if rhythm or harmony or band_stats or pooling is not None:
        raise ValueError(f"the {name} backbone is the published graph: rhythm, harmony, band_stats and pooling "
                         f"do not apply (got rhythm={rhythm}, harmony={harmony}, band_stats={band_stats}, "
                         f"pooling={pooling!r})")


class _ConvReluBN(nn.Sequential):
    """conv -> ReLU -> batch norm, the order of every convolution in the wheel's graph."""

    def __init__(self, conv: nn.Module, channels: int):
        super().__init__(conv, nn.ReLU(), nn.BatchNorm2d(channels, eps=BN_EPS) if isinstance(conv, nn.Conv2d)
                         else nn.BatchNorm1d(channels, eps=BN_EPS))


class MusiCNN(nn.Module):
    """``(batch, n_mels, frames) -> (batch, embedding_dim)``: musicnn's front-, mid- and back-end.

    ``width`` is the mid-end's filters (64 in the published models) and ``embedding_dim`` the back-end's
    dense units (200). The front-end's sizes follow the paper: 1.6 x 128 = 204 timbral and 1.6 x 32 = 51
    temporal filters per shape, timbral filters 0.4 and 0.7 of ``n_mels`` bands high. ``front_filters`` makes
    a smaller front-end, the one most of musicnn's time goes to: that many timbral filters per shape and a
    quarter as many temporal ones (a student pruned from the published model: `tagging.pretrained.prune`).
    """

    PUBLISHED_FILTERS = (int(1.6 * 128), int(1.6 * 32))  # timbral, temporal: 204, 51

    def __init__(self, width: int = 64, embedding_dim: int = 200, n_mels: int = 96, rhythm: bool = False,
                 frame_rate: float = 0.0, timbre_dropout: float = 0.0, harmony: bool = False,
                 band_stats: bool = False, pooling: str | None = None, front_filters: int | None = None):
        super().__init__()
        _no_branches("musicnn", rhythm, harmony, band_stats, pooling)
        if n_mels < 4:
            raise ValueError(f"musicnn needs the spectrogram's n_mels (96 as trained), got {n_mels}")
        timbral, temporal = self.front_sizes(front_filters)
        self.input_norm = nn.BatchNorm2d(1, eps=BN_EPS)
        self.timbral = nn.ModuleList([_ConvReluBN(nn.Conv2d(1, timbral, (7, int(share * n_mels))), timbral)
                                      for share in (0.4, 0.7)])
        self.temporal = nn.ModuleList([_ConvReluBN(nn.Conv2d(1, temporal, (length, 1)), temporal)
                                       for length in (128, 64, 32)])
        frontend_dim = 2 * timbral + 3 * temporal  # 561 as published
        self.midend = nn.ModuleList([_ConvReluBN(nn.Conv1d(channels, width, 7), width)
                                     for channels in (frontend_dim, width, width)])
        pooled = 2 * (frontend_dim + 3 * width)  # max and mean of each of 753 features (as published)
        self.pool_norm = nn.BatchNorm1d(pooled, eps=BN_EPS)
        self.dropout = nn.Dropout(0.5)
        self.dense = _ConvReluBN(nn.Linear(pooled, embedding_dim), embedding_dim)

    @classmethod
    def front_sizes(cls, front_filters: int | None = None) -> tuple[int, int]:
        """(timbral, temporal) filters per shape for ``front_filters`` (None: the published 204 and 51)."""
        if front_filters is None:
            return cls.PUBLISHED_FILTERS
        if not 4 <= front_filters <= cls.PUBLISHED_FILTERS[0]:
            raise ValueError(f"front_filters must be from 4 to {cls.PUBLISHED_FILTERS[0]} (the published number), "
                             f"got {front_filters}")
        return front_filters, max(1, round(front_filters / 4))

    def frontend_features(self, spec: torch.Tensor) -> torch.Tensor:
        """``(batch, n_mels, frames) -> (batch, 561, frames)`` (as published): timbral then temporal features,
        pooled over bands."""
        x = self.input_norm(spec.transpose(1, 2).unsqueeze(1))  # (batch, 1, frames, mels), the wheel's layout
        padded = F.pad(x, (0, 0, 3, 3))  # time only: a cheap 'same' before pooling over all bands
        features = [block(padded).amax(dim=3) for block in self.timbral]  # (batch, 204, frames) each
        for block in self.temporal:
            length = block[0].kernel_size[0]
            # TensorFlow's 'same' for an even kernel: one more frame of padding after than before.
            same = F.pad(x, (0, 0, (length - 1) // 2, length // 2))
            features.append(block(same).amax(dim=3))  # (batch, 51, frames)
        return torch.cat(features, dim=1)

    def forward(self, spec: torch.Tensor, chroma: torch.Tensor | None = None) -> torch.Tensor:
        front = self.frontend_features(spec)  # (batch, 561, frames)
        layers = [front]
        x = self.midend[0](F.pad(front, (3, 3)))  # (batch, 64, frames)
        layers.append(x)
        for block in self.midend[1:]:
            x = block(F.pad(x, (3, 3))) + x  # residual
            layers.append(x)
        dense = torch.cat(layers, dim=1)  # (batch, 753, frames)
        # The wheel flattens (features, [max, mean]): each feature's max beside its mean.
        pooled = torch.stack([dense.amax(dim=2), dense.mean(dim=2)], dim=2).flatten(1)  # (batch, 1506)
        return self.dense(self.dropout(self.pool_norm(pooled)))  # (batch, embedding_dim): "penultimate"


class VGG(nn.Module):
    """``(batch, 96, 187) -> (batch, embedding_dim)``: five 3x3 convolutions (``width`` filters) and max
    pooling, flattened. Only the patch it was built for fits: 187 frames x 96 bands pool to 2 x 1, so
    ``embedding_dim`` must be ``2 * width`` (256 as published)."""

    POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))

    def __init__(self, width: int = 128, embedding_dim: int = 256, n_mels: int = 96, rhythm: bool = False,
                 frame_rate: float = 0.0, timbre_dropout: float = 0.0, harmony: bool = False,
                 band_stats: bool = False, pooling: str | None = None):
        super().__init__()
        _no_branches("vgg", rhythm, harmony, band_stats, pooling)
        if n_mels != 96 or embedding_dim != 2 * width:
            raise ValueError(f"the vgg backbone flattens a 187-frame x 96-band patch: needs n_mels=96 and "
                             f"embedding_dim = 2 * width = {2 * width}, got n_mels={n_mels}, "
                             f"embedding_dim={embedding_dim}")
        self.input_norm = nn.BatchNorm2d(1, eps=BN_EPS)
        self.blocks = nn.ModuleList([_ConvReluBN(nn.Conv2d(1 if i == 0 else width, width, 3, padding=1), width)
                                     for i in range(len(self.POOLS))])
        self.dropout = nn.Dropout(0.25)
        self.embedding_dim = embedding_dim

    def forward(self, spec: torch.Tensor, chroma: torch.Tensor | None = None) -> torch.Tensor:
        if spec.shape[2] != PATCH_FRAMES:
            raise ValueError(f"the vgg backbone takes {PATCH_FRAMES}-frame patches, got {spec.shape[2]} frames")
        x = self.input_norm(spec.transpose(1, 2).unsqueeze(1))  # (batch, 1, 187, 96)
        for i, (block, (size, stride)) in enumerate(zip(self.blocks, self.POOLS, strict=True)):
            x = F.max_pool2d(block(x if i == 0 else self.dropout(x)), size, stride)
        # (batch, width, 2, 1); flattened in TensorFlow's (time, band, channel) order
        return x.permute(0, 2, 3, 1).flatten(1)  # (batch, 2 * width)
