"""`make demo`'s path on the tiny preset: every stage from the catalog to the report, its cache, its failures.

The report must be filled from the runs: its numbers are checked against the files the stages' commands
wrote, its plots against blank images, and the stages' keys against a changed config.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image

from annotation.records import read_annotations
from toycatalog import demo
from toycatalog.report import BAD_FILES, toy_name

pytestmark = pytest.mark.slow


def run_demo(root: Path, *extra: str, jobs: int = 1) -> int:
    """The demo on the tiny preset; one job runs the stages in this process, more each in a process of its own."""
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    options = parser.parse_args(["--preset", "tiny", "--data", str(root / "data"), "--out", str(root / "run"),
                                 "--jobs", str(jobs), *extra])
    return demo.main(options)


def states(run: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (run / "stages").glob("*.json")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    assert run_demo(root) == 0
    return root


def section(report: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}.*?(?=^## |\Z)", report, flags=re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(0)


def table_rows(text: str, first_cell: str | None = None) -> list[list[str]]:
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    return [r for r in rows if first_cell is None or r[0] == first_cell]


def test_every_stage_ran_and_the_report_holds_each_part(finished):
    run = finished / "run"
    assert set(states(run)) == {s.name for s in demo.Demo("tiny", finished / "data", run).stages}
    report = (run / "report.md").read_text()
    for title in ("Stages", "Tags", "Cold start", "The factor space", "Listener controls", "Annotating uploads",
                  "Cold-start recommendations"):
        section(report, title)
    for link in re.findall(r"\]\((plots/[^)]+)\)", report):
        picture = image.imread(run / link)
        assert picture.shape[0] > 200 and picture.shape[1] > 200 and picture[..., :3].std() > 0.05, link
    assert len(re.findall(r"\]\((plots/[^)]+)\)", report)) == 3 + 3 + 2  # ROC/PR and confusion per group, two more
    summary = (run / "summary.txt").read_text()
    assert "40 tracks" in summary and "3 bad files" in summary


def test_the_tables_are_the_runs_numbers(finished):
    run = finished / "run"
    report = (run / "report.md").read_text()
    # Tags: the audio tagger's own row of the modality table is the ROC-AUC the evaluate command wrote.
    modalities = pd.read_csv(run / "multimodal" / "modalities.csv")
    reference = modalities[(modalities["inputs"] == "audio tagger (reference)")
                           & (modalities["tracks"] == "all tracks")]
    row = table_rows(section(report, "Tags"), "audio tagger (reference)")[0]
    assert float(row[2].split()[0]) == pytest.approx(reference["genre roc_auc"].iloc[0], abs=5e-4)
    # Ablation: a row per trained row, each world's Recall@50 the one its table.csv holds.
    ablation = section(report, "Cold start")
    for world, folder in (("catalog", run / "fusion"), ("hidden", run / "hidden-world" / "fusion")):
        table = pd.read_csv(folder / "table.csv", index_col=0)
        rows = json.loads((folder / "rows.json").read_text())
        column = 3 if world == "catalog" else 5
        for entry in rows:
            cells = table_rows(ablation, entry["name"])[0]
            assert float(cells[column]) == pytest.approx(table.loc[entry["name"], "recall@50"], abs=5e-4)
            assert 0 <= float(cells[column - 1].split()[0]) <= 2
    assert table_rows(ablation, "Audio (patches)")[0][1] == "0.25"  # beside the published number


def test_uploads_are_annotated_and_bad_files_named(finished):
    run = finished / "run"
    records = read_annotations(run / "annotate").to_pandas()
    uploads = [p for p in (run / "uploads").iterdir() if p.suffix not in (".txt", ".png", ".jpg")]
    assert len(records) == len(uploads)  # one record a file: the bad ones too
    failed = records[records["error"].notna()]
    assert sorted(Path(p).name for p in failed["path"]) == sorted(BAD_FILES)
    assert {Path(p).suffix for p in records.loc[records["error"].isna(), "path"]} >= {".ogg", ".flac"}
    rows = table_rows(section((run / "report.md").read_text(), "Annotating uploads"))[1:]
    assert sorted(r[0] for r in rows) == sorted(BAD_FILES)


def test_recommendations_are_warm_tracks_with_their_reasons(finished):
    run = finished / "run"
    manifest = pd.read_parquet(finished / "data" / "manifest.parquet").set_index("track_id")
    records = read_annotations(run / "annotate").to_pandas()
    similar = {Path(r.path).stem: list(r.similar_tracks) for r in records.itertuples() if r.error is None}
    shown = json.loads((run / "recommendations.json").read_text())
    assert {q["track_id"] for q in shown} == set(similar)
    for query in shown:
        assert manifest.loc[query["track_id"], "item_split"] == "cold_test"
        assert query["artist"] == toy_name(manifest.loc[query["track_id"], "artist_id"], "artist")
        assert [r["rank"] for r in query["ranked"]] == [1, 2, 3]
        for item, neighbour in zip(query["ranked"], similar[query["track_id"]], strict=False):
            assert item["track_id"] == neighbour["track_id"]
            assert manifest.loc[item["track_id"], "item_split"] == "warm"
            annotated = {t for g in ("genre", "mood", "attribute") for t in manifest.loc[item["track_id"], g]}
            predicted = {t for tags in query["predicted"].values() for t in tags}
            assert set(item["shared_tags"]) == annotated & predicted
        assert np.all(np.diff([r["similarity"] for r in query["ranked"]]) <= 0)


def test_a_rerun_reuses_everything_and_a_changed_config_reruns_what_it_touches(finished, capsys):
    run = finished / "run"
    before = states(run)
    assert run_demo(finished) == 0
    assert states(run) == before
    assert "0 stages ran, 16 reused" in capsys.readouterr().out

    # A bad setting: the stage it reaches fails, named with the command that runs it alone; nothing before it
    # runs again. Side by side, each stage in a process of its own, whose log ends up on the console.
    assert run_demo(finished, "--set", "multimodal.model.init_args.no_such_setting=1", jobs=2) == 1
    err = capsys.readouterr()
    assert "stage multimodal failed" in err.err and "--only multimodal" in err.err
    assert "no_such_setting" in err.out  # the end of the stage's log
    assert {k: v for k, v in states(run).items() if k != "multimodal"} == {
        k: v for k, v in before.items() if k != "multimodal"}

    assert run_demo(finished, "--set", "multimodal.trainer.max_epochs=1") == 0
    after = states(run)
    changed = {name for name in before if after[name] != before[name]}
    assert changed == {"multimodal", "pipeline", "annotate", "recommend", "report"}
