import csv
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tagging.audio import load_audio
from tagging.models.tagger import AudioTagger
from train import cli_main

CONFIG = "configs/tagger_test.yaml"
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def run(*args: str):
    return cli_main([*args])


def test_fast_dev_run_fits_and_exports_a_model_that_loads_without_lightning(tiny_catalog, tmp_path):
    export = tmp_path / "model"
    run("fit", "--config", CONFIG, f"--data.init_args.manifest={tiny_catalog / 'manifest.parquet'}",
        "--trainer.fast_dev_run=true", f"--model.init_args.export_dir={export}",
        f"--trainer.default_root_dir={tmp_path}")
    model = AudioTagger.from_pretrained(export)
    vocab = json.loads((tiny_catalog / "vocab.json").read_text())
    assert model.labels.to_dict() == vocab
    manifest = pd.read_parquet(tiny_catalog / "manifest.parquet")
    record = model.annotate(load_audio(tiny_catalog / manifest["audio_path"][0], model.sample_rate))
    for name, group in vocab["groups"].items():
        if group["type"] == "multilabel":
            assert set(record[name]["probabilities"]) == set(group["labels"])
            assert set(record[name]["tags"]) <= set(group["labels"])
        else:
            assert set(record[name]) == set(group["labels"])


def test_test_subcommand_writes_per_tag_scores(tiny_catalog, tmp_path):
    run("test", "--config", CONFIG, f"--data.init_args.manifest={tiny_catalog / 'manifest.parquet'}",
        f"--model.init_args.tables_dir={tmp_path}", f"--trainer.default_root_dir={tmp_path}")
    with open(tmp_path / "test_per_tag.csv") as handle:
        rows = list(csv.DictReader(handle))
    vocab = json.loads((tiny_catalog / "vocab.json").read_text())
    expected = sum(len(group["labels"]) for group in vocab["groups"].values())
    assert len(rows) == expected
    assert {row["group"] for row in rows} == set(vocab["groups"])


def test_a_corrupt_file_is_named_and_left_out_while_training_goes_on(tiny_catalog, tmp_path, caplog):
    catalog = tmp_path / "catalog"
    shutil.copytree(tiny_catalog, catalog, ignore=shutil.ignore_patterns(".cache"))
    manifest = pd.read_parquet(catalog / "manifest.parquet")
    victim = manifest.loc[manifest["split"] == "train", "audio_path"].iloc[0]
    (catalog / victim).write_bytes(b"this is not audio at all" * 10)
    with caplog.at_level(logging.WARNING):
        run("fit", "--config", CONFIG, f"--data.init_args.manifest={catalog / 'manifest.parquet'}",
            "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}")
    assert victim.split("/")[-1] in caplog.text and "left out" in caplog.text


def test_bad_cli_arguments_are_rejected_with_their_name(tiny_catalog, capsys):
    with pytest.raises(SystemExit):
        run("fit", "--config", CONFIG, f"--data.init_args.manifest={tiny_catalog / 'manifest.parquet'}",
            "--model.init_args.model.init_args.backbone=not_a_model", "--trainer.fast_dev_run=true")
    assert "backbone" in capsys.readouterr().err


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_is_valid_for_train_py(config, capsys):
    # Every argument is checked against the typed __init__s, without building anything: a renamed
    # argument or a typo in a config fails here, not after a user's data has loaded.
    with pytest.raises(SystemExit) as stop:
        run("fit", "--config", str(CONFIGS / config), "--print_config")
    assert stop.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: tagging." in printed or "class_path: fusion." in printed


def test_a_config_with_an_unknown_argument_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "tagger.yaml").read_text().replace("harmony: true", "harmoni: true"))
    with pytest.raises(SystemExit) as stop:
        run("fit", "--config", str(bad), "--print_config")
    assert stop.value.code != 0
    assert "harmoni" in capsys.readouterr().err
