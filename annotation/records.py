"""The records of an output folder: one layout for every record, atomic Parquet parts, and the resume rule.

A record is an `AnnotationRecord`. Its fields are the Parquet columns, each annotated with its column's type,
so the layout (`record_schema`) and the mapping of a record to a row (`AnnotationRecord.to_row`, and back with
`from_row`) are read from one list, and a field without a type stops the import.

Records are committed in whole part files ``OUT/parts/part-<run>-<rank>-<seq>.parquet``: a part is written
to a temporary name and renamed, so it is there whole or not at all, and a run can be killed at any moment
and resumed. `Records` owns that folder: which tracks are done (`pending`), what a run wrote (`tally`),
dropping superseded copies (`latest`) and starting over (`clear`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import pyarrow as pa
import pyarrow.parquet as pq

from annotation.inputs import InputError, InputKey, Item
from coldtag.storage import atomic_path
from tagging.keys import PITCH_CLASSES
from tagging.tempo_key import Key, Tempo

PARTS_DIR = "parts"
SUMMARY_FILE = "summary.json"
JSONL_FILE = "annotations.jsonl"
LOG_FILE = "annotate.log"
_MODEL_COLUMNS = "model_columns"  # the record field that stands for the model's own columns
_STRING = pa.string()
_SIDECAR_ERROR = pa.struct([("modality", _STRING), ("type", _STRING), ("message", _STRING)])
_TEMPO = pa.struct([("bpm", pa.float64()), ("confidence", pa.float64())])
_KEY = pa.struct([("tonic", _STRING), ("mode", _STRING), ("confidence", pa.float64()),
                  ("mode_confidence", pa.float64())])
_ERROR = pa.struct([("type", _STRING), ("message", _STRING)])


@dataclass(frozen=True)
class AnnotationRecord:
    """One track's record, a failed track's too. Its fields are the record's columns in their order on disk,
    each annotated with its column's Arrow type (`record_schema`); `to_row` makes it a row of that schema.

    The file's facts come first (the audio's ``size`` and ``mtime``, the sidecars read, the ``input_key`` a
    re-run compares, the audio's ``duration``, ``sample_rate`` and ``channels``), then the modalities the model
    read, the file's ``warnings`` and ``sidecar_errors``, then ``model_columns``: the values of the model's own
    columns by name (its label groups, a pipeline's factors, users and similar tracks: an annotator's
    ``columns()``), absent for a track the model could not take. ``tempo`` and ``key`` are the track's by signal
    processing (`tagging.tempo_key`), whatever the model: None when annotate ran with ``--no-tempo-key``, and for
    silent, too short or failed audio. Then the model's ``embedding``, the run's facts (the package's kind and
    hash, coldtag's version, the seconds the track took) and the ``error`` (``{type, message}``) that kept the
    track from being annotated.
    """

    id: Annotated[str, _STRING]
    path: Annotated[str, _STRING]
    size: Annotated[int | None, pa.int64()] = None
    mtime: Annotated[float | None, pa.float64()] = None
    lyrics_path: Annotated[str | None, _STRING] = None
    cover_path: Annotated[str | None, _STRING] = None
    input_key: Annotated[InputKey | None, _STRING] = None
    duration: Annotated[float | None, pa.float64()] = None
    sample_rate: Annotated[int | None, pa.int32()] = None
    channels: Annotated[int | None, pa.int32()] = None
    modalities: Annotated[list[str], pa.list_(_STRING)] = field(default_factory=list)
    warnings: Annotated[list[str], pa.list_(_STRING)] = field(default_factory=list)
    sidecar_errors: Annotated[list[dict[str, str]], pa.list_(_SIDECAR_ERROR)] = field(default_factory=list)
    model_columns: dict[str, Any] = field(default_factory=dict)
    tempo: Annotated[Tempo | None, _TEMPO] = None
    key: Annotated[Key | None, _KEY] = None
    embedding: Annotated[list[float] | None, pa.list_(pa.float32())] = None
    model_kind: Annotated[str | None, _STRING] = None
    model_sha256: Annotated[str | None, _STRING] = None
    coldtag_version: Annotated[str | None, _STRING] = None
    seconds: Annotated[float | None, pa.float64()] = None
    error: Annotated[dict[str, str] | None, _ERROR] = None

    def to_row(self) -> dict[str, Any]:
        """The record as a row of `record_schema`: the model's columns in the place of ``model_columns``, the
        tempo and key as structs, the key's tonic by name."""
        row = {}
        for column in fields(self):
            value = getattr(self, column.name)
            if column.name == _MODEL_COLUMNS:
                row.update(value)
            else:
                row[column.name] = value
        row["tempo"] = None if self.tempo is None else self.tempo._asdict()
        row["key"] = None if self.key is None else {**self.key._asdict(), "tonic": PITCH_CLASSES[self.key.tonic]}
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AnnotationRecord:
        """The record of a row of `record_schema` (such as ``read_annotations(out).to_pylist()`` gives): the
        columns that are no field of the record are the model's (null, as None, for a track it could not take)."""
        values = {name: row[name] for name in RECORD_COLUMNS}
        tempo, key = values.pop("tempo"), values.pop("key")
        return cls(**values, model_columns={name: value for name, value in row.items() if name not in RECORD_COLUMNS},
                   tempo=None if tempo is None else Tempo(**tempo),
                   key=None if key is None else Key(**{**key, "tonic": PITCH_CLASSES.index(key["tonic"])}))


def _column_types(record: type[AnnotationRecord]) -> dict[str, pa.DataType]:
    """The Arrow type of every field of ``record`` but ``model_columns``; `TypeError` for a field without one,
    so that no field can be added to the record and left out of its layout."""
    hints = get_type_hints(record, include_extras=True)
    types = {}
    for column in fields(record):
        if column.name == _MODEL_COLUMNS:
            continue
        arrow = getattr(hints[column.name], "__metadata__", (None,))[0]
        if not isinstance(arrow, pa.DataType):
            raise TypeError(f"{record.__name__}.{column.name} has no Arrow type: annotate it "
                            "Annotated[..., pa.<type>]")
        types[column.name] = arrow
    return types


_COLUMN_TYPES = _column_types(AnnotationRecord)
# The columns every record has, whatever the model: no model column may take one of these names.
RECORD_COLUMNS = tuple(_COLUMN_TYPES)


def record_schema(model_columns: list[pa.Field]) -> pa.Schema:
    """Every record's columns, a failed file's too: `AnnotationRecord`'s fields in their order, with the model's
    own (an annotator's ``columns()``) in the place of ``model_columns``."""
    columns = []
    for column in fields(AnnotationRecord):
        if column.name == _MODEL_COLUMNS:
            columns += model_columns
        else:
            columns.append(pa.field(column.name, _COLUMN_TYPES[column.name]))
    return pa.schema(columns)


def part_run(path: Path) -> int:
    """The run number in a part file's name."""
    return int(path.name.split("-")[1])


@dataclass
class Records:
    """The committed records of an output folder, and the writer of this process's new parts.

    A record superseded by a later one of the same id (a retried failure, a changed file) is removed from
    its older part by `latest`, which rewrites that part atomically; readers use `read_annotations`.
    """

    out: Path
    schema: pa.Schema
    run: int = 0
    rank: int = 0
    rows: list[dict] = field(default_factory=list)  # `AnnotationRecord.to_row` of the records not committed
    _seq: int = 0

    @property
    def parts(self) -> Path:
        return self.out / PARTS_DIR

    def files(self) -> list[Path]:
        if not self.parts.is_dir():
            return []
        return sorted(p for p in self.parts.iterdir() if p.name.startswith("part-") and p.suffix == ".parquet")

    def next_run(self) -> int:
        return max((part_run(p) for p in self.files()), default=-1) + 1

    def clear(self) -> None:
        """Start over: every part and the summary and JSONL made from them."""
        for path in [*self.files(), self.out / SUMMARY_FILE, self.out / JSONL_FILE]:
            path.unlink(missing_ok=True)

    def check_layout(self) -> None:
        files = self.files()
        if files and not pq.read_schema(files[0]).equals(self.schema):
            raise InputError(f"{self.out}: holds records of another layout (a model with other label groups, or "
                             "an older coldtag's); use --overwrite to start over, or another --out")

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

    def pending(self, items: list[Item], input_key: Callable[[Item], InputKey], model_sha256: str, retry_errors: bool,
                prune: bool = True) -> tuple[list[Item], int]:
        """The resume rule: an item is skipped when its latest record was made by the same model from the same
        files (``input_key(item)``), and did not fail or failures are not retried. Returns the items to do
        and how many were skipped."""
        previous = self.latest(prune=prune)
        pending, skipped = [], 0
        for item in items:
            old = previous.get(item.id)
            if (old is not None and old["model_sha256"] == model_sha256 and old["input_key"] == input_key(item)
                    and (old["error"] is None or not retry_errors)):
                skipped += 1
            else:
                pending.append(item)
        return pending, skipped

    def tally(self, run: int) -> tuple[int, float, Counter]:
        """What run ``run`` wrote, before `latest` drops superseded copies (so a track written twice counts
        twice): records done, their audio seconds, and failures by reason."""
        done, audio_seconds, failed = 0, 0.0, Counter()
        for path in self.files():
            if part_run(path) != run:
                continue
            for row in pq.read_table(path, columns=["error", "duration"]).to_pylist():
                if row["error"] is None:
                    done += 1
                    audio_seconds += row["duration"] or 0.0
                else:
                    failed[f"{row['error']['type']}: {row['error']['message'].split(':')[0]}"] += 1
        return done, audio_seconds, failed

    def add(self, record: AnnotationRecord) -> None:
        """Keep ``record`` for the next part (`commit`)."""
        self.rows.append(record.to_row())

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
