"""Where a musicnn tagger's forward pass spends its time, part by part: the spectrogram, the timbral and the
temporal front-end filters, the whole backbone and the whole model, on the same random 3-s patches.

    .venv/bin/python benchmarks/musicnn_parts.py --model musicnn-mtt musicnn-mtt-lite [--patches 80 --threads 2]

Each part is timed alone on its own input (median of ``--repeats`` after one warm-up), so the parts need not add
up to the whole: the rest is batch norms, padding, pooling, the mid-end and the back-end. Seconds depend on the
machine and its load; compare models within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tagging.models.tagger import AudioTagger  # noqa: E402
from tagging.pretrained.convert import resolve_model  # noqa: E402


def _seconds(step, repeats: int) -> float:
    with torch.no_grad():
        step()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def parts(model: AudioTagger, patches: int, repeats: int) -> dict[str, float]:
    backbone = model.backbone
    wave = 0.1 * torch.randn(patches, model.chunk_samples, generator=torch.Generator().manual_seed(0))
    spec = model.frontend(wave)
    x = backbone.input_norm(spec.transpose(1, 2).unsqueeze(1))  # as MusiCNN.frontend_features reads it
    padded = F.pad(x, (0, 0, 3, 3))

    def temporal():
        for block in backbone.temporal:
            length = block[0].kernel_size[0]
            block(F.pad(x, (0, 0, (length - 1) // 2, length // 2))).amax(dim=3)

    return {"spectrogram": _seconds(lambda: model.frontend(wave), repeats),
            "timbral filters": _seconds(lambda: [block(padded).amax(dim=3) for block in backbone.timbral], repeats),
            "temporal filters": _seconds(temporal, repeats),
            "backbone": _seconds(lambda: backbone(spec), repeats),
            "whole model": _seconds(lambda: model(wave), repeats)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", required=True, help="musicnn packages or names")
    parser.add_argument("--patches", type=int, default=80)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args(argv)
    torch.set_num_threads(options.threads)
    rows = {}
    for name in options.model:
        model = AudioTagger.from_pretrained(resolve_model(name)).eval()
        if model.config["backbone"] != "musicnn":
            parser.error(f"--model {name}: a {model.config['backbone']!r} backbone, not musicnn")
        filters = [block[0].out_channels for block in (*model.backbone.timbral, *model.backbone.temporal)]
        rows[f"{name} ({filters[0]} / {filters[-1]} filters)"] = parts(model, options.patches, options.repeats)
    columns = list(next(iter(rows.values())))
    print(f"{options.patches} patches of 3 s, {options.threads} threads, median of {options.repeats}; seconds\n")
    print("| model | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
