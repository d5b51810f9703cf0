"""Is the tagger's lead over the mean-log-mel baseline real? A paired bootstrap that resamples artists.

    .venv/bin/python scripts/tagger_vs_baseline_ci.py --model runs/demo/tagger/model \
        --manifest data/demo/manifest.parquet --labels odd_meter triple_meter swing tempo

For each label: the tagger's and the baseline's test score (ROC-AUC for binary labels, Spearman for
graded ones), and the 95 % interval and one-sided p-value of their difference when the test split's
artists are resampled with replacement, each with all its tracks (both models scored on the same
resample; `coldtag.intervals.paired_difference`, as ``python -m tagging evaluate modalities`` does for the
multimodal tagger). Tracks of one artist share timbre and rhythm, so resampling tracks would treat five
odd-meter tracks of one artist as five independent cases. ``--artist-col`` names the manifest column
of artists (default ``artist_id``); a manifest without one makes every track its own cluster, and the
script says so.

``--eval-manifest`` scores every track of another catalog instead of the test split, e.g. one built
with another seed (``python -m toycatalog build --preset demo --seed 2``): new artists, ten times the
positives. The baseline is still fitted on ``--manifest``'s train split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coldtag.intervals import paired_difference
from tagging.evaluation.baseline import mean_logmel, predict
from tagging.evaluation.evaluate import ARTIST_COLUMN, resampling_clusters, roc_auc, tagger_scores
from tagging.labels import MULTILABEL, read_manifest
from tagging.models.tagger import AudioTagger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="an AudioTagger save_pretrained directory")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--labels", nargs="+", required=True, help="label names from the model's vocabulary")
    parser.add_argument("--eval-manifest", type=Path, default=None,
                        help="score every track of this catalog instead of --manifest's test split")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--artist-col", default=None,
                        help="manifest column resampled as clusters (default: artist_id when the manifest has "
                             "it, else every track on its own)")
    args = parser.parse_args()
    model = AudioTagger.from_pretrained(args.model).eval()
    groups = {label: group for group in model.labels.groups.values() for label in group.labels}
    unknown = [label for label in args.labels if label not in groups]
    if unknown:
        parser.error(f"--labels: not in the model's vocabulary: {unknown}")
    frame = read_manifest(args.manifest)
    targets = model.labels.encode(frame, source=str(args.manifest))
    train = (frame["split"] == "train").to_numpy()
    if args.eval_manifest is not None:
        scored = read_manifest(args.eval_manifest)
        scored_targets = model.labels.encode(scored, source=str(args.eval_manifest))
        targets = {name: np.concatenate([y[train], scored_targets[name]]) for name, y in targets.items()}
        frame = pd.concat([frame[train], scored], ignore_index=True)
        train = np.arange(len(frame)) < train.sum()
        test = ~train
    else:
        test = (frame["split"] == "test").to_numpy()
    features = mean_logmel(frame["audio_path"].tolist())
    usable = ~np.isnan(features).any(axis=1)
    for path in frame["audio_path"][~usable]:
        print(f"skipped, cannot be decoded: {path}", file=sys.stderr)
    train = train & usable
    test = np.flatnonzero(usable & test)
    scores = tagger_scores(model, frame["audio_path"].iloc[test].tolist())
    clusters, column = resampling_clusters(frame.iloc[test], args.artist_col, args.eval_manifest or args.manifest)
    if column is None:
        print(f"no {ARTIST_COLUMN!r} column: every track is resampled on its own, and the intervals are too narrow "
              "where tracks share an artist", file=sys.stderr)
    print("| label | tagger | baseline | difference, 95 % interval | P(difference <= 0) | "
          f"clusters ({column or 'one per track'}) |\n|---|---:|---:|---|---:|---:|")
    for label in args.labels:
        group = groups[label]
        y = targets[group.name][:, group.labels.index(label)]
        known = ~np.isnan(y[test])
        binary = group.type == MULTILABEL
        metric = roc_auc if binary else (lambda t, p: spearmanr(t, p).statistic)
        ours = scores[group.name][known, group.labels.index(label)]
        base = predict(features, y, train & ~np.isnan(y), test[known], multilabel=binary)
        result = paired_difference(metric, y[test[known]], ours, base, clusters[known], resamples=args.resamples)
        print(f"| {label} | {result.a:.3f} | {result.b:.3f} | {result} | {result.p_not_positive:.3f} | "
              f"{result.clusters} |")


if __name__ == "__main__":
    main()
