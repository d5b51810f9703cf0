"""The price of listener controls: accuracy against coverage, long tail and artist exposure, per mode.

On a finished demo run: the warm tracks' plays of the cold-start split, 20 % of each listener's plays
held out (implicit's ``train_test_split``), WMF refitted on the rest with the split's settings. Every
listener then gets a top-k list from the plain ranking, the mixer (taste facets from the tagger's
predicted scores), each mode and the long-tail re-ranker at two target shares. Recall@k is per held-out
play and the long-tail share per recommended slot, each with a 95 % bootstrap interval that resamples
artists (of the held-out track, of the recommended track); NDCG@k, coverage, diversity and the artist
Gini are point values.

    python scripts/listener_controls.py --run runs/demo-before-split --data data/demo

Writes ``<run>/listener_controls.md`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from implicit.evaluation import train_test_split

from coldtag.intervals import cluster_bootstrap
from recsys import WMF, ColdStartSplit, Mixer, Recommender, list_metrics, long_tail_mask, rerank, run_metrics
from tagging.data.features import TrackFeatures


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"), help="has recsys/coldstart.npz, features.npz")
    parser.add_argument("--data", type=Path, default=Path("data/demo"), help="has manifest.parquet, vocab.json")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--targets", type=float, nargs=2, default=(0.3, 0.5), help="long-tail shares to re-rank to")
    parser.add_argument("--resamples", type=int, default=500)
    options = parser.parse_args(argv)
    start = time.perf_counter()

    split = ColdStartSplit.load(options.run / "recsys" / "coldstart.npz")
    warm = split.items("warm")
    item_ids = split.item_ids[warm]
    plays = split.plays[:, warm].tocsr()
    train, test = train_test_split(plays, train_percentage=0.8, random_state=0)
    settings = {k: split.params[k] for k in ("factors", "regularization", "alpha", "iterations", "scaling",
                                             "epsilon", "random_state") if k in split.params}
    model = WMF(**settings, use_gpu=False).fit(train)
    recommender = Recommender(model.user_factors, model.item_factors, split.user_ids, item_ids,
                              params=model.get_params())

    features = TrackFeatures.load(options.run / "features.npz")
    vocab = json.loads((options.data / "vocab.json").read_text())["groups"]
    rows = features.rows(item_ids.tolist())
    columns, blocks = [], []
    for group, spec in vocab.items():
        if f"scores/{group}" in features.arrays:
            columns += [(group, label) for label in spec["labels"]]
            blocks.append(features.arrays[f"scores/{group}"][rows])
    manifest = pd.read_parquet(options.data / "manifest.parquet").set_index("track_id")
    artists = manifest["artist_id"].reindex(item_ids).to_numpy()
    item_plays = np.asarray(train.sum(axis=0)).ravel()
    tail = long_tail_mask(item_plays)
    mixer = Mixer(recommender, np.hstack(blocks), columns, item_plays, artists)

    users = np.flatnonzero(np.diff(test.indptr) > 0)
    k, n_items = options.k, len(item_ids)
    lists = {"plain ranking": recommender.recommend(users, train[users], N=k)[0],
             "mixer (taste)": mixer.recommend(users, train[users], N=k)[0],
             "explore": mixer.recommend(users, train[users], N=k, mode="explore")[0],
             "popular": mixer.recommend(users, train[users], N=k, mode="popular")[0]}
    favourite_track = np.asarray(train[users].argmax(axis=1)).ravel()
    artist_plays = pd.DataFrame(train[users].toarray().T, index=artists).groupby(level=0).sum()
    favourite_artist = artist_plays.idxmax(axis=0).to_numpy()
    lists["deep cuts (favourite artist)"] = _per_user(
        lambda u, row: mixer.recommend(u, train[[u]], N=k, mode="deep_cuts", artist=favourite_artist[row]), users, k)
    lists["similar (most-played track)"] = _per_user(
        lambda u, row: mixer.recommend(u, train[[u]], N=k, mode="similar", track=favourite_track[row]), users, k)
    candidates, scores = recommender.recommend(users, train[users], N=10 * k)
    shortfalls = {}
    for target in options.targets:
        result = rerank(candidates, scores, tail, target, k)
        lists[f"re-ranked, long tail >= {target:.0%}"] = result.ids
        shortfalls[f"re-ranked, long tail >= {target:.0%}"] = int((result.shortfall > 0).sum())

    table = pd.DataFrame([_row(name, ids, test[users], tail, artists, recommender.item_factors, n_items,
                               options.resamples, shortfalls.get(name)) for name, ids in lists.items()])
    seconds = time.perf_counter() - start
    text = (f"{len(users)} listeners with held-out plays, {n_items} warm tracks "
            f"({tail.sum()} in the long tail: outside the most played that hold 80 % of plays), k = {k}; "
            f"intervals: 95 %, {options.resamples} artist resamples; {seconds:.0f} s.\n\n"
            + _markdown(table) + "\n")
    out = options.out or options.run / "listener_controls.md"
    out.write_text(text)
    print(text)
    print(f"wrote {out}")


def _markdown(table: pd.DataFrame) -> str:
    # pandas' to_markdown needs tabulate, which this environment does not have.
    lines = ["| " + " | ".join(table.columns) + " |", "|---|" + "---:|" * (len(table.columns) - 1)]
    lines += ["| " + " | ".join(str(value) for value in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _per_user(call, users, k) -> np.ndarray:
    ids = np.full((len(users), k), -1, dtype=np.int32)
    for row, u in enumerate(users):
        got = call(u, row)[0]
        ids[row, : len(got)] = got
    return ids


def _row(name, ids, relevant, tail, artists, vectors, n_items, resamples, shortfall) -> dict:
    per_list = list_metrics(ids, relevant, tail, vectors)
    run = run_metrics(ids, n_items, tail, artists)
    # Recall as hits over held-out plays (one row per play), clustered by the played track's artist.
    held = relevant.tocoo()
    hit = np.array([item in set(ids[u].tolist()) for u, item in zip(held.row, held.col, strict=True)], float)
    recall, r_low, r_high, _ = cluster_bootstrap(lambda r: hit[r].mean(), artists[held.col], resamples)
    slots = ids[ids >= 0]
    in_tail = tail[slots].astype(float)
    share, t_low, t_high, _ = cluster_bootstrap(lambda r: in_tail[r].mean(), artists[slots], resamples)
    return {"list": name, "Recall@k": f"{recall:.3f} [{r_low:.3f}, {r_high:.3f}]",
            "NDCG@k": round(float(np.nanmean(per_list["ndcg"])), 3),
            "long-tail share": f"{share:.3f} [{t_low:.3f}, {t_high:.3f}]",
            "coverage": round(run["coverage"], 3), "artist Gini": round(run["artist_gini"], 3),
            "diversity": round(float(np.nanmean(per_list["diversity"])), 3),
            "lists short of target": "" if shortfall is None else shortfall}


if __name__ == "__main__":
    main()
