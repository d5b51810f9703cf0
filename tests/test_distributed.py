"""Evaluation under DDP counts every track once: two processes give the one-process numbers exactly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tagging.labels import LabelSpace, read_manifest
from train import cli_main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/tagger_test.yaml"


@pytest.mark.slow
def test_one_checkpoint_on_one_and_two_processes_gives_the_same_metrics_and_thresholds(
        tiny_catalog, tiny_tagger, tmp_path):
    manifest = tiny_catalog / "manifest.parquet"
    frame = read_manifest(manifest)
    test = frame[frame["split"] == "test"]
    assert len(test) % 2 == 1  # an odd count: Lightning's DistributedSampler would repeat one track
    common = ["test", "--config", CONFIG, f"--data.init_args.manifest={manifest}",
              f"--ckpt_path={tiny_tagger.checkpoint}"]
    cli_main([*common, f"--model.init_args.tables_dir={tmp_path / 'one'}", f"--trainer.default_root_dir={tmp_path}"])
    # Lightning's ddp re-launches the command line for the second process, so the real CLI runs in a
    # subprocess (gloo on the CPU).
    subprocess.run([sys.executable, "train.py", *common, "--trainer.devices=2", "--trainer.strategy=ddp",
                    f"--model.init_args.tables_dir={tmp_path / 'two'}", f"--trainer.default_root_dir={tmp_path}"],
                   cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, check=True, capture_output=True,
                   timeout=600)
    one = json.loads((tmp_path / "one" / "test_scores.json").read_text())
    two = json.loads((tmp_path / "two" / "test_scores.json").read_text())

    labels = LabelSpace.from_json(tiny_catalog / "vocab.json")
    targets = labels.encode(test, source=str(manifest))
    for name, group in labels.groups.items():
        annotated = ~np.isnan(targets[name]).all(axis=1) if group.type == "multilabel" else np.ones(len(test), bool)
        assert one[name]["tracks"] == two[name]["tracks"] == int(annotated.sum()), name
        assert one[name].keys() == two[name].keys()
        for label, values in one[name]["per_label"].items():
            for key, value in values.items():  # AUCs, thresholds, MAE and Spearman of each label
                other = two[name]["per_label"][label][key]
                assert (np.isnan(value) and np.isnan(other)) or value == pytest.approx(other, abs=1e-6), (name, label)
