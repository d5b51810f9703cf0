"""`coldtag annotate --engine ray`: on a local Ray with two CPUs, the records of the local engine, each
once; a re-run skips everything; without Ray, one line saying what to install."""

import importlib.util
import shutil
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from annotation.cli import cli_main
from tagging.labels import LabelSpace
from tests.helpers.compare import assert_same_records

NUM_CPUS_ENV = "COLDTAG_RAY_NUM_CPUS"  # annotation.engines.ray.NUM_CPUS_ENV; importing it needs Ray
GOOD = {"wav": 2, "flac": 1, "mp3": 1}
BAD = ("empty.wav", "text.wav", "folder.mp3", "dangling.flac")


@pytest.fixture(scope="module")
def uploads(tiny_catalog, tmp_path_factory):
    root = tmp_path_factory.mktemp("uploads")
    manifest = pd.read_parquet(tiny_catalog / "manifest.parquet")
    for codec, count in GOOD.items():
        for index, path in enumerate(p for p in manifest["audio_path"] if p.endswith(f".{codec}")):
            if index == count:
                break
            shutil.copy(tiny_catalog / path, root / f"{codec}{index}.{codec}")
    (root / "empty.wav").write_bytes(b"")
    (root / "text.wav").write_text("not audio at all\n" * 50)
    (root / "folder.mp3").mkdir()
    (root / "dangling.flac").symlink_to(root / "no-such-file.flac")
    return root


def _run(root, model, out, *extra) -> int:
    return cli_main([str(root), "--model", str(model), "--out", str(out), "--batch-size", "2", "--part-size", "3",
                     "--no-progress", *extra])


def _records(out) -> pd.DataFrame:
    parts = sorted((out / "parts").glob("part-*.parquet"))
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="--engine ray needs the cluster extra (pip install coldtag[cluster])")
def test_the_ray_engine_gives_the_local_records_each_once_and_a_rerun_skips_them(uploads, tiny_tagger, tmp_path,
                                                                                monkeypatch, capsys):
    monkeypatch.setenv(NUM_CPUS_ENV, "2")
    assert _run(uploads, tiny_tagger.export, tmp_path / "local", "--workers", "1") == 0
    # Two decoding tasks and one inference actor on two CPUs: two stages, not fused into the actor.
    assert _run(uploads, tiny_tagger.export, tmp_path / "ray", "--engine", "ray", "--workers", "2") == 0
    local, ray = _records(tmp_path / "local"), _records(tmp_path / "ray")
    assert ray["id"].is_unique
    assert sorted(ray["id"]) == sorted(local["id"]) and len(ray) == sum(GOOD.values()) + len(BAD)
    assert {p.name.split("-")[2] for p in (tmp_path / "ray" / "parts").iterdir()} == {"000"}
    assert all(len(pq.read_table(p)) <= 3 for p in (tmp_path / "ray" / "parts").iterdir())

    local, ray = local.set_index("id").sort_index(), ray.set_index("id").sort_index()
    assert_same_records(ray, local, LabelSpace.from_json(tiny_tagger.export / "vocab.json"))
    assert ray["error"].notna().sum() == len(BAD) and ray.loc[list(BAD), "error"].notna().all()

    capsys.readouterr()
    assert _run(uploads, tiny_tagger.export, tmp_path / "ray", "--engine", "ray", "--workers", "2") == 0
    assert f"0 done, {len(ray)} skipped, 0 failed" in capsys.readouterr().err
    assert len(_records(tmp_path / "ray")) == len(ray)


def test_without_ray_the_engine_is_refused_in_one_line_before_anything_is_read(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what importlib.util.find_spec reports for a missing package
    assert cli_main([str(tmp_path), "--model", str(tmp_path), "--out", str(tmp_path / "out"), "--engine", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "coldtag annotate: error: --engine ray needs Ray: pip install coldtag[cluster]"
    assert not (tmp_path / "out").exists()
