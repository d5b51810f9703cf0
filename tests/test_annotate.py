"""`coldtag annotate`, the local engine: a folder of good and broken files, records equal to
`AudioTagger.annotate`, resuming, retries."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import annotate
from annotate import cli_main
from tagging.audio import load_audio
from tagging.models import AudioTagger

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
    """Two good files of each codec (some in a subfolder) beside one of each kind of bad file."""
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
    (root / "empty.wav").write_bytes(b"")
    (root / "noise.mp3").write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    (root / "text.wav").write_text("not audio at all\n" * 50)
    flac = (root / "flac0.flac").read_bytes()
    (root / "cut.flac").write_bytes(flac[: len(flac) // 3])
    (root / "folder.mp3").mkdir()
    (root / "dangling.flac").symlink_to(root / "no-such-file.flac")
    (root / "notes.txt").write_text("not an audio suffix: not listed\n")
    return root, sorted(good)


def _records(out) -> pd.DataFrame:
    parts = sorted((out / "parts").glob("part-*.parquet"))
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)


def _run(source, model, out, *extra) -> int:
    return cli_main([str(source), "--model", str(model), "--out", str(out), "--workers", "2", "--batch-size", "3",
                     "--part-size", "4", *extra])


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
    records = _records(out).set_index("id")
    assert sorted(records.index) == sorted(good + list(BAD))  # each file once, notes.txt not listed
    assert records.loc[good, "error"].isna().all()
    for name, reason in BAD.items():
        error = records.loc[name, "error"]
        assert error["type"] == "AudioDecodeError" and error["message"].startswith(reason), (name, error)
        assert records.loc[name, ["genre", "embedding", "duration"]].isna().all()
    assert records.loc["flac0.flac", "size"] == (catalog[0] / "flac0.flac").stat().st_size
    assert records.loc["dangling.flac", ["size", "mtime"]].isna().all()
    package = json.loads((tiny_tagger.export / "package.json").read_text())
    assert (records["model_sha256"] == package["sha256"]).all()
    assert (records["seconds"] > 0).all()
    # One layout for every part file, whatever the records in it.
    schemas = {pq.read_schema(p).to_string() for p in (out / "parts").glob("part-*.parquet")}
    assert len(schemas) == 1 and len(list((out / "parts").glob("part-*.parquet"))) == 3  # 12 records, 4 a part
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["skipped"], summary["failed"]) == (len(good), 0, len(BAD))
    assert summary["failed_by_reason"]["AudioDecodeError: not audio"] == 2


def test_records_equal_annotate_on_the_loaded_file_whatever_the_batch(catalog, first_run, tiny_tagger):
    root, good = catalog
    out, _ = first_run
    records = _records(out).set_index("id")
    tagger = AudioTagger.from_pretrained(tiny_tagger.export)
    for name in good:
        wave = load_audio(root / name, tagger.sample_rate)
        expected = tagger.annotate(wave)
        record = records.loc[name]
        np.testing.assert_allclose(record["embedding"], expected["embedding"], atol=1e-5)
        for group, value in expected.items():
            if group == "embedding":
                continue
            if "probabilities" in value:
                assert list(record[group]["tags"]) == value["tags"]
                got = record[group]["probabilities"]
                np.testing.assert_allclose([got[k] for k in value["probabilities"]],
                                           list(value["probabilities"].values()), atol=1e-5)
            else:
                np.testing.assert_allclose([record[group][k] for k in value], list(value.values()), atol=1e-5)
        assert record["duration"] == pytest.approx(len(wave) / tagger.sample_rate)
        assert record["sample_rate"] > 0 and record["channels"] >= 1


def test_a_second_run_skips_everything_and_retry_errors_retries_only_the_failures(catalog, tiny_tagger, first_run,
                                                                                tmp_path, capsys):
    root, good = catalog
    out = tmp_path / "out"
    shutil.copytree(first_run[0], out)
    before = _records(out)
    assert _run(root, tiny_tagger.export, out) == 0
    assert "0 done, 12 skipped, 0 failed" in capsys.readouterr().out
    pd.testing.assert_frame_equal(_records(out), before)

    fixed = root.parent / f"{root.name}-fixed"
    shutil.copytree(root, fixed, symlinks=True)
    (fixed / "empty.wav").unlink()
    shutil.copy(fixed / "wav0.wav", fixed / "empty.wav")  # the failure is fixed upstream
    shutil.copytree(out, tmp_path / "out-fixed")
    assert _run(fixed, tiny_tagger.export, tmp_path / "out-fixed") == 0  # size and mtime changed: done again
    assert "1 done, 11 skipped, 0 failed" in capsys.readouterr().out

    assert _run(root, tiny_tagger.export, out, "--retry-errors") == 0
    assert capsys.readouterr().out.startswith(f"coldtag annotate: 0 done, {len(good)} skipped, {len(BAD)} failed")
    after = _records(out)
    assert sorted(after["id"]) == sorted(before["id"])  # retried records replaced, not duplicated
    kept = before[before["error"].isna()].sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(after[after["error"].isna()].sort_values("id").reset_index(drop=True), kept)
    fixed_records = _records(tmp_path / "out-fixed").set_index("id")
    assert fixed_records.loc["empty.wav", "error"] is None and len(fixed_records) == len(before)


def test_an_interrupted_run_resumed_gives_the_records_of_one_uninterrupted_run(catalog, tiny_tagger, first_run,
                                                                             tmp_path, monkeypatch):
    root, _ = catalog
    assert _run(root, tiny_tagger.export, tmp_path / "limited", "--limit", "5") == 0
    assert len(_records(tmp_path / "limited")) == 5

    def crash(path):
        raise KeyboardInterrupt(f"stopped after {path.name}")

    monkeypatch.setattr(annotate, "_committed", crash)
    with pytest.raises(KeyboardInterrupt):
        _run(root, tiny_tagger.export, tmp_path / "crashed")
    assert len(_records(tmp_path / "crashed")) == 4  # the first part file only
    monkeypatch.undo()

    columns = ["id", "path", "size", "mtime", "duration", "error"]
    expected = _records(first_run[0])[columns].sort_values("id").reset_index(drop=True)
    for out in ("limited", "crashed"):
        assert _run(root, tiny_tagger.export, tmp_path / out) == 0
        records = _records(tmp_path / out)
        assert records["id"].is_unique
        pd.testing.assert_frame_equal(records[columns].sort_values("id").reset_index(drop=True), expected)


def test_overwrite_starts_over(catalog, tiny_tagger, first_run, tmp_path, capsys):
    root, good = catalog
    out = tmp_path / "out"
    shutil.copytree(first_run[0], out)
    assert _run(root, tiny_tagger.export, out, "--overwrite") == 0
    assert capsys.readouterr().out.startswith(f"coldtag annotate: {len(good)} done, 0 skipped, {len(BAD)} failed")
    assert len(_records(out)) == len(good) + len(BAD)


def test_bad_arguments_and_unsupported_models_exit_non_zero_with_one_line(catalog, tiny_tagger, tmp_path, capsys):
    root, _ = catalog
    assert cli_main([str(tmp_path / "nowhere"), "--model", str(tiny_tagger.export), "--out", str(tmp_path)]) == 2
    message = f"coldtag annotate: error: {tmp_path / 'nowhere'}: no such folder or manifest"
    assert capsys.readouterr().err.strip() == message
    assert _run(root, tiny_tagger.export, tmp_path / "o", "--batch-size", "0") == 2
    assert "--batch-size must be >= 1, got 0" in capsys.readouterr().err
    assert _run(root, tmp_path, tmp_path / "o") == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a model package" in err
    other = tmp_path / "pipeline"
    other.mkdir()
    (other / "package.json").write_text(json.dumps({"kind": "ColdStartPipeline"}))
    assert _run(root, other, tmp_path / "o") == 1
    assert "a ColdStartPipeline package; only AudioTagger packages are supported yet" in capsys.readouterr().err
    only_bad = tmp_path / "only-bad"
    only_bad.mkdir()
    (only_bad / "empty.wav").write_bytes(b"")
    assert _run(only_bad, tiny_tagger.export, tmp_path / "o") == 1  # nothing could be done


def test_a_manifest_gives_its_ids(catalog, tiny_tagger, tmp_path):
    root, good = catalog
    manifest = pd.DataFrame({"track_id": [f"t{i}" for i in range(3)], "audio_path": [str(root / n) for n in good[:3]]})
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    assert _run(tmp_path / "manifest.csv", tiny_tagger.export, tmp_path / "out", "--workers", "0") == 0
    records = _records(tmp_path / "out")
    assert sorted(records["id"]) == ["t0", "t1", "t2"] and records["error"].isna().all()
    assert sorted(records["path"]) == sorted(str(root / n) for n in good[:3])
    assert os.path.isabs(records["path"][0])


def test_an_unexpected_exception_on_one_file_is_recorded_not_raised(catalog, tiny_tagger, tmp_path, monkeypatch):
    root, good = catalog
    real = annotate.load_audio

    def flaky(path, sample_rate):
        if str(path).endswith("wav0.wav"):
            raise RuntimeError("decoder crashed")
        return real(path, sample_rate)

    monkeypatch.setattr(annotate, "load_audio", flaky)
    assert _run(root, tiny_tagger.export, tmp_path / "out", "--workers", "0") == 0
    records = _records(tmp_path / "out").set_index("id")
    assert records.loc["wav0.wav", "error"] == {"type": "RuntimeError", "message": "decoder crashed"}
    assert records.loc[[n for n in good if n != "wav0.wav"], "error"].isna().all()
