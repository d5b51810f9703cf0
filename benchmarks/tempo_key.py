"""Cost of the tempo and key estimators (`tagging.tempo_key`) per track, in x real time.

Reads the first ``--tracks`` tracks of a manifest (``audio_path``; default the real-recording corpus's test
split), decodes the middle ``--seconds`` of each at 16 kHz (what `coldtag annotate` hands the estimators) and
times `estimate_tempo`, `estimate_key` and both (`estimate_tempo_key`, what annotate calls) after one
warm-up call (librosa's first call imports and compiles for a few seconds, once per process). The estimators
read at most the central 60 s of whatever they are given, so 60 s is what annotate pays per track. ``--threads``
torch threads (2: the machine's cores). Prints a Markdown table: per estimator, the median seconds per track and
audio seconds per second of computing.

    .venv/bin/python benchmarks/tempo_key.py --manifest data/real/test.csv --tracks 5
"""

import argparse
import statistics
import time

import pandas as pd
import torch
from report import print_table

from tagging.audio import audio_info, load_audio
from tagging.tempo_key import estimate_key, estimate_tempo, estimate_tempo_key

RATE = 16000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", default="data/real/test.csv")
    parser.add_argument("--tracks", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    paths = pd.read_csv(options.manifest)["audio_path"].head(options.tracks).tolist()
    waves = []
    for path in paths:
        duration = audio_info(path).duration or options.seconds
        seconds = min(options.seconds, duration)
        waves.append(load_audio(path, RATE, offset=(duration - seconds) / 2, duration=seconds))
    estimate_tempo(waves[0], RATE), estimate_key(waves[0], RATE)  # the one-off import and compile
    steps = {"estimate_tempo": lambda w: estimate_tempo(w, RATE), "estimate_key": lambda w: estimate_key(w, RATE),
             "both": lambda w: estimate_tempo_key(w, RATE)}
    rows = []
    for name, step in steps.items():
        times = []
        for wave in waves:
            started = time.perf_counter()
            step(wave)
            times.append(time.perf_counter() - started)
        audio = sum(len(w) for w in waves) / RATE
        rows.append({"estimator": name, "tracks": len(waves), "s per track (median)": f"{statistics.median(times):.3f}",
                     "x real time": f"{audio / sum(times):,.0f}"})
    print_table(rows)


if __name__ == "__main__":
    main()
