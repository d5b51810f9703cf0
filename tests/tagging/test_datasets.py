"""Dataset adapters on fixtures written in the exact public layouts, quirks included, with known answers.

The last tests read the real published split files when ``COLDTAG_REAL_SPLITS`` names a folder holding
them (never committed here: licence and size), e.g. from clones of MTG/mtg-jamendo-dataset and
minzwon/sota-music-tagging-models::

    $COLDTAG_REAL_SPLITS/jamendo/data/splits/split-0/autotagging_top50tags-{train,validation,test}.tsv
    $COLDTAG_REAL_SPLITS/mtat/{valid,test}.npy
"""

import csv
import json
import math
import os
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tagging.datasets.catalog import fraction_split
from tagging.datasets.cli import main
from tagging.datasets.folders import build_folders
from tagging.datasets.magnatagatune import build_magnatagatune
from tagging.datasets.manifest import build_manifest
from tagging.datasets.mtg_jamendo import build_mtg_jamendo
from tagging.labels import LabelSpace, read_manifest

REAL_SPLITS = Path(os.environ["COLDTAG_REAL_SPLITS"]) if os.environ.get("COLDTAG_REAL_SPLITS") else None


def touch(path: Path) -> Path:
    """A stand-in audio file: the adapters check that a file exists, never decode it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"ID3")
    return path


def read_back(out: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The written catalog as training reads it: the manifest and its encoded targets."""
    frame = read_manifest(out / "manifest.parquet")
    return frame, LabelSpace.from_json(out / "vocab.json").encode(frame, source=str(out))


def tags_of(frame: pd.DataFrame, group: str) -> dict[str, list[str] | None]:
    return {t: None if v is None else list(v) for t, v in zip(frame["track_id"], frame[group], strict=True)}


# --- MTG-Jamendo -----------------------------------------------------------------------------------------

JAMENDO_HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"


def write_jamendo(root: Path, rows: dict[str, list[str]], subset: str = "_top50tags", split: int = 0) -> None:
    """Split TSVs as published: CRLF line ends, one tab-separated field per tag (ragged rows)."""
    folder = root / "data" / "splits" / f"split-{split}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train", "validation", "test"):
        lines = [JAMENDO_HEADER, *rows.get(name, [])]
        (folder / f"autotagging{subset}-{name}.tsv").write_bytes(("\r\n".join(lines) + "\r\n").encode())


JAMENDO_ROWS = {
    "train": [
        # a tag repeated within the row
        "track_0000001\tartist_000001\talbum_000001\t01/1.mp3\t200.5\tgenre---rock\tinstrument---guitar"
        "\tgenre---rock\tmood/theme---happy",
        "track_0000002\tartist_000001\talbum_000001\t02/2.mp3\t100.0\tgenre---pop",
        "track_0000003\tartist_000002\talbum_000002\t03/3.mp3\t50.0\tinstrument---piano",  # not on disk
    ],
    "validation": ["track_0000004\tartist_000003\talbum_000003\t04/4.mp3\t60.0\tgenre---jazz\tinstrument---piano"
                   "\tinstrument---voice\tmood/theme---relaxing"],
    "test": ["track_0000005\tartist_000004\talbum_000004\t05/5.mp3\t70.0\tgenre---rock\tmood/theme---sad"],
}


@pytest.fixture
def jamendo(tmp_path):
    root, audio = tmp_path / "mtg-jamendo-dataset", tmp_path / "audio"
    write_jamendo(root, JAMENDO_ROWS)
    for name in ("01/1.mp3", "02/2.mp3", "04/4.mp3", "05/5.mp3"):
        touch(audio / name)
    return root, audio


def test_mtg_jamendo_top50_gives_one_group_per_category_and_skips_missing_audio(jamendo, tmp_path, capsys):
    root, audio = jamendo
    out = tmp_path / "out"
    assert main(["mtg_jamendo", "--root", str(root), "--audio-root", str(audio), "--subset", "top50tags",
                 "--split", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tracks: 4 (train 2, val 1, test 1)" in printed
    assert "tags: genre 3, instrument 3, mood_theme 3" in printed
    assert f"missing on disk: 1 listed track(s) left out: {audio.absolute() / '03/3.mp3'}" in printed

    vocab = json.loads((out / "vocab.json").read_text())
    # The vocabulary is the dataset's: piano counts although its only training track is not on disk.
    assert vocab == {"groups": {"genre": {"type": "multilabel", "labels": ["jazz", "pop", "rock"]},
                                "instrument": {"type": "multilabel", "labels": ["guitar", "piano", "voice"]},
                                "mood_theme": {"type": "multilabel", "labels": ["happy", "relaxing", "sad"]}}}
    frame, targets = read_back(out)
    assert frame["track_id"].tolist() == ["track_0000001", "track_0000002", "track_0000004", "track_0000005"]
    assert frame["split"].tolist() == ["train", "train", "val", "test"]
    assert frame["artist_id"].tolist() == ["artist_000001", "artist_000001", "artist_000003", "artist_000004"]
    assert frame["duration"].tolist() == [200.5, 100.0, 60.0, 70.0]
    assert frame["audio_path"].tolist() == [str(audio.absolute() / p) for p in ("01/1.mp3", "02/2.mp3",
                                                                                "04/4.mp3", "05/5.mp3")]
    assert tags_of(frame, "genre") == {"track_0000001": ["rock"], "track_0000002": ["pop"],
                                       "track_0000004": ["jazz"], "track_0000005": ["rock"]}
    assert tags_of(frame, "instrument") == {"track_0000001": ["guitar"], "track_0000002": [],
                                            "track_0000004": ["piano", "voice"], "track_0000005": []}
    np.testing.assert_array_equal(targets["instrument"], [[1, 0, 0], [0, 0, 0], [0, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(targets["mood_theme"], [[1, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 1]])


def test_mtg_jamendo_reads_the_subset_and_split_asked_for(tmp_path):
    root, audio = tmp_path / "repo", tmp_path / "audio"
    write_jamendo(root, {"train": ["track_1\tartist_1\talbum_1\t1/1.mp3\t9.0\tinstrument---cello\t"],
                         "validation": ["track_2\tartist_1\talbum_1\t2/2.mp3\t9.0\tinstrument---flute"],
                         "test": ["track_3\tartist_2\talbum_2\t3/3.mp3\t9.0\tinstrument---cello"]},
                  subset="_instrument", split=3)
    for name in ("1/1.mp3", "2/2.mp3", "3/3.mp3"):
        touch(audio / name)
    catalog = build_mtg_jamendo(root, audio, subset="instrument", split=3)
    # A trailing tab (an empty field) is not a tag.
    assert catalog.vocab == {"groups": {"instrument": {"type": "multilabel", "labels": ["cello", "flute"]}}}
    assert catalog.frame["split"].tolist() == ["train", "val", "test"]
    with pytest.raises(ValueError, match=r"split-0/autotagging_instrument-train\.tsv"):
        build_mtg_jamendo(root, audio, subset="instrument", split=0)


def test_mtg_jamendo_track_in_two_splits_is_an_error_naming_both_lines(jamendo):
    root, audio = jamendo
    rows = {**JAMENDO_ROWS, "test": [*JAMENDO_ROWS["test"], JAMENDO_ROWS["train"][1]]}
    write_jamendo(root, rows)
    with pytest.raises(ValueError, match=r"autotagging_top50tags-test\.tsv:3: track track_0000002 is already "
                                         r"listed at .*autotagging_top50tags-train\.tsv:3"):
        build_mtg_jamendo(root, audio)


def test_mtg_jamendo_malformed_tag_is_an_error_naming_file_and_line(jamendo):
    root, audio = jamendo
    write_jamendo(root, {**JAMENDO_ROWS, "validation": [
        "track_0000004\tartist_000003\talbum_000003\t04/4.mp3\t60.0\tgenre---jazz\tpiano"]})
    with pytest.raises(ValueError, match=r"autotagging_top50tags-validation\.tsv:2: tag 'piano' is not of the "
                                         r"form 'category---tag'"):
        build_mtg_jamendo(root, audio)


def test_mtg_jamendo_wrong_audio_root_is_one_clear_error(jamendo, tmp_path, capsys):
    root, _ = jamendo
    with pytest.raises(SystemExit) as exit_info:
        main(["mtg_jamendo", "--root", str(root), "--audio-root", str(tmp_path / "nowhere"),
              "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "none of the 5 listed audio files exists" in capsys.readouterr().err
    assert not (tmp_path / "out" / "manifest.parquet").exists()


# --- MagnaTagATune ---------------------------------------------------------------------------------------

# 53 tag columns. Counts: guitar 3, "no voice" 2, t00..t48 and "zz last" 1 each, silence 0, so the top 50
# are guitar, "no voice" and, of the 50 tags tied at 1, the first 48 by name: t00..t47.
MTAT_TAGS = ["guitar", "no voice", "silence", *[f"t{i:02d}" for i in range(49)], "zz last"]
TOP50 = ["guitar", "no voice", *[f"t{i:02d}" for i in range(48)]]
MTAT_CLIPS = [  # clip_id, mp3_path, positive tags
    ("2", "0/artist_a-album-01-song-0-29.mp3", ["guitar", "no voice", *[f"t{i:02d}" for i in range(16)]]),
    ("5", "b/artist_a-album-02-song-30-59.mp3", ["guitar", *[f"t{i:02d}" for i in range(16, 32)]]),
    ("7", "c/artist_b-album-01-song-0-29.mp3", ["guitar", "no voice", *[f"t{i:02d}" for i in range(32, 48)]]),
    ("9", "d/artist_c-album-01-song-0-29.mp3", ["zz last"]),
    ("11", "f/artist_c-album-02-song-0-29.mp3", []),  # not on disk
    ("13", "e/artist_d-album-01-song-0-29.mp3", ["t48"]),
]


@pytest.fixture
def mtat(tmp_path):
    """``annotations_final.csv`` and ``clip_info_final.csv`` as published: tab-separated, every value quoted."""
    root = tmp_path / "mtat"
    root.mkdir()
    with open(root / "annotations_final.csv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_ALL)
        writer.writerow(["clip_id", *MTAT_TAGS, "mp3_path"])
        for clip_id, path, tags in MTAT_CLIPS:
            writer.writerow([clip_id, *("1" if tag in tags else "0" for tag in MTAT_TAGS), path])
    with open(root / "clip_info_final.csv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_ALL)
        writer.writerow(["clip_id", "track_number", "title", "artist", "album", "url", "segmentStart",
                         "segmentEnd", "original_url", "mp3_path"])
        for clip_id, path, _ in MTAT_CLIPS[:5]:  # clip 13 has no record
            artist = path.split("/")[1].split("-")[0].replace("_", " ")
            writer.writerow([clip_id, "1", "song", artist, "album", "", "0", "29", "", path])
    for clip_id, path, _ in MTAT_CLIPS:
        if clip_id != "11":
            touch(root / path)
    return root


def test_mtat_top50_folder_split_with_artists_from_clip_info(mtat, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["magnatagatune", "--root", str(mtat), "--tags", "top50", "--split", "folders",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tracks: 5 (train 2, val 1, test 2)" in printed
    assert "tags: tags 50" in printed
    assert "missing on disk: 1 listed track(s) left out" in printed and "f/artist_c-album-02" in printed

    assert json.loads((out / "vocab.json").read_text())["groups"]["tags"]["labels"] == TOP50
    frame, targets = read_back(out)
    assert frame["track_id"].tolist() == ["2", "5", "7", "9", "13"]
    assert frame["split"].tolist() == ["train", "train", "val", "test", "test"]
    # Clip 13 has no clip_info record: no artist (read back as a missing value).
    assert frame["artist_id"].iloc[:4].tolist() == ["artist a", "artist a", "artist b", "artist c"]
    assert pd.isna(frame["artist_id"].iloc[4])
    assert frame["audio_path"].tolist()[0] == str(mtat.absolute() / MTAT_CLIPS[0][1])
    assert tags_of(frame, "tags") == {"2": ["guitar", "no voice", *[f"t{i:02d}" for i in range(16)]],
                                      "5": ["guitar", *[f"t{i:02d}" for i in range(16, 32)]],
                                      "7": ["guitar", "no voice", *[f"t{i:02d}" for i in range(32, 48)]],
                                      "9": [], "13": []}
    assert targets["tags"].sum(axis=0).tolist() == [3, 2, *[1] * 48]


def test_mtat_all_tags_keeps_the_file_order(mtat):
    catalog = build_magnatagatune(mtat, tags="all", group="mtat")
    assert catalog.vocab["groups"]["mtat"]["labels"] == MTAT_TAGS
    assert catalog.frame.set_index("track_id").loc["9", "mtat"] == ["zz last"]


@pytest.mark.parametrize("form", ["npy", "txt"])
def test_mtat_won2020_split_from_their_lists(mtat, tmp_path, form):
    split_dir = tmp_path / "split" / "mtat"
    split_dir.mkdir(parents=True)
    paths = {clip_id: path for clip_id, path, _ in MTAT_CLIPS}
    # Their format: "<row in annotations_final.csv>\t<mp3_path>"; clip 13 is in no list.
    lists = {"train": [f"0\t{paths['2']}", f"4\t{paths['11']}"], "valid": [f"1\t{paths['5']}"],
             "test": [f"2\t{paths['7']}", f"3\t{paths['9']}"]}
    for name, entries in lists.items():
        if form == "npy":
            np.save(split_dir / f"{name}.npy", np.array(entries))
        else:
            (split_dir / f"{name}.txt").write_text("\n".join(entries) + "\n")
    np.save(split_dir / "tags.npy", np.array(list(reversed(TOP50))))
    catalog = build_magnatagatune(mtat, split="won2020", split_dir=split_dir)
    assert catalog.frame["track_id"].tolist() == ["2", "5", "7", "9"]
    assert catalog.frame["split"].tolist() == ["train", "val", "test", "test"]
    assert catalog.missing == [str(mtat.absolute() / paths["11"])]
    assert "not in any won2020 list (left out): 1 clip(s)" in catalog.notes
    assert f"top-50 tags: the same set as {split_dir / 'tags.npy'}" in catalog.notes


def test_mtat_won2020_errors_name_the_list_and_entry(mtat, tmp_path):
    split_dir = tmp_path / "split"
    split_dir.mkdir()
    np.save(split_dir / "train.npy", np.array(["0\t0/artist_a-album-01-song-0-29.mp3", "9\t0/not-a-clip.mp3"]))
    np.save(split_dir / "valid.npy", np.array(["1\tb/artist_a-album-02-song-30-59.mp3"]))
    np.save(split_dir / "test.npy", np.array([{"pickled": True}], dtype=object))
    with pytest.raises(ValueError, match=r"train\.npy: entry 2: '0/not-a-clip\.mp3' is not an mp3_path"):
        build_magnatagatune(mtat, split="won2020", split_dir=split_dir)
    np.save(split_dir / "train.npy", np.array(["0\t0/artist_a-album-01-song-0-29.mp3"]))
    with pytest.raises(ValueError, match=r"test\.npy: Object arrays cannot be loaded"):  # never unpickled
        build_magnatagatune(mtat, split="won2020", split_dir=split_dir)
    with pytest.raises(ValueError, match="--split won2020 needs --split-dir"):
        build_magnatagatune(mtat, split="won2020")


def test_mtat_malformed_annotations_name_the_line(mtat):
    text = (mtat / "annotations_final.csv").read_text().splitlines()
    text[3] = text[3].replace('"0"', '"2"', 1)
    (mtat / "annotations_final.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"annotations_final\.csv:4: tag values must be 0 or 1, got '2'"):
        build_magnatagatune(mtat)


# --- folder per label ------------------------------------------------------------------------------------

def test_folders_one_track_under_two_labels_gets_both_and_one_split(tmp_path):
    root = tmp_path / "by-genre"
    touch(root / "rock" / "a.mp3")
    touch(root / "rock" / "album" / "b.wav")
    touch(root / "pop" / "album" / "b.wav")  # the same track as rock/album/b.wav
    touch(root / "jazz" / "c.flac")
    touch(root / "jazz" / ".hidden.mp3")
    (root / "jazz" / "notes.txt").write_text("not audio")
    for i in range(6):
        touch(root / "pop" / f"p{i}.ogg")
    (root / "pop" / "gone.mp3").symlink_to(root / "pop" / "deleted.mp3")  # listed, not on disk

    catalog = build_folders(root, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert catalog.vocab == {"groups": {"genre": {"type": "multilabel", "labels": ["jazz", "pop", "rock"]}}}
    assert catalog.missing == [str(root.absolute() / "pop" / "gone.mp3")]
    tags = dict(zip(catalog.frame["track_id"], catalog.frame["genre"], strict=True))
    assert sorted(tags) == ["a.mp3", "album/b.wav", "c.flac", *[f"p{i}.ogg" for i in range(6)]]
    assert tags["album/b.wav"] == ["pop", "rock"] and tags["a.mp3"] == ["rock"]
    # 10 listed tracks: 2 test, 2 val, 6 train, drawn before the missing one is left out.
    listed = fraction_split([*tags, "gone.mp3"], 0.2, 0.2, seed=3)
    assert sorted(listed.values()).count("test") == 2 and sorted(listed.values()).count("val") == 2
    assert dict(zip(catalog.frame["track_id"], catalog.frame["split"], strict=True)) == {
        key: split for key, split in listed.items() if key != "gone.mp3"}

    out = tmp_path / "out"
    assert main(["folders", "--root", str(root), "--val-fraction", "0.2", "--test-fraction", "0.2",
                 "--seed", "3", "--group", "style", "--out", str(out)]) == 0
    _, targets = read_back(out)
    assert targets["style"].shape == (9, 3)


def test_fraction_split_is_seeded_and_rejects_bad_fractions():
    keys = [f"k{i}" for i in range(20)]
    first = fraction_split(keys, 0.25, 0.1, seed=7)
    assert first == fraction_split(list(reversed(keys)), 0.25, 0.1, seed=7)
    assert first != fraction_split(keys, 0.25, 0.1, seed=8)
    assert [list(first.values()).count(s) for s in ("train", "val", "test")] == [13, 5, 2]
    with pytest.raises(ValueError, match=r"--val-fraction \+ --test-fraction must leave tracks to train on"):
        fraction_split(keys, 0.5, 0.5, seed=0)
    with pytest.raises(ValueError, match=r"--test-fraction must be in \[0, 1\), got -0.1"):
        fraction_split(keys, 0.1, -0.1, seed=0)


# --- generic table ---------------------------------------------------------------------------------------

def test_manifest_csv_with_split_column_is_normalised(tmp_path, capsys):
    folder = tmp_path / "mine"
    touch(folder / "audio" / "x.mp3")
    touch(folder / "audio" / "sub" / "y.mp3")
    touch(folder / "audio" / "z.mp3")
    (folder / "tracks.csv").write_text(
        "file,Genres,mood,set,artist,seconds\n"
        "audio/x.mp3,rock; pop;rock,calm,Train,a1,31.5\n"
        "audio/sub/y.mp3,jazz,,validation,a2,12\n"
        "audio/z.mp3,pop,happy;calm,TEST,,\n"
        "audio/missing.mp3,rock,calm,train,a3,10\n")
    out = tmp_path / "out"
    assert main(["manifest", "--table", str(folder / "tracks.csv"), "--path-column", "file",
                 "--tag-column", "genre=Genres", "--tag-column", "mood", "--split-column", "set",
                 "--artist-column", "artist", "--duration-column", "seconds", "--out", str(out)]) == 0
    assert "tracks: 3 (train 1, val 1, test 1)" in capsys.readouterr().out
    frame, targets = read_back(out)
    assert frame["track_id"].tolist() == ["audio/x.mp3", "audio/sub/y.mp3", "audio/z.mp3"]
    assert frame["split"].tolist() == ["train", "val", "test"]
    assert frame["artist_id"].iloc[:2].tolist() == ["a1", "a2"] and pd.isna(frame["artist_id"].iloc[2])
    assert frame["duration"].iloc[:2].tolist() == [31.5, 12.0] and math.isnan(frame["duration"].iloc[2])
    assert tags_of(frame, "genre") == {"audio/x.mp3": ["rock", "pop"], "audio/sub/y.mp3": ["jazz"],
                                       "audio/z.mp3": ["pop"]}
    # An empty cell is "not annotated": masked (NaN), not negative.
    assert np.isnan(targets["mood"][1]).all()
    np.testing.assert_array_equal(targets["mood"][[0, 2]], [[1, 0], [1, 1]])


def test_manifest_parquet_with_list_cells_and_drawn_splits(tmp_path):
    for name in ("a", "b", "c", "d"):
        touch(tmp_path / "clips" / f"{name}.wav")
    pd.DataFrame({"id": ["A", "B", "C", "D"], "path": [f"{n}.wav" for n in "abcd"],
                  "tags": [["x", "y"], [], ["y"], None]}).to_parquet(tmp_path / "table.parquet")
    catalog = build_manifest(tmp_path / "table.parquet", "path", ["tags"], id_column="id",
                             audio_root=tmp_path / "clips", val_fraction=0.25, test_fraction=0.25, seed=1)
    assert catalog.frame["tags"].tolist() == [["x", "y"], [], ["y"], None]
    assert sorted(catalog.frame["split"]) == ["test", "train", "train", "val"]


def test_manifest_errors_name_the_row_or_option(tmp_path):
    (tmp_path / "t.tsv").write_text("path\ttags\nx.mp3\trock\ny.mp3\tpop\n")
    with pytest.raises(ValueError, match=r"t\.tsv: no column 'split' \(--split-column\)"):
        build_manifest(tmp_path / "t.tsv", "path", ["tags"], split_column="split")
    (tmp_path / "t.tsv").write_text("path\ttags\tsplit\nx.mp3\trock\ttrain\ny.mp3\tpop\tholdout\n")
    with pytest.raises(ValueError, match=r"t\.tsv: row 2: split 'holdout' is not one of"):
        build_manifest(tmp_path / "t.tsv", "path", ["tags"], split_column="split")
    (tmp_path / "t.tsv").write_text("path\ttags\nx.mp3\trock\nx.mp3\tpop\n")
    with pytest.raises(ValueError, match=r"t\.tsv: row 2: track 'x\.mp3' is already on row 1"):
        build_manifest(tmp_path / "t.tsv", "path", ["tags"])


# --- the published configs -------------------------------------------------------------------------------

def write_wav(path: Path, seconds: float = 2.0, rate: int = 8000, pitch: float = 440.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * pitch * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())


@pytest.mark.slow
@pytest.mark.parametrize("config", ["configs/mtg_jamendo_top50.yaml", "configs/mtat_top50.yaml"])
def test_published_configs_run_a_fast_dev_run_on_an_adapted_catalog(config, tmp_path, monkeypatch):
    from train import cli_main

    config = str(Path(__file__).resolve().parents[2] / config)
    # The configs' relative runs/ folders (checkpoints, logs) land in the test's folder, not the repository.
    monkeypatch.chdir(tmp_path)

    root = tmp_path / "by-tag"
    for i, tag in enumerate(["rock", "rock", "pop", "pop", "jazz", "jazz"]):
        write_wav(root / tag / f"{i}.wav", pitch=220.0 * (1 + i))
    out = tmp_path / "catalog"
    assert main(["folders", "--root", str(root), "--val-fraction", "0.2", "--test-fraction", "0.2",
                 "--out", str(out)]) == 0
    network = "--model.init_args.model.init_args"
    cli_main(["fit", "--config", config, f"--data.init_args.manifest={out / 'manifest.parquet'}",
              f"{network}.backbone=tiny", f"{network}.width=4", f"{network}.embedding_dim=8",
              "--data.init_args.num_workers=0", "--data.init_args.batch_size=2",
              "--data.init_args.eval_batch_size=2", "--trainer.fast_dev_run=true", "--trainer.precision=32-true",
              "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}",
              f"--model.init_args.export_dir={tmp_path / 'model'}", f"--model.init_args.tables_dir={tmp_path}"])
    package = json.loads((tmp_path / "model" / "config.json").read_text())
    assert {k: package[k] for k in ("sample_rate", "n_fft", "hop_length", "n_mels", "chunk_seconds", "eval_chunks")} \
        == {"sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 128, "chunk_seconds": 3.69,
            "eval_chunks": 16}


# --- the real published split files, when present locally (never committed) ------------------------------

@pytest.mark.slow
@pytest.mark.skipif(REAL_SPLITS is None or not (REAL_SPLITS / "jamendo" / "data" / "splits" / "split-0").is_dir(),
                    reason="the MTG-Jamendo split files are not present locally")
def test_real_mtg_jamendo_top50_split0(tmp_path):
    root = REAL_SPLITS / "jamendo"
    audio = tmp_path / "audio"
    touch(audio / "41" / "241.mp3")
    catalog = build_mtg_jamendo(root, audio, subset="top50tags", split=0)
    assert len(catalog.frame) + len(catalog.missing) == 32136 + 10888 + 11356
    assert {name: len(spec["labels"]) for name, spec in catalog.vocab["groups"].items()} == {
        "genre": 31, "instrument": 14, "mood_theme": 5}
    assert catalog.frame["track_id"].tolist() == ["track_0000241"]


@pytest.mark.slow
@pytest.mark.skipif(REAL_SPLITS is None or not (REAL_SPLITS / "mtat" / "valid.npy").is_file(),
                    reason="the Won et al. MTAT split files are not present locally")
def test_real_won2020_lists_are_read_as_index_and_path(tmp_path):
    from tagging.datasets.magnatagatune import read_split_list

    valid = read_split_list(REAL_SPLITS / "mtat" / "valid.npy")
    assert len(valid) == 1529 and all(p.startswith("c/") and p.endswith(".mp3") for p in valid)
    test = read_split_list(REAL_SPLITS / "mtat" / "test.npy")
    assert len(test) == 4332 and {p[0] for p in test} == {"d", "e", "f"}
