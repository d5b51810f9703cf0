"""Reviewers' corrections of machine tags, in one SQLite file beside the annotate run.

Every correction is a row that is never changed or deleted: who said what about which tag of which track,
and when. The machine records are only read. A correction is one of

- ``confirm``: the machine's decision on this tag (or graded value) is right, whichever it was;
- ``add``: the tag applies, though the machine did not decide it;
- ``remove``: the tag does not apply, though the machine decided it;
- ``set``: a graded (regression) label's right value, in the vocabulary's units;
- ``undo``: retracts the row named in ``undoes``, a reviewer's latest correction still in force.

The state of a tag is given by its latest correction that no undo retracts (`Store.effective`).

Two browser tabs, or two servers, may write at once: the file is in WAL mode with a busy timeout, and each
write is one ``BEGIN IMMEDIATE`` transaction, so a writer waits for the other instead of failing, and a
process killed in the middle of one leaves every committed row and no part of the one it was writing.
Everything is checked before anything is stored: an unknown track, a tag not in the vocabulary or a graded
value outside its range is a `ValueError` naming it, and nothing is written.
"""

from __future__ import annotations

import datetime
import math
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from tagging.labels import MULTILABEL, REGRESSION, LabelSpace

DB_FILE = "review.sqlite"
ACTIONS = ("confirm", "add", "remove", "set")
UNDO = "undo"
BUSY_TIMEOUT_MS = 30_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS corrections (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    track_id TEXT NOT NULL,
    grp TEXT NOT NULL,
    tag TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('confirm', 'add', 'remove', 'set', 'undo')),
    value REAL,
    machine REAL,
    model TEXT,
    who TEXT NOT NULL,
    at TEXT NOT NULL,
    undoes INTEGER REFERENCES corrections (seq)
);
CREATE INDEX IF NOT EXISTS corrections_track ON corrections (track_id);
CREATE UNIQUE INDEX IF NOT EXISTS corrections_undone ON corrections (undoes) WHERE undoes IS NOT NULL;
"""


class Correction(NamedTuple):
    """One row of the corrections table. ``machine``: the model's probability (multilabel) or value in
    units (regression) for this tag when the correction was made; ``model``: the package hash that made it."""

    seq: int
    track_id: str
    group: str
    tag: str
    action: str
    value: float | None
    machine: float | None
    model: str | None
    who: str
    at: str
    undoes: int | None = None


class Store:
    """The corrections of one run. ``tracks``: the ids of the run's records (a correction of any other id
    is refused); ``labels``: the model's vocabulary (tags and graded ranges are checked against it)."""

    def __init__(self, path: str | Path, tracks: Iterable[str], labels: LabelSpace):
        self.path = Path(path)
        self.tracks = frozenset(tracks)
        self.labels = labels
        self._cached: tuple[int, dict] | None = None
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One connection per call: the server answers from a pool of threads, and SQLite connections are
        # cheap; autocommit mode so that each write is exactly the transaction it opens.
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # NORMAL in WAL mode loses no committed transaction when the process dies, only on power loss.
            connection.execute("PRAGMA synchronous=NORMAL")
            yield connection
        finally:
            connection.close()

    # ------------------------------------------------------------------------------------------ writing

    def check(self, track_id: str, group: str, tag: str, action: str, value: float | None = None) -> float | None:
        """The value to store for a correction, or a `ValueError` naming what is wrong with it."""
        if track_id not in self.tracks:
            raise ValueError(f"unknown track id {track_id!r}: the run has no record of it")
        if group not in self.labels.groups:
            raise ValueError(f"unknown label group {group!r}; the vocabulary has {sorted(self.labels.groups)}")
        spec = self.labels.groups[group]
        if tag not in spec.labels:
            raise ValueError(f"tag {tag!r} is not in the vocabulary's {group!r} group ({', '.join(spec.labels)})")
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
        if spec.type == MULTILABEL:
            if action == "set":
                raise ValueError(f"{group!r} is a tag group: confirm, add or remove {tag!r}; only graded labels "
                                 "are set")
            if value is not None:
                raise ValueError(f"{action} {group}/{tag} takes no value, got {value!r}")
            return None
        if action in ("add", "remove"):
            raise ValueError(f"{group}/{tag} is a graded label: set its value or confirm it, not {action}")
        if action == "confirm":
            if value is not None:
                raise ValueError(f"confirm {group}/{tag} takes no value (set one instead), got {value!r}")
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"graded value {value!r} for {group}/{tag} is not a number") from None
        low, high = spec.ranges[spec.labels.index(tag)]
        if not math.isfinite(number) or not low <= number <= high:
            raise ValueError(f"graded value {value!r} for {group}/{tag} is outside its range [{low:g}, {high:g}]")
        return number

    def add(self, track_id: str, group: str, tag: str, action: str, who: str, value: float | None = None,
            machine: float | None = None, model: str | None = None) -> Correction:
        """Store one correction (after `check`); returns it as stored."""
        value = self.check(track_id, group, tag, action, value)
        who = _who(who)
        at = _now()
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                cursor = connection.execute(
                    "INSERT INTO corrections (track_id, grp, tag, action, value, machine, model, who, at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (track_id, group, tag, action, value, machine, model, who, at))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return Correction(cursor.lastrowid, track_id, group, tag, action, value, machine, model, who, at)

    def undo(self, who: str, track_id: str | None = None) -> Correction | None:
        """Retract ``who``'s latest correction still in force (of ``track_id`` if given) with an undo row;
        None when there is none. The row it retracts stays, so the history is whole."""
        who = _who(who)
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")  # two tabs undoing at once retract two rows, not one twice
            try:
                query = ("SELECT * FROM corrections c WHERE who = ? AND action != 'undo' "
                         "AND NOT EXISTS (SELECT 1 FROM corrections u WHERE u.undoes = c.seq)")
                arguments: list = [who]
                if track_id is not None:
                    query += " AND track_id = ?"
                    arguments.append(track_id)
                row = connection.execute(query + " ORDER BY seq DESC LIMIT 1", arguments).fetchone()
                if row is None:
                    connection.execute("ROLLBACK")
                    return None
                at = _now()
                cursor = connection.execute(
                    "INSERT INTO corrections (track_id, grp, tag, action, who, at, undoes) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (row[1], row[2], row[3], UNDO, who, at, row[0]))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return Correction(cursor.lastrowid, row[1], row[2], row[3], UNDO, None, None, None, who, at, row[0])

    # ------------------------------------------------------------------------------------------ reading

    def history(self, track_id: str | None = None) -> list[Correction]:
        """Every row, undos included, oldest first (of one track if given)."""
        with self._connect() as connection:
            if track_id is None:
                rows = connection.execute("SELECT * FROM corrections ORDER BY seq").fetchall()
            else:
                rows = connection.execute("SELECT * FROM corrections WHERE track_id = ? ORDER BY seq",
                                          (track_id,)).fetchall()
        return list(map(Correction._make, rows))

    def version(self) -> int:
        """The number of the latest row (0 for none): rows are only ever added, so it names the contents."""
        with self._connect() as connection:
            return connection.execute("SELECT COALESCE(MAX(seq), 0) FROM corrections").fetchone()[0]

    def effective(self, track_id: str | None = None) -> dict[tuple[str, str, str], Correction]:
        """``(track, group, tag) -> `` the latest correction that no undo retracts.

        The whole run's is kept and brought up to date with the rows added since (rows are only ever added;
        an undo makes the key it touches be worked out again), so a list page after one more correction
        does not read them all again. Do not change the dict returned: it may be in use by another request.
        """
        if track_id is not None:
            return _in_force(self.history(track_id))
        with self._connect() as connection:
            cached = self._cached
            since = 0 if cached is None else cached[0]
            rows = [Correction._make(row) for row in
                    connection.execute("SELECT * FROM corrections WHERE seq > ? ORDER BY seq", (since,))]
            if cached is not None and not rows:
                return cached[1]
            if cached is None:
                state = _in_force(rows)
            else:
                state = dict(cached[1])
                touched = set()
                for row in rows:
                    key = (row.track_id, row.group, row.tag)
                    if row.action == UNDO:
                        touched.add(key)
                    else:
                        state[key] = row
                for key in touched:
                    history = connection.execute("SELECT * FROM corrections WHERE track_id = ? AND grp = ? AND tag = ? "
                                                 "ORDER BY seq", key).fetchall()
                    state.pop(key, None)
                    state.update(_in_force(list(map(Correction._make, history))))
        self._cached = (rows[-1].seq if rows else since, state)
        return state

    def count(self) -> int:
        with self._connect() as connection:
            return connection.execute("SELECT COUNT(*) FROM corrections").fetchone()[0]

    def reviewed_tracks(self) -> set[str]:
        return {track for track, _, _ in self.effective()}

    def counts_per_tag(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{group: {tag: {action: corrections in force}}}``, every tag of the vocabulary listed."""
        counts = {name: {label: dict.fromkeys(_actions(group.type), 0) for label in group.labels}
                  for name, group in self.labels.groups.items()}
        for (_, group, tag), row in self.effective().items():
            if group in counts and tag in counts[group]:
                counts[group][tag][row.action] = counts[group][tag].get(row.action, 0) + 1
        return counts


def _in_force(rows: list[Correction]) -> dict[tuple[str, str, str], Correction]:
    """The latest row of each key that no undo among ``rows`` retracts (``rows`` oldest first)."""
    undone = {row.undoes for row in rows if row.action == UNDO}
    return {(row.track_id, row.group, row.tag): row for row in rows if row.action != UNDO and row.seq not in undone}


def _actions(kind: str) -> tuple[str, ...]:
    return ("confirm", "add", "remove") if kind == MULTILABEL else ("confirm", "set") if kind == REGRESSION else ()


def _who(who: str) -> str:
    who = (who or "").strip()
    if not who or len(who) > 100:
        raise ValueError(f"a reviewer's name must be 1 to 100 characters, got {who!r}")
    return who


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
