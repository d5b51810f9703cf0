"""Annotate a catalog with a packaged tagger: one record per audio file, resumable, in Parquet parts.

    coldtag annotate uploads/ --model runs/demo/tagger/model --out annotations/
    coldtag annotate manifest.parquet --model runs/demo/tagger/model --out annotations/ --workers 2
    python annotate.py uploads/ --model runs/demo/tagger/model --out annotations/

INPUT is a folder (every audio file below it; a track's id is its path relative to the folder) or a
manifest (CSV/TSV/Parquet with ``track_id`` and ``audio_path``, `tagging.labels.read_manifest`).

Every record has the same columns, a failed file's too: id, path, size, mtime, duration, sample_rate,
channels, one column per label group of the model (as `AudioTagger.annotate` gives it: probabilities and
decided tags, or graded values in their units), embedding, model_sha256, seconds, error (``{type,
message}``, null when fine). Records are committed in whole part files (``OUT/parts/part-*.parquet``); a
re-run skips every file whose path, size and mtime were annotated by the same model, retries the failed
ones only with ``--retry-errors``, and ``--overwrite`` starts over. Files are decoded in ``--workers``
processes while the model, loaded once, runs on batches of ``--batch-size`` tracks
(`AudioTagger.annotate_batch`: a track gets the numbers of ``annotate(load_audio(path))``).

Not yet: multimodal taggers and cold-start pipelines, lyrics and cover sidecars, DDP and Ray engines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset

from coldtag.storage import PACKAGE_FILE, ProvenanceError, atomic_path, write_json
from tagging.audio import audio_info, load_audio
from tagging.labels import MULTILABEL, read_manifest
from tagging.models import AudioTagger

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".mp4", ".aif",
                            ".aiff", ".wma", ".webm"})
MANIFEST_SUFFIXES = (".parquet", ".csv", ".tsv")
PARTS_DIR = "parts"
SUMMARY_FILE = "summary.json"
FILE_COLUMNS = ("id", "path", "size", "mtime", "duration", "sample_rate", "channels")
RUN_COLUMNS = ("embedding", "model_sha256", "seconds", "error")
_PART = re.compile(r"^part-(\d+)-[0-9a-f]+\.parquet$")


class UsageError(ValueError):
    """A bad argument: reported in one line, exit code 2."""


@dataclass(frozen=True)
class Item:
    id: str
    path: str


def _committed(path: Path) -> None:
    """Called after each part file is committed (a hook for tests that interrupt a run)."""


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="coldtag annotate", description=__doc__.split("\n")[0])
    parser.add_argument("input", help="a folder of audio files or a CSV/TSV/Parquet manifest")
    parser.add_argument("--model", required=True, help="a packaged AudioTagger (save_pretrained folder)")
    parser.add_argument("--out", required=True, help="the output folder (part files and summary.json)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (0: decode in this one)")
    parser.add_argument("--batch-size", type=int, default=8, help="tracks per model batch")
    parser.add_argument("--part-size", type=int, default=256, help="records per committed part file")
    parser.add_argument("--limit", type=int, default=None, help="annotate at most this many files in this run")
    parser.add_argument("--device", default="cpu", help="torch device of the model")
    parser.add_argument("--retry-errors", action="store_true", help="annotate again the files that failed")
    parser.add_argument("--overwrite", action="store_true", help="discard earlier results and start over")
    return parser


def cli_main(args: list[str] | None = None) -> int:
    """``coldtag annotate`` without the ``annotate``; returns the exit code."""
    options = build_parser().parse_args(args)
    try:
        return run(options)
    except UsageError as error:
        print(f"coldtag annotate: error: {error}", file=sys.stderr)
        return 2


def main() -> None:
    """The ``coldtag`` console command."""
    parser = argparse.ArgumentParser(prog="coldtag")
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser(commands.add_parser("annotate", help="annotate a folder or manifest of audio files"))
    options = parser.parse_args()
    try:
        sys.exit(run(options))
    except UsageError as error:
        print(f"coldtag annotate: error: {error}", file=sys.stderr)
        sys.exit(2)


def run(options: argparse.Namespace) -> int:
    for name in ("batch_size", "part_size"):
        if getattr(options, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(options, name)}")
    if options.workers < 0:
        raise UsageError(f"--workers must be >= 0, got {options.workers}")
    if options.limit is not None and options.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {options.limit}")
    items = list_inputs(Path(options.input))
    model = load_model(Path(options.model), options.device)
    if model is None:
        return 1
    started = time.perf_counter()
    out = Path(options.out)
    parts = out / PARTS_DIR
    if options.overwrite:
        for path in _part_files(parts):
            path.unlink()
        (out / SUMMARY_FILE).unlink(missing_ok=True)
    model_hash = model.package["sha256"]
    schema = record_schema(model)
    existing = _part_files(parts)
    if existing and not pq.read_schema(existing[0]).equals(schema):
        raise UsageError(f"{out}: holds records of another layout (a model with other label groups); "
                         "use --overwrite to start over, or another --out")
    previous = read_records(parts, schema)

    pending, skipped = [], 0
    for item in items:
        old = previous.get(item.id)
        if old is not None and old["model_sha256"] == model_hash and (old["error"] is None or
                                                                      not options.retry_errors) \
                and (old["size"], old["mtime"]) == _stat(item.path)[:2]:
            skipped += 1
        else:
            pending.append(item)
    if options.limit is not None:
        pending = pending[:options.limit]

    done, failed = 0, Counter()
    writer = _PartWriter(parts, schema)
    for record in annotate_items(model, pending, options.batch_size, options.workers):
        record["model_sha256"] = model_hash
        writer.add(record)
        if record["error"] is None:
            done += 1
        else:
            failed[_reason(record["error"])] += 1
        if len(writer.rows) >= options.part_size:
            writer.commit()
    writer.commit()
    read_records(parts, schema)  # drops the records that this run's retries and changed files superseded

    seconds = time.perf_counter() - started
    summary = {"input": str(options.input), "model": str(options.model), "model_sha256": model_hash,
               "files": len(items), "done": done, "skipped": skipped, "failed": sum(failed.values()),
               "failed_by_reason": dict(failed.most_common()), "seconds": round(seconds, 3)}
    write_json(out / SUMMARY_FILE, summary)
    reasons = ", ".join(f"{reason}: {count}" for reason, count in failed.most_common())
    print(f"coldtag annotate: {done} done, {skipped} skipped, {sum(failed.values())} failed"
          + (f" ({reasons})" if reasons else "") + f" in {seconds:.1f} s -> {out}")
    nothing_annotated = done == 0 and not any(r["error"] is None for r in previous.values())
    return 1 if not items or (nothing_annotated and failed) else 0


def list_inputs(root: Path) -> list[Item]:
    """The files to annotate: every entry with an audio suffix below a folder (broken ones included, so
    that each becomes an error record), or the rows of a manifest."""
    if root.is_dir():
        found = []
        for directory, folders, files in os.walk(root):
            folders.sort()
            for name in sorted(files) + folders:
                if Path(name).suffix.lower() in AUDIO_SUFFIXES:
                    path = Path(directory) / name
                    found.append(Item(path.relative_to(root).as_posix(), str(path)))
        return sorted(found, key=lambda item: item.id)
    if root.suffix in MANIFEST_SUFFIXES and root.is_file():
        try:
            frame = read_manifest(root)
        except ValueError as error:
            raise UsageError(str(error)) from None
        return [Item(str(track), str(path)) for track, path in zip(frame["track_id"], frame["audio_path"],
                                                                   strict=True)]
    if not root.exists():
        raise UsageError(f"{root}: no such folder or manifest")
    raise UsageError(f"{root}: not a folder or a manifest ({', '.join(MANIFEST_SUFFIXES)})")


def load_model(directory: Path, device: str) -> AudioTagger | None:
    """The packaged tagger, or None after saying in one line why it cannot be used."""
    try:
        kind = json.loads((directory / PACKAGE_FILE).read_text()).get("kind")
    except (OSError, ValueError) as error:
        print(f"coldtag annotate: error: {directory}: not a model package ({error})", file=sys.stderr)
        return None
    if kind != AudioTagger.__name__:
        print(f"coldtag annotate: error: {directory}: a {kind} package; only AudioTagger packages are supported "
              "yet", file=sys.stderr)
        return None
    try:
        return AudioTagger.from_pretrained(directory, map_location=device)
    except (OSError, ValueError, ProvenanceError, RuntimeError) as error:
        print(f"coldtag annotate: error: {directory}: cannot load the model ({error})", file=sys.stderr)
        return None


def record_schema(model: AudioTagger) -> pa.Schema:
    """The columns of every record, a failed file's too."""
    groups = []
    for name, group in model.labels.groups.items():
        if name in FILE_COLUMNS or name in RUN_COLUMNS:
            raise UsageError(f"the model's label group {name!r} has the name of a record column")
        if group.type == MULTILABEL:
            kind = pa.struct([("probabilities", pa.struct([(label, pa.float64()) for label in group.labels])),
                              ("tags", pa.list_(pa.string()))])
        else:
            kind = pa.struct([(label, pa.float64()) for label in group.labels])
        groups.append((name, kind))
    return pa.schema([("id", pa.string()), ("path", pa.string()), ("size", pa.int64()), ("mtime", pa.float64()),
                      ("duration", pa.float64()), ("sample_rate", pa.int32()), ("channels", pa.int32()),
                      *groups, ("embedding", pa.list_(pa.float32())), ("model_sha256", pa.string()),
                      ("seconds", pa.float64()),
                      ("error", pa.struct([("type", pa.string()), ("message", pa.string())]))])


class _Decode(Dataset):
    """One file -> its facts and waveform, or the error that stopped it (never raised)."""

    def __init__(self, items: list[Item], sample_rate: int):
        self.items, self.sample_rate = items, sample_rate

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        started = time.perf_counter()
        size, mtime, _ = _stat(item.path)
        record = {"id": item.id, "path": item.path, "size": size, "mtime": mtime, "duration": None,
                  "sample_rate": None, "channels": None, "error": None, "wave": None}
        try:
            wave = load_audio(item.path, self.sample_rate)
            info = audio_info(item.path)
            record.update(wave=wave, duration=len(wave) / self.sample_rate, sample_rate=info.sample_rate,
                          channels=info.num_channels)
        except Exception as error:  # one bad file becomes its error record
            record["error"] = _error(error)
        record["seconds"] = time.perf_counter() - started
        return record


def _one_thread(_: int) -> None:
    # Each decoding process uses one core; the model's process keeps the others.
    torch.set_num_threads(1)


def annotate_items(model: AudioTagger, items: list[Item], batch_size: int, workers: int):
    """Yield one record per item, in batches decoded by ``workers`` processes."""
    if not items:
        return
    loader = DataLoader(_Decode(items, model.sample_rate), batch_size=batch_size, num_workers=workers,
                        collate_fn=list, worker_init_fn=_one_thread if workers else None)
    for batch in loader:
        good = [record for record in batch if record["error"] is None]
        if good:
            started = time.perf_counter()
            try:
                results = model.annotate_batch([record["wave"] for record in good])
            except Exception:  # find the track that broke the batch, keep the others
                results = []
                for record in good:
                    try:
                        results.append(model.annotate(record["wave"]))
                    except Exception as error:
                        record["error"] = _error(error)
                        results.append(None)
            share = (time.perf_counter() - started) / len(good)
            for record, result in zip(good, results, strict=True):
                record["seconds"] += share
                if result is not None:
                    record.update(result)
        for record in batch:
            record.pop("wave")
            yield record


class _PartWriter:
    """Buffers records and commits them as one part file at a time (atomically)."""

    def __init__(self, parts: Path, schema: pa.Schema):
        self.parts, self.schema, self.rows = parts, schema, []

    def add(self, record: dict) -> None:
        self.rows.append({name: record.get(name) for name in self.schema.names})

    def commit(self) -> None:
        if not self.rows:
            return
        number = max((_part_number(path) for path in _part_files(self.parts)), default=-1) + 1
        path = self.parts / f"part-{number:06d}-{os.urandom(4).hex()}.parquet"
        table = pa.Table.from_pylist(self.rows, schema=self.schema)
        with atomic_path(path) as temporary:
            pq.write_table(table, temporary)
        self.rows = []
        _committed(path)


def read_records(parts: Path, schema: pa.Schema) -> dict[str, dict]:
    """The latest record of each id over the committed part files (file facts, hash and error only).

    A record superseded by a later one of the same id (a retried failure, a file changed since) is
    removed from its part file, which is rewritten atomically, so the parts hold each id once."""
    latest, where = {}, {}
    files = _part_files(parts)
    columns = ["id", "size", "mtime", "model_sha256", "error"]
    for index, path in enumerate(files):
        for row in pq.read_table(path, columns=columns).to_pylist():
            latest[row["id"]] = row
            where[row["id"]] = index
    for index, path in enumerate(files):
        table = pq.read_table(path)
        keep = [where[id_] == index for id_ in table.column("id").to_pylist()]
        if all(keep):
            continue
        if not any(keep):
            path.unlink()
            continue
        # A later part holds a newer record of some of these ids: keep only the others, whole or not at all.
        with atomic_path(path) as temporary:
            pq.write_table(table.filter(pa.array(keep)).cast(schema), temporary)
    return latest


def _part_files(parts: Path) -> list[Path]:
    if not parts.is_dir():
        return []
    return sorted((p for p in parts.iterdir() if _PART.match(p.name)), key=_part_number)


def _part_number(path: Path) -> int:
    return int(_PART.match(path.name).group(1))


def _stat(path: str) -> tuple[int | None, float | None, bool]:
    """Size and mtime of ``path`` (None when it cannot be read), and whether it exists."""
    try:
        stat = os.stat(path)
    except OSError:
        return None, None, False
    return stat.st_size, stat.st_mtime, True


def _error(error: BaseException) -> dict:
    message = getattr(error, "reason", None) or str(error)
    if not hasattr(error, "reason"):
        # An unexpected failure: its traceback goes to the log, its one-line message to the record.
        traceback.print_exception(error, file=sys.stderr)
    return {"type": type(error).__name__, "message": message}


def _reason(error: dict) -> str:
    """The kind of failure for the summary: an unusable file's reason up to its first colon."""
    return f"{error['type']}: {error['message'].split(':')[0]}"


if __name__ == "__main__":
    sys.exit(cli_main())
