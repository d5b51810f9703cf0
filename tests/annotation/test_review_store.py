"""The corrections database: every committed correction kept, whatever writes at once or dies mid-write;
bad corrections refused with their value named and nothing stored; undo keeps the history."""

import multiprocessing
import os
import signal
import sqlite3
import threading
import time

import pytest

from annotation.review.store import Store
from tagging.labels import LabelSpace

VOCAB = {"groups": {"genre": {"type": "multilabel", "labels": ["rock", "jazz", "folk"]},
                    "graded": {"type": "regression", "labels": ["tempo"], "ranges": [[40, 220]]}}}
TRACKS = [f"t{i:02d}.wav" for i in range(20)]


def _store(path) -> Store:
    return Store(path, TRACKS, LabelSpace.from_dict(VOCAB))


def _write_many(path, who: str, count: int) -> None:
    store = _store(path)
    for i in range(count):
        store.add(TRACKS[i % len(TRACKS)], "genre", "rock", "confirm" if i % 2 else "remove", who)


def test_corrections_are_stored_with_who_and_when_and_the_latest_one_counts(tmp_path):
    store = _store(tmp_path / "review.sqlite")
    store.add("t00.wav", "genre", "rock", "remove", "ana", machine=0.61, model="abc")
    store.add("t00.wav", "genre", "jazz", "add", "ana", machine=0.2)
    store.add("t00.wav", "genre", "rock", "confirm", "ben")
    store.add("t01.wav", "graded", "tempo", "set", "ben", value=128.5)
    state = store.effective()
    assert {key: row.action for key, row in state.items()} == {
        ("t00.wav", "genre", "rock"): "confirm", ("t00.wav", "genre", "jazz"): "add",
        ("t01.wav", "graded", "tempo"): "set"}
    assert state[("t01.wav", "graded", "tempo")].value == 128.5
    first = store.history("t00.wav")[0]
    assert (first.who, first.machine, first.model) == ("ana", 0.61, "abc") and first.at.startswith("20")
    assert store.counts_per_tag()["genre"]["rock"] == {"confirm": 1, "add": 0, "remove": 0}
    assert store.counts_per_tag()["graded"]["tempo"] == {"confirm": 0, "set": 1}
    assert store.reviewed_tracks() == {"t00.wav", "t01.wav"}


@pytest.mark.parametrize(("args", "message"), [
    (("nope.wav", "genre", "rock", "add"), "unknown track id 'nope.wav'"),
    (("t00.wav", "genre", "polka", "add"), "tag 'polka' is not in the vocabulary's 'genre' group"),
    (("t00.wav", "mood", "happy", "add"), "unknown label group 'mood'"),
    (("t00.wav", "graded", "tempo", "set", 300), "graded value 300 for graded/tempo is outside its range [40, 220]"),
    (("t00.wav", "graded", "tempo", "set", "fast"), "graded value 'fast' for graded/tempo is not a number"),
    (("t00.wav", "graded", "tempo", "set", float("nan")), "graded value nan"),
    (("t00.wav", "graded", "tempo", "add"), "graded label: set its value or confirm it"),
    (("t00.wav", "genre", "rock", "set", 1.0), "only graded labels are set"),
    (("t00.wav", "genre", "rock", "delete"), "unknown action 'delete'"),
])
def test_a_bad_correction_is_refused_naming_its_value_and_nothing_is_stored(tmp_path, args, message):
    store = _store(tmp_path / "review.sqlite")
    track, group, tag, action, *value = args
    with pytest.raises(ValueError, match=None) as error:
        store.add(track, group, tag, action, "ana", value=value[0] if value else None)
    assert message in str(error.value)
    assert store.count() == 0
    with pytest.raises(ValueError, match="reviewer's name"):
        store.add("t00.wav", "genre", "rock", "add", "  ")
    assert store.count() == 0


def test_undo_retracts_the_reviewers_latest_correction_and_keeps_the_history(tmp_path):
    store = _store(tmp_path / "review.sqlite")
    store.add("t00.wav", "genre", "rock", "remove", "ana")
    store.add("t00.wav", "genre", "rock", "confirm", "ana")
    store.add("t01.wav", "genre", "jazz", "add", "ben")
    undone = store.undo("ana")
    assert (undone.action, undone.track_id, undone.tag) == ("undo", "t00.wav", "rock")
    # The earlier remove is in force again; ben's correction is not touched.
    state = store.effective()
    assert state[("t00.wav", "genre", "rock")].action == "remove"
    assert state[("t01.wav", "genre", "jazz")].action == "add"
    assert store.undo("ana").undoes == 1
    assert ("t00.wav", "genre", "rock") not in store.effective()
    assert store.undo("ana") is None  # nothing of ana's left in force
    assert [row.action for row in store.history()] == ["remove", "confirm", "add", "undo", "undo"]


def test_two_tabs_undoing_at_once_retract_two_different_corrections(tmp_path):
    store = _store(tmp_path / "review.sqlite")
    for track in TRACKS[:10]:
        store.add(track, "genre", "folk", "add", "ana")
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.undo("ana").undoes)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [5, 6, 7, 8, 9, 10]
    assert len(store.effective()) == 4


def test_concurrent_writers_in_threads_and_processes_all_land(tmp_path):
    path = tmp_path / "review.sqlite"
    _store(path)
    threads = [threading.Thread(target=_write_many, args=(path, f"tab{i}", 60)) for i in range(3)]
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_write_many, args=(path, f"server{i}", 60)) for i in range(2)]
    # Processes first: a process forked while this one's threads hold SQLite locks would inherit their state.
    for worker in [*processes, *threads]:
        worker.start()
    for worker in [*threads, *processes]:
        worker.join()
    assert all(process.exitcode == 0 for process in processes)
    with sqlite3.connect(path) as connection:
        counts = dict(connection.execute("SELECT who, COUNT(*) FROM corrections GROUP BY who").fetchall())
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert counts == {"tab0": 60, "tab1": 60, "tab2": 60, "server0": 60, "server1": 60}


def _write_and_log(path, log_path) -> None:
    store = _store(path)
    with open(log_path, "a") as log:
        for i in range(100_000):
            row = store.add(TRACKS[i % len(TRACKS)], "graded", "tempo", "set", "killed", value=40 + i % 180)
            log.write(f"{row.seq} {row.value}\n")
            log.flush()


def test_a_writer_killed_mid_loop_leaves_every_committed_row_and_no_half_one(tmp_path):
    path, log_path = tmp_path / "review.sqlite", tmp_path / "committed.txt"
    _store(path)
    process = multiprocessing.get_context("fork").Process(target=_write_and_log, args=(path, log_path))
    process.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not log_path.exists() or log_path.read_text().count("\n") < 200):
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    assert process.exitcode == -signal.SIGKILL
    logged = [line.split() for line in log_path.read_text().splitlines() if line.endswith(".0")]
    assert len(logged) >= 200
    store = _store(path)  # opens (and recovers) the file as the next server would
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = {row.seq: row for row in store.history()}
    for seq, value in logged:
        assert rows[int(seq)].value == float(value)
    # At most the row whose commit the kill cut off before it was logged; every row is whole.
    assert len(logged) <= len(rows) <= len(logged) + 1
    assert all(row.track_id in TRACKS and row.action == "set" and 40 <= row.value <= 220 and row.at
               for row in rows.values())


def test_the_kept_state_follows_rows_another_writer_adds_and_undoes(tmp_path):
    path, key = tmp_path / "review.sqlite", ("t00.wav", "genre", "rock")
    mine, other = _store(path), _store(path)
    mine.add("t00.wav", "genre", "rock", "remove", "ana")
    assert mine.effective()[key].action == "remove"
    other.add("t00.wav", "genre", "rock", "confirm", "ben")
    other.add("t01.wav", "genre", "jazz", "add", "ben")
    assert mine.effective()[key].action == "confirm"
    other.undo("ben", "t00.wav")
    assert mine.effective()[key].action == "remove"  # ana's correction is in force again
    mine.undo("ana")
    assert key not in mine.effective() and mine.effective() == _store(path).effective()
    assert set(mine.effective()) == {("t01.wav", "genre", "jazz")}
