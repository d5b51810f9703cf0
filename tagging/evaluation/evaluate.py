"""Tables of tagging results, as Markdown and CSV.

    # which modality carries what: audio / lyrics / cover alone and fused, on the test split (modalities.md),
    # and each of them minus the audio tagger with artist-resampled 95 % intervals (modalities_vs_tagger.md)
    python -m tagging evaluate modalities --model runs/demo/multimodal/model \
        --manifest data/demo/manifest.parquet --features runs/demo/features.npz --out runs/demo/multimodal
    # the audio tagger beside the mean-log-mel logistic-regression baseline
    python -m tagging evaluate baseline --tagger runs/demo/tagger/test_scores.json \
        --baseline runs/demo/baseline.json --out runs/demo/tagger
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from coldtag.intervals import paired_difference
from tagging.data.features import TrackFeatures
from tagging.data.modules import SPLITS, split_of
from tagging.labels import LabelSpace, nanmean, read_manifest
from tagging.models.multimodal import MultimodalTagger
from tagging.models.tagger import AudioTagger
from tagging.tracks import TrackReader

# The manifest column of artists (`tagging.datasets`), resampled as clusters when a command is not told another.
ARTIST_COLUMN = "artist_id"
# The row of the audio tagger's own scores, which the multimodal rows are compared with.
REFERENCE = "audio tagger (reference)"


@dataclass
class ModalityScores:
    """One split's tracks as each row of the modality table scores them.

    ``targets[group]`` and ``scores[name][group]`` are ``(tracks, labels)``; ``scored[name]`` marks the tracks
    row ``name`` scores (those with any of its modalities; audio for the `REFERENCE`), ``populations`` the
    track sets every row is evaluated on, and ``frame`` the tracks' manifest rows.
    """

    labels: LabelSpace
    frame: pd.DataFrame
    targets: dict[str, np.ndarray]
    populations: dict[str, np.ndarray]
    scored: dict[str, np.ndarray]
    scores: dict[str, dict[str, np.ndarray]]

    def rows(self) -> list[dict]:
        """Macro ROC-AUC / PR-AUC per multilabel group of every row on every population."""
        results = []
        for population, members in self.populations.items():
            for name, scored in self.scored.items():
                keep = members & scored
                if not keep.any():
                    continue
                row = {"inputs": name, "tracks": population, "n": int(keep.sum())}
                for group in self._groups(name):
                    truth, scores = self.targets[group][keep], self.scores[name][group][keep]
                    row[f"{group} roc_auc"] = roc_auc(truth, scores)
                    row[f"{group} pr_auc"] = pr_auc(truth, scores)
                results.append(row)
        return results

    def differences(self, clusters: np.ndarray, cluster_name: str = "clusters", resamples: int = 2000,
                    seed: int = 0) -> list[dict]:
        """Every row but the reference minus the `REFERENCE`, on the tracks both score, per multilabel group
        and metric, with a 95 % interval from resampling ``clusters`` (one value per track, e.g. its artist;
        `coldtag.intervals.paired_difference`). Empty without a reference."""
        results = []
        if REFERENCE not in self.scored:
            return results
        for population, members in self.populations.items():
            for name, scored in self.scored.items():
                keep = members & scored & self.scored[REFERENCE]
                if name == REFERENCE or not keep.any():
                    continue
                for group in self._groups(name):
                    if group not in self.scores[REFERENCE]:
                        continue
                    for metric in (roc_auc, pr_auc):
                        result = paired_difference(metric, self.targets[group][keep], self.scores[name][group][keep],
                                                   self.scores[REFERENCE][group][keep], clusters[keep],
                                                   resamples=resamples, seed=seed)
                        results.append({
                            "inputs": name, "tracks": population, "group": group, "metric": metric.__name__,
                            "n": int(keep.sum()), cluster_name: result.clusters, "multimodal": result.a,
                            "tagger": result.b, "difference": result.difference, "95 % low": result.low,
                            "95 % high": result.high, "P(difference <= 0)": result.p_not_positive})
        return results

    def _groups(self, name: str) -> list[str]:
        return [group.name for group in self.labels.multilabel() if group.name in self.scores[name]]


@torch.inference_mode()
def modality_scores(model: MultimodalTagger, manifest: str | Path, features: TrackFeatures, split: str = "test",
                    split_column: str = "split") -> ModalityScores:
    """Scores of the tracks whose ``split_column`` is ``split``: by each modality of ``model`` alone and by
    all fused (each track through whatever it has of them), and the audio tagger's own, when cached in
    ``features``, as the `REFERENCE`. Populations: the tracks with all modalities, and all tracks."""
    frame = read_manifest(manifest)
    frame = frame[split_of(frame, split_column, manifest) == split].reset_index(drop=True)
    targets = model.labels.encode(frame, source=str(manifest))
    rows = features.rows(frame["track_id"].tolist())
    present = {m: features.present[m][rows] for m in model.modalities}
    scored, scores = {}, {}
    tagger = {g: features.arrays[f"scores/{g}"][rows] for g in targets if f"scores/{g}" in features.arrays}
    if tagger and "audio" in features.present:
        scored[REFERENCE], scores[REFERENCE] = features.present["audio"][rows], tagger
    model.eval()
    subsets = [[m] for m in model.modalities] + ([list(model.modalities)] if len(model.modalities) > 1 else [])
    for subset in subsets:
        keep = np.stack([present[m] for m in subset], axis=1).any(axis=1)
        if not keep.any():
            continue
        logits = model({m: torch.from_numpy(features.arrays[m][rows][keep]) for m in subset},
                       {m: torch.from_numpy(present[m][keep]) for m in subset})
        name = "fused (" + " + ".join(subset) + ")" if len(subset) > 1 else f"{subset[0]} only"
        scored[name] = keep
        scores[name] = {}
        for group, values in model.scores(logits).items():
            scores[name][group] = np.zeros((len(keep), values.shape[1]), dtype=np.float32)
            scores[name][group][keep] = values.numpy()
    has_all = np.stack(list(present.values()), axis=1).all(axis=1)
    return ModalityScores(model.labels, frame, targets, {"tracks with all modalities": has_all,
                                                         "all tracks": np.ones(len(frame), dtype=bool)},
                          scored, scores)


@torch.inference_mode()
def tagger_scores(model: AudioTagger, paths: list[str]) -> dict[str, np.ndarray]:
    """Whole-track scores of each file per group, ``(tracks, labels)``: each file read by the one reader
    (`TrackReader`, the tagger's grid) and its chunks averaged (`AudioTagger.chunk_outputs`), as ``coldtag
    annotate`` scores it. A file that cannot be read is a ``ValueError`` naming it."""
    reader = TrackReader.for_tagger(model)
    rows = []
    for path in paths:
        track = reader(path)
        if track.error is not None:
            raise ValueError(f"{path}: {track.error['message']}")
        scores = model.chunk_outputs([track.chunks]).scores
        rows.append({name: values[0].numpy() for name, values in scores.items()})
    return {name: np.array([row[name] for row in rows]) for name in model.labels.groups}


def resampling_clusters(frame: pd.DataFrame, column: str | None,
                        source: str | Path) -> tuple[np.ndarray, str | None]:
    """The bootstrap cluster of each track and the column it came from: the values of ``column`` (a null
    makes the track a cluster of its own, `coldtag.intervals`); for ``column=None``, `ARTIST_COLUMN` where
    the manifest has it, else one cluster per track and None for the column."""
    if column is None:
        if ARTIST_COLUMN not in frame.columns:
            return np.arange(len(frame)), None
        column = ARTIST_COLUMN
    if column not in frame.columns:
        raise ValueError(f"{source}: manifest has no column {column!r} to resample by (has {list(frame.columns)})")
    return frame[column].to_numpy(dtype=object), column


def spearman(truth: np.ndarray, scores: np.ndarray) -> float:
    """Mean Spearman correlation over the columns of ``(tracks, labels)`` (1-D: one label), each on its known
    tracks; NaN where undefined (fewer than three tracks, or a constant column)."""
    truth = np.asarray(truth, dtype=float).reshape(len(truth), -1)
    scores = np.asarray(scores, dtype=float).reshape(len(scores), -1)
    values = []
    for t, s in zip(truth.T, scores.T, strict=True):
        known = ~np.isnan(t) & ~np.isnan(s)
        if known.sum() >= 3 and np.ptp(t[known]) > 0 and np.ptp(s[known]) > 0:
            values.append(spearmanr(t[known], s[known]).statistic)
    return nanmean(values)


def roc_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Macro ROC-AUC of ``(tracks, labels)`` targets and scores (1-D: one label), ties counted half.

    As `tagging.labels.MultilabelScores`: a track with a NaN target is left out of that label, a label with
    one class out of the mean; NaN when no label has both classes (a bootstrap resample then skips it).
    """
    ranked = _ranked(truth, scores, descending=False)
    if ranked is None:
        return math.nan
    positive, known, group_start, group_end, defined = ranked
    cumulative = np.cumsum(known, axis=0)
    below = np.take_along_axis(cumulative - known, group_start, axis=0)  # known tracks under the tie group
    tied = np.take_along_axis(cumulative, group_end, axis=0) - below
    rank_sum = (positive * (below + (tied + 1) / 2)).sum(axis=0)  # mid-ranks among the known tracks
    n_positive = positive.sum(axis=0)
    n_negative = known.sum(axis=0) - n_positive
    with np.errstate(divide="ignore", invalid="ignore"):
        per_label = (rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)
    return nanmean(per_label[defined].tolist())


def pr_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Macro PR-AUC (average precision: precision at each distinct score, weighted by the recall it adds, as
    scikit-learn and torchmetrics compute it) with the label and NaN rules of `roc_auc`."""
    ranked = _ranked(truth, scores, descending=True)
    if ranked is None:
        return math.nan
    positive, known, _group_start, group_end, defined = ranked
    precision = (np.take_along_axis(np.cumsum(positive, axis=0), group_end, axis=0)
                 / np.take_along_axis(np.cumsum(known, axis=0), group_end, axis=0).clip(min=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        per_label = (positive * precision).sum(axis=0) / positive.sum(axis=0)
    return nanmean(per_label[defined].tolist())


def _ranked(truth: np.ndarray, scores: np.ndarray, descending: bool) -> tuple | None:
    """Each label's tracks sorted by score: positive and known flags, and per track the first and last
    position of its run of tied scores; also which labels have both classes. None without tracks.

    Vectorised over labels because the bootstrap calls the metrics thousands of times per table, and
    scikit-learn's per-label functions take milliseconds each."""
    truth = np.asarray(truth, dtype=np.float64).reshape(len(truth), -1)
    scores = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    n = len(truth)
    if n == 0:
        return None
    order = np.argsort(-scores if descending else scores, axis=0, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=0)
    sorted_truth = np.take_along_axis(truth, order, axis=0)
    known = (~np.isnan(sorted_truth)).astype(np.float64)
    positive = (sorted_truth == 1).astype(np.float64)
    position = np.broadcast_to(np.arange(n)[:, None], scores.shape)
    starts = np.ones(scores.shape, dtype=bool)
    starts[1:] = sorted_scores[1:] != sorted_scores[:-1]
    ends = np.ones(scores.shape, dtype=bool)
    ends[:-1] = starts[1:]
    group_start = np.maximum.accumulate(np.where(starts, position, 0), axis=0)
    group_end = np.minimum.accumulate(np.where(ends, position, n - 1)[::-1], axis=0)[::-1]
    n_positive = positive.sum(axis=0)
    defined = (n_positive > 0) & (n_positive < known.sum(axis=0))
    return positive, known, group_start, group_end, defined


def baseline_rows(tagger_scores: dict, baseline: dict, labels: Sequence[str] = ()) -> list[dict]:
    """Per group, then per label of ``labels`` (e.g. the traits that live in time, which a baseline on the
    average spectrum cannot see): the tagger's test score beside the baseline's."""
    rows = []
    for group, result in tagger_scores.items():
        metric = "roc_auc" if "roc_auc" in result else "spearman"
        rows.append({"what": f"{group} (macro {metric})", "tagger": result[metric],
                     "baseline": baseline.get(group, {}).get(metric, math.nan)})
    for group, result in tagger_scores.items():
        metric = "roc_auc" if "roc_auc" in result else "spearman"
        for label, scores in result.get("per_label", {}).items():
            if label in labels:
                base = baseline.get(group, {}).get("per_label", {}).get(label, {}).get(metric, math.nan)
                rows.append({"what": f"{label} ({metric})", "tagger": scores[metric], "baseline": base})
    return rows


def write_table(rows: list[dict], out: str | Path, name: str, note: str = "") -> str:
    """Write ``rows`` as ``name.csv`` and ``name.md`` under ``out``, the Markdown with ``note`` below the
    table; returns the Markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / f"{name}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    markdown = markdown_table(rows, columns) + (f"\n\n{note}" if note else "")
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
    parser = argparse.ArgumentParser(prog="python -m tagging evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    modalities = commands.add_parser("modalities", help="audio / lyrics / cover alone and fused")
    modalities.add_argument("--model", required=True, help="a save_pretrained MultimodalTagger directory")
    modalities.add_argument("--manifest", required=True)
    modalities.add_argument("--features", required=True)
    modalities.add_argument("--split", default="test", choices=SPLITS)
    modalities.add_argument("--split-column", default="split",
                            help="manifest column of the splits (default: split; fusion_split for a multimodal "
                                 "tagger trained on tracks the audio tagger never saw)")
    modalities.add_argument("--artist-col", default=None,
                            help=f"manifest column resampled as clusters for the intervals (default: "
                                 f"{ARTIST_COLUMN} when the manifest has it, else every track on its own)")
    modalities.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the intervals")
    modalities.add_argument("--out", required=True)
    base = commands.add_parser("baseline", help="the audio tagger beside the logistic-regression baseline")
    base.add_argument("--tagger", required=True, help="test_scores.json written by train.py test")
    base.add_argument("--baseline", required=True, help="JSON written by python -m tagging baseline")
    base.add_argument("--labels", nargs="*", default=[], help="labels to list one by one after the groups")
    base.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "modalities":
        scores = modality_scores(MultimodalTagger.from_pretrained(args.model), args.manifest,
                                 TrackFeatures.load(args.features), args.split, args.split_column)
        clusters, column = resampling_clusters(scores.frame, args.artist_col, args.manifest)
        print(write_table(scores.rows(), args.out, "modalities"))
        clustered_by = column or "one per track"
        differences = scores.differences(clusters, f"clusters ({clustered_by})", args.resamples)
        if not differences:
            print(f"{args.features}: no audio tagger scores, so no comparison with the tagger", file=sys.stderr)
            return
        note = (f"Multimodal minus audio tagger on the tracks both score ({args.split_column} = {args.split}); "
                f"95 % percentile interval over {args.resamples} bootstrap resamples of clusters "
                f"({clustered_by}), both scored on each resample; resamples where a metric is undefined (a "
                f"label with one class) are left out (`coldtag.intervals.paired_difference`).")
        if column is None:
            note += (f" The manifest has no {ARTIST_COLUMN!r} column: tracks of one artist are resampled as if "
                     "independent, so the intervals are too narrow where tracks share an artist.")
        print(write_table(differences, args.out, "modalities_vs_tagger", note))
    else:
        rows = baseline_rows(json.loads(Path(args.tagger).read_text()), json.loads(Path(args.baseline).read_text()),
                             args.labels)
        print(write_table(rows, args.out, "tagger_vs_baseline"))
