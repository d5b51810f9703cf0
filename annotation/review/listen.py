"""What the track page shows of the sound beyond the player: a picture of the waveform above its mel
spectrogram (the models' own front-end, `tagging.frontend.Frontend`), and each chunk's probabilities from
the audio tagger, so that the page can loop the chunk that weighed most for a tag.

The chunks are the tagger's evaluation grid (`AudioTagger.track_chunks`), the ones whose mean probability
the record holds. For a multimodal tagger or a cold-start pipeline they are its audio tagger's, offered for
the groups that tagger shares with the records (same name and labels). Pictures and chunk probabilities are
computed on demand and kept for the last `CACHED` tracks; the model runs one track at a time.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from annotation.review.run import ModelInfo
from tagging.labels import MULTILABEL

CACHED = 64
WIDTH, WAVE_HEIGHT, SPEC_HEIGHT = 1000, 48, 160
SAMPLE_RATE, N_FFT, N_MELS = 16_000, 1024, 96
DYNAMIC_RANGE_DB = 80.0


class Listening:
    """Pictures and chunk probabilities of tracks, for one model."""

    def __init__(self, model: ModelInfo):
        self.model = model
        self._tagger = None
        self._lock = threading.Lock()
        self._pictures: OrderedDict[str, bytes] = OrderedDict()
        self._chunks: OrderedDict[str, dict] = OrderedDict()

    def picture(self, path: Path) -> bytes:
        """PNG, `WIDTH` pixels wide: the waveform's envelope over the log-mel spectrogram, time left to right."""
        key = str(path)
        if key not in self._pictures:
            self._pictures[key] = _picture(path)
            _trim(self._pictures)
        return self._pictures[key]

    def chunks(self, path: Path, labels) -> dict:
        """``{"seconds": chunk length, "starts": [seconds], "groups": {group: {tag: [probability per chunk]}}}``
        for the tag groups of ``labels`` that the audio tagger predicts alike."""
        key = str(path)
        if key not in self._chunks:
            import torch

            from tagging.audio import load_audio

            with self._lock:
                tagger = self._load()
                wave = load_audio(path, tagger.sample_rate)
                with torch.inference_mode():
                    scored = tagger.chunk_scores(wave)
            starts, scores = scored.starts, scored.scores
            shared = {name: group for name, group in tagger.labels.groups.items()
                      if group.type == MULTILABEL and labels.groups.get(name) == group}
            self._chunks[key] = {
                "seconds": tagger.chunk_samples / tagger.sample_rate,
                "starts": [start / tagger.sample_rate for start in starts],
                "groups": {name: {label: scores[name][:, j].tolist() for j, label in enumerate(group.labels)}
                           for name, group in shared.items()}}
            _trim(self._chunks)
        return self._chunks[key]

    def _load(self):
        if self._tagger is None:
            from tagging.models.tagger import AudioTagger

            self._tagger = AudioTagger.from_pretrained(self.model.audio_tagger).eval()
        return self._tagger


def _trim(cache: OrderedDict) -> None:
    while len(cache) > CACHED:
        cache.popitem(last=False)


def _picture(path: Path) -> bytes:
    import torch
    from matplotlib import colormaps
    from PIL import Image

    from tagging.audio import load_audio
    from tagging.frontend import Frontend

    wave = load_audio(path, SAMPLE_RATE)
    hop = max(64, len(wave) // WIDTH)
    with torch.inference_mode():
        spec = Frontend(sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=hop, n_mels=N_MELS)(wave.unsqueeze(0))[0]
    spec = spec.numpy()
    top = spec.max()
    shade = np.clip((spec - (top - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB, 0, 1)[::-1]  # low bands at the bottom
    colours = (colormaps["magma"](shade)[..., :3] * 255).astype(np.uint8)
    spectrogram = Image.fromarray(colours).resize((WIDTH, SPEC_HEIGHT), Image.Resampling.BILINEAR)

    loudness = np.abs(wave.numpy())
    loudness = np.pad(loudness, (0, max(0, WIDTH - len(loudness))))
    envelope = np.maximum.reduceat(loudness, np.linspace(0, len(loudness), WIDTH + 1).astype(int)[:-1])
    envelope = envelope / max(float(envelope.max()), 1e-6)
    strip = np.full((WAVE_HEIGHT, WIDTH, 3), 250, dtype=np.uint8)
    middle = WAVE_HEIGHT / 2
    rows = np.arange(WAVE_HEIGHT)[:, None]
    strip[np.abs(rows - middle) <= envelope[None, :] * (middle - 1)] = (80, 110, 160)

    picture = Image.new("RGB", (WIDTH, WAVE_HEIGHT + SPEC_HEIGHT))
    picture.paste(Image.fromarray(strip), (0, 0))
    picture.paste(spectrogram, (0, WAVE_HEIGHT))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
