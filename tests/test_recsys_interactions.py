"""Reading plays: counts and listening events, bad rows named by file and line, skip mode reports."""

import gzip

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import MUSIC4ALL, Interactions, load_interactions


def _write(path, text):
    path.write_text(text)
    return path


def test_counts_are_summed_and_ids_kept_both_ways(tmp_path):
    path = _write(tmp_path / "plays.csv", "user,item,count\n007,b,2\n007,a,1\n010,b,3\n007,b,4\n")
    plays = load_interactions(path)
    assert plays.user_ids.tolist() == ["007", "010"]  # text ids keep their leading zeros
    assert plays.item_ids.tolist() == ["a", "b"]
    np.testing.assert_array_equal(plays.user_items.toarray(), [[1, 6], [0, 3]])
    assert plays.report.duplicates_summed == 1
    assert plays.user_index("010") == 1
    assert plays.item_index(["b", "a"]).tolist() == [1, 0]
    with pytest.raises(KeyError, match="zzz"):
        plays.item_index("zzz")


def test_music4all_events_are_counted_into_plays_with_a_sniffed_tab(tmp_path):
    # Music4All's listening_history.csv: tab separated despite its name, one row per listening event.
    events = (
        "user\tsong\ttimestamp\n"
        "u1\tsA\t2019-02-20 10:00\n"
        "u1\tsB\t2019-02-20 10:04\n"
        "u1\tsA\t2019-02-21 09:00\n"
        "u2\tsA\t2019-02-21 09:30\n"
        "u1\tsA\t2019-03-01 18:00\n"
    )
    plays = load_interactions(_write(tmp_path / "listening_history.csv", events), **MUSIC4ALL)
    assert plays.user_ids.tolist() == ["u1", "u2"]
    assert plays.item_ids.tolist() == ["sA", "sB"]
    np.testing.assert_array_equal(plays.user_items.toarray(), [[3, 1], [1, 0]])


def test_compressed_semicolon_file(tmp_path):
    path = tmp_path / "plays.csv.gz"
    with gzip.open(path, "wt") as out:
        out.write("listener;track;n\nx;t1;5\n")
    plays = load_interactions(path, "listener", "track", "n")
    assert plays.user_items.toarray().tolist() == [[5.0]]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("u2,b,-3", "count must be > 0, got '-3'"),
        ("u2,b,0", "count must be > 0, got '0'"),
        ("u2,b,lots", "count must be a number, got 'lots'"),
        ("u2,b,", "missing 'count'"),
        (",b,1", "missing 'user'"),
        ("u2, ,1", "missing 'item'"),
    ],
)
def test_a_bad_row_raises_with_file_and_line(tmp_path, line, reason):
    path = _write(tmp_path / "plays.csv", f"user,item,count\nu1,a,1\nu1,b,2\n{line}\nu3,a,1\n")
    with pytest.raises(ValueError) as error:
        load_interactions(path)
    assert str(error.value) == f"{path}:4: {reason}"


def test_duplicates_reported_when_asked(tmp_path):
    path = _write(tmp_path / "plays.csv", "user,item,count\nu1,a,1\nu2,a,2\nu1,a,3\n")
    with pytest.raises(ValueError, match=rf"^{path}:4: duplicate of line 2 for \['u1', 'a'\]"):
        load_interactions(path, duplicates="error")


def test_skip_mode_drops_bad_rows_and_reports_them(tmp_path):
    path = _write(tmp_path / "plays.csv", "user,item,count\nu1,a,1\nu1,b,x\nu2,a,-1\nu2,b,4\n,a,2\n")
    with pytest.warns(UserWarning, match="skipped 3 bad rows of 5"):
        plays = load_interactions(path, on_bad_rows="skip")
    assert plays.report.skipped == 3
    assert plays.report.examples == (
        f"{path}:3: count must be a number, got 'x'",
        f"{path}:4: count must be > 0, got '-1'",
        f"{path}:6: missing 'user'",
    )
    np.testing.assert_array_equal(plays.user_items.toarray(), [[1, 0], [0, 4]])


def test_raise_mode_says_how_many_more(tmp_path):
    path = _write(tmp_path / "plays.csv", "user,item,count\nu1,a,x\nu1,b,y\n")
    with pytest.raises(ValueError, match=r":2: .*\(1 more bad rows; on_bad_rows='skip' drops them\)"):
        load_interactions(path)


def test_missing_column_names_the_header(tmp_path):
    path = _write(tmp_path / "plays.tsv", "user\titem\tplays\nu1\ta\t1\n")
    with pytest.raises(ValueError, match=r"no column 'count'; the header has \['user', 'item', 'plays'\]"):
        load_interactions(path)


def test_parquet_rows_and_a_fixed_item_list(tmp_path):
    path = tmp_path / "plays.parquet"
    pd.DataFrame({"user_id": [1, 1, 2], "track_id": ["t2", "t9", "t2"], "plays": [1, 2, 3]}).to_parquet(path)
    with pytest.raises(ValueError, match=rf"^{path}: row 2: track_id 't9' is not in the item list"):
        load_interactions(path, "user_id", "track_id", "plays", item_ids=["t1", "t2"])
    with pytest.warns(UserWarning, match="skipped 1"):
        plays = load_interactions(path, "user_id", "track_id", "plays", item_ids=["t1", "t2"], on_bad_rows="skip")
    assert plays.item_ids.tolist() == ["t1", "t2"]  # the given order, unplayed t1 included
    assert plays.user_ids.tolist() == [1, 2]  # Parquet ids keep their type
    np.testing.assert_array_equal(plays.user_items.toarray(), [[0, 1], [0, 3]])


def test_interactions_check_their_shape():
    with pytest.raises(ValueError, match="shape"):
        Interactions(np.array(["u"]), np.array(["a", "b"]), sp.csr_matrix((1, 3)))
