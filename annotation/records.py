"""The records of an output folder: one layout for every record, atomic Parquet parts, and the resume rule.

Records are committed in whole part files ``OUT/parts/part-<run>-<rank>-<seq>.parquet``: a part is written
to a temporary name and renamed, so it is there whole or not at all, and a run can be killed at any moment
and resumed. `Records` owns that folder: which tracks are done (`pending`), what a run wrote (`tally`),
dropping superseded copies (`latest`) and starting over (`clear`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
# The track's global tempo and key by signal processing (`tagging.tempo_key`), whatever the model: null when
# annotate ran with --no-tempo-key, and for silent, too short or failed audio.
TEMPO_KEY_FIELDS = [
    pa.field("tempo", pa.struct([("bpm", pa.float64()), ("confidence", pa.float64())])),
    pa.field("key", pa.struct([("tonic", pa.string()), ("mode", pa.string()), ("confidence", pa.float64()),
                               ("mode_confidence", pa.float64())])),
]
RUN_FIELDS = [
    pa.field("embedding", pa.list_(pa.float32())), pa.field("model_kind", pa.string()),
    pa.field("model_sha256", pa.string()), pa.field("coldtag_version", pa.string()),
    pa.field("seconds", pa.float64()), pa.field("error", _ERROR),
]


def record_schema(model_columns: list[pa.Field]) -> pa.Schema:
    """Every record's columns, a failed file's too: the file's, the model's (an annotator's ``columns()``),
    the tempo and key, and the run's."""
    return pa.schema(FILE_FIELDS + model_columns + TEMPO_KEY_FIELDS + RUN_FIELDS)


def tempo_key_values(tempo: Tempo | None, key: Key | None) -> dict:
    """A track's `TEMPO_KEY_FIELDS` values from its estimates (None: not estimated); the tonic by name."""
    return {"tempo": None if tempo is None else {"bpm": tempo.bpm, "confidence": tempo.confidence},
            "key": None if key is None else {"tonic": PITCH_CLASSES[key.tonic], "mode": key.mode,
                                             "confidence": key.confidence, "mode_confidence": key.mode_confidence}}


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
