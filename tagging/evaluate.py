"""Tables of tagging results, as Markdown and CSV.

    # which modality carries what: audio / lyrics / cover alone and fused, on the test split
    python -m tagging.evaluate modalities --model runs/demo/multimodal/model \
        --manifest data/demo/manifest.parquet --features runs/demo/features.npz --out runs/demo/multimodal
    # the audio tagger beside the mean-log-mel logistic-regression baseline
    python -m tagging.evaluate baseline --tagger runs/demo/tagger/test_scores.json \
        --baseline runs/demo/baseline.json --out runs/demo/tagger
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from tagging.features import TrackFeatures
from tagging.labels import LabelSpace, MultilabelScores, read_manifest
from tagging.multimodal import MultimodalTagger

# Traits that live in time rather than in the average spectrum; the baseline cannot see them.
TEMPORAL = ("odd_meter", "triple_meter", "swing", "syncopation", "tempo")


@torch.inference_mode()
def modality_rows(model: MultimodalTagger, manifest: str | Path, features: TrackFeatures,
                  split: str = "test") -> list[dict]:
    """Macro ROC-AUC / PR-AUC per multilabel group for each modality alone and all fused, on the tracks
    that have all modalities and on all tracks (each row using whatever those tracks have of its
    modalities). The audio tagger's own predictions, when cached, are a reference row."""
    frame = read_manifest(manifest)
    frame = frame[frame["split"] == split].reset_index(drop=True)
    targets = model.labels.encode(frame, source=str(manifest))
    rows = features.rows(frame["track_id"].tolist())
    inputs = {m: torch.from_numpy(features.arrays[m][rows]) for m in model.modalities}
    present = {m: torch.from_numpy(features.present[m][rows]) for m in model.modalities}
    has_all = torch.stack(list(present.values()), dim=1).all(dim=1)
    model.eval()
    subsets = [[m] for m in model.modalities] + [list(model.modalities)]
    results = []
    for population, population_mask in (("tracks with all modalities", has_all),
                                        ("all tracks", torch.ones_like(has_all))):
        if "scores/genre" in features.arrays and "audio" in present:
            keep = population_mask & present["audio"]
            scores = {g: torch.from_numpy(features.arrays[f"scores/{g}"][rows]) for g in targets
                      if f"scores/{g}" in features.arrays}
            results.append(_row("audio tagger (reference)", population, keep, scores, targets, model.labels))
        for subset in subsets:
            keep = population_mask & torch.stack([present[m] for m in subset], dim=1).any(dim=1)
            if not keep.any():
                continue
            logits = model({m: inputs[m][keep] for m in subset}, {m: present[m][keep] for m in subset})
            scores = {g: torch.zeros(len(keep), s.shape[1]).index_copy(0, keep.nonzero().squeeze(1), s)
                      for g, s in model.scores(logits).items()}
            name = "fused (" + " + ".join(subset) + ")" if len(subset) > 1 else f"{subset[0]} only"
            results.append(_row(name, population, keep, scores, targets, model.labels))
    return results


def _row(name: str, population: str, keep: torch.Tensor, scores: dict, targets: dict,
         labels: LabelSpace) -> dict:
    row = {"inputs": name, "tracks": population, "n": int(keep.sum())}
    for group in labels.multilabel():
        if group.name not in scores:
            continue
        metric = MultilabelScores(group.labels)
        metric.update(scores[group.name][keep], torch.from_numpy(targets[group.name])[keep])
        result = metric.compute()
        row[f"{group.name} roc_auc"] = result["roc_auc"]
        row[f"{group.name} pr_auc"] = result["pr_auc"]
    return row


def baseline_rows(tagger_scores: dict, baseline: dict) -> list[dict]:
    """Per group and per temporal trait: the tagger's test score beside the baseline's."""
    rows = []
    for group, result in tagger_scores.items():
        metric = "roc_auc" if "roc_auc" in result else "spearman"
        rows.append({"what": f"{group} (macro {metric})", "tagger": result[metric],
                     "baseline": baseline.get(group, {}).get(metric, math.nan)})
    for group, result in tagger_scores.items():
        metric = "roc_auc" if "roc_auc" in result else "spearman"
        for label, scores in result.get("per_label", {}).items():
            if label in TEMPORAL:
                base = baseline.get(group, {}).get("per_label", {}).get(label, {}).get(metric, math.nan)
                rows.append({"what": f"{label} ({metric})", "tagger": scores[metric], "baseline": base})
    return rows


def write_table(rows: list[dict], out: str | Path, name: str) -> str:
    """Write ``rows`` as ``name.csv`` and ``name.md`` under ``out``; returns the Markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / f"{name}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    markdown = markdown_table(rows, columns)
    (out / f"{name}.md").write_text(markdown + "\n")
    return markdown


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))

    def cell(value) -> str:
        if isinstance(value, float | np.floating):
            return "–" if math.isnan(value) else f"{value:.3f}"
        return str(value)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    modalities = commands.add_parser("modalities", help="audio / lyrics / cover alone and fused")
    modalities.add_argument("--model", required=True, help="a save_pretrained MultimodalTagger directory")
    modalities.add_argument("--manifest", required=True)
    modalities.add_argument("--features", required=True)
    modalities.add_argument("--split", default="test")
    modalities.add_argument("--out", required=True)
    base = commands.add_parser("baseline", help="the audio tagger beside the logistic-regression baseline")
    base.add_argument("--tagger", required=True, help="test_scores.json written by train.py test")
    base.add_argument("--baseline", required=True, help="JSON written by python -m tagging.baseline")
    base.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "modalities":
        rows = modality_rows(MultimodalTagger.from_pretrained(args.model), args.manifest,
                             TrackFeatures.load(args.features), args.split)
        print(write_table(rows, args.out, "modalities"))
    else:
        rows = baseline_rows(json.loads(Path(args.tagger).read_text()), json.loads(Path(args.baseline).read_text()))
        print(write_table(rows, args.out, "tagger_vs_baseline"))


if __name__ == "__main__":
    main()
