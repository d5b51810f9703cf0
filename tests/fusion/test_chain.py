"""The whole chain on a catalog that is not the toy one's shape: other label groups, CSV plays with other
column names, no artists."""

import json

import pandas as pd
import pytest

from fusion.cli import main
from fusion.data import FUSION_SPLIT
from tagging.labels import read_manifest

RENAMED = {"genre": "style", "mood": "feel", "attribute": "traits"}
LEVELS = {"tempo": "bpm", "energy": "power"}  # a regression group "levels" of two of the toy's graded values


@pytest.fixture(scope="module")
def other_catalog(tiny_catalog, tmp_path_factory):
    """The tiny catalog as a user might hand it over: a CSV manifest with ';'-joined tags under other group
    names, its own vocabulary, and listens.csv (listener, song, count) with no artist anywhere."""
    root = tmp_path_factory.mktemp("other-catalog")
    toy = pd.read_parquet(tiny_catalog / "manifest.parquet")
    vocab = json.loads((tiny_catalog / "vocab.json").read_text())["groups"]
    manifest = pd.DataFrame({"track_id": toy["track_id"],
                             "audio_path": [str(tiny_catalog / p) for p in toy["audio_path"]]})
    for old, new in RENAMED.items():
        manifest[new] = [";".join(tags) for tags in toy[old]]
    for old, new in LEVELS.items():
        manifest[new] = toy[old]
    manifest.to_csv(root / "manifest.csv", index=False)
    graded = vocab["graded"]
    ranges = [graded["ranges"][graded["labels"].index(old)] for old in LEVELS]
    groups = {new: {"type": "multilabel", "labels": vocab[old]["labels"]} for old, new in RENAMED.items()}
    groups["levels"] = {"type": "regression", "labels": list(LEVELS.values()), "ranges": ranges}
    (root / "vocab.json").write_text(json.dumps({"groups": groups}))
    plays = pd.read_parquet(tiny_catalog / "plays.parquet")
    plays.rename(columns={"user_id": "listener", "track_id": "song", "plays": "count"}).to_csv(
        root / "listens.csv", index=False)
    return root


def test_one_command_runs_the_chain_on_a_catalog_of_other_names_and_resumes(other_catalog, tmp_path, capfd):
    out = tmp_path / "run"
    args = ["chain", "--manifest", str(other_catalog / "manifest.csv"), "--plays", str(other_catalog / "listens.csv"),
            "--user-col", "listener", "--item-col", "song", "--count-col", "count", "--cold-fraction", "0.3",
            "--tagger-config", "configs/tagger_test.yaml", "--tagger-max-epochs", "1", "--no-lyrics", "--no-cover",
            "--genome", "traits", "levels", "--skip-audio", "--set", "trainer.max_epochs=2", "--resamples", "20",
            "--out", str(out)]
    assert main(args) == 0
    table = (out / "fusion" / "table.md").read_text()
    for row in ("Audio (tagger embedding)", "MGP (annotated traits, levels)", "MLG (predicted traits, levels)",
                "Audio + MLG + style", "All content (+ feel)", "oracle"):
        assert f"| {row} |" in table
    assert "| popularity |" not in table  # no artist, no artist prior: the row is left out, nothing crashes
    assert "0 with a known artist" in (out / "fusion" / "differences.md").read_text()

    dealt = read_manifest(out / "manifest.parquet")
    tagger = set(dealt.loc[dealt["split"] == "train", "track_id"])
    fusion = set(dealt.loc[dealt[FUSION_SPLIT] == "train", "track_id"])
    assert tagger and fusion and tagger.isdisjoint(fusion)
    rows = json.loads((out / "fusion" / "rows.json").read_text())
    assert {row["training_items"] for row in rows} <= {len(fusion)}  # fusion learns from the other side only
    assert all(row["training"].startswith("warm items marked train") for row in rows)

    capfd.readouterr()
    assert main(args) == 0  # everything is there: every stage is skipped
    assert capfd.readouterr().out.count(": done (") == 5

    # A stage that fails is named with the command that runs it alone; the stages before it stay done.
    (out / "features.npz").unlink()
    broken = [a for a in args if a != "--no-lyrics"] + ["--lyrics-model", str(tmp_path / "no-model")]
    assert main(broken) == 1
    captured = capfd.readouterr()
    assert captured.out.count(": done (") == 3
    assert "the features stage failed" in captured.err and "runs alone as python -m tagging features" in captured.err
    assert "no-model" in captured.err


def test_the_chain_names_a_missing_file_in_one_line(other_catalog, tmp_path, capsys):
    assert main(["chain", "--manifest", str(other_catalog / "manifest.csv"), "--plays", str(tmp_path / "nope.csv"),
                 "--cold-fraction", "0.3", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.csv" in err and "\n" not in err
