"""A tagger's LightningCLI config as a dict, for reruns: a variant of one setting (``--set dotted.key=value``),
another seed, and everything a run writes in one folder. ``scripts/seed_spread.py`` and ``python -m fusion
chain`` use them; `seed_table` reads the seeds' test scores side by side.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import yaml


def parse_setting(text: str) -> tuple[list[str], object]:
    """``"a.b.c=value"`` -> (``["a", "b", "c"]``, the value read as YAML)."""
    path, value = split_setting(text)
    return path, yaml.safe_load(value)


def split_setting(text: str) -> tuple[list[str], str]:
    """``"a.b.c=value"`` -> (``["a", "b", "c"]``, ``"value"`` as written): `parse_setting` before the value is
    read, for a caller that checks the key first. A ``ValueError`` without ``=`` or without a key."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"expected DOTTED.KEY=VALUE, got {text!r}")
    return key.split("."), value


def apply_setting(config: dict, path: list[str], value: object) -> None:
    """Set ``config[path[0]][path[1]]...`` to ``value``; every key above the last must exist (`ValueError`
    naming the first that does not). A number indexes a list (``trainer.callbacks.1.init_args.patience``)."""
    node = config
    for depth, key in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            key = int(key)
        elif not isinstance(node, dict) or (key not in node and not last):
            raise ValueError(f"the config has no {'.'.join(path[:depth + 1])}")
        if last:
            node[key] = value
        else:
            node = node[key]


def point_outputs_at(config: dict, folder: Path) -> dict:
    """A tagger's LightningCLI ``config`` (a dict) with everything its run writes in ``folder``: the
    trainer's root, every logger's ``save_dir``, every callback's ``dirpath`` (``folder/checkpoints``),
    the exported model (``folder/model``) and the tables."""
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = str(folder)
    loggers = trainer.get("logger")
    for entry in loggers if isinstance(loggers, list) else [loggers]:
        if isinstance(entry, dict) and "save_dir" in entry.get("init_args", {}):
            entry["init_args"]["save_dir"] = str(folder)
    for entry in trainer.get("callbacks") or []:
        if isinstance(entry, dict) and "dirpath" in entry.get("init_args", {}):
            entry["init_args"]["dirpath"] = str(folder / "checkpoints")
    model = config.setdefault("model", {}).setdefault("init_args", {})
    model["export_dir"], model["tables_dir"] = str(folder / "model"), str(folder)
    return config


def seed_config(config: dict, seed: int, folder: Path) -> dict:
    """``config`` with its seed, and everything it writes (logs, checkpoints, package, tables) in ``folder``."""
    config["seed_everything"] = seed
    config["trainer"]["logger"] = {"class_path": "pytorch_lightning.loggers.CSVLogger",
                                   "init_args": {"save_dir": str(folder), "name": "logs"}}
    for callback in config["trainer"].get("callbacks", []):
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"] |= {"dirpath": str(folder / "checkpoints"), "filename": "best"}
    return point_outputs_at(config, folder)


def seed_table(scores: dict[int, dict], labels: list[str]) -> str:
    """One row per group (macro ROC-AUC, or mean Spearman) and per label, a column per seed, mean and sd."""
    first = next(iter(scores.values()))
    rows = []
    for group, result in first.items():
        metric = "roc_auc" if "roc_auc" in result else "spearman"
        rows.append((f"{group} ({metric})", [s[group][metric] for s in scores.values()]))
    for label in labels:
        group = next((g for g, r in first.items() if label in r["per_label"]), None)
        if group is None:
            raise ValueError(f"label {label!r} is in no group of the test scores")
        metric = "roc_auc" if "roc_auc" in first[group]["per_label"][label] else "spearman"
        rows.append((f"{label} ({metric})", [s[group]["per_label"][label][metric] for s in scores.values()]))
    header = "| score | " + " | ".join(f"seed {seed}" for seed in scores) + " | mean | sd |"
    lines = [header, "|---|" + "---:|" * (len(scores) + 2)]
    for name, values in rows:
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values)
                     + f" | {statistics.mean(values):.3f} | {statistics.stdev(values):.3f} |")
    return "\n".join(lines)
