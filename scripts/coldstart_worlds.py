"""The cold-start ablation in listening worlds whose answer is not fixed in advance, with features in and
out of sample.

    .venv/bin/python scripts/coldstart_worlds.py --catalog data/demo --demo runs/demo --out runs/worlds

The toy catalog's listeners choose tracks by the traits its vocabulary lists, so "annotated attributes
come closest" is how the generator was written. Here a share of their taste follows traits the audio
carries and the vocabulary omits (`toycatalog.catalog.HIDDEN_TRAITS`): for each ``--shares`` value the
listeners of ``--catalog`` are simulated again (``python -m toycatalog plays``; share 0 is the catalog's
own plays), their factors learnt (``python -m recsys coldstart``), and the fusion rows trained twice
(``python -m fusion ablation --skip-audio``):

- **out of sample**: on the features of ``--demo`` (``make demo``: the tagger learnt from half the warm
  tracks, the fusion rows from the other half);
- **in sample**: on the features of a tagger trained on every warm track (``--tagger-share 1``), the
  fusion rows on the same tracks: the set-up before `python -m fusion split`.

It then writes ``worlds.md``: the tagger's test scores with half and all of the warm tracks (the cost of
the split), the out-of-sample minus in-sample distance of each row with its artist-clustered interval,
and per share the two tables side by side with the artist-clustered differences of the out-of-sample
rows. A finished step is reused, so an interrupted run picks up where it stopped. Not part of ``make
demo``: about 75 minutes on 2 cores shared with `make demo` (a tagger training, then six ablations).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fusion.ablation import ablation_predictions, cosine_difference, item_artists  # noqa: E402
from fusion.chain import write_tagger_config  # noqa: E402
from recsys import ColdStartSplit  # noqa: E402
from tagging.labels import read_manifest  # noqa: E402

PY = [sys.executable]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, default=Path("data/demo"))
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="a finished make demo run")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.5, 0.9])
    parser.add_argument("--tagger-config", type=Path, default=Path("configs/tagger_demo.yaml"))
    parser.add_argument("--out", type=Path, default=Path("runs/worlds"))
    args = parser.parse_args()
    for path in (args.catalog / "manifest.parquet", args.demo / "recsys" / "coldstart.npz"):
        if not path.is_file():
            parser.error(f"{path}: not found (run make demo first)")
    started = time.perf_counter()
    in_sample = in_sample_features(args.catalog, args.demo, args.tagger_config, args.out / "in-sample")
    for path in (args.demo / "manifest.parquet", args.demo / "features.npz", args.demo / "tagger" / "test_scores.json"):
        if not path.is_file():
            parser.error(f"{path}: not found (run make demo first)")
    settings = {"out of sample": (args.demo / "manifest.parquet", args.demo / "features.npz"),
                "in sample": (in_sample / "manifest.parquet", in_sample / "features.npz")}
    worlds = {}
    for share in args.shares:
        folder = args.out / f"hidden-{share:g}"
        recsys = world(args.catalog, share, folder)
        worlds[share] = {name: ablation(manifest, features, recsys, folder / name.replace(" ", "-"))
                         for name, (manifest, features) in settings.items()}
    report = summary(args, in_sample, worlds, time.perf_counter() - started)
    (args.out / "worlds.md").write_text(report)
    print(report)


def run(command: list[str], done: Path) -> None:
    """Run ``command`` unless ``done`` is there (each step writes it last); stop the script if it fails."""
    if done.is_file():
        print(f"== {done.name}: done ({done})", flush=True)
        return
    print(f"== {' '.join(command)}", flush=True)
    status = subprocess.run(command, cwd=ROOT).returncode
    if status != 0:
        raise SystemExit(f"{' '.join(command)}: exit {status}")


def in_sample_features(catalog: Path, demo: Path, config: Path, folder: Path) -> Path:
    """A tagger trained on every warm track, tested, and its features of every track."""
    folder.mkdir(parents=True, exist_ok=True)
    run([*PY, "-m", "fusion", "split", "--manifest", str(catalog / "manifest.parquet"), "--recsys",
         str(demo / "recsys"), "--tagger-share", "1", "--out", str(folder / "manifest.parquet")],
        folder / "manifest.parquet")
    if not (folder / "tagger" / "model" / "model.safetensors").is_file():
        write_tagger_config(ROOT / config, folder, None)
    run([*PY, "train.py", "fit", "--config", str(folder / "tagger.yaml")],
        folder / "tagger" / "model" / "model.safetensors")
    run([*PY, "train.py", "test", "--config", str(folder / "tagger.yaml"),
         f"--ckpt_path={folder / 'tagger' / 'checkpoints' / 'best.ckpt'}"], folder / "tagger" / "test_scores.json")
    run([*PY, "-m", "tagging", "features", "--manifest", str(catalog / "manifest.parquet"), "--tagger",
         str(folder / "tagger" / "model"), "--out", str(folder / "features.npz")], folder / "features.npz")
    return folder


def world(catalog: Path, share: float, folder: Path) -> Path:
    """The catalog's listeners with ``share`` of their taste on hidden traits, and their factors."""
    plays = catalog / "plays.parquet"
    if share > 0:
        plays = folder / "plays.parquet"
        run([*PY, "-m", "toycatalog", "plays", "--catalog", str(catalog), "--hidden-taste", str(share),
             "--out", str(plays)], plays)
    run([*PY, "-m", "recsys", "coldstart", "--plays", str(plays), "--user-col", "user_id", "--item-col", "track_id",
         "--count-col", "plays", "--manifest", str(catalog / "manifest.parquet"), "--split-col", "item_split",
         "--artist-col", "artist_id", "--out", str(folder / "recsys")], folder / "recsys" / "baselines.md")
    return folder / "recsys"


def ablation(manifest: Path, features: Path, recsys: Path, out: Path) -> Path:
    run([*PY, "-m", "fusion", "ablation", "--manifest", str(manifest), "--vocab", str(manifest.parent / "vocab.json"),
         "--features", str(features), "--recsys", str(recsys), "--genome", "attribute", "graded", "--skip-audio",
         "--out", str(out)], out / "table.md")
    return out


def summary(args: argparse.Namespace, in_sample: Path, worlds: dict, seconds: float) -> str:
    lines = [f"# Cold-start ablation across listening worlds (`scripts/coldstart_worlds.py`, {seconds / 60:.0f} min "
             "this run; finished steps are reused)", "",
             "## What the split costs the tagger", "",
             "Macro ROC-AUC on the cold-test tracks (`test_scores.json`) of the tagger trained on half the warm "
             "tracks (make demo) and on all of them.", "",
             "| tagger | training tracks | " + " | ".join(GROUPS) + " |", "|---|---:|" + "---:|" * len(GROUPS)]
    for name, folder in (("half the warm tracks (out of sample)", args.demo), ("every warm track (in sample)",
                                                                                 in_sample)):
        scores = json.loads((folder / "tagger" / "test_scores.json").read_text())
        manifest = pd.read_parquet(folder / "manifest.parquet", columns=["split"])
        n = int((manifest["split"] == "train").sum())
        lines.append(f"| {name} | {n} | " + " | ".join(f"{group_score(scores, g):.3f}" for g in GROUPS) + " |")
    lines += ["", "## Cosine distance across worlds", "",
              "To the true factors of the 110 cold-test tracks (lower is better); out of sample / in sample.", "",
              "| row | " + " | ".join(f"share {share:g}: out | in" for share in worlds) + " |",
              "|---|" + "---:|---:|" * len(worlds)]
    tables = {share: {name: pd.read_csv(folder / "table.csv", index_col="model") for name, folder in settings.items()}
              for share, settings in worlds.items()}
    for row in next(iter(tables.values()))["out of sample"].index:
        cells = [f"{t.loc[row, 'cosine_distance']:.4f}" if row in t.index and pd.notna(t.loc[row, "cosine_distance"])
                 else "—" for pair in tables.values() for t in (pair["out of sample"], pair["in sample"])]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += ["", "## Out of sample minus in sample, across worlds", "",
              "Cosine distance difference per row (positive: the out-of-sample row is further from the true "
              "factors), with its 95 % interval resampling artists (1,000 resamples).", "",
              "| row | " + " | ".join(f"share {share:g}" for share in worlds) + " |", "|---|" + "---|" * len(worlds)]
    manifest = read_manifest(args.catalog / "manifest.parquet")
    gaps = {}
    for share, settings in worlds.items():
        split = ColdStartSplit.load(args.out / f"hidden-{share:g}" / "recsys" / "coldstart.npz")
        artists = item_artists(split, manifest, "artist_id", args.catalog / "manifest.parquet")
        out_rows, in_rows = (ablation_predictions(settings[name]) for name in ("out of sample", "in sample"))
        gaps[share] = {row: cosine_difference(out_rows[row], in_rows[row], split, artists) for row in out_rows}
    for row in next(iter(gaps.values())):
        lines.append(f"| {row} | " + " | ".join(f"{d.difference:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"
                                               for d in (gap[row] for gap in gaps.values())) + " |")
    lines += ["", "## Each row against the one above it, across worlds (out of sample)", "",
              "Cosine distance difference (negative favours the row) with its 95 % interval resampling artists.", "",
              "| row | versus | " + " | ".join(f"share {share:g}" for share in worlds) + " |",
              "|---|---|" + "---|" * len(worlds)]
    differences = {share: pd.read_csv(settings["out of sample"] / "differences.csv")
                   for share, settings in worlds.items()}
    first = next(iter(differences.values()))
    for pair in first[first["metric"] == "cosine_distance"].itertuples(index=False):
        cells = []
        for table in differences.values():
            match = table[(table["row"] == pair.row) & (table["versus"] == pair.versus)
                          & (table["metric"] == "cosine_distance")]
            d = match.iloc[0] if len(match) else None
            cells.append("—" if d is None else f"{d['difference']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]")
        lines.append(f"| {pair.row} | {pair.versus} | " + " | ".join(cells) + " |")
    for share, settings in worlds.items():
        lines += ["", f"## Hidden taste share {share:g}", "",
                  f"{100 * share:g} % of the listeners' taste (by variance) follows audio traits the vocabulary "
                  "does not list. Cosine distance to the true factors and Recall@50 on the cold-test tracks.", "",
                  "| row | out of sample: cosine | recall@50 | in sample: cosine | recall@50 |",
                  "|---|---:|---:|---:|---:|"]
        tables = {name: pd.read_csv(folder / "table.csv", index_col="model") for name, folder in settings.items()}
        out_table, in_table = tables["out of sample"], tables["in sample"]
        for row in out_table.index:
            cells = []
            for table in (out_table, in_table):
                values = table.loc[row] if row in table.index else None
                cells += ["—" if values is None or pd.isna(values[c]) else f"{values[c]:.4f}"
                          for c in ("cosine_distance", "recall@50")]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines += ["", "Out of sample, each row against the one above it and against popularity:", "",
                  (settings["out of sample"] / "differences.md").read_text().strip()]
    return "\n".join(lines) + "\n"


GROUPS = ("genre", "mood", "attribute")


def group_score(scores: dict, group: str) -> float:
    """The macro ROC-AUC of ``group`` in a tagger's ``test_scores.json``."""
    return float(scores[group]["roc_auc"])


if __name__ == "__main__":
    main()
