"""Comparing taggers on unseen artists: against a baseline, and variants of a config against each other.

Every comparison scores several seeds of a tagger on the same tracks and reports the seed-averaged difference
with a 95 % interval and a one-sided p-value that resample the tracks' artists, each with all its tracks,
every seed and the other side scored on the same resample (`coldtag.intervals.runs_difference`).
``scripts/realistic_eval.py`` and ``scripts/tagger_variants.py`` are their command lines; `transfer_rows` puts
several variants side by side against one baseline (``scripts/transfer_eval.py``).
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from coldtag.intervals import runs_difference
from tagging.evaluation.baseline import predict
from tagging.evaluation.evaluate import markdown_table, roc_auc, spearman
from tagging.labels import MULTILABEL, LabelSpace


def baseline_scores(labels: LabelSpace, x: np.ndarray, targets: dict[str, np.ndarray], train: np.ndarray,
                    rows: np.ndarray) -> dict[str, np.ndarray]:
    """The baseline's ``(len(rows), labels)`` scores per group, one model per label
    (`tagging.evaluation.baseline.predict`) fitted on the ``train`` tracks that have the label; NaN for a label with one
    class in training."""
    scores = {}
    for name, group in labels.groups.items():
        y = targets[name]
        scores[name] = np.full((len(rows), len(group.labels)), np.nan)
        for i in range(len(group.labels)):
            fit = train & ~np.isnan(y[:, i])
            if group.type == MULTILABEL and len(np.unique(y[fit, i])) < 2:
                continue
            scores[name][:, i] = predict(x, y[:, i], fit, rows, multilabel=group.type == MULTILABEL)
    return scores


def comparison_rows(labels: LabelSpace, truth: dict[str, np.ndarray], runs: list[dict[str, np.ndarray]],
                    baseline: dict[str, np.ndarray], clusters: np.ndarray, per_label: bool = True,
                    resamples: int = 2000, seed: int = 0) -> list[dict]:
    """One row per group (macro ROC-AUC, or mean Spearman for a regression group; a group of one label is
    that label's row) and, with ``per_label``, one per label below it: the tagger's score on each run
    (seed), the baseline's, and the seed-averaged difference with its interval from resampling
    ``clusters``. ``truth``, each run's and ``baseline``'s arrays are ``(tracks, labels)`` per group, on the
    same tracks as ``clusters``."""
    table = []
    for name, group in labels.groups.items():
        metric, metric_name = (roc_auc, "ROC-AUC") if group.type == MULTILABEL else (spearman, "Spearman")
        if len(group.labels) == 1:  # the group's row is its label's
            columns = [(f"{name} / {group.labels[0]} ({metric_name})", slice(None), group.labels[0])]
        else:
            columns = [(f"{name} (macro {metric_name})", slice(None), None)]
        if per_label and len(group.labels) > 1:
            columns += [(f"{name} / {label}", [i], label) for i, label in enumerate(group.labels)]
        for what, keep, label in columns:
            y = truth[name][:, keep]
            result = runs_difference(metric, y, [run[name][:, keep] for run in runs], baseline[name][:, keep],
                                     clusters, resamples=resamples, seed=seed)
            per_run = [metric(y, run[name][:, keep]) for run in runs]
            positives = int(np.nansum(y)) if group.type == MULTILABEL and label is not None else None
            table.append({"what": what, "positives": positives, "tagger": per_run, "tagger_mean": result.a,
                          "baseline": result.b, "difference": result.difference, "low": result.low,
                          "high": result.high, "p_not_positive": result.p_not_positive,
                          "clusters": result.clusters})
    return table


def comparison_markdown(table: list[dict], seeds: int) -> str:
    """``comparison_rows`` as a Markdown table; with several seeds the tagger column reads
    ``mean (min-max, sd)``."""
    def number(value: float) -> str:
        return "–" if value is None or math.isnan(value) else f"{value:.3f}"

    def tagger(row: dict) -> str:
        if seeds == 1 or math.isnan(row["tagger_mean"]):
            return number(row["tagger_mean"])
        values = np.array(row["tagger"])  # NaN throughout for a tag with one class in the split
        return (f"{number(row['tagger_mean'])} ({number(values.min())}–{number(values.max())}, "
                f"sd {number(values.std(ddof=1))})")
    name = "tagger" if seeds == 1 else f"tagger, mean of {seeds} seeds (min–max, sd)"
    rows = [{"group / tag": row["what"], "positives": "" if row["positives"] is None else row["positives"],
             name: tagger(row), "baseline": number(row["baseline"]),
             "difference [95 % interval]": "–" if math.isnan(row["difference"]) else
             f"{row['difference']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]",
             "P(difference ≤ 0)": number(row["p_not_positive"])} for row in table]
    return markdown_table(rows)


def variant_rows(labels: LabelSpace, targets: dict[str, np.ndarray], scores: dict[str, list[dict[str, np.ndarray]]],
            clusters: np.ndarray, resamples: int = 2000) -> list[dict]:
    """One entry per variant and group: its per-seed scores and its change from the variant before it."""
    table, previous = [], None
    for name, runs in scores.items():
        for group_name, group in labels.groups.items():
            metric = roc_auc if group.type == MULTILABEL else spearman
            truth = targets[group_name]
            per_seed = [metric(truth, run[group_name]) for run in runs]
            entry = {"variant": name, "group": group_name, "seeds": per_seed}
            if previous is not None:
                change = runs_difference(metric, truth, [run[group_name] for run in runs],
                                         [run[group_name] for run in scores[previous]], clusters,
                                         resamples=resamples)
                entry |= {"change": change.difference, "low": change.low, "high": change.high,
                          "p_not_positive": change.p_not_positive}
            table.append(entry)
        previous = name
    return table


def variants_markdown(table: list[dict]) -> str:
    """`variant_rows` as a Markdown table: a row per variant, a column per group."""
    groups = list(dict.fromkeys(entry["group"] for entry in table))
    rows = []
    for variant in dict.fromkeys(entry["variant"] for entry in table):
        row = {"variant": variant}
        for entry in (e for e in table if e["variant"] == variant):
            seeds = entry["seeds"]
            sd = f", sd {statistics.stdev(seeds):.3f}" if len(seeds) > 1 else ""
            cell = f"{statistics.mean(seeds):.3f}{sd}"
            if "change" in entry:
                cell += (f"; {entry['change']:+.3f} [{entry['low']:+.3f}, {entry['high']:+.3f}], "
                         f"P {entry['p_not_positive']:.2f}")
            row[entry["group"]] = cell
        rows.append(row)
    return markdown_table(rows, columns=["variant", *groups])


def error_ratio(tagger: float, baseline: float) -> float:
    """The tagger's error over the baseline's, error being 1 - score (ROC-AUC): 0.6 means 40 % fewer errors."""
    return (1.0 - tagger) / (1.0 - baseline) if baseline != 1.0 else math.nan


def transfer_rows(labels: LabelSpace, truth: dict[str, np.ndarray], variants: dict[str, list[dict[str, np.ndarray]]],
                  baseline: dict[str, np.ndarray], clusters: np.ndarray, resamples: int = 2000) -> list[dict]:
    """`comparison_rows` per group (no per-label rows) for each variant's seeds against the one baseline, every
    variant on the same resamples of ``clusters``, each row with its ``variant`` and, for a multilabel group,
    the ``error_ratio`` of the seed mean to the baseline."""
    table = []
    for name, runs in variants.items():
        for row in comparison_rows(labels, truth, runs, baseline, clusters, per_label=False, resamples=resamples):
            ratio = error_ratio(row["tagger_mean"], row["baseline"]) if "ROC-AUC" in row["what"] else None
            table.append({"variant": name, **row, "error_ratio": ratio})
    return table


def transfer_markdown(table: list[dict]) -> str:
    """`transfer_rows` side by side: a row per group, the baseline's score, then per variant its seed mean (sd,
    seeds) and difference from the baseline [95 % interval]; for ROC-AUC groups also the error ratio."""
    def cell(row: dict) -> str:
        seeds = row["tagger"]
        sd = f", sd {statistics.stdev(seeds):.3f}" if len(seeds) > 1 else ""
        text = (f"{row['tagger_mean']:.3f} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''}{sd}); "
                f"{row['difference']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]")
        return text if row["error_ratio"] is None else f"{text}; error x{row['error_ratio']:.2f}"
    rows = {}
    for row in table:
        entry = rows.setdefault(row["what"], {"group": row["what"], "baseline": f"{row['baseline']:.3f}"})
        entry[row["variant"]] = cell(row)
    variants = list(dict.fromkeys(row["variant"] for row in table))
    return markdown_table(list(rows.values()), columns=["group", "baseline", *variants])
