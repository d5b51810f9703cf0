"""How much do the demo tagger's headline numbers move from one seed to the next?

    .venv/bin/python scripts/seed_spread.py --seeds 0 1 2 --out runs/seed_spread
    .venv/bin/python scripts/seed_spread.py --manifest data/realistic/manifest.parquet --labels --out runs/realistic
    .venv/bin/python scripts/seed_spread.py --set model.init_args.model.init_args.pooling=mean_max --out runs/mean_max

Trains and tests the tagger of ``--config`` once per seed (``train.py fit`` then ``test`` on the best
checkpoint; ``seed_everything`` is the only thing that changes), then prints, per group and per
``--labels`` label, the test score of every seed with their mean and standard deviation. ``--set
dotted.key=value`` changes one setting of the config (the value read as YAML), for a variant of it. A finished
seed (its ``test_scores.json`` exists) is reused, so an interrupted run picks up where it stopped.
A difference between two models smaller than this spread is not a result. Not part of ``make demo``:
each seed is a full training run (about 5 minutes on 2 cores for the demo config).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tagging.runs import apply_setting, parse_setting, seed_config, seed_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tagger_demo.yaml")
    parser.add_argument("--manifest", default=None, help="train on this manifest instead of the config's")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/seed_spread"))
    parser.add_argument("--labels", nargs="*", default=["odd_meter", "triple_meter", "swing", "syncopation", "tempo"])
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="DOTTED.KEY=VALUE",
                        help="change one setting of the config, e.g. model.init_args.model.init_args.harmony=true "
                             "or trainer.callbacks.1.init_args.patience=60")
    args = parser.parse_args()
    if len(args.seeds) < 2:
        parser.error("--seeds: a spread needs at least two seeds")
    try:
        changes = [parse_setting(text) for text in args.settings]
    except ValueError as error:
        parser.error(f"--set: {error}")
    scores = {seed: run(seed, args.config, args.out / f"seed-{seed}", args.manifest, changes) for seed in args.seeds}
    try:
        print(seed_table(scores, args.labels))
    except ValueError as error:
        raise SystemExit(f"--labels: {error}") from None


def run(seed: int, config: str, folder: Path, manifest: str | None = None,
        changes: list[tuple[list[str], object]] = ()) -> dict:
    """Fit and test one seed into ``folder`` (on ``manifest`` if given, with the ``changes`` of
    `parse_setting`); its ``test_scores.json``."""
    result = folder / "test_scores.json"
    if result.is_file():
        return json.loads(result.read_text())
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    seeded = folder / "config.yaml"
    settings = seed_config(yaml.safe_load((ROOT / config).read_text()), seed, folder)
    if manifest is not None:
        settings["data"]["init_args"]["manifest"] = str(Path(manifest).resolve())
    for path, value in changes:
        try:
            apply_setting(settings, path, value)
        except ValueError as error:
            raise SystemExit(f"--set: {error}") from None
    seeded.write_text(yaml.safe_dump(settings))
    subprocess.run([sys.executable, "train.py", "fit", "--config", str(seeded)], cwd=ROOT, check=True)
    subprocess.run([sys.executable, "train.py", "test", "--config", str(seeded),
                    f"--ckpt_path={folder / 'checkpoints' / 'best.ckpt'}"], cwd=ROOT, check=True)
    print(f"seed {seed}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return json.loads(result.read_text())


if __name__ == "__main__":
    main()
