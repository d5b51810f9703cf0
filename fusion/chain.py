r"""The whole chain on a user's catalog, one command: a manifest and a plays file in, the ablation table out.

    python -m fusion chain --manifest my/manifest.csv --plays my/listens.csv --user-col listener \
        --item-col song --count-col count --cold-fraction 0.1 --out runs/mine

Each stage is the command a user would run by hand, in a process of its own, and is skipped when its
output is there (each writes it last), so a chain that stopped picks up where it did:

1. ``python -m recsys coldstart``: WMF factors of the warm tracks, fold-in factors of the cold ones
   (``recsys/``);
2. ``python -m fusion split``: the warm tracks dealt by artist between the tagger and the fusion stage
   (``manifest.parquet``, with ``vocab.json`` beside it);
3. ``train.py fit``: the audio tagger on its share, from a LightningCLI config (``tagger.yaml``, the
   given one with its paths pointed into ``--out``);
4. ``python -m tagging.features``: audio, lyrics and cover features of every track (``features.npz``);
5. ``python -m fusion ablation``: the table (``fusion/table.md``, ``fusion/differences.md``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

from coldtag.storage import atomic_write
from tagging.runs import point_outputs_at

TRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "train.py"
DEFAULT_TAGGER_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tagger_demo.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, required=True,
                        help="one row per track: track_id, audio_path (lyrics_path, cover_path), labels")
    parser.add_argument("--vocab", type=Path, help="vocabulary JSON (default: vocab.json beside --manifest)")
    parser.add_argument("--plays", type=Path, required=True, help="CSV/TSV (optionally compressed) or Parquet")
    parser.add_argument("--layout", help="plays column names: plain or music4all (python -m recsys coldstart)")
    parser.add_argument("--user-col")
    parser.add_argument("--item-col")
    parser.add_argument("--count-col", help="play counts; none: one play per row")
    cold = parser.add_mutually_exclusive_group(required=True)
    cold.add_argument("--cold-fraction", type=float, help="share of the tracks made cold, drawn with --seed")
    cold.add_argument("--cold-items", type=Path, help="file of cold track ids, one per line")
    cold.add_argument("--split-col", help="manifest column of warm / cold_val / cold_test")
    parser.add_argument("--artist-col", help="manifest column of artists (dealt whole; resampled by intervals)")
    parser.add_argument("--tagger-share", type=float, default=0.5,
                        help="share of the warm tracks the tagger learns from (python -m fusion split)")
    parser.add_argument("--tagger-config", type=Path, default=DEFAULT_TAGGER_CONFIG,
                        help="LightningCLI config of the tagger; its paths are replaced by ones under --out")
    parser.add_argument("--tagger-max-epochs", type=int, help="override the config's trainer.max_epochs")
    parser.add_argument("--no-lyrics", action="store_true", help="no lyrics features")
    parser.add_argument("--no-cover", action="store_true", help="no cover features")
    parser.add_argument("--genome", nargs="+", metavar="GROUP",
                        help="label groups standing for the paper's attributes (default: every group)")
    parser.add_argument("--skip-audio", action="store_true", help="leave out the end-to-end audio rows (slow)")
    parser.add_argument("--fusion-max-epochs", type=int, help="epochs of each fusion row (default: ablation's)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the intervals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)


def run_chain(options: argparse.Namespace) -> int:
    """Run the stages that have not finished; the exit status of the first that fails, else 0."""
    vocab = options.vocab or options.manifest.parent / "vocab.json"
    for flag, path in (("--manifest", options.manifest), ("--vocab", vocab), ("--plays", options.plays),
                       ("--tagger-config", options.tagger_config), ("--cold-items", options.cold_items)):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{flag} {path}: not found")
    if options.cold_fraction is not None and not 0 < options.cold_fraction < 1:
        raise ValueError(f"--cold-fraction must be between 0 and 1, got {options.cold_fraction}")
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    artists = ["--artist-col", options.artist_col] if options.artist_col else []
    python = [sys.executable]
    stages = [
        ("cold-start factors", out / "recsys" / "baselines.md", [
            *python, "-m", "recsys", "coldstart", "--plays", str(options.plays), "--manifest", str(options.manifest),
            "--manifest-item-col", "track_id", *artists, "--seed", str(options.seed), "--out", str(out / "recsys"),
            *_given(options, "layout", "user_col", "item_col", "count_col", "cold_fraction", "cold_items",
                    "split_col")]),
        ("tagger / fusion split", out / "manifest.parquet", [
            *python, "-m", "fusion", "split", "--manifest", str(options.manifest), "--vocab", str(vocab),
            "--recsys", str(out / "recsys"), "--tagger-share", str(options.tagger_share), *artists,
            "--seed", str(options.seed), "--out", str(out / "manifest.parquet")]),
        ("audio tagger", out / "tagger" / "model" / "model.safetensors", [
            *python, str(TRAIN_SCRIPT), "fit", "--config", str(out / "tagger.yaml")]),
        ("features", out / "features.npz", [
            *python, "-m", "tagging.features", "--manifest", str(out / "manifest.parquet"),
            "--tagger", str(out / "tagger" / "model"), "--out", str(out / "features.npz"),
            *(["--no-lyrics"] if options.no_lyrics else []), *(["--no-cover"] if options.no_cover else [])]),
        ("ablation", out / "fusion" / "table.md", [
            *python, "-m", "fusion", "ablation", "--manifest", str(out / "manifest.parquet"),
            "--features", str(out / "features.npz"), "--recsys", str(out / "recsys"), "--out", str(out / "fusion"),
            "--artist-col", options.artist_col or "none", "--resamples", str(options.resamples),
            "--seed", str(options.seed), *(["--genome", *options.genome] if options.genome else []),
            *(["--skip-audio"] if options.skip_audio else []),
            *(["--set", f"trainer.max_epochs={options.fusion_max_epochs}"] if options.fusion_max_epochs else [])]),
    ]
    for name, done, command in stages:
        if name == "audio tagger" and not done.is_file():
            write_tagger_config(options.tagger_config, out, options.tagger_max_epochs)
        status = run_stage(name, command, done)
        if status != 0:
            print(f"python -m fusion chain: the {name} stage failed (exit {status}); see its output above",
                  file=sys.stderr)
            return status
    print((out / "fusion" / "table.md").read_text())
    print((out / "fusion" / "differences.md").read_text())
    return 0


def run_stage(name: str, command: list[str], done: Path, cwd: Path | None = None) -> int:
    """Run ``command`` unless its output ``done`` is there (every stage writes it last); its exit status."""
    if done.is_file():
        print(f"== {name}: done ({done})", flush=True)
        return 0
    print(f"== {name}: {' '.join(command)}", flush=True)
    return subprocess.run(command, cwd=cwd).returncode


def write_tagger_config(base: Path, out: Path, max_epochs: int | None) -> Path:
    """``out/tagger.yaml``: the config ``base`` reading the split manifest and writing under ``out/tagger``
    (its loggers, checkpoints, exported model and tables), so that no run of another catalog is touched."""
    config = point_outputs_at(yaml.safe_load(base.read_text()), out / "tagger")
    if max_epochs is not None:
        config["trainer"]["max_epochs"] = max_epochs
    data = config.setdefault("data", {}).setdefault("init_args", {})
    data["manifest"], data["vocab"] = str(out / "manifest.parquet"), str(out / "vocab.json")
    path = out / "tagger.yaml"
    atomic_write(path, f"# {base} with its paths under {out}; written by python -m fusion chain\n"
                       + yaml.safe_dump(config, sort_keys=False))
    return path


def _given(options: argparse.Namespace, *names: str) -> list[str]:
    """``--name value`` for each option that was given."""
    flags = []
    for name in names:
        value = getattr(options, name)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags
