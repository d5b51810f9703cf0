"""``python -m recsys coldstart`` on play files with any column names, each way of choosing cold items,
with and without artists, the ``--catalog`` shorthand, and one-line errors with exit status 2."""

import pytest

from recsys import ColdStartSplit
from recsys.cli import main

FAST = ["--factors", "4", "--iterations", "3"]


def _plays(tmp_path, n_users=20, n_items=10):
    """``listener,song,count``: user u plays songs u..u+4 (mod n_items), so every song has five listeners."""
    rows = [f"l{u:02d},s{(u + k) % n_items},{k + 1}" for u in range(n_users) for k in range(5)]
    path = tmp_path / "plays.csv"
    path.write_text("listener,song,count\n" + "\n".join(rows) + "\n")
    return path


def _coldstart(plays, out, *extra):
    return main(["coldstart", "--plays", str(plays), "--user-col", "listener", "--item-col", "song",
                 "--out", str(out), *FAST, *extra])


def _labels(out):
    split = ColdStartSplit.load(out / "coldstart.npz")
    return dict(zip(split.item_ids.tolist(), split.item_split.tolist(), strict=True))


def test_cold_fraction_on_a_csv_without_artists(tmp_path, capsys):
    plays = _plays(tmp_path)
    assert _coldstart(plays, tmp_path / "a", "--cold-fraction", "0.25", "--seed", "0") == 0
    assert {p.name for p in (tmp_path / "a").iterdir()} == {"coldstart.npz", "baselines.csv", "baselines.md"}
    markdown = (tmp_path / "a" / "baselines.md").read_text()
    assert "| popularity (held-out plays) |" in markdown
    assert "| popularity |" not in markdown and "artist" not in markdown  # no artists, no artist prior
    labels = _labels(tmp_path / "a")
    # 0.25 × 10 items = 2.5, rounded half up to 3 cold items: 2 cold_test (the larger half), 1 cold_val.
    assert sorted(labels.values()) == ["cold_test"] * 2 + ["cold_val"] + ["warm"] * 7
    assert "0 repeated (user, item) rows summed" in capsys.readouterr().out
    assert _coldstart(plays, tmp_path / "b", "--cold-fraction", "0.25", "--seed", "0") == 0
    assert _labels(tmp_path / "b") == labels
    assert _coldstart(plays, tmp_path / "c", "--cold-fraction", "0.25", "--seed", "1") == 0
    assert _labels(tmp_path / "c") != labels


def test_cold_items_from_a_list_on_music4all_events(tmp_path):
    events = ["user\tsong\ttimestamp"] + [f"u{u}\ts{(u + k) % 8}\t{k}" for u in range(16) for k in range(4)]
    (tmp_path / "history.tsv").write_text("\n".join(events) + "\n")
    (tmp_path / "cold.txt").write_text("s3\ns7\n\ns1\n")
    assert main(["coldstart", "--plays", str(tmp_path / "history.tsv"), "--layout", "music4all",
                 "--cold-items", str(tmp_path / "cold.txt"), "--out", str(tmp_path / "out"), *FAST]) == 0
    labels = _labels(tmp_path / "out")
    assert {item for item, label in labels.items() if label != "warm"} == {"s1", "s3", "s7"}
    assert sorted(labels.values()).count("cold_test") == 2


@pytest.mark.parametrize(("artists", "popularity_row"), [(["", "", ""], False), (["a", "", "b"], True)])
def test_manifest_split_with_or_without_known_artists(tmp_path, artists, popularity_row):
    split = ["warm"] * 7 + ["cold_val", "cold_test", "cold_test"]
    rows = [f"s{i},{s},{artists[i % 3]}" for i, s in enumerate(split)]
    (tmp_path / "items.csv").write_text("song,split,artist\n" + "\n".join(rows) + "\n")
    assert _coldstart(_plays(tmp_path), tmp_path / "out", "--manifest", str(tmp_path / "items.csv"),
                      "--split-col", "split", "--artist-col", "artist") == 0
    assert _labels(tmp_path / "out") == {f"s{i}": s for i, s in enumerate(split)}
    assert ("| popularity |" in (tmp_path / "out" / "baselines.md").read_text()) == popularity_row


def test_catalog_is_shorthand_for_the_long_flags(tiny_catalog, tmp_path):
    assert main(["coldstart", "--catalog", str(tiny_catalog), "--out", str(tmp_path / "short"), *FAST]) == 0
    assert main(["coldstart", "--plays", str(tiny_catalog / "plays.parquet"), "--user-col", "user_id",
                 "--item-col", "track_id", "--count-col", "plays", "--manifest", str(tiny_catalog / "manifest.parquet"),
                 "--split-col", "item_split", "--artist-col", "artist_id", "--out", str(tmp_path / "long"), *FAST]) == 0
    short = (tmp_path / "short" / "baselines.md").read_bytes()
    assert short == (tmp_path / "long" / "baselines.md").read_bytes()
    assert b"| popularity |" in short  # the toy catalog knows its artists


def _error(capsys, args):
    """Run ``main(args)``, expecting exit status 2; the last line of stderr."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    return stderr.splitlines()[-1]


def test_bad_arguments_and_files_end_with_one_line_and_status_2(tmp_path, capsys):
    plays = _plays(tmp_path)
    out = ["--out", str(tmp_path / "out")]
    missing = tmp_path / "nope.csv"
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit):
        main(["coldstart", "--plays", str(missing), "--cold-fraction", "0.2", *out])
    # Errors found while running are one line, without argparse's usage.
    assert capsys.readouterr().err == f"python -m recsys coldstart: error: --plays {missing}: no such file\n"

    line = _error(capsys, ["coldstart", "--plays", str(plays), "--user-col", "nobody", "--cold-fraction", "0.2", *out])
    assert line.endswith(f"{plays}: no column 'nobody'; the header has ['listener', 'song', 'count']")

    line = _error(capsys, ["coldstart", "--plays", str(plays), "--cold-fraction", "1.5", *out])
    assert line.endswith("argument --cold-fraction: must be between 0 and 1, both excluded; got 1.5")

    (tmp_path / "cold.txt").write_text("s1\nzzz\n")
    line = _error(capsys, ["coldstart", "--plays", str(plays), "--user-col", "listener", "--item-col", "song",
                           "--cold-items", str(tmp_path / "cold.txt"), *out])
    assert line.endswith(f"{tmp_path / 'cold.txt'}:2: item 'zzz' is not among the 10 items of the plays")

    line = _error(capsys, ["coldstart", "--plays", str(plays), "--split-col", "split", *out])
    assert line.endswith("--split-col needs --manifest")

    line = _error(capsys, ["coldstart", "--plays", str(plays), *out])
    assert "one of --cold-items, --cold-fraction, --split-col" in line

    line = _error(capsys, ["coldstart", "--catalog", str(tmp_path), "--cold-fraction", "0.2", *out])
    assert line.endswith("--catalog sets its own columns and split; drop --cold-fraction")

    (tmp_path / "items.csv").write_text("song,split\ns1,warm\ns2,hot\n")
    line = _error(capsys, ["coldstart", "--plays", str(plays), "--item-col", "song", "--manifest",
                           str(tmp_path / "items.csv"), "--split-col", "split", *out])
    assert line.endswith(f"{tmp_path / 'items.csv'}:3: split must be one of ('warm', 'cold_val', 'cold_test'), "
                         "got 'hot'")
    assert not (tmp_path / "out").exists()  # nothing written by a run that failed
