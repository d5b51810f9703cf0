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
4. ``python -m tagging features``: audio, lyrics and cover features of every track (``features.npz``);
5. ``python -m fusion ablation``: the table (``fusion/table.md``, ``fusion/differences.md``), with a row per
   reference source of ``--references FILE.npz`` (``python -m fusion references`` on the same manifest);
6. with ``--package``, ``python -m fusion package``: the cold-start pipeline of the best content row
   (``pipeline/``), which explains each similar track by the tags the tagger gives both.

With ``--tagger NAME|DIR`` a packaged `AudioTagger` (a ``save_pretrained`` folder, or a name
`tagging.pretrained.convert.resolve_model` knows, such as ``musicnn-mtt``) is the attribute source instead: no tagger
is trained, so stages 2 and 3 become one that writes ``manifest.parquet`` without the manifest's label
columns (every warm track is the fusion stage's: the tagger heard none of them) and ``vocab.json`` as the
tagger's vocabulary. Its multilabel groups are the ablation's rows: a group named ``genre`` the genre row,
the others the attributes (``--genome``). A manifest needs no labels then. ``--tagger DIR --fine-tune``
keeps the five stages and starts the tagger's training from the package, on the manifest's labels.

A stage that fails is named with the command that runs it alone.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from coldtag.storage import atomic_path, atomic_write, write_json
from coldtag.training import cli_main as train_main
from fusion.data import FUSION_SPLIT
from fusion.stages import ablation, ablation_arguments, package_pipeline, split_arguments, split_tracks
from recsys import ColdStartSplit
from recsys.cli import cold_arguments, coldstart, model_arguments, plays_arguments
from tagging.data import features
from tagging.labels import MULTILABEL, read_manifest
from tagging.models.tagger import AudioTagger
from tagging.pretrained.convert import resolve_model
from tagging.runs import point_outputs_at

DEFAULT_TAGGER_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tagger_demo.yaml"
DEFAULT_TAGGER_SHARE = 0.5
GENRE = "genre"  # the tagger group that stands for the paper's genres when the tagger is given
# Manifest columns a chain with a given tagger keeps: ids, the files and the artists; never a label.
CONTENT_COLUMNS = ("track_id", "audio_path", "lyrics_path", "cover_path")


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
              "features (python -m tagging features)": features.encoder_arguments,
              "ablation (python -m fusion ablation)": ablation_arguments}
    for title, declare in stages.items():
        declare(parser.add_argument_group(title))
    tagger = parser.add_argument_group("audio tagger (train.py)")
    tagger.add_argument("--tagger", metavar="NAME|DIR",
                        help="a packaged AudioTagger (save_pretrained folder, or a pretrained name such as "
                             "musicnn-mtt) whose tag probabilities and embedding are the features: no tagger is "
                             "trained and no label column is read")
    tagger.add_argument("--fine-tune", action="store_true",
                        help="with --tagger: train the chain's tagger on the manifest's labels, starting from it")
    tagger.add_argument("--tagger-config", type=Path,
                        help="LightningCLI config of the tagger; its paths are replaced by ones under --out "
                             f"(default: {DEFAULT_TAGGER_CONFIG.relative_to(DEFAULT_TAGGER_CONFIG.parents[1])})")
    tagger.add_argument("--tagger-max-epochs", type=int, help="override the config's trainer.max_epochs")
    # None until run_chain fills it: set, it is refused with a --tagger that trains nothing.
    parser.set_defaults(tagger_share=None)
    parser.add_argument_group("pipeline (python -m fusion package)").add_argument(
        "--package", action="store_true",
        help="package the cold-start pipeline of the best content row into OUT/pipeline")


# Options that only the training of the chain's own tagger reads, by their flags.
TRAINING_OPTIONS = {"--vocab": "vocab", "--tagger-config": "tagger_config",
                    "--tagger-max-epochs": "tagger_max_epochs", "--tagger-share": "tagger_share"}


def check_tagger_options(options: argparse.Namespace) -> Path | None:
    """The package ``--tagger`` names (None without one), after refusing options that do not go with it;
    fills the defaults of the training options."""
    if options.fine_tune and options.tagger is None:
        raise ValueError("--fine-tune starts the tagger's training from a package: give it with --tagger")
    package = None
    if options.tagger is not None:
        package = pretrained_tagger(options.tagger)
        if not options.fine_tune:
            given = [flag for flag, name in TRAINING_OPTIONS.items() if getattr(options, name) is not None]
            if given:
                raise ValueError(f"--tagger {options.tagger} is used as it is, so {', '.join(given)} (for training "
                                 "the chain's own tagger) would do nothing; leave them out, or add --fine-tune")
    if options.tagger_config is None:
        options.tagger_config = DEFAULT_TAGGER_CONFIG
    if options.tagger_share is None:
        options.tagger_share = DEFAULT_TAGGER_SHARE
    return package


def pretrained_tagger(name: str) -> Path:
    """The `AudioTagger` package a ``--tagger`` value names (`tagging.pretrained.convert.resolve_model`); a
    ``ValueError`` naming the argument when it is neither a package nor a known name."""
    try:
        path = resolve_model(name)
        AudioTagger.from_pretrained(path)
    except (OSError, ValueError, KeyError) as error:  # ProvenanceError is a ValueError
        raise ValueError(f"--tagger {name}: not a packaged AudioTagger ({error})") from None
    return path


def run_chain(options: argparse.Namespace) -> int:
    """Run the stages that have not finished; 1 if one fails (named with the command that reruns it), else 0."""
    given = check_tagger_options(options)
    trains = given is None or options.fine_tune
    vocab = options.vocab or options.manifest.parent / "vocab.json"
    for flag, path in (("--manifest", options.manifest), ("--vocab", vocab if trains else None),
                       ("--plays", options.plays), ("--tagger-config", options.tagger_config if trains else None),
                       ("--cold-items", options.cold_items), ("--references", options.references)):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{flag} {path}: not found")
    if options.cold_items is None and options.cold_fraction is None and options.split_col is None:
        raise ValueError("choose the cold items: one of --cold-items, --cold-fraction, --split-col")
    genome, tagger_vocab = options.genome, None
    if not trains:
        tagger_vocab = AudioTagger.from_pretrained(given).labels.to_dict()
        genome = genome or attribute_groups(tagger_vocab)
        tagger_vocab = ablation_vocabulary(tagger_vocab, genome, options.tagger)
    out = options.out
    if not trains and (out / "tagger").exists():
        # Its manifest.parquet holds the labels and the tagger's split: reused, the ablation would read them.
        raise ValueError(f"--out {out} holds a chain that trained its own tagger; give --tagger another --out")
    out.mkdir(parents=True, exist_ok=True)
    split_manifest, tagger_config = out / "manifest.parquet", out / "tagger.yaml"
    tagger_package = out / "tagger" / "model" if trains else given

    def stage(**changes) -> argparse.Namespace:
        return argparse.Namespace(**{**vars(options), **changes})

    def tagger() -> int:
        write_tagger_config(options.tagger_config, out, options.tagger_max_epochs, pretrained=given)
        train_main(["fit", "--config", str(tagger_config)])
        return 0

    def extract() -> int:
        features.run(stage(manifest=str(split_manifest), tagger=str(tagger_package), out=str(out / "features.npz")))
        return 0

    def label_free() -> int:
        write_label_free_manifest(options.manifest, ColdStartSplit.load(out / "recsys" / "coldstart.npz"),
                                  tagger_vocab, options.artist_col, split_manifest)
        return 0

    factors = ("cold-start factors", out / "recsys" / "baselines.md",
               lambda: coldstart(stage(catalog=None, manifest_item_col="track_id", out=out / "recsys")),
               "python -m recsys coldstart")
    if trains:
        dealt = [("tagger / fusion split", split_manifest,
                  lambda: split_tracks(stage(vocab=vocab, recsys=out / "recsys", out=split_manifest)),
                  "python -m fusion split"),
                 ("audio tagger", out / "tagger" / "model" / "model.safetensors", tagger,
                  f"python train.py fit --config {shlex.quote(str(tagger_config))}")]
    else:
        dealt = [("label-free manifest", split_manifest, label_free, "python -m fusion chain --tagger")]
    stages: list[tuple[str, Path, Callable[[], int], str]] = [
        factors, *dealt,
        ("features", out / "features.npz", extract, "python -m tagging features"),
        ("ablation", out / "fusion" / "table.md",
         lambda: ablation(stage(catalog=None, manifest=split_manifest, vocab=None, features=out / "features.npz",
                                recsys=out / "recsys", out=out / "fusion", artist_col=options.artist_col or "none",
                                genome=genome)),
         "python -m fusion ablation"),
    ]
    if options.package:
        stages.append(("pipeline", out / "pipeline" / "pipeline.json",
                       lambda: package_pipeline(argparse.Namespace(
                           tagger=tagger_package, multimodal=None, recsys=out / "recsys", fusion=None,
                           ablation=out / "fusion", features=out / "features.npz", out=out / "pipeline",
                           lyrics_model=options.lyrics_model, cover_arch=options.cover_arch,
                           cover_weights=options.cover_weights, cover_size=224, n_users=10, n_tracks=10)),
                       "python -m fusion package"))
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
    if options.package:
        print(f"cold-start pipeline: {out / 'pipeline'} (coldtag coldstart --pipeline {out / 'pipeline'} "
              "--audio FILE)")
    return 0


def attribute_groups(vocab: dict) -> list[str]:
    """The groups of a tagger's vocabulary that stand for the paper's attributes: its multilabel groups
    other than `GENRE` (which is the genre row), or every multilabel group when genre is all it has."""
    multilabel = [name for name, spec in vocab["groups"].items() if spec.get("type", MULTILABEL) == MULTILABEL]
    return [name for name in multilabel if name != GENRE] or multilabel


def ablation_vocabulary(vocab: dict, genome: list[str], tagger: str) -> dict:
    """A tagger's vocabulary as the ablation reads it: the ``genome`` groups first, then `GENRE`, then the
    rest, so that the genre row (the first group outside the genome, `fusion.ablation.ablation_rows`) is the
    tagger's genre. A ``genome`` group the tagger lacks is a ``ValueError`` naming both arguments."""
    groups = vocab["groups"]
    unknown = [g for g in genome if g not in groups]
    if unknown:
        raise ValueError(f"--genome {' '.join(genome)}: {unknown} not among the groups of --tagger {tagger}: "
                         f"{list(groups)}")
    order = [*genome, *([GENRE] if GENRE in groups and GENRE not in genome else [])]
    order += [g for g in groups if g not in order]
    return {"groups": {g: groups[g] for g in order}}


def write_label_free_manifest(manifest: Path, split: ColdStartSplit, vocab: dict, artist_col: str | None,
                              out: Path) -> None:
    """``out`` (Parquet): the manifest's track ids, files and artists and no label column, every warm track
    the fusion stage's (``fusion_split`` train; cold tracks val and test), with ``vocab`` (the tagger's,
    `ablation_vocabulary`) beside it as ``vocab.json``."""
    frame = read_manifest(manifest)
    if artist_col is not None and artist_col not in frame.columns:
        raise ValueError(f"{manifest}: no artist column {artist_col!r} (--artist-col; has {list(frame.columns)})")
    keep = [c for c in CONTENT_COLUMNS if c in frame.columns] + ([artist_col] if artist_col else [])
    frame = frame[keep].copy()
    part = frame["track_id"].map(dict(zip(split.item_ids.astype(str), split.item_split, strict=True)))
    frame[FUSION_SPLIT] = part.map({"warm": "train", "cold_val": "val", "cold_test": "test"}).astype(object)
    if not (frame[FUSION_SPLIT] == "train").any():
        raise ValueError(f"{manifest}: no track of the manifest is warm in the cold-start split: nothing to learn from")
    write_json(out.parent / "vocab.json", vocab)
    with atomic_path(out) as tmp:
        frame.to_parquet(tmp, index=False)


def write_tagger_config(base: Path, out: Path, max_epochs: int | None, pretrained: Path | None = None) -> Path:
    """``out/tagger.yaml``: the config ``base`` reading the split manifest and writing under ``out/tagger``
    (its loggers, checkpoints, exported model and tables), so that no run of another catalog is touched.

    ``pretrained``: a packaged `AudioTagger` to start from (`tagging.lightning.TaggerModule`'s
    ``pretrained``); the network is then the package's, with its settings, on the catalog's vocabulary."""
    config = point_outputs_at(yaml.safe_load(base.read_text()), out / "tagger")
    if max_epochs is not None:
        config["trainer"]["max_epochs"] = max_epochs
    if pretrained is not None:
        network = AudioTagger.from_pretrained(pretrained).config
        module = config["model"]["init_args"]
        module["pretrained"] = str(pretrained)
        module["model"] = {"class_path": "tagging.models.tagger.AudioTagger",
                           "init_args": {k: v for k, v in network.items() if k != "vocab"}}
    data = config.setdefault("data", {}).setdefault("init_args", {})
    data["manifest"], data["vocab"] = str(out / "manifest.parquet"), str(out / "vocab.json")
    path = out / "tagger.yaml"
    start = f", starting from {pretrained}" if pretrained is not None else ""
    atomic_write(path, f"# {base} with its paths under {out}{start}; written by python -m fusion chain\n"
                       + yaml.safe_dump(config, sort_keys=False))
    return path
