"""One way to read a track for a model and one way to encode it, for training features and serving alike.

`TrackReader` turns an audio file (and its lyrics and cover, when a model reads them) into a
`DecodedTrack`; it never raises: a bad file gives the track's ``error``, a bad sidecar an entry of
``sidecar_errors``. Audio is cut on the evaluation grid of `AudioTagger.track_chunks`, so a file gets the
numbers of ``tagger.annotate(load_audio(path))``. A file whose header says it is longer than
``stream_above_seconds`` (10 minutes) is read frame by frame twice, its length first (`scan_length`), then
only its chunks, so memory does not grow with its length; its grid is then laid on a length that may be one
sample off the whole decode's, and its last chunk lacks the last ~1 ms that only a whole-file decode
flushes out of the resampler, so its numbers differ slightly (up to ~4e-3 in a probability on the demo
tracks) from ``annotate(load_audio(path))``, but are the same wherever it is read.

A track whose audio is silent (nothing above -60 dBFS) or shorter than one chunk gets a warning; silent
audio, or audio covering less than half a chunk (the rest being zero padding, which the model never saw
in training), is not ``informative``: no decisions, factors or training features come from it. A clipped
track (0.1 % of its samples at 0.99 of full scale or more) is only flagged. A FLAC whose decoded samples
differ from its MD5 signature (damaged frames, which FFmpeg decodes without a word) is an error: its tags
would describe the damage (`tagging.audio.verify_flac`). Other codecs carry no such signature; their
undecodable frames are errors (``corrupt``).

A reader made with ``tempo_key`` also estimates the track's global tempo and key (`tagging.tempo_key`) from
the central minute of the wave it decoded for the model (of a streamed file, one more range of the same
decoding pass): not from silent or uninformative audio, and no tempo from less than
`MIN_TEMPO_SECONDS`.

`encode_tracks` runs the frozen encoders over decoded tracks: the tagger's embedding and scores of the
informative audio, the lyrics and cover embeddings. `tagging.data.features` (what fusion and the multimodal
tagger train on), every annotator of ``coldtag annotate`` and `fusion.pipeline.ColdStartPipeline` all go
through these two steps.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch

from tagging.audio import audio_info, level_histogram, load_audio, read_ranges, scan_length, verify_flac
from tagging.grid import chunk_starts, grid_chunks
from tagging.models.image import CoverEncoder, load_cover
from tagging.models.tagger import AudioTagger
from tagging.models.text import LyricsEncoder, read_lyrics
from tagging.tempo_key import TEMPO_WINDOW_SECONDS, Key, Tempo, central_range, estimate_tempo_key

log = logging.getLogger(__name__)

SILENT, SHORT, CLIPPED = "silent", "short", "clipped"
# Audio covering less than this share of one chunk is mostly the zero padding the model never saw in
# training: nothing is decided from it.
DECIDABLE_SHARE = 0.5
CLIPPED_SHARE = 1e-3
# Less audio than one window of the tempo's autocorrelation says nothing about a global tempo.
MIN_TEMPO_SECONDS = TEMPO_WINDOW_SECONDS


class RefusedInput(ValueError):
    """An input that is not read: outside the input root, or a manifest row without a path."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.reason = reason


@dataclass
class DecodedTrack:
    """What a model reads of one track. ``chunks`` ``(chunks, chunk_samples)`` on the tagger's grid;
    ``error`` (``{type, message}``) when the audio could not be used; ``lyrics``/``cover`` (text, image
    tensor) when read, their failures in ``sidecar_errors`` (``{modality, type, message}``)."""

    audio_path: str | None = None
    lyrics_path: str | None = None
    cover_path: str | None = None
    chunks: torch.Tensor | None = None
    duration: float | None = None
    sample_rate: int | None = None  # the file's own
    channels: int | None = None
    warnings: list[str] = field(default_factory=list)
    informative: bool = False
    lyrics: str | None = None
    cover: torch.Tensor | None = None
    tempo: Tempo | None = None  # read with ``tempo_key``, from informative audio with onsets
    key: Key | None = None  # read with ``tempo_key``, from informative audio
    error: dict | None = None
    sidecar_errors: list[dict] = field(default_factory=list)

    def sidecar_messages(self) -> dict[str, str]:
        """``{modality: "path: reason"}`` of the sidecars that could not be used."""
        paths = {"lyrics": self.lyrics_path, "cover": self.cover_path}
        return {e["modality"]: f"{paths[e['modality']]}: {e['message']}" for e in self.sidecar_errors}


@dataclass(frozen=True)
class TrackReader:
    """Files -> `DecodedTrack`; cheap to pickle, so it runs in decoding workers.

    ``sample_rate``, ``chunk_samples`` and ``max_chunks`` are the tagger's evaluation grid
    (`AudioTagger.track_chunks`); ``lyrics``/``cover_size``: read those sidecars too; ``tempo_key``: estimate
    the track's tempo and key too.
    """

    sample_rate: int
    chunk_samples: int
    max_chunks: int | None
    lyrics: bool = False
    cover_size: int | None = None
    stream_above_seconds: float = 600.0
    tempo_key: bool = False

    @classmethod
    def for_tagger(cls, tagger: AudioTagger, **kwargs) -> TrackReader:
        return cls(tagger.sample_rate, tagger.chunk_samples, tagger.eval_chunks, **kwargs)

    def __call__(self, audio: str | None, lyrics: str | None = None, cover: str | None = None,
                 refused: str | None = None, refused_sidecars: tuple[tuple[str, str], ...] = ()) -> DecodedTrack:
        """Read the audio (None: none) and the sidecars this reader reads. ``refused``: why the track is not
        to be read at all (its error); ``refused_sidecars``: ``((modality, reason), ...)``, sidecars not to read."""
        lyrics, cover = self.sidecars(lyrics, cover)
        track = DecodedTrack(audio_path=audio, lyrics_path=lyrics, cover_path=cover)
        if refused is not None:  # nothing of a refused track is read
            track.error = error_value(RefusedInput(audio or "", refused))
            return track
        if audio is not None:
            try:
                self._read_audio(audio, track)
            except Exception as error:  # one bad file becomes its error; the sidecars are still read
                track.error = error_value(error)
        wanted = {"lyrics": self.lyrics, "cover": bool(self.cover_size)}
        for modality, reason in refused_sidecars:
            if wanted[modality]:
                track.sidecar_errors.append({"modality": modality, "type": "RefusedInput", "message": reason})
        for modality, path in (("lyrics", lyrics), ("cover", cover)):
            if path is None:
                continue
            try:
                value = read_lyrics(path) if modality == "lyrics" else load_cover(path, self.cover_size)
                setattr(track, modality, value)
            except Exception as error:  # the audio is still used; the sidecar's error is recorded
                track.sidecar_errors.append({"modality": modality, **error_value(error)})
        return track

    def sidecars(self, lyrics: str | None, cover: str | None) -> tuple[str | None, str | None]:
        """Of a track's lyrics and cover files, those this reader reads (None for the others)."""
        return (lyrics if self.lyrics else None), (cover if self.cover_size else None)

    def _read_audio(self, path: str, track: DecodedTrack) -> None:
        # A FLAC whose frames were damaged decodes without a word; its MD5 signature tells (an error).
        verify_flac(path)
        info = audio_info(path)
        if info.duration is not None and info.duration <= self.stream_above_seconds:
            wave = load_audio(path, self.sample_rate)
            length, levels = len(wave), level_histogram(wave)
            chunks = grid_chunks(wave, self.chunk_samples, self.max_chunks)
        else:
            length, levels = scan_length(path, self.sample_rate)
            starts = chunk_starts(length, self.chunk_samples, self.max_chunks)
            ranges = [(s, s + self.chunk_samples) for s in starts]
            if self.tempo_key:  # the central minute, in the same pass (read_ranges takes ranges by start)
                ranges.append(central_range(length, self.sample_rate))
            order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
            read = dict(zip(order, read_ranges(path, self.sample_rate, [ranges[i] for i in order]), strict=True))
            chunks = []
            for index, start in enumerate(starts):
                wave = read[index]
                wave[max(0, length - start):] = 0  # past the scanned length, as grid_chunks pads
                chunks.append(wave)
            chunks = torch.stack(chunks)
            wave = read.get(len(starts))
        warnings = []
        if int(levels[1:].sum()) == 0:
            warnings.append(SILENT)
        if length < self.chunk_samples:
            warnings.append(SHORT)
        if int(levels[2]) > CLIPPED_SHARE * length:
            warnings.append(CLIPPED)
        track.chunks, track.duration = chunks, length / self.sample_rate
        track.sample_rate, track.channels, track.warnings = info.sample_rate, info.num_channels, warnings
        track.informative = SILENT not in warnings and length >= DECIDABLE_SHARE * self.chunk_samples
        if self.tempo_key and track.informative:
            self._read_tempo_key(path, wave, track)

    def _read_tempo_key(self, path: str, wave: torch.Tensor, track: DecodedTrack) -> None:
        try:
            tempo, track.key = estimate_tempo_key(wave, self.sample_rate)
        except Exception:  # a fault of the estimator, not of the file: the track keeps its tags
            log.exception("%s: no tempo and key", path)
            return
        onsets = not np.isnan(tempo.bpm)
        track.tempo = tempo if onsets and track.duration >= MIN_TEMPO_SECONDS else None


def error_value(error: BaseException) -> dict:
    """The ``{type, message}`` of an error; an unexpected one's traceback goes to the log."""
    message = getattr(error, "reason", None)
    if message is None:
        message = str(error) or type(error).__name__
        log.error("unexpected error: %s", "".join(traceback.format_exception(error)).rstrip())
    return {"type": type(error).__name__, "message": message}


@dataclass
class Encodings:
    """Per track of a batch: ``embeddings[modality][i]``, the content a model may use (a vector, or None
    when the track lacks that modality or its audio is not informative); ``audio_embeddings[i]`` and
    ``audio_scores[i]`` (``{group: scores}``), the tagger's numbers of every track with audio, informative
    or not (None without audio)."""

    embeddings: dict[str, list[torch.Tensor | None]]
    audio_embeddings: list[torch.Tensor | None]
    audio_scores: list[dict[str, torch.Tensor] | None]

    def known(self, index: int) -> dict[str, torch.Tensor]:
        """Track ``index``'s usable embeddings of the modalities it has."""
        return {m: column[index] for m, column in self.embeddings.items() if column[index] is not None}


@torch.inference_mode()
def encode_tracks(tracks: list[DecodedTrack], tagger: AudioTagger | None, lyrics: LyricsEncoder | None = None,
                  cover: CoverEncoder | None = None) -> Encodings:
    """Decoded tracks -> their content embeddings, each encoder on its own device, in one batch each."""
    embeddings: dict[str, list[torch.Tensor | None]] = {}
    n = len(tracks)
    audio_embeddings: list[torch.Tensor | None] = [None] * n
    audio_scores: list[dict[str, torch.Tensor] | None] = [None] * n
    if tagger is not None:
        heard = [i for i, t in enumerate(tracks) if t.chunks is not None]
        if heard:
            device = next(tagger.parameters()).device
            outputs = tagger.chunk_outputs([tracks[i].chunks.to(device) for i in heard])
            for row, i in enumerate(heard):
                audio_embeddings[i] = outputs.embedding[row]
                audio_scores[i] = {name: value[row] for name, value in outputs.scores.items()}
        embeddings["audio"] = [e if t.informative else None for e, t in zip(audio_embeddings, tracks, strict=True)]
    for modality, encoder in (("lyrics", lyrics), ("cover", cover)):
        if encoder is None:
            continue
        have = [i for i, t in enumerate(tracks) if getattr(t, modality) is not None]
        column: list[torch.Tensor | None] = [None] * n
        if have:
            device = next(encoder.parameters()).device
            if modality == "lyrics":
                tokens = encoder.tokenize([tracks[i].lyrics for i in have])
                encoded = encoder(**{k: v.to(device) for k, v in tokens.items()})
            else:
                encoded = encoder(torch.stack([tracks[i].cover for i in have]).to(device))
            for row, i in enumerate(have):
                column[i] = encoded[row]
        embeddings[modality] = column
    return Encodings(embeddings, audio_embeddings, audio_scores)
