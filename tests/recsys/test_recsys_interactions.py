"""Reading plays: counts and listening events, bad rows named by file and line, skip mode reports."""

import gzip

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from recsys import MUSIC4ALL, Interactions, Recommender, load_interactions


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
        ("u2,b,lots", "count must be a finite number, got 'lots'"),
        ("u2,b,inf", "count must be a finite number, got 'inf'"),
        ("u2,b,nan", "count must be a finite number, got 'nan'"),
        ("u2,b,1e39", "count '1e39' is too large (float32 holds up to 3.4e+38)"),
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


def test_duplicates_are_summed_and_counted_or_raise_when_asked(tmp_path):
    path = _write(tmp_path / "plays.csv", "user,item,count\nu1,a,1\nu2,a,2\nu1,a,3\nu1,a,1\n")
    plays = load_interactions(path)
    assert plays.report.duplicates_summed == 2  # lines 4 and 5 went into line 2
    assert plays.user_items.toarray().tolist() == [[5.0], [2.0]]
    with pytest.raises(ValueError, match=rf"^{path}:4: duplicate of line 2 for \['u1', 'a'\]"):
        load_interactions(path, duplicates="error")


def test_skip_mode_drops_bad_rows_and_reports_them(tmp_path):
    path = _write(tmp_path / "plays.csv", "user,item,count\nu1,a,1\nu1,b,x\nu2,a,-1\nu2,b,4\n,a,2\n")
    with pytest.warns(UserWarning, match="skipped 3 bad rows of 5"):
        plays = load_interactions(path, on_bad_rows="skip")
    assert plays.report.skipped == 3
    assert plays.report.examples == (
        f"{path}:3: count must be a finite number, got 'x'",
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


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be"])
def test_a_byte_order_mark_decides_the_encoding(tmp_path, encoding):
    path = tmp_path / "plays.csv"
    text = "user,item,count\nzoë,ça,2\n"
    data = text.encode(encoding)
    # Python's "utf-16" writes a little-endian BOM; give the big-endian case its BOM by hand.
    path.write_bytes(b"\xfe\xff" + data if encoding == "utf-16-be" else data)
    plays = load_interactions(path)
    assert plays.user_ids.tolist() == ["zoë"]
    assert plays.item_ids.tolist() == ["ça"]


def test_latin1_is_read_when_told_and_otherwise_located(tmp_path):
    path = tmp_path / "plays.csv"
    path.write_bytes("user,item,count\nu1,a,1\nu2,café,2\n".encode("latin-1"))
    # "u1,a,1\n" ends at byte 23, so "café" starts at byte 26 and its é (0xe9) is byte 29.
    with pytest.raises(ValueError) as error:
        load_interactions(path)
    assert str(error.value).startswith(f"{path}:3: not utf-8 text (byte 29 is b'\\xe9'); ")
    assert "encoding='latin-1'" in str(error.value)
    assert load_interactions(path, encoding="latin-1").item_ids.tolist() == ["a", "café"]


def test_a_decoding_error_far_into_the_file_names_its_line(tmp_path):
    path = tmp_path / "plays.csv"
    rows = "".join(f"u{k},a,1\n" for k in range(20_000))  # well past the 64 KiB probed first
    path.write_bytes(("user,item,count\n" + rows).encode() + b"u,\xff,1\n")
    with pytest.raises(ValueError, match=rf"^{path}:20002: not utf-8 text \(byte {len(rows) + 18} is b'\\xff'\)"):
        load_interactions(path)


def test_binary_and_broken_archives_are_named(tmp_path):
    binary = tmp_path / "plays.csv"
    pq.write_table(pa.table({"user": ["u"], "item": ["a"], "count": [1]}), binary)  # Parquet, misnamed
    with pytest.raises(ValueError, match=rf"^{binary}: not a text table \(NUL byte at byte \d+\)"):
        load_interactions(binary)
    archive = tmp_path / "plays.csv.gz"
    archive.write_text("user,item,count\nu,a,1\n")  # not gzipped despite its name
    with pytest.raises(ValueError, match=rf"^{archive}: not a readable .gz file"):
        load_interactions(archive)
    truncated = tmp_path / "cut.csv.gz"
    truncated.write_bytes(gzip.compress(b"user,item,count\n" + b"u,a,1\n" * 50_000)[:-100])
    with pytest.raises(ValueError, match=rf"^{truncated}: not a readable .gz file"):
        load_interactions(truncated)


def test_a_row_with_too_many_fields_raises_with_its_line(tmp_path):
    path = _write(tmp_path / "plays.csv", "user,item,count\nu1,a,1\nu1,b,2,9\n")
    with pytest.raises(ValueError, match=rf"^{path}:3: 4 fields, the header has 3$"):
        load_interactions(path)


def test_lines_are_counted_across_a_quoted_line_break(tmp_path):
    # The quoted item spans lines 2-3, so the bad row is line 4 (the 3rd record, pandas' "line 3").
    text = 'user,item,count\nu1,"two\nlines",1\nu2,b,-1\nu3,c,1,9\n'
    path = _write(tmp_path / "plays.csv", text)
    with pytest.raises(ValueError, match=rf"^{path}:5: 4 fields, the header has 3$"):
        load_interactions(path)
    _write(path, text.replace(",1,9", ",1"))
    with pytest.raises(ValueError, match=rf"^{path}:4: count must be > 0, got '-1'$"):
        load_interactions(path)
    _write(path, text.replace(",-1", ",1").replace(",1,9", ",1"))
    assert load_interactions(path).item_ids.tolist() == ["b", "c", "two\nlines"]


def test_a_file_without_rows_raises(tmp_path):
    path = _write(tmp_path / "plays.csv", "user,item,count\n")
    with pytest.raises(ValueError, match=rf"^{path}: no rows, only a header$"):
        load_interactions(path)
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'empty.csv'}: empty file"):
        load_interactions(_write(tmp_path / "empty.csv", ""))
    every_row_bad = _write(tmp_path / "bad.csv", "user,item,count\nu,a,x\n")
    with pytest.raises(ValueError, match=rf"^{every_row_bad}: all 1 rows are bad, first: {every_row_bad}:2: "):
        load_interactions(every_row_bad, on_bad_rows="skip")


def test_counts_that_add_up_past_float32_raise(tmp_path):
    path = _write(tmp_path / "plays.csv", "user,item,count\nu,a,3e38\nu,a,3e38\n")
    with pytest.raises(ValueError, match="counts of user 'u' on item 'a' add up to more than float32 holds"):
        load_interactions(path)


def test_a_long_id_does_not_widen_the_others_and_still_saves_without_pickle(tmp_path):
    long_id = "x" * 10_000
    rows = "".join(f"u{k},a,1\n" for k in range(1000)) + f"{long_id},b,1\n"
    plays = load_interactions(_write(tmp_path / "plays.csv", "user,item,count\n" + rows))
    assert plays.user_ids.dtype == object
    assert plays.user_ids.nbytes == 8 * 1001  # pointers: a fixed-width array would take 40 MB
    model = Recommender(np.ones((1001, 2), np.float32), np.ones((2, 2), np.float32), plays.user_ids, plays.item_ids)
    model.add_items(["new"], np.ones((1, 2), np.float32))  # text ids join object ids
    model.save(tmp_path / "factors.npz")
    loaded = Recommender.load(tmp_path / "factors.npz")  # allow_pickle=False
    assert loaded.user_ids[-1] == long_id
    assert loaded.item_ids.tolist() == ["a", "b", "new"]
