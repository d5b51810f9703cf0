"""What crosses annotate's boundaries has a type: the record (one `AnnotationRecord` field per column, in the
order on disk, and a record that comes back from its Parquet row with every field), the `Annotator` protocol
the annotators satisfy, and the `EngineOptions` the command gives its engine."""

from dataclasses import FrozenInstanceError, dataclass, fields

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import annotation.records as records_module
from annotation.annotators import Annotator, AudioAnnotator, Prediction, annotate_tracks, group_fields
from annotation.cli import build_parser, cli_main, engine_options
from annotation.engines import EngineOptions
from annotation.inputs import InputKey, Item
from annotation.reader import read_item
from annotation.records import RECORD_COLUMNS, AnnotationRecord, Records, read_annotations, record_schema
from tagging.tempo_key import Key, Tempo
from tests.helpers.review_runs import make_package, write_tone

GENRE = pa.field("genre", pa.struct([("probabilities", pa.struct([("rock", pa.float64()), ("jazz", pa.float64())])),
                                     ("tags", pa.list_(pa.string()))]))
# The columns of every record file, in their order, as readers of annotation files (the review page, the docs'
# examples, scripts) find them; the model's own columns go between ``sidecar_errors`` and ``tempo``.
LAYOUT = ["id", "path", "size", "mtime", "lyrics_path", "cover_path", "input_key", "duration", "sample_rate",
          "channels", "modalities", "warnings", "sidecar_errors", "genre", "tempo", "key", "embedding", "model_kind",
          "model_sha256", "coldtag_version", "seconds", "error"]


def _full_record() -> AnnotationRecord:
    """A record with every field away from its default (floats exact in float32, for the embedding)."""
    return AnnotationRecord(
        id="album/one.flac", path="/catalog/album/one.flac", size=1234, mtime=1700000000.25,
        lyrics_path="/catalog/album/one.txt", cover_path="/catalog/album/one.jpg",
        input_key=InputKey('[["/catalog/album/one.flac", 1234, 1700000000.25]]'), duration=31.5, sample_rate=44100,
        channels=2, modalities=["audio", "lyrics"], warnings=["clipped"],
        sidecar_errors=[{"modality": "cover", "type": "CoverError", "message": "not an image"}],
        model_columns={"genre": {"probabilities": {"rock": 0.75, "jazz": 0.125}, "tags": ["rock"]}},
        tempo=Tempo(bpm=121.5, confidence=0.5), key=Key(tonic=9, mode="minor", confidence=0.625, mode_confidence=0.75),
        embedding=[0.5, -1.25, 2.0], model_kind="AudioTagger", model_sha256="ab" * 32, coldtag_version="1.2.3",
        seconds=0.0625, error={"type": "Warning", "message": "kept for the test"})


def test_the_layout_is_the_records_fields_in_their_order_with_the_models_columns_in_place():
    schema = record_schema([GENRE])
    assert schema.names == LAYOUT
    assert list(RECORD_COLUMNS) == [name for name in LAYOUT if name != "genre"]
    assert [f.name for f in fields(AnnotationRecord)] == [*RECORD_COLUMNS[:13], "model_columns", *RECORD_COLUMNS[13:]]
    assert schema.field("genre") == GENRE
    assert (schema.field("size").type, schema.field("sample_rate").type) == (pa.int64(), pa.int32())
    assert schema.field("embedding").type == pa.list_(pa.float32())
    assert schema.field("key").type.names == ["tonic", "mode", "confidence", "mode_confidence"]


def test_a_label_group_named_like_a_record_column_is_refused():
    from tagging.models.tagger import AudioTagger

    model = AudioTagger({"groups": {"path": {"type": "multilabel", "labels": ["a", "b"]}}}, backbone="tiny", width=4,
                        embedding_dim=16, sample_rate=8000, n_fft=256, hop_length=128, n_mels=32)
    with pytest.raises(ValueError, match="'path' has the name of a record column"):
        group_fields(model)


def test_a_field_without_a_column_type_is_refused():
    @dataclass(frozen=True)
    class Extended(AnnotationRecord):
        album: str | None = None

    with pytest.raises(TypeError, match=r"Extended\.album has no Arrow type"):
        records_module._column_types(Extended)


def test_a_record_comes_back_from_its_parquet_row_with_every_field(tmp_path):
    record, empty = _full_record(), AnnotationRecord(id="", path="")
    assert all(getattr(record, f.name) != getattr(empty, f.name) for f in fields(record))
    writer = Records(tmp_path, record_schema([GENRE]))
    writer.add(record)
    part = writer.commit()
    assert pq.read_schema(part).equals(writer.schema)
    (row,) = read_annotations(tmp_path).to_pylist()
    assert list(row) == LAYOUT
    assert row["tempo"] == {"bpm": 121.5, "confidence": 0.5}
    assert row["key"] == {"tonic": "A", "mode": "minor", "confidence": 0.625, "mode_confidence": 0.75}
    assert row["genre"] == record.model_columns["genre"] and row["input_key"] == record.input_key
    assert AnnotationRecord.from_row(row) == record


def test_a_failed_record_has_every_column_and_nulls_for_what_it_could_not_give(tmp_path):
    writer = Records(tmp_path, record_schema([GENRE]))
    writer.add(AnnotationRecord(id="bad.wav", path="/catalog/bad.wav",
                                error={"type": "AudioDecodeError", "message": "empty: 0 bytes"}))
    writer.commit()
    (row,) = read_annotations(tmp_path).to_pylist()
    assert list(row) == LAYOUT
    assert {name for name, value in row.items() if value is not None} == {"id", "path", "modalities", "warnings",
                                                                           "sidecar_errors", "error"}
    assert row["modalities"] == row["warnings"] == row["sidecar_errors"] == []


def test_the_audio_annotator_is_an_annotator_and_fills_exactly_its_columns(tmp_path):
    torch.manual_seed(0)
    make_package(tmp_path / "model")
    annotator = AudioAnnotator.from_package(tmp_path / "model", "cpu")
    assert isinstance(annotator, Annotator)
    tone = write_tone(tmp_path / "tone.wav", seconds=2.0)
    read = read_item(annotator.reader, Item("tone.wav", str(tone)))
    (prediction,) = annotator.predict([read.track])
    assert isinstance(prediction, Prediction) and prediction.modalities == ["audio"]
    assert list(prediction.columns) == [column.name for column in annotator.columns()] == ["genre", "mood", "graded"]
    assert len(prediction.embedding) == 16

    (record,) = annotate_tracks(annotator, [read])
    assert (record.id, record.path, record.input_key, record.duration) == ("tone.wav", str(tone), read.input_key, 2.0)
    assert record.model_columns == prediction.columns and record.model_sha256 == annotator.package["sha256"]
    table = pa.Table.from_pylist([record.to_row()], schema=record_schema(annotator.columns()))
    assert AnnotationRecord.from_row(table.to_pylist()[0]).model_columns["genre"] == prediction.columns["genre"]


def test_the_engine_options_carry_the_values_given_on_the_command_line():
    command = ["uploads/", "--model", "model/", "--out", "out/"]
    assert engine_options(build_parser().parse_args(command)) == EngineOptions(
        batch_size=8, part_size=256, workers=2, threads=None, device="auto", devices=1, num_nodes=1,
        allow_outside=False, progress=True)
    given = engine_options(build_parser().parse_args([
        *command, "--engine", "ddp", "--batch-size", "5", "--part-size", "7", "--workers", "0", "--threads", "3",
        "--device", "cpu", "--devices", "2", "--num-nodes", "3", "--allow-outside", "--no-progress"]))
    assert given == EngineOptions(batch_size=5, part_size=7, workers=0, threads=3, device="cpu", devices=2,
                                  num_nodes=3, allow_outside=True, progress=False)
    with pytest.raises(FrozenInstanceError):
        given.batch_size = 1


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--batch-size", "0", "--batch-size must be >= 1, got 0"),
    ("--part-size", "-2", "--part-size must be >= 1, got -2"),
    ("--devices", "0", "--devices must be >= 1, got 0"),
    ("--num-nodes", "0", "--num-nodes must be >= 1, got 0"),
    ("--workers", "-1", "--workers must be >= 0, got -1"),
    ("--threads", "0", "--threads must be >= 1, got 0"),
    ("--limit", "0", "--limit must be >= 1, got 0"),
    ("--devices", "2", "--devices and --num-nodes are for --engine ddp"),
])
def test_a_bad_engine_option_exits_2_in_one_line_before_anything_is_read(option, value, says, tmp_path, capsys):
    code = cli_main([str(tmp_path / "nowhere"), "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "out"),
                     option, value])
    assert (code, capsys.readouterr().err) == (2, f"coldtag annotate: error: {says}\n")
    assert not (tmp_path / "out").exists()
