"""Training throughput of a tagger config: clips per second, and the share of a step spent waiting for data.

    .venv/bin/python benchmarks/train_throughput.py --config configs/tagger_demo.yaml --steps 20

The model and datamodule are built from the config exactly as ``train.py fit`` builds them; the loop is
the optimiser step Lightning runs (forward, backward, AdamW step) timed by hand, so data loading and
compute can be told apart. Prints a Markdown table, one row per ``--workers`` value.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train import cli_main


def measure(config: str, workers: int, steps: int, warmup: int, device: str) -> dict:
    cli = cli_main(["--config", config, f"--data.init_args.num_workers={workers}", "--trainer.logger=false",
                    "--trainer.callbacks=[]"], run=False)
    module, data = cli.model.to(device), cli.datamodule
    data.setup("fit")
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    module.train()
    loader = iter(data.train_dataloader())
    waiting = computing = 0.0
    clips = 0
    for step in range(warmup + steps):
        start = time.perf_counter()
        try:
            batch = next(loader)
        except StopIteration:
            loader = iter(data.train_dataloader())
            batch = next(loader)
        batch["wave"] = batch["wave"].to(device)
        batch["targets"] = {k: v.to(device) for k, v in batch["targets"].items()}
        loaded = time.perf_counter()
        loss = module._step(batch, "train")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        done = time.perf_counter()
        if step >= warmup:
            waiting += loaded - start
            computing += done - loaded
            clips += len(batch["wave"])
    total = waiting + computing
    return {"workers": workers, "steps": steps, "batch": data.batch_size,
            "clip s": data.clip_samples / data.sample_rate, "clips/s": clips / total, "s/step": total / steps,
            "data share": waiting / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tagger_demo.yaml")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    rows = [measure(args.config, w, args.steps, args.warmup, args.device) for w in args.workers]
    print(f"\n{args.config} on {args.device} ({torch.get_num_threads()} threads)\n")
    print("| workers | batch | clip (s) | clips/s | s/step | data share |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['workers']} | {r['batch']} | {r['clip s']:.1f} | {r['clips/s']:.1f} | {r['s/step']:.2f} | "
              f"{r['data share']:.1%} |")


if __name__ == "__main__":
    main()
