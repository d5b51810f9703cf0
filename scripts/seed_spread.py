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
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fusion.chain import point_outputs_at  # noqa: E402


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
    print(table(scores, args.labels))


def parse_setting(text: str) -> tuple[list[str], object]:
    """``"a.b.c=value"`` -> (``["a", "b", "c"]``, the value read as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"expected DOTTED.KEY=VALUE, got {text!r}")
    return key.split("."), yaml.safe_load(value)


def apply_setting(config: dict, path: list[str], value: object) -> None:
    """Set ``config[path[0]][path[1]]...`` to ``value``; every key above the last must exist. A number
    indexes a list (``trainer.callbacks.1.init_args.patience``)."""
    node = config
    for depth, key in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            key = int(key)
        elif not isinstance(node, dict) or (key not in node and not last):
            raise SystemExit(f"--set: the config has no {'.'.join(path[:depth + 1])}")
        if last:
            node[key] = value
        else:
            node = node[key]


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
        apply_setting(settings, path, value)
    seeded.write_text(yaml.safe_dump(settings))
    subprocess.run([sys.executable, "train.py", "fit", "--config", str(seeded)], cwd=ROOT, check=True)
    subprocess.run([sys.executable, "train.py", "test", "--config", str(seeded),
                    f"--ckpt_path={folder / 'checkpoints' / 'best.ckpt'}"], cwd=ROOT, check=True)
    print(f"seed {seed}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return json.loads(result.read_text())


def seed_config(config: dict, seed: int, folder: Path) -> dict:
    """``config`` with its seed, and everything it writes (logs, checkpoints, package, tables) in ``folder``."""
    config["seed_everything"] = seed
    config["trainer"]["logger"] = {"class_path": "pytorch_lightning.loggers.CSVLogger",
                                   "init_args": {"save_dir": str(folder), "name": "logs"}}
    for callback in config["trainer"].get("callbacks", []):
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"] |= {"dirpath": str(folder / "checkpoints"), "filename": "best"}
    return point_outputs_at(config, folder)


def table(scores: dict[int, dict], labels: list[str]) -> str:
    """One row per group (macro ROC-AUC, or mean Spearman) and per label, a column per seed, mean and sd."""
    first = next(iter(scores.values()))
    rows = []
    for group, result in first.items():
        metric = "roc_auc" if "roc_auc" in result else "spearman"
        rows.append((f"{group} ({metric})", [s[group][metric] for s in scores.values()]))
    for label in labels:
        group = next((g for g, r in first.items() if label in r["per_label"]), None)
        if group is None:
            raise SystemExit(f"--labels: {label!r} is in no group of the test scores")
        metric = "roc_auc" if "roc_auc" in first[group]["per_label"][label] else "spearman"
        rows.append((f"{label} ({metric})", [s[group]["per_label"][label][metric] for s in scores.values()]))
    header = "| score | " + " | ".join(f"seed {seed}" for seed in scores) + " | mean | sd |"
    lines = [header, "|---|" + "---:|" * (len(scores) + 2)]
    for name, values in rows:
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values)
                     + f" | {statistics.mean(values):.3f} | {statistics.stdev(values):.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
