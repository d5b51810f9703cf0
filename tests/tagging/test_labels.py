import math

import numpy as np
import pandas as pd
import pytest
import torch

from tagging.evaluation.metrics import GradedScores, MultilabelScores
from tagging.labels import LabelSpace, f1_optimal_thresholds, read_manifest
from tagging.lightning import masked_losses

VOCAB = {"groups": {
    "genre": {"type": "multilabel", "labels": ["rock", "jazz", "folk"]},
    "graded": {"type": "regression", "labels": ["tempo", "energy"], "ranges": [[40, 240], [0, 1]]},
}}


def test_encode_tells_missing_from_empty_and_scales_regression():
    frame = pd.DataFrame({"genre": [["jazz"], [], None, "rock;folk"],
                          "tempo": [140.0, 40.0, np.nan, 240.0], "energy": [0.5, 0.0, 1.0, np.nan]})
    targets = LabelSpace.from_dict(VOCAB).encode(frame)
    np.testing.assert_array_equal(targets["genre"][0], [0, 1, 0])
    np.testing.assert_array_equal(targets["genre"][1], [0, 0, 0])  # annotated, no tag
    assert np.isnan(targets["genre"][2]).all()  # not annotated: masked out of the loss
    np.testing.assert_array_equal(targets["genre"][3], [1, 0, 1])  # CSV-style "a;b"
    np.testing.assert_allclose(targets["graded"][0], [0.5, 0.5])
    assert np.isnan(targets["graded"][2, 0]) and np.isnan(targets["graded"][3, 1])


def test_unknown_tag_and_bad_vocab_are_named(tmp_path):
    frame = pd.DataFrame({"genre": [["polka"]], "tempo": [100.0], "energy": [0.1]})
    with pytest.raises(ValueError, match=r"my\.parquet.*'polka'"):
        LabelSpace.from_dict(VOCAB).encode(frame, source="my.parquet")
    bad = tmp_path / "vocab.json"
    bad.write_text('{"groups": {"graded": {"type": "regression", "labels": ["tempo"]}}}')
    with pytest.raises(ValueError, match=r"vocab\.json.*range"):
        LabelSpace.from_json(bad)


def test_read_manifest_resolves_paths_and_rejects_duplicates(tmp_path):
    pd.DataFrame({"track_id": ["a", "b"], "audio_path": ["audio/a.wav", "audio/b.wav"],
                  "lyrics_path": ["lyrics/a.txt", None]}).to_parquet(tmp_path / "m.parquet")
    frame = read_manifest(tmp_path / "m.parquet")
    assert frame["audio_path"][0] == str(tmp_path / "audio/a.wav")
    assert frame["lyrics_path"][1] is None
    pd.DataFrame({"track_id": ["a", "a"], "audio_path": ["x", "y"]}).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(ValueError, match=r"d\.csv: track_id 'a' appears more than once"):
        read_manifest(tmp_path / "d.csv")


def test_f1_optimal_threshold_separates_a_clean_split():
    probs = torch.tensor([[0.9, 0.2], [0.8, 0.7], [0.3, 0.6], [0.1, 0.1]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, float("nan")]])
    thresholds = f1_optimal_thresholds(probs, targets)
    assert thresholds[0] == pytest.approx(0.55)  # midway between the last positive and first negative
    assert thresholds[1] == pytest.approx(0.65)  # only 0.7 is positive among the annotated
    assert f1_optimal_thresholds(probs, torch.zeros(4, 2)).tolist() == [0.5, 0.5]  # no positive: default


def test_multilabel_scores_skip_tags_without_both_classes():
    metric = MultilabelScores(["a", "b", "c"])
    probs = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.5], [0.7, 0.3, 0.5], [0.1, 0.6, 0.5]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    metric.update(probs[:2], targets[:2])
    metric.update(probs[2:], targets[2:])
    result = metric.compute()
    assert result["per_tag"]["roc_auc"][0] == 1.0
    assert result["per_tag"]["roc_auc"][1] == 0.75  # positives 0.8, 0.3 against negatives 0.1, 0.6
    assert math.isnan(result["per_tag"]["roc_auc"][2])  # tag c never positive: no AUC
    assert result["roc_auc"] == pytest.approx(0.875)  # mean over a and b only


def test_graded_scores_report_mae_in_label_units():
    group = LabelSpace.from_dict(VOCAB).groups["graded"]
    metric = GradedScores(group)
    metric.update(torch.tensor([[0.5, 0.2], [0.6, 0.4], [0.7, 0.9]]),
                  torch.tensor([[0.55, 0.1], [0.6, 0.5], [0.75, float("nan")]]))
    result = metric.compute()
    assert result["mae"][0] == pytest.approx(200 * (0.05 + 0.0 + 0.05) / 3, rel=1e-5)  # tempo spans 200 BPM
    assert result["spearman"][0] == pytest.approx(1.0, abs=1e-5)


def test_masked_losses_ignore_missing_labels():
    outputs = {"genre": torch.tensor([[2.0, -1.0], [0.5, 0.5]]), "graded": torch.tensor([[0.4], [0.9]])}
    targets = {"genre": torch.tensor([[1.0, 0.0], [float("nan"), float("nan")]]),
               "graded": torch.tensor([[0.5], [float("nan")]])}
    losses = masked_losses(outputs, targets, {"genre": "multilabel", "graded": "regression"})
    expected = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([2.0, -1.0]),
                                                                    torch.tensor([1.0, 0.0]))
    assert losses["genre"].item() == pytest.approx(expected.item())
    assert losses["graded"].item() == pytest.approx(0.01)
