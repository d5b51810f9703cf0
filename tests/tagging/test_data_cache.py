"""The int16 audio cache: exact to int16 precision, rebuilt when a setting or a file changes, never twice
for the same settings, and bad files left out by name."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from tagging.audio import load_audio
from tagging.data.cache import INDEX_FILE, AudioCache, build_audio_cache
from tagging.data.modules import CatalogDataModule

RATE = 16000


@pytest.fixture
def catalog(tiny_catalog, tmp_path):
    """Eight tracks of the tiny catalog (a private copy, so files can be touched): a WAV, four MP3s and three
    FLACs, the last made unreadable."""
    root = tmp_path / "catalog"
    shutil.copytree(tiny_catalog / "audio", root / "audio")
    shutil.copy(tiny_catalog / "vocab.json", root)
    frame = pd.read_parquet(tiny_catalog / "manifest.parquet")
    frame = pd.concat([frame[frame["format"] == "wav"].head(1), frame[frame["format"] == "mp3"].head(4),
                       frame[frame["format"] == "flac"].head(3)])
    frame["split"] = ["train"] * 6 + ["val", "test"]
    (root / frame["audio_path"].iloc[-1]).write_bytes(b"not audio at all")
    frame.to_parquet(root / "manifest.parquet")
    return root


def _module(catalog, cache_dir, **kwargs):
    return CatalogDataModule(str(catalog / "manifest.parquet"), cache_audio=True, cache_dir=str(cache_dir),
                             sample_rate=kwargs.pop("sample_rate", RATE), **kwargs)


def _folders(cache_dir):
    return sorted(p.name for p in (cache_dir / "coldtag-audio").iterdir())


def test_cache_round_trips_whole_tracks_and_crops_to_int16_precision(catalog, tmp_path):
    data = _module(catalog, tmp_path / "cache")
    data.prepare_data()
    data.setup()
    dataset = data._dataset("all", train=False)
    assert len(dataset) == 7  # the unreadable file is out
    for i in range(len(dataset)):
        item = dataset[i]
        exact = load_audio(catalog / data.tables["all"][i]["audio_path"], RATE)
        assert item["wave"].dtype == exact.dtype and item["wave"].shape == exact.shape
        assert float((item["wave"] - exact).abs().max()) <= 0.5 / 32768 + 1e-7
    crops = data._dataset("train", train=True)
    row = crops.table[0]
    crop = crops[0]["wave"]
    exact = load_audio(row["audio_path"], RATE).numpy()
    # A crop is a stretch of the track: find where it starts and compare.
    starts = [s for s in range(len(exact) - len(crop) + 1) if abs(exact[s] - float(crop[0])) <= 0.5 / 32768]
    assert any(np.abs(exact[s:s + len(crop)] - crop.numpy()).max() <= 0.5 / 32768 + 1e-7 for s in starts)


def test_bad_file_is_recorded_left_out_and_named(catalog, tmp_path, caplog):
    data = _module(catalog, tmp_path / "cache")
    data.setup()
    bad = str(catalog / pd.read_parquet(catalog / "manifest.parquet")["audio_path"].iloc[-1])
    assert data.skipped == [f"{bad}: unsupported: no audio stream in the file"]
    assert "1 track(s) left out" in caplog.text and bad in caplog.text
    (record,) = [t for t in data.audio_cache.tracks if t["error"]]
    assert record == {"path": bad, "shard": 0, "offset": record["offset"], "length": 0, "error": data.skipped[0]}
    assert bad not in data.tables["all"]["audio_path"]


def test_same_settings_build_once_changed_rate_or_file_build_anew(catalog, tmp_path):
    cache = tmp_path / "cache"
    first = _module(catalog, cache)
    first.prepare_data()
    (folder,) = _folders(cache)
    shards = sorted((cache / "coldtag-audio" / folder).glob("shard-*"))
    built = [p.stat().st_mtime_ns for p in shards]
    _module(catalog, cache).prepare_data()  # a second process, or a second run
    assert _folders(cache) == [folder] and [p.stat().st_mtime_ns for p in shards] == built

    _module(catalog, cache, sample_rate=8000).prepare_data()
    assert len(_folders(cache)) == 2

    # A file replaced by another of the same size: only its time tells; the new cache holds the new audio.
    frame = pd.read_parquet(catalog / "manifest.parquet")
    a, b = catalog / frame["audio_path"].iloc[1], catalog / frame["audio_path"].iloc[2]
    shutil.copy(b, a)
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 10**9))
    touched = _module(catalog, cache)
    touched.setup()
    assert len(_folders(cache)) == 3 and touched.audio_cache.folder.name != folder
    wave = touched._dataset("all", train=False)[1]["wave"]
    assert float((wave - load_audio(b, RATE)).abs().max()) <= 0.5 / 32768 + 1e-7


def test_a_cache_folder_that_does_not_match_its_settings_is_refused(catalog, tmp_path):
    paths = [str(catalog / p) for p in pd.read_parquet(catalog / "manifest.parquet")["audio_path"][:2]]
    folder = build_audio_cache(paths, RATE, tmp_path)
    index = json.loads((folder / INDEX_FILE).read_text())
    index["settings"]["sample_rate"] = 8000
    (folder / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(ValueError, match=f"{folder}: its name is not the key of the settings"):
        AudioCache(folder)


def test_two_processes_racing_to_build_leave_one_cache(catalog, tmp_path, monkeypatch):
    """The loser of the race finds the winner's folder at its rename, keeps it and removes its own build."""
    import tagging.data.cache

    paths = [str(catalog / p) for p in pd.read_parquet(catalog / "manifest.parquet")["audio_path"][:2]]
    folder = build_audio_cache(paths, RATE, tmp_path / "cache")
    winner = folder.rename(tmp_path / "winner")
    made = {p.name: p.stat().st_mtime_ns for p in winner.iterdir()}
    publish = tagging.data.cache.publish_directory

    def other_process_finishes_first(staging, target):
        winner.rename(target)
        return publish(staging, target)
    monkeypatch.setattr(tagging.data.cache, "publish_directory", other_process_finishes_first)
    assert build_audio_cache(paths, RATE, tmp_path / "cache") == folder
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]  # no partial build left
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == made
    assert len(AudioCache(folder).tracks) == 2
