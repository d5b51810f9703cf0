"""Spectrogram throughput: our Frontend (auto and each backend) against the libraries it wraps and librosa.

Prints a Markdown table of seconds of audio per second of compute (x real time) on the same batch of noise,
per device (CPU, and CUDA when present). Warm-up runs first, then the median of a few timed repeats, taken
round-robin across implementations so that load from other processes hits them alike. On CPU the table also
gives the median process CPU time, which such load inflates less than wall time. Our rows include the log
compression; the plain library rows stop at the power mel spectrogram.

    .venv/bin/python benchmarks/frontend.py                # 32 clips x 30 s at 16 kHz, n_fft 512, hop 256, 96 mels
    .venv/bin/python benchmarks/frontend.py --clips 8 --cqt  # smaller batch, with the CQT rows
    .venv/bin/python benchmarks/frontend.py --clips 8 --cqt --chroma  # and the harmonic branch's chroma
"""

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torchaudio
from nnAudio.features import CQT1992v2
from nnAudio.features import MelSpectrogram as NnAudioMelSpectrogram

from tagging.frontend import Frontend

# The default must stay within this factor of the fastest implementation on each device.
TOLERANCE = 1.10


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--n-fft", type=int, default=512)
    parser.add_argument("--hop-length", type=int, default=256)
    parser.add_argument("--n-mels", type=int, default=96)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cqt", action="store_true", help="also time the CQT (slow on CPU)")
    parser.add_argument("--chroma", action="store_true",
                        help="also time the chroma of the tagger's harmonic branch (half-second STFT frames)")
    parser.add_argument("--no-librosa", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    options = parser.parse_args(args)
    if options.threads is not None:
        torch.set_num_threads(options.threads)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    audio_seconds = options.clips * options.seconds
    generator = torch.Generator().manual_seed(0)
    batch = 0.1 * torch.randn(options.clips, round(options.seconds * options.sample_rate), generator=generator)

    print(
        f"{options.clips} clips x {options.seconds:g} s at {options.sample_rate} Hz, n_fft {options.n_fft}, "
        f"hop {options.hop_length}, {options.n_mels} mels; torch threads {torch.get_num_threads()}; "
        f"median of {options.repeats} after {options.warmup} warm-up\n"
    )
    print("| device | implementation | median wall s | x real time | vs fastest mel | median CPU s |")
    print("|---|---|---:|---:|---:|---:|")
    verdicts = []
    for device in devices:
        rows = _time_all(_candidates(options, device), batch, device, options)
        fastest = min(wall for name, (wall, _) in rows.items() if "CQT" not in name)
        for name, (seconds, cpu_seconds) in rows.items():
            ratio = "" if "CQT" in name else f"{fastest / seconds:.2f}"
            cpu = f"{cpu_seconds:.3f}" if device == "cpu" else ""
            print(f"| {device} | {name} | {seconds:.3f} | {audio_seconds / seconds:,.0f} | {ratio} | {cpu} |")
        verdicts.append(_verdict(device, rows, options))
    print()
    print("\n".join(verdicts))


def _verdict(device: str, rows: dict[str, tuple[float, float]], options: argparse.Namespace) -> str:
    """Whether the default Frontend is within TOLERANCE of the fastest implementation that is not itself."""
    resolved = Frontend(options.sample_rate, options.n_fft, options.hop_length, options.n_mels).resolved_backend
    default_name, same_code_name = f"Frontend(backend='auto') -> {resolved}", f"Frontend(backend='{resolved}')"
    default_seconds, same_code_seconds = rows[default_name][0], rows[same_code_name][0]
    # The auto row and the explicit row of the backend it resolves to run the same code: their spread is this
    # run's timing noise.
    noise = abs(default_seconds - same_code_seconds) / min(default_seconds, same_code_seconds)
    others = {
        name: wall
        for name, (wall, _) in rows.items()
        if "CQT" not in name and name not in (default_name, same_code_name)
    }
    rival = min(others, key=others.get)
    ratio = default_seconds / others[rival]
    verdict = "OK" if ratio <= TOLERANCE else "TOO SLOW: change the auto backend"
    return (
        f"{device}: the default Frontend (auto -> {resolved}) takes {ratio:.2f}x the time of the fastest other "
        f"implementation, {rival} (limit {TOLERANCE:.2f}x): {verdict}; timing noise of this run "
        f"(auto vs the identical explicit row): {noise:.0%}"
    )


def _candidates(options: argparse.Namespace, device: str) -> dict[str, Callable[[torch.Tensor], object]]:
    sr, n_fft, hop, n_mels = options.sample_rate, options.n_fft, options.hop_length, options.n_mels
    auto = Frontend(sr, n_fft, hop, n_mels)
    candidates: dict[str, Callable[[torch.Tensor], object]] = {
        f"Frontend(backend='auto') -> {auto.resolved_backend}": auto.to(device),
        "Frontend(backend='torchaudio')": Frontend(sr, n_fft, hop, n_mels, backend="torchaudio").to(device),
        "Frontend(backend='nnaudio')": Frontend(sr, n_fft, hop, n_mels, backend="nnaudio").to(device),
        "torchaudio MelSpectrogram": torchaudio.transforms.MelSpectrogram(
            sr, n_fft, hop_length=hop, n_mels=n_mels, norm="slaney", mel_scale="slaney"
        ).to(device),
        "nnAudio MelSpectrogram": NnAudioMelSpectrogram(
            sr=sr, n_fft=n_fft, n_mels=n_mels, hop_length=hop, verbose=False
        ).to(device),
    }
    if device == "cpu" and not options.no_librosa:
        import librosa  # the bench extra; only needed for this row

        def librosa_mel(wave: torch.Tensor) -> np.ndarray:
            return librosa.feature.melspectrogram(
                y=wave.numpy(), sr=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, pad_mode="reflect"
            )

        candidates["librosa melspectrogram"] = librosa_mel
    if options.cqt:
        candidates["Frontend(kind='cqt') -> nnaudio CQT"] = Frontend(sr, hop_length=hop, kind="cqt").to(device)
        candidates["nnAudio CQT1992v2"] = CQT1992v2(sr=sr, hop_length=hop, verbose=False).to(device)
    if options.chroma:  # as AudioTagger(harmony=True) builds it
        chroma_fft = 2 ** round(np.log2(0.5 * sr))
        candidates[f"Frontend(kind='chroma'), n_fft {chroma_fft}"] = Frontend(
            sr, n_fft=chroma_fft, hop_length=chroma_fft // 4, kind="chroma").to(device)
    return candidates


def _time_all(
    candidates: dict[str, Callable[[torch.Tensor], object]],
    batch: torch.Tensor,
    device: str,
    options: argparse.Namespace,
) -> dict[str, tuple[float, float]]:
    """Median (wall, process CPU) seconds of each candidate on ``batch``."""
    wave = batch.to(device)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in candidates}
    with torch.inference_mode():
        for repeat in range(options.warmup + options.repeats):
            for name, function in candidates.items():
                _synchronize(device)
                wall, cpu = time.perf_counter(), time.process_time()
                function(wave)
                _synchronize(device)
                if repeat >= options.warmup:
                    runs[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        name: (statistics.median(w for w, _ in timings), statistics.median(c for _, c in timings))
        for name, timings in runs.items()
    }


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
