"""Audio tagging models: waveform -> log-mel (in the model) -> CNN embedding -> logits per label group.

The default backbone is the short-chunk ResNet of Won, Ferraro, Bogdanov & Serra, "Evaluation of
CNN-based Automatic Music Tagging Models" (SMC 2020), the best model of that comparison on
MagnaTagATune and MTG-Jamendo. Plain ``nn.Module``s: nothing here imports Lightning, so a catalog
service can load a packaged model with torch alone (`AudioTagger.from_pretrained`).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from coldtag.storage import carried_inputs, read_package, reference, save_model
from tagging.frontend import Frontend
from tagging.keys import KEY_PROFILES, key_fits, key_templates
from tagging.labels import MULTILABEL, LabelSpace
from tagging.musicnn import VGG, MusiCNN

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
THRESHOLDS_FILE = "thresholds.json"


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


class RhythmFeatures(nn.Module):
    """How the music repeats: autocorrelation curves of the log-mel, by lag and relative to the beat.

    ``(batch, n_mels, frames) -> (batch, dim)``. Two kinds of curve: the autocorrelation of spectral flux
    (onsets) in ``bands`` frequency bands, and the spectral self-similarity of frames a lag apart (the mean
    cosine similarity of mean-removed log-mel frames). Each is read at fractions of the estimated beat
    period (every 1/6 beat up to 8 beats), followed by that period in seconds. A max-pooled CNN keeps
    texture and loses periodicity; these curves keep it: peaks at the beat (tempo), at uneven off-beat
    lags (swing) and at the bar (meter: 3, 3.5, 4 or 5 beats). Onsets alone mark the bar weakly, since
    every beat has one; the self-similarity peaks where the whole bar (accents, chord, bass line) repeats.
    Read relative to the beat, a meter looks the same at every tempo; read by absolute lag (as we first
    did), the curves let a classifier fit each training track's tempo and the meter did not generalise.
    """

    BEAT_STEPS = 48  # 1/6-beat steps up to 8 beats: triplet swing, and bars up to 7 pulses (7/8) and beyond
    BEAT_RANGE = (0.3, 1.5)  # seconds: 40 to 200 beats per minute
    COMB = 4  # multiples of a candidate beat period that score it

    def __init__(self, frame_rate: float, bands: int = 3):
        super().__init__()
        if bands < 1 or frame_rate <= 0:
            raise ValueError(f"frame_rate and bands must be positive, got {frame_rate}, {bands}")
        self.bands, self.frame_rate = bands, frame_rate

    @property
    def dim(self) -> int:
        return (self.bands + 1) * self.BEAT_STEPS + 1

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        # FFTs in float32 outside autocast: half-precision FFTs need power-of-two sizes and lose the peaks.
        with torch.autocast(device_type=spec.device.type, enabled=False):
            spec = spec.float()
            flux = F.relu(spec.diff(dim=2))  # (batch, mels, frames - 1)
            onsets = torch.stack([band.mean(dim=1) for band in torch.tensor_split(flux, self.bands, dim=1)],
                                 dim=1)  # (batch, bands, frames - 1)
            onsets = _autocorrelation(onsets - onsets.mean(dim=2, keepdim=True))
            onsets = onsets / onsets[..., :1].clamp_min(1e-6)
            frames = spec[..., 1:]  # aligned with the flux frames
            frames = frames - frames.mean(dim=2, keepdim=True)
            frames = frames / frames.norm(dim=1, keepdim=True).clamp_min(1e-6)
            similarity = _autocorrelation(frames).sum(dim=1, keepdim=True)  # (batch, 1, n); 1 at lag 0
            acf = torch.cat([onsets, similarity], dim=1)  # (batch, bands + 1, n)
            period, by_beat = self._beat_relative(acf, onsets.sum(dim=1))
        return torch.cat([by_beat.flatten(1), period.unsqueeze(1)], dim=1)

    def _beat_relative(self, acf: torch.Tensor, beat_curve: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The beat period (frames, fractional) and every curve of ``acf`` at 1/6, 2/6, ... 48/6 of it.

        Each curve is first max-filtered over one frame either side: a peak falls between frames and
        played notes wander a little, and the narrow onset peaks would be missed at the bar's lag.
        """
        batch, curves, n = acf.shape
        low = max(1, round(self.BEAT_RANGE[0] * self.frame_rate))
        high = min(n - 1, round(self.BEAT_RANGE[1] * self.frame_rate))
        if high <= low:  # a chunk too short to hold one beat
            return acf.new_zeros(batch), acf.new_zeros(batch, curves, self.BEAT_STEPS)
        acf = F.max_pool1d(acf, 3, stride=1, padding=1)
        beat_curve = F.max_pool1d(beat_curve.unsqueeze(1), 3, stride=1, padding=1)
        # Candidate periods every tenth of a frame, each scored by the beat curve at its first COMB
        # multiples: a whole-frame period drifts off the peaks by the fourth beat (at 31 frames per
        # second it put the beat within 3.5 % on 71 % of the demo tracks, the comb on 84 %). Peaks at
        # one, two and three beats are often alike; a log-normal tempo prior around 120 BPM with one
        # octave of spread (Ellis, "Beat tracking by dynamic programming", 2007) picks the beat.
        candidates = torch.arange(low, high + 1e-3, 0.1, device=acf.device, dtype=acf.dtype)
        prior = torch.exp(-0.5 * torch.log2(candidates / self.frame_rate / 0.5).square())
        multiples = torch.arange(1, self.COMB + 1, device=acf.device, dtype=acf.dtype)
        comb = _read(beat_curve, (candidates.unsqueeze(1) * multiples).flatten().expand(batch, -1))
        comb = comb.view(batch, len(candidates), self.COMB).sum(dim=2)
        period = candidates[(comb * prior).argmax(dim=1)]  # (batch,)
        steps = torch.arange(1, self.BEAT_STEPS + 1, device=acf.device, dtype=acf.dtype) / 6
        return period / self.frame_rate, _read(acf, period.unsqueeze(1) * steps)


def _read(curves: torch.Tensor, lags: torch.Tensor) -> torch.Tensor:
    """``curves (batch, c, n)`` at fractional ``lags (batch, k)``, linearly interpolated, zero from the
    last lag on: ``(batch, c, k)``."""
    n = curves.shape[2]
    below = lags.floor().long().clamp(0, n - 1)
    above = (below + 1).clamp(max=n - 1)
    weight = (lags - below).unsqueeze(1)
    index = lambda i: i.unsqueeze(1).expand(-1, curves.shape[1], -1)  # noqa: E731
    values = curves.gather(2, index(below)) * (1 - weight) + curves.gather(2, index(above)) * weight
    return values * (lags < n - 1).unsqueeze(1)


def _autocorrelation(x: torch.Tensor) -> torch.Tensor:
    """``(..., n) -> (..., n)``: the mean product of samples ``lag`` apart for lags 0..n-1, by FFT.

    Averaged per overlapping pair (unbiased), so a bar's period is not outweighed by shorter lags."""
    n = x.shape[-1]
    acf = torch.fft.irfft(torch.fft.rfft(x, n=2 * n).abs().square(), n=2 * n)[..., :n]
    return acf / torch.arange(n, 0, -1, device=x.device, dtype=x.dtype)


class HarmonicFeatures(nn.Module):
    """Which scale the music uses, relative to its tonic: ``chroma (batch, 12, frames) in dB -> (batch, 36)``.

    The chunk's pitch-class profile (mean chroma magnitude, summing to 1) is correlated with the 24 rotated
    key profiles (`tagging.keys.KEY_PROFILES`, Krumhansl-Schmuckler key finding); the best key's tonic is the estimated
    tonic. The features are the profile and the 24 correlations, both rotated so that the tonic comes first.
    A CNN on a spectrogram sees a minor piece in each of 12 keys as 12 different pictures and, from a few
    hundred tracks, learned mode no better than chance; read relative to the tonic, as the rhythm branch
    reads its curves relative to the beat, a minor scale looks the same in every key. Estimating the tonic
    in a fixed way (not a learned one) is what makes that hold for keys the training set lacks.
    """

    dim = 36

    def __init__(self):
        super().__init__()
        self.register_buffer("keys", key_templates(KEY_PROFILES), persistent=False)  # (mode, root, pitch class)

    def profile(self, chroma: torch.Tensor) -> torch.Tensor:
        """``(batch, 12, frames)`` in dB -> the mean magnitude per pitch class, summing to 1: ``(batch, 12)``."""
        magnitude = torch.pow(10.0, chroma.float() / 20.0).mean(dim=2)
        return magnitude / magnitude.sum(dim=1, keepdim=True).clamp_min(1e-12)

    def key_fits(self, profile: torch.Tensor) -> torch.Tensor:
        """``(batch, 12) -> (batch, 2, 12)``: the correlation of the profile with each key [mode, tonic]."""
        return key_fits(profile, self.keys)  # in the profile's float32 even in a .half() model

    def key(self, chroma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The best key of each chunk: tonic pitch class (0 = C) and mode (0 major, 1 minor), ``(batch,)`` each."""
        best = self.key_fits(self.profile(chroma)).flatten(1).argmax(dim=1)
        return best % 12, best // 12

    def forward(self, chroma: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=chroma.device.type, enabled=False):
            profile = self.profile(chroma)
            fits = self.key_fits(profile)
            tonic = fits.flatten(1).argmax(dim=1) % 12
            order = (tonic.unsqueeze(1) + torch.arange(12, device=chroma.device)).remainder(12)  # (batch, 12)
            relative_profile = profile.gather(1, order)
            relative_fits = fits.gather(2, order.unsqueeze(1).expand(-1, 2, -1))
        return torch.cat([relative_profile, relative_fits.flatten(1)], dim=1)


class BandStatistics(nn.Module):
    """The mean and standard deviation over time of every band of the spectrogram, standardised and projected:
    ``(batch, n_mels, frames) -> (batch, dim)``.

    The clip-level statistics a linear baseline reads instruments from (`tagging.baseline`), inside the
    model: a sustained instrument's spectral envelope is in them whole, where a pooled CNN vector keeps
    whatever its filters learned from a few hundred tracks."""

    def __init__(self, n_mels: int, dim: int):
        super().__init__()
        if n_mels < 1:
            raise ValueError(f"BandStatistics needs the spectrogram's n_mels, got {n_mels}")
        self.encode = nn.Sequential(nn.BatchNorm1d(2 * n_mels), nn.Linear(2 * n_mels, dim), nn.ReLU())

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        std, mean = torch.std_mean(spec.float(), dim=2)
        return self.encode(torch.cat([mean, std], dim=1))


class HarmonicBranch(nn.Module):
    """`HarmonicFeatures` of a chroma, standardised and projected to ``dim``: ``(batch, 12, frames) ->
    (batch, dim)``, joined to the CNN's vector beside the `RhythmBranch`."""

    def __init__(self, dim: int):
        super().__init__()
        features = HarmonicFeatures()
        self.encode = nn.Sequential(features, nn.BatchNorm1d(features.dim), nn.Linear(features.dim, dim), nn.ReLU())

    def forward(self, chroma: torch.Tensor) -> torch.Tensor:
        return self.encode(chroma)


POOLINGS = ("max", "mean_max")


def _pool(x: torch.Tensor, pooling: str) -> torch.Tensor:
    """``(batch, channels, height, width)`` -> ``(batch, channels)`` (max) or ``(batch, 2 * channels)``."""
    if pooling == "max":
        return x.amax(dim=(2, 3))
    return torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)


class _Branched(nn.Module):
    """What both backbones do with their CNN's feature map: pool it, and join the branches asked for.

    The branch modules keep the attribute names ``rhythm``, ``harmony`` and ``band_stats`` on the backbone
    itself, so packages saved before this class existed load unchanged."""

    def _init_branches(self, channels: int, width: int, pooling: str, rhythm: bool, frame_rate: float,
                       timbre_dropout: float, harmony: bool, band_stats: bool, n_mels: int) -> int:
        """Build the branches; the width of the vector `_pool_and_join` returns (the projection's input)."""
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
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


class RhythmBranch(nn.Module):
    """`RhythmFeatures` of the spectrogram, standardised and projected to ``dim``, joined to a CNN's pooled
    vector: ``(pooled (batch, c), spec) -> (batch, c + dim)``.

    In training the CNN vector is zeroed for a random ``timbre_dropout`` share of the clips. Meter, swing
    and tempo are shared within an artist, so a CNN can learn them from the training artists' timbre and
    stop there, which fails on new artists (odd meter stayed below a mean-log-mel baseline on unseen
    artists); clips that only have their rhythm make the heads read it.
    """

    def __init__(self, frame_rate: float, dim: int, timbre_dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= timbre_dropout < 1.0:
            raise ValueError(f"timbre_dropout must be in [0, 1), got {timbre_dropout}")
        self.timbre_dropout = timbre_dropout
        features = RhythmFeatures(frame_rate)
        self.encode = nn.Sequential(features, nn.BatchNorm1d(features.dim), nn.Linear(features.dim, dim), nn.ReLU())

    def forward(self, pooled: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        if self.training and self.timbre_dropout > 0:
            keep = torch.rand(pooled.shape[0], 1, device=pooled.device) >= self.timbre_dropout
            pooled = pooled * keep
        return torch.cat([pooled, self.encode(spec)], dim=1)


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


def chunk_starts(n_samples: int, chunk: int, max_chunks: int | None = None) -> list[int]:
    """The fixed grid of chunk starts over a track: as many chunks as cover it, evenly spaced.

    A track no longer than one chunk gets the single start 0 (the caller zero-pads it). With
    ``max_chunks`` the grid is thinned to that many evenly spaced chunks, as tagging evaluations do
    (Won et al. average 16 chunks per track).
    """
    if n_samples <= chunk:
        return [0]
    count = math.ceil(n_samples / chunk)
    if max_chunks is not None:
        count = min(count, max_chunks)
    last = n_samples - chunk
    if count == 1:
        return [last // 2]
    return [round(i * last / (count - 1)) for i in range(count)]


def grid_chunks(wave: torch.Tensor, chunk: int, max_chunks: int | None = None) -> torch.Tensor:
    """One track ``(time,)`` -> the chunks ``(chunks, chunk)`` at its `chunk_starts`, zero-padded past its
    end. A reader that streams a long file cuts the same chunks from the same starts without holding it."""
    pieces = []
    for start in chunk_starts(len(wave), chunk, max_chunks):
        piece = wave[start:start + chunk]
        pieces.append(F.pad(piece, (0, chunk - len(piece))))
    return torch.stack(pieces)


@dataclass
class TrackOutputs:
    """Per-track results of `AudioTagger.track_outputs`; all tensors have a leading track dimension."""

    embedding: torch.Tensor  # (tracks, embedding_dim), mean over the track's chunks
    scores: dict[str, torch.Tensor]  # multilabel: mean chunk probability; regression: mean scaled value


class TaggerBase(nn.Module):
    """What every tagger shares: a label space, one head per label group on an embedding, per-tag decision
    thresholds, the JSON record a user gets, and packaging without Lightning.

    A subclass sets ``self.config`` to its constructor's keyword arguments (the vocabulary included), so
    `from_pretrained` can rebuild it, and calls `_init_heads`.
    """

    config: dict
    package: dict | None = None  # the package record (`coldtag.storage`) it was loaded from or last saved as
    package_path: Path | None = None
    # Set by `from_pretrained` with a new vocabulary: the ``inputs`` its first package records, naming the
    # package it was fine-tuned from (``"pretrained"``) beside that package's own inputs.
    pretrained_inputs: dict | None = None

    def _init_heads(self, vocab: dict, embedding_dim: int, dropout: float) -> None:
        self.labels = LabelSpace.from_dict(vocab)
        self.embedding_dim = embedding_dim
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(embedding_dim, len(group))
                                    for name, group in self.labels.groups.items()})
        for group in self.labels.multilabel():
            self.register_buffer(f"thresholds_{group.name}", torch.full((len(group),), 0.5))

    def forward_head(self, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(batch, embedding_dim) -> {group: (batch, labels)}`` logits (or scaled values)."""
        x = self.dropout(embedding)
        return {name: head(x) for name, head in self.heads.items()}

    def scores(self, logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logits -> probabilities for multilabel groups; regression outputs pass unchanged (scaled)."""
        return {name: torch.sigmoid(out) if self.labels.groups[name].type == MULTILABEL else out
                for name, out in logits.items()}

    def thresholds(self, group: str) -> torch.Tensor:
        return getattr(self, f"thresholds_{group}")

    def set_thresholds(self, group: str, values: torch.Tensor) -> None:
        self.thresholds(group).copy_(values)

    def record(self, scores: dict[str, torch.Tensor]) -> dict:
        """One track's scores ``{group: (labels,)}`` -> probabilities, decided tags, graded values in units."""
        record = {}
        for name, group in self.labels.groups.items():
            values = scores[name].detach().float()
            if group.type == MULTILABEL:
                thresholds = self.thresholds(name).to(values.device)
                record[name] = {
                    "probabilities": dict(zip(group.labels, values.tolist(), strict=True)),
                    "tags": [label for label, p, t in zip(group.labels, values, thresholds, strict=True)
                             if p >= t],
                }
            else:
                units = self.labels.decode_regression(name, values)
                record[name] = dict(zip(group.labels, units.tolist(), strict=True))
        return record

    def save_pretrained(self, directory: str | Path, inputs: dict | None = None, overwrite: bool = False) -> dict:
        """Weights as safetensors; config, vocabulary and decision thresholds as JSON beside them, and
        ``package.json`` recording what made them (`coldtag.storage`). ``inputs`` names the packages that
        produced the model's inputs (`coldtag.storage.reference`). A directory holding other files is
        refused unless ``overwrite`` (they stay). Returns the package record.

        A model fine-tuned from a package (`from_pretrained` with ``vocab``) records it as its
        ``"pretrained"`` input, by reference, not bundled: the new package runs without it."""
        if inputs is None and self.package is None:
            inputs = self.pretrained_inputs

        def write(folder: Path) -> None:
            threshold_keys = {f"thresholds_{g.name}" for g in self.labels.multilabel()}
            weights = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()
                       if k not in threshold_keys}
            save_file(weights, folder / WEIGHTS_FILE)
            config = {k: v for k, v in self.config.items() if k != "vocab"}
            (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
            (folder / VOCAB_FILE).write_text(json.dumps(self.config["vocab"], indent=2))
            thresholds = {g.name: dict(zip(g.labels, self.thresholds(g.name).tolist(), strict=True))
                          for g in self.labels.multilabel()}
            (folder / THRESHOLDS_FILE).write_text(json.dumps(thresholds, indent=2))
        return save_model(self, directory, write, inputs, overwrite)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu",
                        vocab: dict | None = None, **overrides):
        """Load a `save_pretrained` directory, after checking its files against ``package.json``
        (`coldtag.storage.ProvenanceError` if they differ or it is missing). ``overrides`` change run-time
        settings (for `AudioTagger`: ``frontend_backend``, ``eval_chunks``); the weights do not depend on them.

        ``vocab``: start a fine-tune on this vocabulary instead. Everything below the heads keeps the
        package's weights; a group whose name, type, labels (and ranges) are the package's keeps its head
        and thresholds, any other group gets a new head (PyTorch's default initialisation, from the global
        seed) and thresholds of 0.5. The model is a new one, not the package: its first `save_pretrained`
        records the package as its ``"pretrained"`` input (beside the inputs the package itself names).
        """
        directory = Path(directory)
        record = read_package(directory, cls.__name__)
        config = json.loads((directory / CONFIG_FILE).read_text())
        saved_vocab = json.loads((directory / VOCAB_FILE).read_text())
        config["vocab"] = saved_vocab if vocab is None else vocab
        config.update(overrides)
        model = cls(**config)
        old = LabelSpace.from_dict(saved_vocab).groups
        kept = [name for name, group in model.labels.groups.items() if old.get(name) == group]
        state = load_file(directory / WEIGHTS_FILE, device=str(map_location))
        state = {k: v for k, v in state.items() if not k.startswith("heads.") or k.split(".")[1] in kept}
        missing, unexpected = model.load_state_dict(state, strict=False)
        new_heads = tuple(f"heads.{name}." for name in model.labels.groups if name not in kept)
        missing = [k for k in missing if not k.startswith(("thresholds_", *new_heads))]
        if missing or unexpected:
            raise ValueError(f"{directory / WEIGHTS_FILE}: weights do not fit the config "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        saved = json.loads((directory / THRESHOLDS_FILE).read_text())
        for group in model.labels.multilabel():
            per_label = saved.get(group.name, {}) if group.name in kept else {}
            model.set_thresholds(group.name, torch.tensor([float(per_label.get(label, 0.5))
                                                           for label in group.labels]))
        if vocab is None:
            model.package, model.package_path = record, directory.resolve()
        else:
            model.pretrained_inputs = {**carried_inputs(record, directory), "pretrained": reference(directory)}
        return model.to(map_location).eval()


class AudioTagger(TaggerBase):
    """Waveform ``(batch, time)`` at ``sample_rate`` -> logits per label group.

    ``forward_features`` gives the embedding that fusion and retrieval use, ``forward_head`` the logits
    (never probabilities: sigmoid belongs at the edge). Regression groups predict values scaled to
    [0, 1] by the vocabulary's ranges (`LabelSpace.decode_regression` gives units back).
    ``rhythm=True`` adds the backbone's `RhythmBranch` (meter, swing and tempo cues); ``timbre_dropout`` is
    the share of training clips whose CNN vector that branch hides (0.3 was chosen on the demo's validation split).
    ``harmony=True`` adds its `HarmonicBranch` (key and mode cues) on a chroma of half-second STFT frames,
    from the same `Frontend`; ``pooling`` (None: the backbone's default) and ``band_stats`` are the backbone's
    (`ShortChunkResNet`). ``log_compression`` and ``frontend_center`` are the `Frontend`'s ``compression`` and
    ``center``: the ``musicnn`` and ``vgg`` backbones (`tagging.musicnn`, converted by `tagging.pretrained`)
    take ``"logC"`` on uncentred frames, 96 bands, chunks of 48128 samples (187 frames).
    """

    # What the weights do not depend on: a fine-tune (`from_pretrained` overrides) may set these anew.
    TRAINING_SETTINGS = ("dropout", "timbre_dropout", "chunk_seconds", "eval_chunks", "frontend_backend")

    def __init__(
        self,
        vocab: dict,
        backbone: Literal["short_chunk_resnet", "tiny", "musicnn", "vgg"] = "short_chunk_resnet",
        width: int = 128,
        embedding_dim: int = 512,
        dropout: float = 0.5,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 256,
        n_mels: int = 128,
        frontend_backend: Literal["auto", "torchaudio", "nnaudio"] = "auto",
        chunk_seconds: float = 3.69,
        eval_chunks: int | None = 16,
        rhythm: bool = False,
        timbre_dropout: float = 0.3,
        pooling: Literal["max", "mean_max"] | None = None,
        harmony: bool = False,
        band_stats: bool = False,
        log_compression: Literal["db", "logC"] = "db",
        frontend_center: bool = True,
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
        if chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds}")
        if eval_chunks is not None and eval_chunks < 1:
            raise ValueError(f"eval_chunks must be >= 1 or None, got {eval_chunks}")
        self.config = {
            "vocab": vocab, "backbone": backbone, "width": width, "embedding_dim": embedding_dim,
            "dropout": dropout, "sample_rate": sample_rate, "n_fft": n_fft, "hop_length": hop_length,
            "n_mels": n_mels, "frontend_backend": frontend_backend, "chunk_seconds": chunk_seconds,
            "eval_chunks": eval_chunks, "rhythm": rhythm, "timbre_dropout": timbre_dropout, "pooling": pooling,
            "harmony": harmony, "band_stats": band_stats, "log_compression": log_compression,
            "frontend_center": frontend_center,
        }
        self.sample_rate = sample_rate
        self.chunk_samples = round(chunk_seconds * sample_rate)
        self.eval_chunks = eval_chunks
        self.frontend = Frontend(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                                 backend=frontend_backend, compression=log_compression, center=frontend_center)
        # Half-second frames (the power of two nearest): a semitone at 110 Hz is 6.5 Hz, two FFT bins.
        chroma_fft = 2 ** round(math.log2(0.5 * sample_rate))
        self.chroma = Frontend(sample_rate=sample_rate, n_fft=chroma_fft, hop_length=chroma_fft // 4, kind="chroma") \
            if harmony else None
        self.backbone = BACKBONES[backbone](width=width, embedding_dim=embedding_dim, rhythm=rhythm,
                                            frame_rate=sample_rate / hop_length, timbre_dropout=timbre_dropout,
                                            harmony=harmony, band_stats=band_stats, n_mels=n_mels,
                                            **({} if pooling is None else {"pooling": pooling}))
        self._init_heads(vocab, embedding_dim, dropout)

    def forward_features(self, wave: torch.Tensor) -> torch.Tensor:
        """``(batch, time) -> (batch, embedding_dim)``."""
        chroma = self.chroma(wave) if self.chroma is not None else None
        return self.backbone(self.frontend(wave), chroma)

    def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(wave))

    def track_outputs(self, waves: torch.Tensor, lengths: torch.Tensor | None = None,
                      chunk_batch: int = 64) -> TrackOutputs:
        """Whole tracks ``(tracks, time)`` (zero-padded, true ``lengths``) -> pooled outputs per track.

        Every track is cut on the same deterministic `chunk_starts` grid (`track_chunks`); chunks run in
        batches of ``chunk_batch`` and are averaged per track (`chunk_outputs`), so one file always gives
        the same numbers and the memory used does not grow with the number of chunks a batch holds.
        """
        if waves.dim() != 2:
            raise ValueError(f"track_outputs expects (tracks, time), got shape {tuple(waves.shape)}")
        if lengths is None:
            lengths = torch.full((len(waves),), waves.shape[1], dtype=torch.long)
        chunks = []
        for track, length in enumerate(lengths.tolist()):
            if length == 0:
                raise ValueError(f"track {track} has no samples")
            chunks.append(self.track_chunks(waves[track, :length]))
        return self.chunk_outputs(chunks, chunk_batch)

    def track_chunks(self, wave: torch.Tensor) -> torch.Tensor:
        """One track ``(time,)`` -> its evaluation chunks ``(chunks, chunk_samples)``, zero-padded.

        What `track_outputs` runs on (`grid_chunks` on the model's grid)."""
        return grid_chunks(wave, self.chunk_samples, self.eval_chunks)

    def chunk_outputs(self, chunks: list[torch.Tensor], chunk_batch: int = 64) -> TrackOutputs:
        """Each track's chunks ``[(chunks_i, chunk_samples), ...]`` -> outputs averaged over its chunks."""
        owner = torch.cat([torch.full((len(c),), track, dtype=torch.long) for track, c in enumerate(chunks)])
        flat = torch.cat(chunks)
        owner = owner.to(flat.device)
        embedding_sum = flat.new_zeros(len(chunks), self.embedding_dim, dtype=torch.float32)
        score_sums = {name: flat.new_zeros(len(chunks), len(group), dtype=torch.float32)
                      for name, group in self.labels.groups.items()}
        for begin in range(0, len(flat), chunk_batch):
            index = owner[begin:begin + chunk_batch]
            embedding = self.forward_features(flat[begin:begin + chunk_batch])
            embedding_sum.index_add_(0, index, embedding.float())
            for name, out in self.scores(self.forward_head(embedding)).items():
                score_sums[name].index_add_(0, index, out.float())
        counts = torch.bincount(owner, minlength=len(chunks)).unsqueeze(1).float()
        return TrackOutputs(embedding=embedding_sum / counts,
                            scores={name: s / counts for name, s in score_sums.items()})

    @torch.no_grad()
    def annotate(self, wave: torch.Tensor) -> dict:
        """One mono track ``(time,)`` -> a JSON-ready record of probabilities, decided tags, graded values
        and the embedding.

        Runs in eval mode and leaves the module's mode as it found it.
        """
        return self.annotate_batch([wave])[0]

    @torch.no_grad()
    def annotate_batch(self, waves: list[torch.Tensor]) -> list[dict]:
        """Mono tracks of any lengths ``[(time,), ...]`` -> one `annotate` record each, run as one
        `track_outputs` batch: a track's record does not depend on the tracks it is batched with.
        """
        was_training = self.training
        self.eval()
        try:
            lengths = torch.tensor([len(wave) for wave in waves])
            outputs = self.track_outputs(pad_sequence(waves, batch_first=True), lengths)  # (tracks, longest)
        finally:
            self.train(was_training)
        records = []
        for track in range(len(waves)):
            record = self.record({name: value[track] for name, value in outputs.scores.items()})
            record["embedding"] = outputs.embedding[track].tolist()
            records.append(record)
        return records
