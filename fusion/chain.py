r"""The whole chain on a user's catalog, one command: a manifest and a plays file in, the ablation table out.

    python -m fusion chain --manifest my/manifest.csv --plays my/listens.csv --user-col listener \
        --item-col song --count-col count --cold-fraction 0.1 --out runs/mine

Each stage is the function its own command runs, called in this process with the chain's settings (each
declared once, by the stage it belongs to), and is skipped when its output is there (each writes it last),
so a chain that stopped picks up where it did:

1. ``python -m recsys coldstart``: WMF factors of the warm tracks, fold-in factors of the cold ones
   (``recsys/``);
2. ``python -m fusion split``: the warm tracks dealt by artist between the tagger and the fusion stage
   (``manifest.parquet``, with ``vocab.json`` beside it);
3. ``train.py fit``: the audio tagger on its share, from a LightningCLI config (``tagger.yaml``, the
   given one with its paths pointed into ``--out``);
4. ``python -m tagging.features``: audio, lyrics and cover features of every track (``features.npz``);
5. ``python -m fusion ablation``: the table (``fusion/table.md``, ``fusion/differences.md``).

A stage that fails is named with the command that runs it alone.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from coldtag.storage import atomic_write
from coldtag.training import cli_main as train_main
from recsys.__main__ import cold_arguments, coldstart, model_arguments, plays_arguments
from tagging import features
from tagging.runs import point_outputs_at

DEFAULT_TAGGER_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tagger_demo.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fusion.__main__ import ablation_arguments, split_arguments

    parser.add_argument("--manifest", type=Path, required=True,
                        help="one row per track: track_id, audio_path (lyrics_path, cover_path), labels")
    parser.add_argument("--vocab", type=Path, help="vocabulary JSON (default: vocab.json beside --manifest)")
    parser.add_argument("--plays", type=Path, required=True, help="CSV/TSV (optionally compressed) or Parquet")
    parser.add_argument("--artist-col", help="manifest column of artists (dealt whole; resampled by intervals)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    stages = {"plays (python -m recsys coldstart)": lambda group: (plays_arguments(group), cold_arguments(group),
                                                                   model_arguments(group)),
              "tagger / fusion split (python -m fusion split)": split_arguments,
              "features (python -m tagging.features)": features.encoder_arguments,
              "ablation (python -m fusion ablation)": ablation_arguments}
    for title, declare in stages.items():
        declare(parser.add_argument_group(title))
    tagger = parser.add_argument_group("audio tagger (train.py)")
    tagger.add_argument("--tagger-config", type=Path, default=DEFAULT_TAGGER_CONFIG,
                        help="LightningCLI config of the tagger; its paths are replaced by ones under --out")
    tagger.add_argument("--tagger-max-epochs", type=int, help="override the config's trainer.max_epochs")


def run_chain(options: argparse.Namespace) -> int:
    """Run the stages that have not finished; 1 if one fails (named with the command that reruns it), else 0."""
    from fusion.__main__ import ablation, split_tracks

    vocab = options.vocab or options.manifest.parent / "vocab.json"
    for flag, path in (("--manifest", options.manifest), ("--vocab", vocab), ("--plays", options.plays),
                       ("--tagger-config", options.tagger_config), ("--cold-items", options.cold_items)):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{flag} {path}: not found")
    if options.cold_items is None and options.cold_fraction is None and options.split_col is None:
        raise ValueError("choose the cold items: one of --cold-items, --cold-fraction, --split-col")
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    split_manifest, tagger_config = out / "manifest.parquet", out / "tagger.yaml"

    def stage(**changes) -> argparse.Namespace:
        return argparse.Namespace(**{**vars(options), **changes})

    def tagger() -> int:
        write_tagger_config(options.tagger_config, out, options.tagger_max_epochs)
        train_main(["fit", "--config", str(tagger_config)])
        return 0

    def extract() -> int:
        features.run(stage(manifest=str(split_manifest), tagger=str(out / "tagger" / "model"),
                           out=str(out / "features.npz")))
        return 0

    stages: list[tuple[str, Path, Callable[[], int], str]] = [
        ("cold-start factors", out / "recsys" / "baselines.md",
         lambda: coldstart(stage(catalog=None, manifest_item_col="track_id", out=out / "recsys")),
         "python -m recsys coldstart"),
        ("tagger / fusion split", split_manifest,
         lambda: split_tracks(stage(vocab=vocab, recsys=out / "recsys", out=split_manifest)),
         "python -m fusion split"),
        ("audio tagger", out / "tagger" / "model" / "model.safetensors", tagger,
         f"python train.py fit --config {shlex.quote(str(tagger_config))}"),
        ("features", out / "features.npz", extract, "python -m tagging.features"),
        ("ablation", out / "fusion" / "table.md",
         lambda: ablation(stage(catalog=None, manifest=split_manifest, vocab=None, features=out / "features.npz",
                                recsys=out / "recsys", out=out / "fusion", artist_col=options.artist_col or "none")),
         "python -m fusion ablation"),
    ]
    for name, done, call, command in stages:
        if done.is_file():
            print(f"== {name}: done ({done})", flush=True)
            continue
        print(f"== {name}", flush=True)
        try:
            status = call()
        except (ValueError, OSError, KeyError, RuntimeError) as error:
            print(f"python -m fusion chain: the {name} stage failed ({type(error).__name__}: {error}); it runs "
                  f"alone as {command} (see --help), or again with this chain, which skips the stages done",
                  file=sys.stderr)
            return 1
        if status:
            print(f"python -m fusion chain: the {name} stage failed (status {status}); it runs alone as {command}",
                  file=sys.stderr)
            return status
    print((out / "fusion" / "table.md").read_text())
    print((out / "fusion" / "differences.md").read_text())
    return 0


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
