"""Catalog annotation speed and memory: `coldtag annotate` (local engine) with a packaged audio tagger.

1. x real time on ``--tracks`` 30-s stereo 44.1 kHz MP3s, end to end through ``annotate.cli_main`` (model
   load, listing, decoding workers, batches, Parquet parts, summary) for each ``--batch-sizes`` x
   ``--workers`` and ``--threads`` (``coldtag annotate --threads``, torch threads in the model's
   process, whose own default is the cores the workers leave; here by default torch's own count and 1),
   beside decoding alone (`TrackReader` through `decoding_loader`, the same workers and files, in the
   same run). Where the time goes is measured piece by piece on the same files, in this
   process: decoding (that decode-only pass), spectrogram (the tagger's ``frontend`` on the decoded
   chunks), model (the rest of `annotate_tracks`: the forward pass and turning its outputs into record
   dicts) and writing (`Records.add` and ``commit``). ``--no-tempo-key`` times it without the tempo and key
   estimators, which run in the decoding workers. Settings are
   taken round-robin over ``--repeats`` and the median is printed, with the CPU seconds of the process and
   its workers and the 1-minute load average: on a shared machine wall time also counts waiting for CPUs.
2. Peak memory and seconds for one 1-minute and one 60-minute MP3 (streamed: longer than
   `TrackReader.stream_above_seconds`), each annotated by ``python -m annotation`` in a fresh process with
   ``--workers 0`` and ``--workers 1``: the largest single process's peak RSS (``wait4``'s ``ru_maxrss``,
   workers included) and the peak of the process tree's summed PSS (``/proc/<pid>/smaps_rollup``, sampled
   every 50 ms; PSS counts pages shared by the forked worker once).

The audio is real recorded music when it can be: the Debian package ``warzone2100-music`` (installed with
apt-get when this runs as root and it is missing), else the demo catalog's audio (10-s clips, looped),
else a synthetic tone with noise; clips are cut and encoded (LAME, 192 kbit/s CBR) with the ``ffmpeg``
command into a temporary folder.

    .venv/bin/python benchmarks/annotate.py   # 64 tracks, batch 4/16, workers 0/1/2: 5 min on 2 idle cores, 13 busy
    .venv/bin/python benchmarks/annotate.py --repeats 3     # on a busy machine
    .venv/bin/python benchmarks/annotate.py --tracks 32 --workers 0 1 --no-memory   # quicker
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from annotation import cli as annotate_command
from annotation.annotators import AudioAnnotator, annotate_tracks
from annotation.inputs import list_inputs
from annotation.reader import ReadItem, decoding_loader
from annotation.records import Records, record_schema
from tagging.audio import AUDIO_SUFFIXES, audio_info
from tagging.pretrained.convert import resolve_model

ROOT = Path(__file__).resolve().parents[1]

DEBIAN_MUSIC = ("warzone2100-music", Path("/usr/share/games/warzone2100/music"))
DEMO_AUDIO = ROOT / "data" / "demo" / "audio"
FILE_RATE = 44100
TARGET_REAL_TIME = 150.0
TARGET_DECODE_SHARE = 0.6
TARGET_MEMORY_RATIO = 1.25


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["runs/demo/tagger/model"],
                        help="packaged AudioTaggers (make demo) or pretrained names (musicnn-mtt, a student, ...): "
                             "several are measured side by side on the same files, with a summary table")
    parser.add_argument("--tracks", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each track")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({torch.get_num_threads(), 1}, reverse=True),
                        help="torch threads in the model's process (default: torch's own, and 1)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--long-minutes", type=float, default=60.0)
    parser.add_argument("--no-memory", action="store_true", help="skip the 1-minute / long-file runs")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install the Debian music")
    parser.add_argument("--no-tempo-key", action="store_true",
                        help="annotate without the tempo and key estimators (coldtag annotate --no-tempo-key)")
    parser.add_argument("--demo-audio", default=str(DEMO_AUDIO), help="fallback source of real audio")
    options = parser.parse_args(args)
    models = [resolve_model(name) for name in options.model]
    for model in models:
        if not (model / "package.json").is_file():
            parser.error(f"--model {model}: no packaged model there (make demo writes runs/demo/tagger/model)")
    if shutil.which("ffmpeg") is None:
        parser.error("the ffmpeg command is needed to make the test files")

    with tempfile.TemporaryDirectory(prefix="bench-annotate-") as scratch:
        scratch = Path(scratch)
        sources, origin = _music_sources(options)
        started = time.perf_counter()
        clips = _make_clips(sources, scratch / "tracks", options.tracks, options.seconds)
        print(f"{options.tracks} tracks x {options.seconds:g} s stereo {FILE_RATE} Hz MP3 (192 kbit/s) cut from "
              f"{origin} in {time.perf_counter() - started:.0f} s; torch {torch.__version__}, "
              f"{os.cpu_count()} CPUs; median of {options.repeats}; tempo and key "
              f"{'off (--no-tempo-key)' if options.no_tempo_key else 'on'}")
        summary = {}
        for name, model in zip(options.model, models, strict=True):
            print(f"\n## {name} ({model})\n")
            summary[name] = _throughput(model, clips, scratch / name.replace("/", "_"), options)
            if not options.no_memory:
                summary[name]["peaks"] = _memory(model, clips, scratch / name.replace("/", "_"), options)
        if len(models) > 1:
            _side_by_side(summary, options)


def _side_by_side(summary: dict[str, dict], options: argparse.Namespace) -> None:
    """One row per model: its fastest setting's speed, decoding alone on the same files, and peak memory."""
    first = next(iter(summary.values()))
    print(f"\nSide by side ({options.tracks} tracks x {options.seconds:g} s; each model at its fastest setting; "
          f"speed-up against the first, {next(iter(summary))}):\n")
    memory = "" if options.no_memory else " peak RSS, 1-min file, MB |"
    print(f"| model | parameters | x real time | decoding alone, x real time | end to end / decoding alone | "
          f"speed-up |{memory}")
    print("|---|---:|---:|---:|---:|---:|" + ("---:|" if memory else ""))
    for name, row in summary.items():
        peak = "" if options.no_memory else f" {row['peaks'][(1.0, 0)][0]:.0f} |"
        print(f"| {name} | {row['parameters'] / 1e3:.0f}k | {row['speed']:.0f} | {row['decode_speed']:.0f} | "
              f"{row['share']:.2f} | {row['speed'] / first['speed']:.1f}x |{peak}")


# ---------------------------------------------------------------------------------------------- audio

def _music_sources(options: argparse.Namespace) -> tuple[list[Path], str]:
    package, folder = DEBIAN_MUSIC
    if not folder.is_dir() and not options.no_install and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL,
                       check=False)
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES) if folder.is_dir() else []
    if found:
        return found, f"{len(found)} recordings of the Debian package {package}"
    demo = Path(options.demo_audio)
    found = sorted(p for p in demo.glob("*") if p.suffix.lower() in AUDIO_SUFFIXES) if demo.is_dir() else []
    if found:
        return found, f"the demo catalog's audio ({demo}, looped)"
    return [], "a synthetic tone with noise"


def _make_clips(sources: list[Path], folder: Path, count: int, seconds: float) -> list[Path]:
    """``count`` MP3s of ``seconds``: from each source in turn, at evenly spaced offsets inside it."""
    folder.mkdir(parents=True)
    per_source = -(-count // max(1, len(sources)))
    durations = {source: audio_info(source).duration or seconds for source in sources}
    jobs = []
    for index in range(count):
        out = folder / f"track{index:04d}.mp3"
        if sources:
            source = sources[index % len(sources)]
            room = max(0.0, durations[source] - seconds)
            offset = room * ((index // len(sources)) + 0.5) / per_source
            # Seeking in the input, not decoding up to the offset; looping for sources shorter than a clip.
            inputs = ["-stream_loop", "-1", "-ss", f"{offset:.3f}", "-i", str(source)]
        else:
            inputs = ["-f", "lavfi", "-i", f"aevalsrc=0.3*sin(2*PI*(220+20*{index})*t)+0.05*(random(0)-0.5)"
                      f":s={FILE_RATE}:c=stereo"]
        jobs.append(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *inputs, "-t", f"{seconds}", "-ac", "2",
                     "-ar", str(FILE_RATE), "-c:a", "libmp3lame", "-b:a", "192k", str(out)])
    _run_all(jobs, parallel=os.cpu_count() or 1)
    return sorted(folder.glob("*.mp3"))


def _run_all(commands: list[list[str]], parallel: int) -> None:
    running: list[subprocess.Popen] = []
    for command in commands:
        if len(running) >= parallel:
            running.pop(0).wait()
        running.append(subprocess.Popen(command))
    for process in running:
        process.wait()
    # The files are checked by their use; an ffmpeg failure would surface as a missing or short file.


def _long_file(clips: list[Path], out: Path, seconds: float) -> Path:
    """One MP3 of ``seconds``: the clips' frames one after the other (repeated if needed), not re-encoded (the
    clips share one encoding, so the file is one valid MP3 stream)."""
    listing = out.with_suffix(".txt")
    repeats = -(-round(seconds) // round(sum(audio_info(c).duration for c in clips)))
    listing.write_text("".join(f"file '{c}'\n" for _ in range(repeats) for c in clips))
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i",
                    str(listing), "-t", f"{seconds}", "-c", "copy", str(out)], check=True)
    return out


# ---------------------------------------------------------------------------------------------- speed

def _throughput(model: Path, clips: list[Path], scratch: Path, options: argparse.Namespace) -> dict:
    """Prints the speed table of every setting; returns the fastest's speed, decoding alone and their ratio."""
    scratch.mkdir(parents=True, exist_ok=True)
    annotator = AudioAnnotator.from_package(model, "cpu")
    items, _ = list_inputs(clips[0].parent)
    audio_seconds = sum(audio_info(c).duration for c in clips)
    # Warm-up: the page cache, FFmpeg's and torch's first-use set-up.
    annotator.predict([read.track for read in next(iter(decoding_loader(items[:4], annotator.reader, 4, 0)))])

    settings = [(threads, batch, workers) for threads in options.threads for batch in options.batch_sizes
                for workers in options.workers]
    runs: dict[tuple, list[dict]] = {setting: [] for setting in settings}
    pieces: dict[tuple, list[dict]] = {}
    for repeat in range(options.repeats):
        for threads, batch, workers in settings:
            torch.set_num_threads(threads)  # for the decode-only pass and the pieces below
            out = scratch / f"out-{threads}-{batch}-{workers}-{repeat}"
            load = os.getloadavg()[0]
            with _clock() as end_to_end, contextlib.redirect_stderr(io.StringIO()):
                code = annotate_command.cli_main([str(clips[0].parent), "--model", str(model), "--out", str(out),
                                         "--batch-size", str(batch), "--workers", str(workers),
                                         "--threads", str(threads), "--no-progress",
                                         *(["--no-tempo-key"] if options.no_tempo_key else [])])
            if code != 0:
                raise RuntimeError(f"coldtag annotate exited with {code} (see {out}/annotate.log)")
            with _clock() as decode:
                decoded = list(decoding_loader(items, annotator.reader, batch, workers))
            failed = [read.track.error for b in decoded for read in b if read.track.error is not None]
            if failed:
                raise RuntimeError(f"decoding failed: {failed[0]}")
            runs[(threads, batch, workers)].append({"end_to_end": end_to_end, "decode": decode, "load": load})
            if workers == 0:
                pieces.setdefault((threads, batch), []).append(
                    _pieces(annotator, decoded, scratch / f"pieces-{threads}-{batch}-{repeat}"))

    print("| model threads | batch | workers | end to end, s | x real time | CPU s | decoding alone, s | x real time "
          "| CPU s | end to end / decoding alone | load (1 min) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    best = None
    for setting in settings:
        total, total_cpu = (statistics.median(r["end_to_end"][i] for r in runs[setting]) for i in (0, 1))
        decode, decode_cpu = (statistics.median(r["decode"][i] for r in runs[setting]) for i in (0, 1))
        loads = "/".join(f"{r['load']:.1f}" for r in runs[setting])
        share = decode / total
        print(f"| {' | '.join(map(str, setting))} | {total:.2f} | {audio_seconds / total:.0f} | {total_cpu:.1f} | "
              f"{decode:.2f} | {audio_seconds / decode:.0f} | {decode_cpu:.1f} | {share:.2f} | {loads} |")
        if best is None or total < best[0]:
            best = (total, share, setting)
    total, share, (threads, batch, workers) = best
    speed = audio_seconds / total
    fastest = {"speed": speed, "decode_speed": speed / share, "share": share,
               "parameters": sum(p.numel() for p in annotator.tagger.parameters())}
    print(f"\nFastest: {threads} model threads, batch {batch}, {workers} workers: {speed:.0f}x real time (target >= "
          f"{TARGET_REAL_TIME:.0f}x: {'met' if speed >= TARGET_REAL_TIME else 'NOT met'}), "
          f"{share:.2f} of decoding alone (target >= {TARGET_DECODE_SHARE}: "
          f"{'met' if share >= TARGET_DECODE_SHARE else 'NOT met'}). CPU s: this process and its workers (user + "
          "system); wall time above it means waiting for the CPUs other processes hold.")

    if not pieces:
        return fastest
    print("\nWhere the time goes: each piece alone, in this process, on the same decoded tracks (decoding: the "
          "decode-only pass without workers; the others: the least of 3 tries, wall s):\n")
    print("| model threads | batch | decoding | spectrogram | model | writing | sum | x real time of the sum | "
          "x real time after decoding |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (threads, batch), found in pieces.items():
        decode = statistics.median(r["decode"][0] for r in runs[(threads, batch, 0)])
        median = {key: statistics.median(p[key] for p in found) for key in found[0]}
        after = sum(median.values())
        print(f"| {threads} | {batch} | {decode:.2f} | {median['spectrogram']:.2f} | {median['model']:.2f} | "
              f"{median['writing']:.2f} | {decode + after:.2f} | "
              f"{audio_seconds / (decode + after):.0f} | {audio_seconds / after:.0f} |")
    return fastest


@contextlib.contextmanager
def _clock():
    """Yields a list that holds, once the block ends, its wall seconds and the CPU seconds of this process and
    of the children that ended inside it (decoding workers are joined when their loader is exhausted)."""
    result: list[float] = []
    wall, cpu = time.perf_counter(), _cpu_seconds()
    yield result
    result += [time.perf_counter() - wall, _cpu_seconds() - cpu]


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@torch.inference_mode()
def _pieces(annotator: AudioAnnotator, batches: list[list[ReadItem]], out: Path, tries: int = 3) -> dict[str, float]:
    """Wall seconds of each step after decoding over all ``batches``: the least of ``tries`` (load from other
    processes only ever adds time)."""
    tagger = annotator.tagger

    def spectrogram() -> None:
        for b in batches:
            flat = torch.cat([read.track.chunks for read in b])
            for begin in range(0, len(flat), 64):  # chunk_outputs' chunk_batch
                tagger.frontend(flat[begin:begin + 64])

    def annotated() -> None:
        for b in batches:
            annotate_tracks(annotator, b)

    records = [r for b in batches for r in annotate_tracks(annotator, b)]

    def writing() -> None:
        writer = Records(out, record_schema(annotator.columns()))
        for record in records:
            writer.add(record)
            if len(writer.rows) >= 256:  # annotate's --part-size
                writer.commit()
        writer.commit()

    times = {name: [] for name in ("spectrogram", "annotated", "writing")}
    for _ in range(tries):
        for name, step in (("spectrogram", spectrogram), ("annotated", annotated), ("writing", writing)):
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    least = {name: min(values) for name, values in times.items()}
    return {"spectrogram": least["spectrogram"], "model": least["annotated"] - least["spectrogram"],
            "writing": least["writing"]}


# ---------------------------------------------------------------------------------------------- memory

def _memory(model: Path, clips: list[Path], scratch: Path, options: argparse.Namespace) -> dict:
    """Prints the memory table; returns ``{(minutes, workers): (peak RSS MB, peak PSS MB)}``."""
    files = {}
    started = time.perf_counter()
    for minutes in (1.0, options.long_minutes):
        folder = scratch / f"long-{minutes:g}"
        folder.mkdir()
        files[minutes] = _long_file(clips, folder / f"{minutes:g}min.mp3", minutes * 60)
    made = time.perf_counter() - started
    # A fresh process imports torch and the rest again; where the environment forbids bytecode caches
    # (PYTHONDONTWRITEBYTECODE) that compiles them anew every time, so the children share one in the scratch
    # folder, filled by a first run that is not counted.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PYTHONPYCACHEPREFIX": str(scratch / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    _annotate_process(model, files[1.0].parent, scratch / "mem-warm-up", 0, env)
    print(f"\nOne file annotated by `python -m annotation` in a fresh process (files made from the tracks above in "
          f"{made:.0f} s; "
          "process: its whole life, imports and model load included; annotating: the command's own count, "
          "summary.json):\n")
    print("| file | workers | process, s | annotating, s | x real time | peak RSS, largest process, MB | peak PSS, "
          "all processes, MB | load (1 min) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    peaks = {}
    for workers in (0, 1):
        for minutes, path in files.items():
            load = os.getloadavg()[0]
            out = scratch / f"mem-{minutes:g}-{workers}"
            seconds, rss, pss = _annotate_process(model, path.parent, out, workers, env)
            annotating = json.loads((out / "summary.json").read_text())["seconds"]
            peaks[(minutes, workers)] = (rss, pss)
            print(f"| {minutes:g} min MP3 | {workers} | {seconds:.1f} | {annotating:.1f} | "
                  f"{minutes * 60 / annotating:.0f} | {rss:.0f} | {pss:.0f} | {load:.1f} |")
    print()
    for workers in (0, 1):
        short, long = peaks[(1.0, workers)], peaks[(options.long_minutes, workers)]
        ratio = max(long[0] / short[0], long[1] / short[1])
        print(f"workers {workers}: {options.long_minutes:g}-minute / 1-minute peak memory {ratio:.2f}x (RSS "
              f"{long[0] / short[0]:.2f}x, PSS {long[1] / short[1]:.2f}x; target <= {TARGET_MEMORY_RATIO}x: "
              f"{'met' if ratio <= TARGET_MEMORY_RATIO else 'NOT met'})")
    return peaks


def _annotate_process(model: Path, folder: Path, out: Path, workers: int, env: dict) -> tuple[float, float, float]:
    """Seconds, the largest process's peak RSS (MB) and the tree's peak summed PSS (MB) of one run."""
    command = [sys.executable, "-m", "annotation", str(folder), "--model", str(model), "--out", str(out),
               "--workers", str(workers), "--no-progress"]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_pss = 0.0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        peak_pss = max(peak_pss, sum(_pss_kb(p) for p in _tree(process.pid)) / 1024)
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}: {error}")
    return seconds, usage.ru_maxrss / 1024, peak_pss


def _tree(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    main()
