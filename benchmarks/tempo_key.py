"""Cost of the tempo and key estimators (`tagging.tempo_key`) per track, in x real time.

Reads the first ``--tracks`` tracks of a manifest (``audio_path``; default the real-recording corpus's test
split), decodes the middle ``--seconds`` of each at 16 kHz (what `coldtag annotate` hands the estimators) and
times `estimate_tempo`, `estimate_key` with each chroma front end (``stft`` and ``harmonic``) and both
(`estimate_tempo_key` with its default chroma, what annotate calls) after one warm-up call (librosa's first
call imports and compiles for a few seconds, once per process). The estimators read at most the central 60 s
of whatever they are given, so 60 s is what annotate pays per track. ``--threads`` torch threads (2: the
machine's cores). Prints a Markdown table: per estimator, the median seconds per track and audio seconds per
second of computing. The row ``librosa calls`` is the same estimate through the librosa functions the
estimators reproduce (``onset.onset_strength`` and ``feature.chroma_stft`` with its tuning estimate: how the
estimators computed before they were made cheaper), timed in the same run; ``same as librosa`` counts the
tracks whose tempo and key from the estimators with the ``stft`` chroma equal its (tempo to 1e-6 relative).

    .venv/bin/python benchmarks/tempo_key.py --manifest data/real/test.csv --tracks 5
"""

import argparse
import statistics
import time

import pandas as pd
import torch
from report import print_table

from tagging.audio import audio_info, load_audio
from tagging.tempo_key import (
    ANALYSIS_RATE,
    CHROMA_FFT,
    CHROMA_HOP,
    KEY_CHROMA,
    ONSET_FFT,
    ONSET_MELS,
    TEMPO_FPS,
    central_range,
    estimate_key,
    estimate_tempo,
    estimate_tempo_key,
    key_of_profile,
    tempo_of_envelope,
)

RATE = 16000
assert RATE == ANALYSIS_RATE  # the librosa calls are made at the estimators' rate


def librosa_tempo_key(wave):
    """`estimate_tempo_key` through the librosa calls it reproduces."""
    import librosa

    start, stop = central_range(len(wave), RATE)
    y = wave[start:stop].numpy()
    envelope = librosa.onset.onset_strength(y=y, sr=RATE, hop_length=RATE // TEMPO_FPS, n_fft=ONSET_FFT,
                                            n_mels=ONSET_MELS)
    chroma = librosa.feature.chroma_stft(y=y, sr=RATE, n_fft=CHROMA_FFT, hop_length=CHROMA_HOP)
    return tempo_of_envelope(envelope), key_of_profile(chroma.mean(axis=1))


def same(a, b) -> bool:
    (tempo_a, key_a), (tempo_b, key_b) = a, b
    return abs(tempo_a.bpm / tempo_b.bpm - 1) <= 1e-6 and key_a[:2] == key_b[:2]


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
    estimate_tempo_key(waves[0], RATE), librosa_tempo_key(waves[0])  # the one-off imports and compiling
    steps = {"estimate_tempo": lambda w: estimate_tempo(w, RATE),
             "estimate_key, stft chroma": lambda w: estimate_key(w, RATE, chroma="stft"),
             "estimate_key, harmonic chroma": lambda w: estimate_key(w, RATE, chroma="harmonic"),
             f"both ({KEY_CHROMA} chroma)": lambda w: estimate_tempo_key(w, RATE),
             "both, librosa calls": librosa_tempo_key}
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
    agree = sum(same(estimate_tempo_key(w, RATE, chroma="stft"), librosa_tempo_key(w)) for w in waves)
    print(f"\nsame as librosa: {agree} of {len(waves)} tracks")


if __name__ == "__main__":
    main()
