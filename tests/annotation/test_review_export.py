"""`coldtag review export`: the corrections as a manifest and vocabulary the trainer reads, with known
targets, and a fine-tune of the package that made the records runs on them."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from annotation.review.cli import cli_main
from annotation.review.run import Run
from annotation.review.store import DB_FILE, Store
from tagging.data.modules import CatalogDataModule
from tests.helpers.review_runs import make_package, write_run


@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    root = tmp_path_factory.mktemp("review-export")
    model = make_package(root / "tagger")
    out = write_run(root / "annotations", model, root / "audio")
    run = Run(out, root / "tagger")
    store = Store(out / DB_FILE, run.ids, run.labels)
    store.add("odd.wav", "genre", "rock", "remove", "ana")   # machine: rock; now none
    store.add("odd.wav", "genre", "folk", "add", "ana")      # -> folk
    store.add("rock0.wav", "genre", "rock", "confirm", "ana")  # machine rock stands; mood untouched
    store.add("rock0.wav", "graded", "tempo", "confirm", "ana")  # the machine's 120
    store.add("jazz0.wav", "graded", "tempo", "set", "ben", value=96.0)
    store.add("jazz0.wav", "mood", "loud", "add", "ben")
    store.add("jazz0.wav", "mood", "loud", "remove", "ben")  # the latest counts: calm only
    store.add("unsure.wav", "genre", "jazz", "add", "ben")
    store.undo("ben", "unsure.wav")  # retracted: unsure.wav is not exported
    return root, run


def test_export_writes_the_corrected_labels_and_the_trainer_reads_them(corrected, capsys):
    root, run = corrected
    export = root / "export"
    assert cli_main(["export", str(run.out), "--model", str(root / "tagger"), "--out", str(export)]) == 0
    assert capsys.readouterr().err.strip() == f"coldtag review export: 3 corrected track(s) -> {export}"
    manifest = pd.read_parquet(export / "manifest.parquet").set_index("track_id")
    assert sorted(manifest.index) == ["jazz0.wav", "odd.wav", "rock0.wav"]
    assert list(manifest.loc["odd.wav", "genre"]) == ["folk"] and manifest.loc["odd.wav", "mood"] is None
    assert list(manifest.loc["rock0.wav", "genre"]) == ["rock"] and manifest.loc["rock0.wav", "tempo"] == 120.0
    assert manifest.loc["jazz0.wav", "genre"] is None and list(manifest.loc["jazz0.wav", "mood"]) == ["calm"]
    assert manifest.loc["jazz0.wav", "tempo"] == 96.0 and math.isnan(manifest.loc["odd.wav", "tempo"])
    assert sorted(manifest["split"]) == ["train", "train", "val"]
    assert json.loads((export / "vocab.json").read_text()) == run.labels.to_dict()

    data = CatalogDataModule(str(export / "manifest.parquet"), str(export / "vocab.json"), sample_rate=8000,
                             clip_seconds=1.0)
    data.setup()
    table = data.tables["all"].with_format("numpy")
    rows = {track: k for k, track in enumerate(table["track_id"])}
    genre, mood, graded = table["target_genre"], table["target_mood"], table["target_graded"]
    np.testing.assert_array_equal(genre[rows["odd.wav"]], [0, 0, 1])
    assert np.isnan(mood[rows["odd.wav"]]).all() and np.isnan(genre[rows["jazz0.wav"]]).all()
    np.testing.assert_array_equal(mood[rows["jazz0.wav"]], [1, 0])
    np.testing.assert_allclose(graded[rows["jazz0.wav"]], [(96 - 40) / 180])
    np.testing.assert_allclose(graded[rows["rock0.wav"]], [(120 - 40) / 180])


def test_a_fine_tune_of_the_package_runs_on_the_export(corrected, tmp_path):
    from train import cli_main as train

    root, run = corrected
    export = tmp_path / "export"
    assert cli_main(["export", str(run.out), "--model", str(root / "tagger"), "--out", str(export),
                     "--format", "csv"]) == 0
    assert pd.read_csv(export / "manifest.csv").set_index("track_id").loc["odd.wav", "genre"] == "folk"
    train(["fit", "--config", "configs/tagger_test.yaml", f"--data.init_args.manifest={export / 'manifest.csv'}",
           f"--data.init_args.vocab={export / 'vocab.json'}", f"--model.init_args.pretrained={root / 'tagger'}",
           "--trainer.max_epochs=1", f"--model.init_args.export_dir={tmp_path / 'model'}",
           f"--trainer.default_root_dir={tmp_path}"])
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "model" / "package.json").read_text())["inputs"]["pretrained"]


def test_nothing_to_export_is_said(tmp_path, capsys):
    model = make_package(tmp_path / "tagger")
    out = write_run(tmp_path / "annotations", model, tmp_path / "audio")
    assert cli_main(["export", str(out), "--model", str(tmp_path / "tagger"), "--out", str(tmp_path / "x")]) == 2
    assert "no corrections to export yet" in capsys.readouterr().err
