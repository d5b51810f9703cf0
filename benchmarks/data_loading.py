"""Training-loader throughput and memory: clips per second and peak resident memory of iterating
`CatalogDataModule.train_dataloader()` over a catalog, without a cache (crops decoded per item, by seeking
where the format allows) and with the int16 audio cache, with 0 and 2 DataLoader workers.

Each setting runs in a fresh process (so peak memory is its own), for ``--epochs`` epochs after the cache is
built; peak RSS is the largest of the main process and of its workers (each worker's own peak; shared
memory-mapped pages count in every process that touched them). Prints a Markdown table.

    .venv/bin/python -m toycatalog build --preset demo --out /tmp/democat
    .venv/bin/python benchmarks/data_loading.py --catalog /tmp/democat
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def _run_one(catalog: str, cache_dir: str | None, workers: int, epochs: int) -> dict:
    import torch

    from tagging.data.modules import CatalogDataModule

    torch.set_num_threads(1)
    data = CatalogDataModule(f"{catalog}/manifest.parquet", num_workers=workers, cache_audio=cache_dir is not None,
                             cache_dir=cache_dir, batch_size=32)
    data.prepare_data()
    data.setup()
    loader = data.train_dataloader()
    clips, started = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            clips += len(batch["wave"])
    seconds = time.perf_counter() - started
    del loader  # persistent workers end here, so their peak memory is counted below
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"clips_per_s": clips / seconds, "main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_mb": children / 1024 if workers else 0.0}


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", required=True, help="a catalog folder with manifest.parquet")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one setting, print JSON
    options = parser.parse_args(args)
    if options.one:
        cache_dir, workers = json.loads(options.one)
        print(json.dumps(_run_one(options.catalog, cache_dir, workers, options.epochs)))
        return
    print(f"Training loader over {options.catalog}, batch 32, {options.epochs} epoch(s), one torch thread per "
          "process\n")
    print("| audio | workers | clips/s | peak RSS main, MB | peak RSS per worker, MB |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as cache_dir:
        # Build the cache outside the timed runs: a datamodule with the same settings then finds it.
        subprocess.run([sys.executable, __file__, "--catalog", options.catalog, "--epochs", "0",
                        "--one", json.dumps([cache_dir, 0])], check=True, capture_output=True)
        for label, cache in (("decoded per item", None), ("int16 cache", cache_dir)):
            for workers in (0, 2):
                out = subprocess.run([sys.executable, __file__, "--catalog", options.catalog, "--epochs",
                                      str(options.epochs), "--one", json.dumps([cache, workers])],
                                     check=True, capture_output=True, text=True).stdout
                result = json.loads(out.strip().splitlines()[-1])
                print(f"| {label} | {workers} | {result['clips_per_s']:,.0f} | {result['main_mb']:,.0f} | "
                      f"{result['worker_mb']:,.0f} |" if workers else
                      f"| {label} | {workers} | {result['clips_per_s']:,.0f} | {result['main_mb']:,.0f} | - |")


if __name__ == "__main__":
    main()
