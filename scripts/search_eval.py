"""Search against the keyword baseline and the label oracle on a toy catalog whose labels are known.

    python scripts/search_eval.py --annotations runs/search/annotations --manifest data/demo/manifest.parquet

40 queries templated from the demo vocabulary (`templated_queries`) and the free-form ones of each
``--freeform`` file (default scripts/search_freeform.yaml), each with its relevant set derived from the
manifest's labels (the catalog annotator's genre, mood and attribute tags, tempo and graded values). Over the
annotated tracks of the manifest: precision@10 and NDCG@10 (binary gains) of

- search: `annotation.search` as `coldtag search` runs it (a query it refuses ranks nothing);
- keyword: the tags whose names the query writes out, wanted, ranked by the sum of their probabilities
  (`annotation.search.rank.keyword_query`; a query that writes out no tag name ranks nothing);
- search on labels: the same reading of the query over the catalog's labels instead of the tagger's output
  (tags as probabilities 0 or 1, the labelled graded values and tempo): what the reading alone gets right;
- oracle: the tracks ranked by their true relevance (the ceiling the relevant sets allow).

Intervals are 95 % percentile bootstrap intervals over queries (`coldtag.intervals.cluster_bootstrap`, each query
its own cluster); the difference search - keyword is paired (both on the same resampled queries). A query whose
relevant set is empty among the annotated tracks is left out and counted.

``--sweep`` also prints, for similarity thresholds 0.40-0.80, the templated queries' NDCG@10 and how many of the
decoy queries (`DECOYS`: unrelated everyday phrases, which should be refused) are refused: the threshold is
chosen on those, never on the free-form queries.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from annotation.search.query import THRESHOLD, NoMatch, WordList, parse_query
from annotation.search.rank import SearchIndex, keyword_query
from coldtag.intervals import cluster_bootstrap
from tagging.evaluation.evaluate import markdown_table

K = 10
FREEFORM = Path(__file__).with_name("search_freeform.yaml")
TAG_COLUMNS = ("genre", "mood", "attribute")
DECOYS = ("kitchen table", "tax return", "weather forecast for tomorrow", "football results", "chemistry homework",
          "train timetable", "garden furniture", "mortgage rates", "car insurance quote", "zxqv flarb")


def templated_queries() -> list[dict]:
    """40 queries written from the demo vocabulary's names, with their relevant sets."""
    queries = []
    for genre in ("folk", "rock", "metal", "electronic", "jazz", "classical", "hiphop", "pop"):
        queries.append({"query": f"{genre} music", "relevant": {"all": [f"genre/{genre}"]}})
    for mood in ("happy", "sad", "energetic", "calm", "dark", "romantic"):
        queries.append({"query": f"{mood} songs", "relevant": {"all": [f"mood/{mood}"]}})
    for instrument in ("banjo", "acoustic_guitar", "piano", "distorted_guitar", "synth_pad", "bass", "drums", "vocals"):
        queries.append({"query": f"tracks with {instrument.replace('_', ' ')}",
                        "relevant": {"all": [f"attribute/{instrument}"]}})
    for instrument in ("vocals", "drums", "piano", "bass", "acoustic_guitar", "synth_pad"):
        queries.append({"query": f"no {instrument.replace('_', ' ')}",
                        "relevant": {"none": [f"attribute/{instrument}"]}})
    for text, tempo in (("around 90 bpm", [82.8, 97.2]), ("around 120 bpm", [110.4, 129.6]),
                        ("faster than 150 bpm", [150, None]), ("slower than 90 bpm", [None, 90])):
        queries.append({"query": text, "relevant": {"tempo": tempo}})
    for text, direction, value in (("high energy", "high", "energy"), ("low energy", "low", "energy"),
                                   ("high brightness", "high", "brightness"), ("low valence", "low", "valence")):
        queries.append({"query": text, "relevant": {direction: [value]}})
    for mood, genre in (("sad", "classical"), ("energetic", "metal"), ("calm", "folk"), ("happy", "pop")):
        queries.append({"query": f"{mood} {genre}", "relevant": {"all": [f"mood/{mood}", f"genre/{genre}"]}})
    return queries


def relevant(manifest: pd.DataFrame, rule: dict, ranges: dict[str, tuple[float, float]]) -> np.ndarray:
    """Which rows of ``manifest`` meet every condition of ``rule`` (scripts/search_freeform.yaml)."""
    keep = np.ones(len(manifest), dtype=bool)
    unknown = set(rule) - {"all", "none", "tempo", "high", "low"}
    if unknown:
        raise ValueError(f"relevance rule {rule}: unknown conditions {sorted(unknown)}")
    for key, want in (("all", True), ("none", False)):
        for name in rule.get(key, []):
            group, label = name.split("/")
            if group not in TAG_COLUMNS:
                raise ValueError(f"relevance rule {rule}: {group!r} is not one of {TAG_COLUMNS}")
            has = manifest[group].map(lambda tags, label=label: label in list(tags)).to_numpy(bool)
            keep &= has if want else ~has
    if "tempo" in rule:
        low, high = rule["tempo"]
        tempo = manifest["tempo"].to_numpy(float)
        keep &= (tempo >= (low if low is not None else -math.inf)) & (tempo <= (high if high is not None else math.inf))
    for direction in ("high", "low"):
        for name in rule.get(direction, []):
            low, high = ranges[name]
            position = (manifest[name].to_numpy(float) - low) / (high - low)
            keep &= position >= 2 / 3 if direction == "high" else position <= 1 / 3
    return keep


def metrics(ranking: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """precision@K and NDCG@K (binary gains) of the row indices ``ranking``, best first."""
    top = ranking[:K]
    hits = truth[top].astype(float) if len(top) else np.zeros(0)
    gains = 1 / np.log2(np.arange(2, K + 2))
    ideal = gains[:min(K, int(truth.sum()))].sum()
    return hits.sum() / K, float((hits * gains[:len(hits)]).sum() / ideal)


def ranking(index: SearchIndex, query) -> np.ndarray:
    scores = index.scores(query)
    return index.order[np.argsort(-scores[index.order], kind="stable")]


def label_index(index: SearchIndex, truth_rows: pd.DataFrame) -> SearchIndex:
    """``index``'s tracks with the catalog's labels in the place of the tagger's output."""
    values = np.zeros((len(index), len(index.vocabulary)))
    for j, tag in enumerate(index.vocabulary.tags):
        if tag.graded:
            values[:, j] = truth_rows[tag.label].to_numpy(float)
        else:
            values[:, j] = truth_rows[tag.group].map(lambda tags, label=tag.label: label in list(tags)).to_numpy(float)
    return SearchIndex(index.ids, index.paths, index.vocabulary, values, truth_rows["tempo"].to_numpy(float),
                       index.matcher)


def evaluate(index: SearchIndex, truth_rows: pd.DataFrame, queries: list[dict], ranges: dict,
             threshold: float = THRESHOLD, labels: SearchIndex | None = None) -> pd.DataFrame:
    rows = []
    for number, entry in enumerate(queries):
        truth = relevant(truth_rows, entry["relevant"], ranges)
        row = {"query": entry["query"], "kind": entry["kind"], "relevant": int(truth.sum()), "number": number}
        if truth.sum() == 0:
            rows.append(row)
            continue
        systems = {}
        try:
            systems["search"] = ranking(index, parse_query(entry["query"], index.matcher, threshold))
        except NoMatch:
            systems["search"] = np.zeros(0, dtype=int)
        try:
            systems["keyword"] = ranking(index, keyword_query(entry["query"], index.vocabulary))
        except NoMatch:
            systems["keyword"] = np.zeros(0, dtype=int)
        if labels is not None:
            try:
                systems["labels"] = ranking(labels, parse_query(entry["query"], labels.matcher, threshold))
            except NoMatch:
                systems["labels"] = np.zeros(0, dtype=int)
        systems["oracle"] = np.argsort(~truth, kind="stable")
        for name, order in systems.items():
            row[f"{name}_p"], row[f"{name}_ndcg"] = metrics(order, truth)
        rows.append(row)
    return pd.DataFrame(rows)


def interval(values: np.ndarray) -> str:
    mean, low, high, _ = cluster_bootstrap(lambda rows: float(np.mean(values[rows])), np.arange(len(values)))
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def table(results: pd.DataFrame) -> str:
    """One row per system and metric, one column per kind of query (templated, each free-form file, all):
    mean [95 % interval]."""
    kinds = {kind: (results if kind == "all" else results[results["kind"] == kind]).dropna(subset=["search_p"])
             for kind in [*dict.fromkeys(results["kind"]), "all"]}
    rows = [{"": "queries", **{kind: str(len(part)) for kind, part in kinds.items()}}]
    for metric, label in (("p", "P@10"), ("ndcg", "NDCG@10")):
        for system, name in (("search", "search"), ("keyword", "keyword"), ("labels", "search on labels"),
                             ("oracle", "oracle")):
            rows.append({"": f"{name} {label}",
                         **{kind: interval(part[f"{system}_{metric}"].to_numpy()) for kind, part in kinds.items()}})
        rows.append({"": f"search - keyword {label}",
                     **{kind: interval((part[f"search_{metric}"] - part[f"keyword_{metric}"]).to_numpy())
                        for kind, part in kinds.items()}})
    return markdown_table(rows)


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--annotations", required=True, help="coldtag annotate --out of the catalog's tracks")
    parser.add_argument("--manifest", required=True, help="the toy catalog's manifest.parquet (labels)")
    parser.add_argument("--vocab", default=None, help="the catalog's vocab.json (default: beside the manifest)")
    parser.add_argument("--split", default=None,
                        help="only the annotated tracks of this manifest split (default: every annotated track)")
    parser.add_argument("--freeform", action="append", default=None,
                        help="a YAML file of free-form queries and their relevant sets (repeatable; default "
                             "scripts/search_freeform.yaml); each is a column of the table, named by its file")
    parser.add_argument("--words", default=None, help="the vocabulary's word list, as coldtag search --words")
    parser.add_argument("--sweep", action="store_true", help="also the threshold sweep on templated queries")
    parser.add_argument("--per-query", default=None, help="write every query's numbers to this CSV")
    options = parser.parse_args(args)
    manifest = pd.read_parquet(options.manifest)
    vocab = json.loads(Path(options.vocab or Path(options.manifest).with_name("vocab.json")).read_text())
    graded = vocab["groups"]["graded"]
    ranges = dict(zip(graded["labels"], map(tuple, graded["ranges"]), strict=True))
    words = WordList.load(options.words) if options.words else None
    index = SearchIndex.from_annotations(options.annotations, words=words)
    by_id = manifest.set_index("track_id")
    missing = [i for i in index.ids if i not in by_id.index]
    if missing:
        raise SystemExit(f"{len(missing)} annotated tracks are not in {options.manifest}, e.g. {missing[0]!r}")
    if options.split is not None:
        keep = np.flatnonzero(by_id.loc[index.ids, "split"].to_numpy() == options.split)
        if not len(keep):
            raise SystemExit(f"no annotated track of split {options.split!r}")
        index = SearchIndex([index.ids[i] for i in keep], [index.paths[i] for i in keep], index.vocabulary,
                            index.values[keep], index.tempo[keep], index.matcher)
    truth_rows = by_id.loc[index.ids].reset_index()
    splits = truth_rows["split"].value_counts().to_dict() if "split" in truth_rows else {}
    queries = [{**q, "kind": "templated"} for q in templated_queries()]
    for path in map(Path, options.freeform or [FREEFORM]):
        queries += [{**q, "kind": path.stem} for q in yaml.safe_load(path.read_text())["queries"]]
    if options.sweep:
        templated = [q for q in queries if q["kind"] == "templated"]
        print("| threshold | templated NDCG@10 | templated P@10 | decoys refused |\n|---:|---:|---:|---:|")
        for threshold in np.round(np.arange(0.40, 0.801, 0.05), 2):
            swept = evaluate(index, truth_rows, templated, ranges, threshold).dropna(subset=["search_p"])
            refused = 0
            for decoy in DECOYS:
                try:
                    parse_query(decoy, index.matcher, threshold)
                except NoMatch:
                    refused += 1
            print(f"| {threshold:.2f} | {swept['search_ndcg'].mean():.3f} | {swept['search_p'].mean():.3f} | "
                  f"{refused} / {len(DECOYS)} |")
        print()
    results = evaluate(index, truth_rows, queries, ranges, labels=label_index(index, truth_rows))
    if options.per_query:
        results.to_csv(options.per_query, index=False)
    empty = results[results["search_p"].isna()] if "search_p" in results else results
    print(f"{len(index)} annotated tracks ({', '.join(f'{k} {v}' for k, v in splits.items())}); threshold "
          f"{THRESHOLD}; word list {options.words or 'none'}; {len(empty)} queries without a relevant track left out"
          + (f": {', '.join(repr(q) for q in empty['query'])}" if len(empty) else ""))
    print()
    print(table(results))


if __name__ == "__main__":
    main()
