"""`coldtag annotate`: every input once, with one record layout, whatever the engine, the batch or an
interruption; warnings instead of invented tags; packages of every kind."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from torchcodec.encoders import AudioEncoder

import annotation.records as records_module
import tagging.tracks as tracks_module
from annotation.cli import cli_main
from annotation.records import read_annotations
from tagging.audio import load_audio
from tagging.grid import chunk_starts
from tagging.labels import LabelSpace
from tagging.models.tagger import AudioTagger
from tagging.tracks import TrackReader
from tests.helpers.compare import assert_same_records, raw_records

ROOT = Path(__file__).resolve().parents[2]
GOOD_PER_CODEC = 2
BAD = {  # name -> the reason the record gives
    "empty.wav": "empty",
    "noise.mp3": "not audio",
    "text.wav": "not audio",
    "cut.flac": "truncated",
    "folder.mp3": "not a file",
    "dangling.flac": "missing",
}


@pytest.fixture(scope="module")
def catalog(tiny_catalog, tmp_path_factory):
    """Two good files of each codec (some in a subfolder) beside one of each kind of bad file, a silent
    file, a 0.2 s tone and a 0.7 s chirp (the tiny tagger's chunk is 1 s)."""
    root = tmp_path_factory.mktemp("uploads")
    manifest = pd.read_parquet(tiny_catalog / "manifest.parquet")
    good = []
    for codec in ("wav", "flac", "mp3"):
        paths = [p for p in manifest["audio_path"] if p.endswith(f".{codec}")][:GOOD_PER_CODEC]
        assert len(paths) == GOOD_PER_CODEC
        for index, path in enumerate(paths):
            name = f"{codec}{index}.{codec}" if index == 0 else f"sub/{codec}{index}.{codec}"
            (root / name).parent.mkdir(exist_ok=True)
            shutil.copy(tiny_catalog / path, root / name)
            good.append(name)
    _encode(root / "silent.wav", torch.zeros(1, 8000 * 5))
    _encode(root / "tone.wav", 0.5 * torch.sin(torch.arange(1600) * 2 * math.pi * 440 / 8000).unsqueeze(0))
    _encode(root / "chirp.wav", 0.5 * torch.sin(torch.arange(5600) ** 2 * math.pi * 0.05 / 8000).unsqueeze(0))
    (root / "empty.wav").write_bytes(b"")
    (root / "noise.mp3").write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    (root / "text.wav").write_text("not audio at all\n" * 50)
    flac = (root / "flac0.flac").read_bytes()
    (root / "cut.flac").write_bytes(flac[: len(flac) // 3])
    (root / "folder.mp3").mkdir()
    (root / "dangling.flac").symlink_to(root / "no-such-file.flac")
    (root / "notes.txt").write_text("not an audio suffix: not listed\n")
    return root, sorted(good)


def _encode(path: Path, wave: torch.Tensor, rate: int = 8000) -> None:
    AudioEncoder(wave, sample_rate=rate).to_file(str(path))


def _records(out) -> pd.DataFrame:
    return read_annotations(out).to_pandas().set_index("id").sort_index()


def _run(source, model, out, *extra) -> int:
    return cli_main([str(source), "--model", str(model), "--out", str(out), "--workers", "2", "--batch-size", "3",
                     "--part-size", "4", "--no-progress", *extra])


def _labels(package: Path) -> LabelSpace:
    return LabelSpace.from_json(package / "vocab.json")


@pytest.fixture(scope="module")
def first_run(catalog, tiny_tagger, tmp_path_factory):
    root, _ = catalog
    out = tmp_path_factory.mktemp("annotations")
    code = _run(root, tiny_tagger.export, out)
    return out, code


def test_good_files_are_annotated_and_every_bad_one_is_one_error_record(catalog, first_run, tiny_tagger):
    _, good = catalog
    out, code = first_run
    assert code == 0
    records = _records(out)
    assert sorted(records.index) == sorted([*good, *BAD, "silent.wav", "tone.wav", "chirp.wav"])
    for name, reason in BAD.items():
        error = records.loc[name, "error"]
        assert error["type"] == "AudioDecodeError" and error["message"].startswith(reason), (name, error)
        assert records.loc[name, "genre"] is None and records.loc[name, "embedding"] is None
    fine = records[records["error"].isna()]
    assert sorted(fine.index) == sorted([*good, "silent.wav", "tone.wav", "chirp.wav"])
    assert (fine["model_sha256"] == AudioTagger.from_pretrained(tiny_tagger.export).package["sha256"]).all()
    assert fine["duration"].gt(0).all() and fine["sample_rate"].gt(0).all() and fine["channels"].ge(1).all()
    assert all(list(m) == ["audio"] for m in fine["modalities"])
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["skipped"]) == (len(good) + 3, len(BAD), 0)
    assert summary["failed_by_reason"]["AudioDecodeError: not audio"] == 2
    # Every part file has the same columns, the failed records' included.
    parts = sorted((out / "parts").glob("part-*.parquet"))
    assert len(parts) > 1 and len({pq.read_schema(p).to_string() for p in parts}) == 1


def test_silent_and_too_short_audio_is_flagged_and_gets_no_decided_tags(first_run):
    records = _records(first_run[0])
    assert list(records.loc["silent.wav", "warnings"]) == ["silent"]
    assert list(records.loc["tone.wav", "warnings"]) == ["short"]
    for name in ("silent.wav", "tone.wav"):  # silence, and 0.2 s of a 1 s chunk: nothing decided
        assert list(records.loc[name, "genre"]["tags"]) == [] and records.loc[name, "graded"] is None
        assert len(records.loc[name, "genre"]["probabilities"]) > 0  # the model's numbers are kept
    # 0.7 s of a 1 s chunk: flagged, and decided as the model decides.
    assert list(records.loc["chirp.wav", "warnings"]) == ["short"] and records.loc["chirp.wav", "graded"] is not None
    assert list(records.loc["wav0.wav", "warnings"]) == [] and records.loc["wav0.wav", "graded"] is not None


def test_records_equal_annotate_on_the_loaded_file_whatever_the_batch(catalog, first_run, tiny_tagger, tmp_path):
    root, good = catalog
    model = AudioTagger.from_pretrained(tiny_tagger.export)
    records = _records(first_run[0])
    assert _run(root, tiny_tagger.export, tmp_path / "one", "--batch-size", "1", "--workers", "0") == 0
    assert_same_records(_records(tmp_path / "one"), records, model.labels)
    expected = pd.DataFrame([model.annotate(load_audio(root / name, model.sample_rate)) for name in good], index=good)
    columns = ["embedding", *model.labels.groups]
    assert_same_records(records.loc[good, columns], expected[columns], model.labels)


def test_a_long_file_is_streamed_chunk_by_chunk_on_the_grid_of_its_length(catalog, tiny_tagger):
    root, good = catalog
    model = AudioTagger.from_pretrained(tiny_tagger.export)
    for name in good:
        wave = load_audio(root / name, model.sample_rate)
        streamed = TrackReader.for_tagger(model, stream_above_seconds=0.5)(str(root / name))
        length = round(streamed.duration * model.sample_rate)
        assert abs(length - len(wave)) <= 1, name  # the length, found without resampling
        starts = chunk_starts(length, model.chunk_samples, model.eval_chunks)
        assert len(streamed.chunks) == len(starts)
        # Each chunk holds the samples of the whole decode from its start on, except the last few of the
        # file, which only a whole-file decode flushes out of the resampler (as in test_audio).
        end = len(wave) - 64
        for start, chunk in zip(starts, streamed.chunks, strict=True):
            stop = min(start + model.chunk_samples, end)
            torch.testing.assert_close(chunk[:stop - start], wave[start:stop], rtol=0, atol=0)
            assert not chunk[length - start:].any()  # zero-padded past the end


def test_a_second_run_skips_everything_and_retry_errors_retries_only_the_failures(catalog, tiny_tagger, first_run,
                                                                                tmp_path, capsys):
    root, _ = catalog
    out = tmp_path / "out"
    shutil.copytree(first_run[0], out)
    before = _records(out)
    capsys.readouterr()
    assert _run(root, tiny_tagger.export, out) == 0
    assert f"0 done, {len(before)} skipped, 0 failed" in capsys.readouterr().err
    pd.testing.assert_frame_equal(_records(out), before)

    uploads = tmp_path / "uploads"
    shutil.copytree(root, uploads, symlinks=True)
    assert _run(uploads, tiny_tagger.export, tmp_path / "out-fixed") == 0
    (uploads / "empty.wav").unlink()
    shutil.copy(uploads / "wav0.wav", uploads / "empty.wav")  # the failure is fixed upstream
    capsys.readouterr()
    assert _run(uploads, tiny_tagger.export, tmp_path / "out-fixed") == 0  # size and mtime changed: done again
    assert f"1 done, {len(before) - 1} skipped, 0 failed" in capsys.readouterr().err

    assert _run(root, tiny_tagger.export, out, "--retry-errors") == 0
    assert f"0 done, {len(before) - len(BAD)} skipped, {len(BAD)} failed" in capsys.readouterr().err
    after = _records(out)
    assert list(after.index) == list(before.index)
    assert len(raw_records(out)) == len(before)  # retried records replaced in the part files, not added
    assert_same_records(after, before, _labels(tiny_tagger.export))
    fixed_records = _records(tmp_path / "out-fixed")
    assert fixed_records.loc["empty.wav", "error"] is None and len(fixed_records) == len(before)
    assert len(raw_records(tmp_path / "out-fixed")) == len(before)


KILLER = """
import os, signal, sys
import annotation.records as records
from annotation.cli import cli_main

event, at, seen = sys.argv[1], int(sys.argv[2]), [0]

def checkpoint(name):
    if name == event:
        seen[0] += 1
        if seen[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)

records.checkpoint = checkpoint
sys.exit(cli_main(sys.argv[3:]))
"""


@pytest.mark.slow
def test_a_run_killed_at_any_point_then_resumed_gives_the_records_of_one_uninterrupted_run(
        catalog, tiny_tagger, first_run, tmp_path, capsys):
    root, _ = catalog
    expected, labels = _records(first_run[0]), _labels(tiny_tagger.export)
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    arguments = [str(root), "--model", str(tiny_tagger.export), "--workers", "1", "--batch-size", "2",
                 "--part-size", "4", "--no-progress"]
    for event, at in (("decoded", 2), ("committed", 2)):
        out = tmp_path / f"{event}-{at}"
        killed = subprocess.run([sys.executable, str(script), event, str(at), *arguments, "--out", str(out)],
                                cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True,
                                timeout=300)
        assert killed.returncode == -9, killed.stderr.decode()[-2000:]
        committed = raw_records(out)
        assert committed["id"].is_unique and len(committed) < len(expected)
        capsys.readouterr()
        assert cli_main([*arguments, "--out", str(out)]) == 0
        # The resumed run annotates only what the killed one had not committed, each track once.
        failed = expected["error"].notna().sum() - committed["error"].notna().sum()
        done = len(expected) - len(committed) - failed
        assert f"{done} done, {len(committed)} skipped, {failed} failed" in capsys.readouterr().err
        assert len(raw_records(out)) == len(expected)
        assert_same_records(_records(out), expected, labels)
    # Killed while superseding older parts (a retry replaced their failed records): a re-run finishes the job.
    killed = subprocess.run([sys.executable, str(script), "superseded", "1", *arguments, "--out", str(out),
                             "--retry-errors"], cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)},
                            capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert cli_main([*arguments, "--out", str(out)]) == 0
    assert len(raw_records(out)) == len(expected)
    assert_same_records(_records(out), expected, labels)


def test_overwrite_starts_over(catalog, tiny_tagger, first_run, tmp_path, capsys):
    root, _ = catalog
    out = tmp_path / "out"
    shutil.copytree(first_run[0], out)
    total = len(_records(out))
    capsys.readouterr()
    assert _run(root, tiny_tagger.export, out, "--overwrite") == 0
    assert f"{total - len(BAD)} done, 0 skipped, {len(BAD)} failed" in capsys.readouterr().err
    assert len(_records(out)) == total


def test_bad_arguments_and_unusable_models_exit_2_with_one_line(catalog, tiny_tagger, tmp_path, capsys):
    root, _ = catalog
    assert cli_main([str(tmp_path / "nowhere"), "--model", str(tiny_tagger.export), "--out", str(tmp_path)]) == 2
    message = f"coldtag annotate: error: {tmp_path / 'nowhere'}: no such folder, manifest or pattern"
    assert capsys.readouterr().err.strip() == message
    assert _run(root, tiny_tagger.export, tmp_path / "o", "--batch-size", "0") == 2
    assert "--batch-size must be >= 1, got 0" in capsys.readouterr().err
    for model, says in ((tmp_path, "not a model package"),
                        (_package(tmp_path / "fusion", "LateFusionRegressor"), "a LateFusionRegressor package")):
        assert _run(root, model, tmp_path / "o") == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and says in err, err
    if not torch.cuda.is_available():
        assert _run(root, tiny_tagger.export, tmp_path / "o", "--device", "cuda") == 2
        assert "CUDA is not available" in capsys.readouterr().err
    only_bad = tmp_path / "only-bad"
    only_bad.mkdir()
    (only_bad / "empty.wav").write_bytes(b"")
    assert _run(only_bad, tiny_tagger.export, tmp_path / "o2") == 1  # nothing could be done


def _package(folder: Path, kind: str) -> Path:
    folder.mkdir()
    (folder / "package.json").write_text(json.dumps({"kind": kind}))
    return folder


def test_a_manifest_gives_its_ids_refuses_paths_outside_its_folder_and_keeps_the_first_of_repeated_ids(
        catalog, tiny_tagger, tmp_path):
    root, good = catalog
    shutil.copy(root / good[0], tmp_path / "a.wav")
    shutil.copy(root / good[1], tmp_path / Path(good[1]).name)
    outside = tmp_path.parent / f"{tmp_path.name}-secret.wav"
    shutil.copy(root / good[0], outside)
    second = Path(good[1]).name
    rows = [{"track_id": "t0", "audio_path": "a.wav"}, {"track_id": "t1", "audio_path": second},
            {"track_id": "t0", "audio_path": second}, {"track_id": "t2", "audio_path": f"../{outside.name}"},
            {"track_id": "t3", "audio_path": str(outside)}]
    for suffix in ("csv", "jsonl"):
        manifest = tmp_path / f"manifest.{suffix}"
        frame = pd.DataFrame(rows)
        frame.to_csv(manifest, index=False) if suffix == "csv" else frame.to_json(manifest, orient="records",
                                                                                  lines=True)
        out = tmp_path / f"out-{suffix}"
        assert _run(manifest, tiny_tagger.export, out, "--workers", "0") == 0
        records = _records(out)
        assert list(records.index) == ["t0", "t1", "t2", "t3"]
        assert records.loc["t0", "path"] == str(tmp_path / "a.wav") and records.loc["t1", "error"] is None
        for track in ("t2", "t3"):
            assert records.loc[track, "error"]["message"].startswith("outside:"), records.loc[track, "error"]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["failed_by_reason"]["manifest row left out"] == 1
        assert "repeats an earlier row" in (out / "annotate.log").read_text()
    assert _run(tmp_path / "manifest.csv", tiny_tagger.export, tmp_path / "allowed", "--workers", "0",
                "--allow-outside") == 0
    assert _records(tmp_path / "allowed")["error"].isna().all()


def test_a_glob_and_the_jsonl_format(catalog, tiny_tagger, tmp_path):
    root, _ = catalog
    assert _run(f"{root}/**/*.mp3", tiny_tagger.export, tmp_path / "out", "--format", "jsonl", "--workers", "0") == 0
    lines = [json.loads(line) for line in (tmp_path / "out" / "annotations.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == ["folder.mp3", "mp30.mp3", "noise.mp3", "sub/mp31.mp3"]
    assert {tuple(r) for r in lines} == {tuple(read_annotations(tmp_path / "out").schema.names)}


def test_an_unexpected_exception_on_one_file_is_recorded_not_raised(catalog, tiny_tagger, tmp_path, monkeypatch):
    root, good = catalog
    real = tracks_module.load_audio

    def flaky(path, sample_rate):
        if str(path).endswith("wav0.wav"):
            raise RuntimeError("decoder crashed")
        return real(path, sample_rate)

    monkeypatch.setattr(tracks_module, "load_audio", flaky)
    assert _run(root, tiny_tagger.export, tmp_path / "out", "--workers", "0") == 0
    records = _records(tmp_path / "out")
    assert records.loc["wav0.wav", "error"] == {"type": "RuntimeError", "message": "decoder crashed"}
    assert records.loc[[n for n in good if n != "wav0.wav"], "error"].isna().all()
    assert "RuntimeError: decoder crashed" in (tmp_path / "out" / "annotate.log").read_text()


def test_a_file_that_vanishes_mid_run_is_an_error_record(catalog, tiny_tagger, tmp_path, monkeypatch):
    root, good = catalog
    uploads = tmp_path / "uploads"
    shutil.copytree(root, uploads, symlinks=True)
    last = sorted(good)[-1]

    def vanish(event):
        if event == "decoded":
            (uploads / last).unlink(missing_ok=True)

    monkeypatch.setattr(records_module, "checkpoint", vanish)
    assert _run(uploads, tiny_tagger.export, tmp_path / "out", "--workers", "0", "--batch-size", "2") == 0
    assert _records(tmp_path / "out").loc[last, "error"]["message"].startswith("missing")


@pytest.mark.slow
def test_two_ddp_processes_give_the_records_of_one(catalog, tiny_tagger, first_run, tmp_path):
    root, _ = catalog
    # Lightning's ddp re-launches the command line for the second process: the real command runs in a
    # subprocess (gloo on the CPU).
    done = subprocess.run([sys.executable, "-m", "annotation", str(root), "--model", str(tiny_tagger.export), "--out",
                           str(tmp_path / "ddp"), "--engine", "ddp", "--devices", "2", "--workers", "1",
                           "--batch-size", "3", "--part-size", "2", "--no-progress"],
                          cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    expected = _records(first_run[0])
    # Each track annotated once: the summary counts what the ranks wrote before superseded copies are
    # dropped, and the raw part files hold each id once (the reader keeps one record per id and hides
    # duplicates).
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["done"] + summary["failed"] == len(expected), summary
    written = raw_records(tmp_path / "ddp")
    assert set(written["rank"]) == {"000", "001"}
    assert len(written) == written["id"].nunique() == len(expected)
    assert_same_records(_records(tmp_path / "ddp"), expected, _labels(tiny_tagger.export))
