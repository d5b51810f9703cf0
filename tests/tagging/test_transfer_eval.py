"""The three-way transfer table (`tagging.evaluation.comparison.transfer_rows`, scripts/transfer_eval.py) on a
case whose every number is known."""

import math

import numpy as np
import pytest

from tagging.evaluation.comparison import error_ratio, transfer_markdown, transfer_rows
from tagging.labels import LabelSpace


def test_error_ratio_is_the_tagger_error_over_the_baseline_error():
    assert error_ratio(0.97, 0.95) == pytest.approx(0.6)
    assert error_ratio(0.90, 0.95) == pytest.approx(2.0)
    assert math.isnan(error_ratio(0.99, 1.0))


def test_each_variant_against_the_same_baseline_with_its_error_ratio():
    """Six artists of two tracks, one with tag a and one with tag b each. The baseline ranks a perfectly and
    b backwards (macro 0.5); "scratch" ranks both backwards (0.0, twice the baseline's error), "probe" both
    perfectly with one seed and backwards with the other (0.5, the same error), "finetune" both perfectly
    with both seeds (1.0, no error). Every difference is the same on every resample."""
    labels = LabelSpace.from_dict({"groups": {
        "style": {"labels": ["a", "b"]},
        "graded": {"type": "regression", "labels": ["tempo"], "ranges": [[60, 200]]}}})
    a = np.tile([1.0, 0.0], 6)
    truth = {"style": np.stack([a, 1 - a], axis=1), "graded": np.linspace(0, 1, 12)[:, None]}
    right = {"style": truth["style"].copy(), "graded": truth["graded"].copy()}
    wrong = {"style": 1 - truth["style"], "graded": -truth["graded"]}
    baseline = {"style": np.stack([a, a], axis=1), "graded": truth["graded"] ** 3}
    variants = {"scratch": [wrong], "probe": [right, wrong], "finetune": [right, right]}
    table = transfer_rows(labels, truth, variants, baseline, np.repeat(np.arange(6), 2), resamples=100)

    style = {row["variant"]: row for row in table if row["what"] == "style (macro ROC-AUC)"}
    assert [style[v]["tagger_mean"] for v in variants] == [0.0, 0.5, 1.0]
    assert [style[v]["error_ratio"] for v in variants] == [2.0, 1.0, 0.0]
    assert all(row["baseline"] == 0.5 for row in style.values())
    assert (style["finetune"]["difference"], style["finetune"]["low"], style["finetune"]["high"]) == (0.5, 0.5, 0.5)
    assert style["finetune"]["p_not_positive"] == 0.0
    assert (style["scratch"]["low"], style["scratch"]["high"]) == (-0.5, -0.5)
    tempo = [row for row in table if row["what"] == "graded / tempo (Spearman)"]
    assert [row["error_ratio"] for row in tempo] == [None, None, None]  # no error ratio for a correlation

    text = transfer_markdown(table)
    assert text.splitlines()[0] == "| group | baseline | scratch | probe | finetune |"
    assert ("| style (macro ROC-AUC) | 0.500 | 0.000 (1 seed); -0.500 [-0.500, -0.500]; error x2.00 "
            "| 0.500 (2 seeds, sd 0.707); +0.000 [+0.000, +0.000]; error x1.00 "
            "| 1.000 (2 seeds, sd 0.000); +0.500 [+0.500, +0.500]; error x0.00 |") in text


def test_set_must_name_a_variant():
    from scripts.transfer_eval import main

    with pytest.raises(SystemExit):
        main(["--manifest", "m.parquet", "--out", "out", "--set", "nonesuch:trainer.max_epochs=1"])


@pytest.mark.slow
def test_finished_seeds_are_reused_and_compared(tiny_catalog, tiny_tagger, tmp_path, capsys):
    """A package already in a seed's folder is not trained again, its scores are cached beside it, and the
    table names the seeds it compared."""
    import shutil

    from scripts.transfer_eval import main

    for variant, seed in (("scratch", 0), ("finetune", 0), ("finetune", 1)):
        shutil.copytree(tiny_tagger.export, tmp_path / variant / f"seed-{seed}" / "model")
    main(["--manifest", str(tiny_catalog / "manifest.parquet"), "--out", str(tmp_path), "--seeds", "0", "1",
          "--variant", "scratch=configs/tagger_test.yaml", "--variant", "finetune=configs/tagger_test.yaml",
          "--only", "finetune", "--resamples", "20"])
    assert not (tmp_path / "scratch" / "seed-1").exists() and not (tmp_path / "finetune" / "config.yaml").exists()
    assert (tmp_path / "finetune" / "seed-1" / "scores_test.npz").is_file()
    text = (tmp_path / "transfer_eval.md").read_text()
    assert text.startswith("Seeds finished: scratch: seed 0; finetune: seed 0, 1.")
    assert "| group | baseline | scratch | finetune |" in text and "(2 seeds, sd 0.000)" in text


def test_transfer_configs_start_from_musicnn_mtt_with_its_network():
    """The probe and fine-tune configs describe the network of configs/finetune_musicnn.yaml (the converted
    package's, which `TaggerModule` checks when it loads the weights) and differ in what they train."""
    import yaml

    def model(name: str) -> dict:
        return yaml.safe_load(open(f"configs/{name}.yaml"))["model"]["init_args"]
    reference = model("finetune_musicnn")["model"]
    probe, finetune = model("transfer_probe"), model("transfer_finetune")
    for config in (probe, finetune):
        assert config["pretrained"] == "musicnn-mtt" and config["model"] == reference
    assert probe["freeze_backbone"] is True and finetune["freeze_backbone"] is False
