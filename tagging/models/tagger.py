"""Taggers: waveform -> log-mel (in the model) -> backbone embedding -> logits per label group, and their
packages (`save_pretrained` / `from_pretrained`). Plain ``nn.Module``s: nothing here imports Lightning, so a
catalog service can load a packaged model with torch alone (`AudioTagger.from_pretrained`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from coldtag.storage import carried_inputs, read_package, reference, save_model
from tagging.frontend import Frontend
from tagging.grid import chunk_starts, cut_chunks, grid_chunks
from tagging.labels import MULTILABEL, LabelSpace
from tagging.models.backbones import BACKBONES

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
THRESHOLDS_FILE = "thresholds.json"


@dataclass
class ChunkScores:
    """One track's scores chunk by chunk (`AudioTagger.chunk_scores`)."""

    starts: list[int]  # each chunk's first sample, on the model's grid
    scores: dict[str, torch.Tensor]  # group -> (chunks, labels): probabilities and scaled values, or logits


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
    ``center``: the ``musicnn`` and ``vgg`` backbones (`tagging.models.musicnn`, converted by
    `tagging.pretrained.convert`) take ``"logC"`` on uncentred frames, 96 bands, chunks of 48128 samples (187 frames);
    ``front_filters`` (None: as published) sizes the ``musicnn`` front-end of a student pruned from such a model.
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
        front_filters: int | None = None,
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
        if chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds}")
        if eval_chunks is not None and eval_chunks < 1:
            raise ValueError(f"eval_chunks must be >= 1 or None, got {eval_chunks}")
        if front_filters is not None and backbone != "musicnn":
            raise ValueError(f"front_filters sizes the musicnn backbone's front-end, not {backbone!r}'s")
        self.config = {
            "vocab": vocab, "backbone": backbone, "width": width, "embedding_dim": embedding_dim,
            "dropout": dropout, "sample_rate": sample_rate, "n_fft": n_fft, "hop_length": hop_length,
            "n_mels": n_mels, "frontend_backend": frontend_backend, "chunk_seconds": chunk_seconds,
            "eval_chunks": eval_chunks, "rhythm": rhythm, "timbre_dropout": timbre_dropout, "pooling": pooling,
            "harmony": harmony, "band_stats": band_stats, "log_compression": log_compression,
            "frontend_center": frontend_center,
            **({} if front_filters is None else {"front_filters": front_filters}),
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
                                            **({} if pooling is None else {"pooling": pooling}),
                                            **({} if front_filters is None else {"front_filters": front_filters}))
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

    @torch.no_grad()
    def chunk_scores(self, wave: torch.Tensor, max_chunks: int | Literal["eval"] | None = "eval",
                     logits: bool = False, chunk_batch: int = 64) -> ChunkScores:
        """One track ``(time,)`` -> the scores of each of its chunks and where they start.

        The grid is the model's evaluation grid (``max_chunks="eval"``: `track_chunks`, what `annotate`
        averages), every chunk of the track (None), or ``max_chunks`` chunks; ``logits`` gives the heads'
        logits instead of probabilities and scaled values. Call it in eval mode: batch norm and dropout are
        as the module's mode has them."""
        cap = self.eval_chunks if max_chunks == "eval" else max_chunks
        starts = chunk_starts(len(wave), self.chunk_samples, cap)
        chunks = cut_chunks(wave, starts, self.chunk_samples)
        outputs = [self.forward_head(self.forward_features(chunks[i:i + chunk_batch]))
                   for i in range(0, len(chunks), chunk_batch)]
        merged = {name: torch.cat([out[name] for out in outputs]).float() for name in outputs[0]}
        return ChunkScores(starts, merged if logits else self.scores(merged))

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
