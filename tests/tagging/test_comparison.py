"""The tagger-against-baseline table (`tagging.evaluation.comparison`, scripts/realistic_eval.py) on a case whose every
number is known."""

import numpy as np
import pytest

from tagging.evaluation.comparison import comparison_markdown, comparison_rows, variant_rows, variants_markdown
from tagging.labels import LabelSpace


def test_seed_mean_spread_and_artist_intervals_of_a_known_case():
    """Six artists of two tracks, one with tag a and one with tag b each, so every artist resample has both
    classes. Seed 0 ranks both tags perfectly; seed 1 ranks a backwards. The baseline ranks a perfectly and
    b backwards, and tempo backwards. Each difference is then the same on every resample."""
    labels = LabelSpace.from_dict({"groups": {
        "style": {"labels": ["a", "b"]},
        "graded": {"type": "regression", "labels": ["tempo"], "ranges": [[60, 200]]}}})
    a = np.tile([1.0, 0.0], 6)
    style = np.stack([a, 1 - a], axis=1)
    tempo = np.linspace(0, 1, 12)[:, None]
    truth = {"style": style, "graded": tempo}
    runs = [{"style": style.copy(), "graded": tempo.copy()},
            {"style": np.stack([1 - a, 1 - a], axis=1), "graded": tempo ** 2}]
    baseline = {"style": np.stack([a, a], axis=1), "graded": -tempo}
    artists = np.repeat(["p", "q", "r", "s", "t", "u"], 2)
    rows = comparison_rows(labels, truth, runs, baseline, artists, resamples=200)
    by_name = {row["what"]: row for row in rows}
    assert list(by_name) == ["style (macro ROC-AUC)", "style / a", "style / b", "graded / tempo (Spearman)"]

    tag_a = by_name["style / a"]
    assert tag_a["tagger"] == [1.0, 0.0] and tag_a["tagger_mean"] == 0.5 and tag_a["baseline"] == 1.0
    assert (tag_a["difference"], tag_a["low"], tag_a["high"], tag_a["p_not_positive"]) == (-0.5, -0.5, -0.5, 1.0)
    assert tag_a["positives"] == 6 and tag_a["clusters"] == 6
    tag_b = by_name["style / b"]
    assert (tag_b["tagger_mean"], tag_b["baseline"], tag_b["difference"], tag_b["low"], tag_b["high"],
            tag_b["p_not_positive"]) == (1.0, 0.0, 1.0, 1.0, 1.0, 0.0)
    group = by_name["style (macro ROC-AUC)"]
    assert group["tagger"] == [1.0, 0.5] and group["positives"] is None
    assert group["baseline"] == 0.5 and group["difference"] == pytest.approx(0.25)
    assert group["low"] == pytest.approx(0.25) and group["high"] == pytest.approx(0.25)
    tempo_row = by_name["graded / tempo (Spearman)"]  # a monotone transform ranks as well: Spearman 1 for both seeds
    assert tempo_row["tagger"] == pytest.approx([1.0, 1.0]) and tempo_row["baseline"] == pytest.approx(-1.0)
    assert tempo_row["difference"] == pytest.approx(2.0)

    table = comparison_markdown(rows, seeds=2)
    assert "| style / a | 6 | 0.500 (0.000–1.000, sd 0.707) | 1.000 | -0.500 [-0.500, -0.500] | 1.000 |" in table
    assert comparison_rows(labels, truth, runs, baseline, artists, per_label=False,
                                          resamples=20)[1]["what"] == "graded / tempo (Spearman)"


def test_each_variant_is_compared_with_the_one_before_it_over_all_seeds():
    """Variant "before" ranks the tag backwards with both seeds, "pooled" perfectly with one seed and
    backwards with the other, "harmony" perfectly with both: changes of +0.5 then +0.5 on every resample."""
    labels = LabelSpace.from_dict({"groups": {"style": {"labels": ["a", "b"]}}})
    a = np.tile([1.0, 0.0], 6)
    truth = {"style": np.stack([a, 1 - a], axis=1)}
    right, wrong = {"style": truth["style"].copy()}, {"style": 1 - truth["style"]}
    scores = {"before": [wrong, wrong], "pooled": [right, wrong], "harmony": [right, right]}
    table = variant_rows(labels, truth, scores, np.repeat(np.arange(6), 2), resamples=100)
    assert [(e["variant"], e["seeds"]) for e in table] == [
        ("before", [0.0, 0.0]), ("pooled", [1.0, 0.0]), ("harmony", [1.0, 1.0])]
    assert "change" not in table[0]
    for entry in table[1:]:
        assert (entry["change"], entry["low"], entry["high"], entry["p_not_positive"]) == (0.5, 0.5, 0.5, 0.0)
    text = variants_markdown(table)
    assert "| pooled | 0.500, sd 0.707; +0.500 [+0.500, +0.500], P 0.00 |" in text
