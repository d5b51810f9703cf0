"""The review loop on a toy catalog, measured: a tagger trained on few tracks tags a pool of others; a
simulated reviewer corrects the tracks the review-next queue puts first (to the catalog's true labels); the
tagger is fine-tuned on the export; both are scored on the catalog's test split.

    python scripts/review_loop.py --catalog data/demo --out runs/review_loop   # 24.5 min on 2 busy cores

1. base: ``configs/tagger_demo.yaml``'s network trained on ``--base-tracks`` of the catalog's training
   tracks (its validation split for early stopping and thresholds).
2. ``coldtag annotate`` with the base package on a pool of ``--pool`` other training tracks, then the review
   store filled as a reviewer walking the review-next queue would: for each of the first ``--reviewed``
   tracks, every tag of every tag group confirmed, removed or added to match the truth, every graded value
   set to the true one.
3. ``coldtag review export``, and the base fine-tuned on it (``corrected``); as a control, the base
   fine-tuned the same way on the same tracks with the machine's own decisions as labels (``machine``), so
   that a gain is the corrections' and not the extra epochs'.
4. Macro ROC-AUC of each tag group on the test split, and the differences with artist-bootstrap intervals
   (`coldtag.intervals.paired_difference`). Prints a Markdown table and writes it to ``OUT/loop.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from annotation.cli import cli_main as annotate  # noqa: E402
from annotation.review.cli import cli_main as review  # noqa: E402
from annotation.review.run import Run  # noqa: E402
from annotation.review.store import DB_FILE, Store  # noqa: E402
from coldtag.intervals import paired_difference  # noqa: E402
from tagging.evaluation.evaluate import tagger_scores  # noqa: E402
from tagging.labels import MULTILABEL, LabelSpace, read_manifest  # noqa: E402
from tagging.models.tagger import AudioTagger  # noqa: E402
from train import cli_main as train  # noqa: E402

SEED = 0


def config(out: Path, manifest: Path, vocab: Path | None, epochs: int, lr: float, pretrained: Path | None) -> Path:
    """``configs/tagger_demo.yaml`` with this run's data, folders and training length."""
    settings = yaml.safe_load((ROOT / "configs" / "tagger_demo.yaml").read_text())
    settings["trainer"]["max_epochs"] = epochs
    settings["trainer"]["logger"] = False
    settings["trainer"]["enable_progress_bar"] = False
    for callback in settings["trainer"]["callbacks"]:
        if "dirpath" in callback["init_args"]:
            callback["init_args"]["dirpath"] = str(out / "checkpoints")
    settings["trainer"]["default_root_dir"] = str(out)
    model = settings["model"]["init_args"]
    model.update(export_dir=str(out / "model"), tables_dir=str(out), lr=lr)
    if pretrained is not None:
        model["pretrained"] = str(pretrained)
    data = settings["data"]["init_args"]
    data["manifest"] = str(manifest)
    if vocab is not None:
        data["vocab"] = str(vocab)
    path = out / "config.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def fit(out: Path, manifest: Path, vocab: Path | None, epochs: int, lr: float, pretrained: Path | None = None) -> Path:
    if not (out / "model" / "model.safetensors").is_file():
        train(["fit", "--config", str(config(out, manifest, vocab, epochs, lr, pretrained))])
    return out / "model"


def review_as_the_truth(run: Run, store: Store, truth: pd.DataFrame, labels: LabelSpace, count: int) -> list[str]:
    """Corrections of the first ``count`` tracks of the review-next queue, to the catalog's labels."""
    order = np.lexsort((run.id_rank, -run.priority))
    tracks = [run.ids[i] for i in order if not run.failed[i]][:count]
    for track in tracks:
        i, row = run.index[track], truth.loc[track]
        for name, group in labels.groups.items():
            for j, label in enumerate(group.labels):
                if group.type == MULTILABEL:
                    right = label in set(row[name])
                    decided = bool(run.decided[name][i, j])
                    action = "confirm" if right == decided else "add" if right else "remove"
                    store.add(track, name, label, action, "oracle")
                else:
                    low, high = group.ranges[j]
                    store.add(track, name, label, "set", "oracle", value=float(np.clip(row[label], low, high)))
    return tracks


def machine_manifest(run: Run, tracks: list[str], export: pd.DataFrame, labels: LabelSpace) -> pd.DataFrame:
    """The export's tracks and splits with the machine's own decisions and values as labels (the control)."""
    frame = export[["track_id", "audio_path", "duration", "split"]].copy()
    for name, group in labels.groups.items():
        if group.type == MULTILABEL:
            frame[name] = [[label for j, label in enumerate(group.labels) if run.decided[name][run.index[t], j]]
                           for t in frame["track_id"]]
        else:
            for label in group.labels:
                frame[label] = [run.machine_value(t, name, label) for t in frame["track_id"]]
    return frame


def scores(package: Path, tracks: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each multilabel group's probabilities ``(tracks, labels)``, the files read by the one reader."""
    model = AudioTagger.from_pretrained(package).eval()
    found = tagger_scores(model, list(tracks["audio_path"]))
    return {name: found[name] for name, group in model.labels.groups.items() if group.type == MULTILABEL}


def macro_auc(truth: np.ndarray, probabilities: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    values = [roc_auc_score(truth[:, j], probabilities[:, j]) for j in range(truth.shape[1])
              if 0 < truth[:, j].sum() < len(truth)]
    return float(np.mean(values)) if values else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", default="data/demo")
    parser.add_argument("--out", default="runs/review_loop")
    parser.add_argument("--base-tracks", type=int, default=150)
    parser.add_argument("--pool", type=int, default=600)
    parser.add_argument("--reviewed", type=int, default=300)
    parser.add_argument("--base-epochs", type=int, default=20)
    parser.add_argument("--tune-epochs", type=int, default=10)
    options = parser.parse_args()
    catalog, out = Path(options.catalog).resolve(), Path(options.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(catalog / "manifest.parquet").set_index("track_id", drop=False)
    labels = LabelSpace.from_json(catalog / "vocab.json")
    rng = np.random.default_rng(SEED)
    training = manifest[manifest["split"] == "train"].index.to_numpy()
    rng.shuffle(training)
    base_ids, pool_ids = training[:options.base_tracks], training[options.base_tracks:][:options.pool]

    base_manifest = pd.concat([manifest.loc[base_ids], manifest[manifest["split"] == "val"]])
    base_manifest.to_parquet(out / "base_manifest.parquet", index=False)
    base = fit(out / "base", out / "base_manifest.parquet", catalog / "vocab.json", options.base_epochs, 3e-3)

    pool = manifest.loc[pool_ids, ["track_id", "audio_path"]]
    pool.to_csv(out / "pool.csv", index=False)
    annotations = out / "annotations"
    if not (annotations / "summary.json").is_file():
        assert annotate([str(out / "pool.csv"), "--model", str(base), "--out", str(annotations), "--allow-outside",
                         "--workers", "1", "--no-progress"]) == 0
    run = Run(annotations, base)
    store = Store(annotations / DB_FILE, run.ids, run.labels)
    if store.count() == 0:
        review_as_the_truth(run, store, manifest, labels, options.reviewed)
    export = out / "export"
    assert review(["export", str(annotations), "--model", str(base), "--out", str(export)]) == 0
    exported = pd.read_parquet(export / "manifest.parquet")
    machine_manifest(run, exported["track_id"].tolist(), exported, labels).to_parquet(
        out / "machine_manifest.parquet", index=False)

    corrected = fit(out / "corrected", export / "manifest.parquet", export / "vocab.json", options.tune_epochs,
                    1e-3, base)
    machine = fit(out / "machine", out / "machine_manifest.parquet", export / "vocab.json", options.tune_epochs,
                  1e-3, base)

    test = manifest[manifest["split"] == "test"]
    truth = {g.name: labels.encode(test)[g.name] for g in labels.multilabel()}
    got = {name: scores(package, test) for name, package in (("base", base), ("corrected", corrected),
                                                              ("machine", machine))}
    lines = ["| tag group | base | machine labels | corrected | corrected - base | corrected - machine |",
             "|---|---:|---:|---:|---|---|"]
    for group in truth:
        artists = test["artist_id"].tolist()
        over_base = paired_difference(macro_auc, truth[group], got["corrected"][group], got["base"][group], artists)
        over_machine = paired_difference(macro_auc, truth[group], got["corrected"][group], got["machine"][group],
                                         artists)
        lines.append(f"| {group} | {over_base.b:.3f} | {over_machine.b:.3f} | {over_base.a:.3f} | {over_base} | "
                     f"{over_machine} |")
    text = (f"{options.base_tracks} base tracks, {options.reviewed} corrected of a pool of {len(pool_ids)}, "
            f"{len(test)} test tracks; macro ROC-AUC per tag group\n\n" + "\n".join(lines) + "\n")
    (out / "loop.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
