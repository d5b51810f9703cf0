"""Annotate a catalog with a packaged model: one record per audio file, resumable, in Parquet parts.

    coldtag annotate uploads/ --model runs/demo/tagger/model --out annotations/
    coldtag annotate manifest.csv --model runs/demo/pipeline --out annotations/ --format jsonl
    coldtag annotate 'uploads/**/*.mp3' --model runs/demo/multimodal/model --out annotations/
    coldtag annotate uploads/ --model runs/demo/tagger/model --out annotations/ --engine ddp --devices 4
    coldtag annotate uploads/ --model runs/demo/tagger/model --out annotations/ --engine ray

INPUT is a folder (audio files below it, with lyrics ``.txt`` and cover ``.jpg``/``.png`` sidecars of the
same stem; a track's id is its path relative to the folder), a manifest (CSV/TSV/JSONL/Parquet with
``track_id`` and ``audio_path``, optional ``lyrics_path`` and ``cover_path``, relative to the manifest and
confined to its folder unless ``--allow-outside``) or a glob. ``--model`` is an `AudioTagger`, a
`MultimodalTagger` or a `ColdStartPipeline` package (`annotation.annotators`).

Every record has the same columns, a failed file's too (`annotation.records.record_schema`), among them the
track's ``tempo`` (``bpm``, ``confidence``) and ``key`` (``tonic``, ``mode``, ``confidence``,
``mode_confidence``) by signal processing (`tagging.tempo_key`, from the central minute of the audio the model
reads; null for silent or too short audio, and with ``--no-tempo-key``). Records
are committed in whole part files under ``OUT/parts``; a re-run skips every track whose audio and
sidecars (path, size, mtime) were annotated by the same model, retries failures only with
``--retry-errors``, and ``--overwrite`` starts over. ``OUT/summary.json`` and the last line say what was
done, skipped and failed by reason; ``OUT/annotate.log`` holds the tracebacks of unexpected errors.
The exit code is 0 unless nothing could be annotated (1) or an argument, the input or the model is
unusable (2, one line).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import time
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from annotation.annotators import Annotator, load_annotator
from annotation.engines import EngineOptions
from annotation.engines.local import run_local
from annotation.inputs import InputError, list_inputs
from annotation.reader import input_key, log_to
from annotation.records import JSONL_FILE, LOG_FILE, SUMMARY_FILE, Records, read_annotations, record_schema
from coldtag.storage import write_json
from tagging.pretrained.convert import known_names, resolve_model

ENGINES = ("local", "ddp", "ray")
log = logging.getLogger("coldtag.annotate")


class UsageError(ValueError):
    """A bad argument, input or model: reported in one line, exit code 2."""


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="coldtag annotate", description=__doc__.split("\n")[0])
    parser.add_argument("input", help="a folder of audio files, a CSV/TSV/JSONL/Parquet manifest, or a glob")
    parser.add_argument("--model", required=True,
                        help="a packaged AudioTagger, MultimodalTagger or ColdStartPipeline, or a pretrained name: "
                             f"{', '.join(known_names())}")
    parser.add_argument("--out", required=True, help="the output folder (parts/, summary.json, annotate.log)")
    parser.add_argument("--format", choices=("parquet", "jsonl"), default="parquet",
                        help="jsonl: also write OUT/annotations.jsonl, the latest record of every track")
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="local: this process and --workers decoders; ddp: Lightning on --devices x "
                             "--num-nodes; ray: Ray Data (pip install coldtag[cluster])")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes per model process (0: none)")
    parser.add_argument("--batch-size", type=int, default=8, help="tracks per model batch")
    parser.add_argument("--part-size", type=int, default=256, help="records per committed part file")
    parser.add_argument("--limit", type=int, default=None, help="annotate at most this many tracks in this run")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the model's process (default: the cores --workers leave, at least 1)")
    parser.add_argument("--device", default="auto", help="torch device of the model (auto: cuda if present)")
    parser.add_argument("--devices", type=int, default=1, help="ddp: processes (devices) per node")
    parser.add_argument("--num-nodes", type=int, default=1, help="ddp: nodes")
    parser.add_argument("--allow-outside", action="store_true",
                        help="read files outside the input root (links, manifest paths) and encoders outside the "
                             "model package")
    parser.add_argument("--no-tempo-key", dest="tempo_key", action="store_false",
                        help="leave the tempo and key columns null (their estimate costs ~0.02 s a track in the "
                             "decoding workers)")
    parser.add_argument("--retry-errors", action="store_true", help="annotate again the tracks that failed")
    parser.add_argument("--overwrite", action="store_true", help="discard earlier results and start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def cli_main(args: list[str] | None = None) -> int:
    """``coldtag annotate`` without the ``annotate``; returns the exit code."""
    return _guarded(build_parser().parse_args(args))


# Commands whose own parser takes everything after their name.
PASSED_ON = {
    "train": "train, validate, test and package a tagger or a content -> factors model: coldtag train fit "
             "--config CONFIG (LightningCLI; train.py)",
    "coldstart": "tags, factors, users and similar tracks of a new track: coldtag coldstart --pipeline DIR "
                 "--audio FILE [--lyrics FILE] [--cover FILE]; a pipeline from a catalog (python -m fusion chain "
                 "--package): coldtag coldstart --manifest M --plays P [--tagger NAME|DIR] --out DIR",
    "review": "review and correct a run's tags in a browser; export the corrections (coldtag review --help)",
    "search": "find annotated tracks with a sentence: coldtag search QUERY ANNOTATIONS [-n 20]",
    "playlist": "one M3U and JSON playlist per theme: coldtag playlist THEMES.yaml ANNOTATIONS --out DIR",
}


def main(argv: list[str] | None = None) -> None:
    """The ``coldtag`` console command: ``annotate`` here; ``train`` (`coldtag.training`), ``coldstart``
    (``python -m fusion coldstart``), ``review`` (`annotation.review.cli`), ``search`` and ``playlist``
    (`annotation.search.cli`) passed on."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":
        from coldtag.training import cli_main as train_main

        with warnings.catch_warnings():  # the arguments are the command line's, passed on without "train"
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
            train_main(argv[1:])
        sys.exit(0)
    if argv and argv[0] == "coldstart":
        from fusion.cli import main as fusion_main

        sys.exit(fusion_main(["coldstart", *argv[1:]]))
    if argv and argv[0] == "review":
        from annotation.review.cli import cli_main as review_main

        sys.exit(review_main(argv[1:]))
    if argv and argv[0] in ("search", "playlist"):
        from annotation.search.cli import playlist_main, search_main

        sys.exit((search_main if argv[0] == "search" else playlist_main)(argv[1:]))
    parser = argparse.ArgumentParser(prog="coldtag", description="Music auto-tagging and cold-start recommendation.")
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser(commands.add_parser("annotate", help="annotate a folder, manifest or glob of audio files"))
    for name, text in PASSED_ON.items():
        commands.add_parser(name, help=text, add_help=False)
    sys.exit(_guarded(parser.parse_args(argv)))


def _guarded(options: argparse.Namespace) -> int:
    try:
        return run(options)
    except (UsageError, InputError) as error:
        print(f"coldtag annotate: error: {error}", file=sys.stderr)
        return 2


def run(options: argparse.Namespace) -> int:
    for_engine = engine_options(options)
    _check_arguments(options)
    # A pretrained model's name (musicnn-mtt, ...) is its converted package from here on, for every engine.
    try:
        options.model = str(resolve_model(options.model))
    except (OSError, ValueError) as error:
        raise UsageError(f"--model {options.model}: {error}") from None
    out = Path(options.out)
    # Lightning's ddp launcher re-runs this command with the process's place in these variables.
    rank = int(os.environ.get("RANK", int(os.environ.get("NODE_RANK", 0)) * options.devices
                              + int(os.environ.get("LOCAL_RANK", 0))))
    items, problems = list_inputs(options.input, options.allow_outside)
    device = _device(options.device)
    annotator = _load(Path(options.model), device, options.allow_outside)
    # Every engine decodes with this reader, so the estimate runs in its decoding workers.
    annotator.reader = replace(annotator.reader, tempo_key=options.tempo_key)
    records = Records(out, record_schema(annotator.columns()))
    if options.overwrite and rank == 0:
        records.clear()
    if rank == 0:
        log_to(out / LOG_FILE)
        for problem in problems:
            log.warning(problem)
    records.check_layout()
    started = time.perf_counter()
    pending, skipped = records.pending(items, lambda item: input_key(annotator.reader, item),
                                       annotator.package["sha256"], options.retry_errors,
                                       prune=rank == 0)  # one process rewrites parts
    if options.limit is not None:
        pending = pending[:options.limit]
    records.run = run_number = records.next_run()

    if options.engine == "local":
        run_local(annotator, pending, records, for_engine)
    elif options.engine == "ddp":
        from annotation.engines.ddp import annotate_ddp
        annotate_ddp(options.model, annotator.reader, pending, out, records.schema, run_number, for_engine)
        if rank != 0:
            return 0
    else:
        from annotation.engines.ray import annotate_ray
        annotate_ray(options.model, annotator.reader, pending, out, records.schema, run_number, for_engine)
    # Counted before the records this run superseded are dropped: an engine that annotated a track twice
    # shows in the summary instead of vanishing with the older copy.
    tally = records.tally(run_number)
    records.latest()  # drops the records that this run's retries and changed files superseded
    return _finish(options, records, tally, len(items), skipped, problems, time.perf_counter() - started)


def engine_options(options: argparse.Namespace) -> EngineOptions:
    """The options the engine takes, from the command's; `UsageError` for a value out of range."""
    try:
        return EngineOptions(batch_size=options.batch_size, part_size=options.part_size, workers=options.workers,
                             threads=options.threads, device=options.device, devices=options.devices,
                             num_nodes=options.num_nodes, allow_outside=options.allow_outside,
                             progress=not options.no_progress)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _check_arguments(options: argparse.Namespace) -> None:
    """The command's checks beyond `EngineOptions`' own: the limit, and what the engine chosen needs."""
    if options.limit is not None and options.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {options.limit}")
    if options.engine != "ddp" and (options.devices > 1 or options.num_nodes > 1):
        raise UsageError("--devices and --num-nodes are for --engine ddp")
    if options.engine == "ray" and importlib.util.find_spec("ray") is None:
        raise UsageError("--engine ray needs Ray: pip install coldtag[cluster]")


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UsageError(f"--device {name!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine")
    return name


def _load(directory: Path, device: str, allow_outside: bool) -> Annotator:
    try:
        return load_annotator(directory, device, allow_outside)
    except (OSError, ValueError, RuntimeError) as error:  # ProvenanceError is a ValueError
        raise UsageError(f"--model {directory}: cannot be used ({error})") from None


def _finish(options: argparse.Namespace, records: Records, tally: tuple[int, float, Counter], files: int,
            skipped: int, problems: list[str], seconds: float) -> int:
    done, audio_seconds, failed = tally
    if problems:
        failed["manifest row left out"] = len(problems)
    if options.format == "jsonl" and records.files():
        _write_jsonl(read_annotations(records.out), records.out / JSONL_FILE)
    summary = {"input": str(options.input), "model": str(options.model), "engine": options.engine,
               "tracks": files, "done": done, "skipped": skipped, "failed": sum(failed.values()),
               "failed_by_reason": dict(failed.most_common()), "seconds": round(seconds, 3),
               "audio_seconds": round(audio_seconds, 3),
               "times_real_time": round(audio_seconds / seconds, 1) if seconds > 0 else None}
    write_json(records.out / SUMMARY_FILE, summary)
    reasons = ", ".join(f"{reason}: {count}" for reason, count in failed.most_common())
    print(f"coldtag annotate: {done} done, {skipped} skipped, {sum(failed.values())} failed"
          + (f" ({reasons})" if reasons else "") + f" in {seconds:.1f} s -> {records.out}", file=sys.stderr)
    if files == 0:
        return 1
    nothing = done == 0 and skipped == 0 and sum(failed.values()) > 0
    return 1 if nothing else 0


def _write_jsonl(table: pa.Table, path: Path) -> None:
    from coldtag.storage import atomic_path

    with atomic_path(path) as temporary, temporary.open("w") as handle:
        for row in table.to_pylist():
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    sys.exit(cli_main())
