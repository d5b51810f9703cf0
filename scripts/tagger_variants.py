"""Which model change earns its place: taggers of several configs, each trained with several seeds, compared
on one split, each against the one before it.

    python scripts/tagger_variants.py --manifest data/realistic/manifest.parquet --split val \
        --variant "demo config" runs/realistic/seed-{0,1,2}/model \
        --variant "+ mean-and-max pooling" runs/mean_max/seed-{0,1,2}/model --out runs/variants

Issue 15's selection table. ``--variant NAME DIR [DIR ...]`` (repeated, in the order the changes were
made) takes one `AudioTagger` package per seed. Per label group, on the ``--split`` tracks: each variant's
macro ROC-AUC (mean Spearman for a regression group), the mean over its seeds with their standard
deviation, and the seed-averaged difference from the variant before it with a 95 % interval and a one-sided
p-value that resample the split's artists, each with all its tracks, every seed of both variants scored on
the same resample (`coldtag.intervals.runs_difference`). A change is kept if it wins on the validation
split; the test split is for the final figures (`scripts/realistic_eval.py`).

Prints the table and, with ``--out``, writes ``variants_<split>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tagging.data.modules import split_of
from tagging.evaluation.comparison import variant_rows, variants_markdown
from tagging.evaluation.evaluate import resampling_clusters, tagger_scores
from tagging.labels import read_manifest
from tagging.models.tagger import AudioTagger


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar=("NAME", "DIR"),
                        help="a name, then one AudioTagger package per seed; repeat for each variant")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--artist-col", default=None)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if any(len(variant) < 2 for variant in args.variant):
        parser.error("--variant: give a name and at least one model directory")
    variants = {variant[0]: [AudioTagger.from_pretrained(path).eval() for path in variant[1:]]
                for variant in args.variant}
    labels = next(iter(variants.values()))[0].labels
    for name, models in variants.items():
        if any(model.labels != labels for model in models):
            parser.error(f"--variant {name!r}: its models predict other labels than the first variant's")
    frame = read_manifest(args.manifest)
    rows = np.flatnonzero(split_of(frame, "split", args.manifest).to_numpy() == args.split)
    if not len(rows):
        parser.error(f"{args.manifest}: no track in the {args.split!r} split")
    targets = {group: y[rows] for group, y in labels.encode(frame, source=str(args.manifest)).items()}
    clusters, column = resampling_clusters(frame, args.artist_col, args.manifest)
    clusters = clusters[rows]
    paths = frame["audio_path"].iloc[rows].tolist()
    scores = {name: [tagger_scores(model, paths) for model in models] for name, models in variants.items()}
    table = variant_rows(labels, targets, scores, clusters, args.resamples)
    text = (f"{args.split} split of {args.manifest}: {len(rows)} tracks, {len(set(clusters))} "
            f"{column or 'tracks as clusters'}\n\n{variants_markdown(table)}\n\nEach cell: the mean over the variant's "
            f"seeds (sd); change: from the variant above, 95 % interval and P(change <= 0) from "
            f"{args.resamples} resamples of the split's {column or 'tracks'} (`coldtag.intervals.runs_difference`).\n")
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"variants_{args.split}.md").write_text(text)
        (args.out / f"variants_{args.split}.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
