"""What `tagging.audio.verify_flac` costs beside `load_audio` on the same FLAC file.

Encodes 30 s of stereo 44.1 kHz sound (a tone on the left, quiet noise on the right) with the ``ffmpeg``
command into a temporary folder, as 16-bit and 24-bit FLAC, and times `load_audio` at 16 kHz (what a
tagger reads), `load_audio` at the file's rate, and `verify_flac`: median of the repeats, one torch
thread (as in a decoding worker), the three taken in turn. Prints a Markdown table.

    .venv/bin/python benchmarks/verify_flac.py
    .venv/bin/python benchmarks/verify_flac.py --seconds 60 --repeats 9
"""

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from report import print_table

from tagging.audio import load_audio, verify_flac

FILE_RATE = 44100


def _encode(path: Path, seconds: float, depth: int) -> Path:
    sample_format = ["-sample_fmt", "s16"] if depth == 16 else ["-sample_fmt", "s32", "-bits_per_raw_sample", "24"]
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"sine=f=440:d={seconds}:r={FILE_RATE}",
                    "-f", "lavfi", "-i", f"anoisesrc=d={seconds}:r={FILE_RATE}:a=0.05:seed=1",
                    "-filter_complex", "[0][1]amerge=inputs=2", *sample_format, str(path)], check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for depth in (16, 24):
            path = _encode(Path(folder) / f"signal{depth}.flac", args.seconds, depth)
            calls = {
                "load_audio, 16 kHz": lambda p=path: load_audio(p, 16000),
                "load_audio, 44.1 kHz": lambda p=path: load_audio(p, FILE_RATE),
                "verify_flac": lambda p=path: verify_flac(p),
            }
            times = {name: [] for name in calls}
            for call in calls.values():
                call()  # warm-up: file cache, FFmpeg's first open
            for _ in range(args.repeats):
                for name, call in calls.items():
                    started = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - started)
            reference = statistics.median(times["load_audio, 16 kHz"])
            for name, spent in times.items():
                median = statistics.median(spent)
                rows.append({"file": f"{args.seconds:g} s stereo {depth}-bit FLAC", "call": name,
                             "ms": round(1000 * median, 1), "x real time": round(args.seconds / median),
                             "x load_audio 16 kHz": round(median / reference, 2)})
    print_table(rows)


if __name__ == "__main__":
    main()
