"""Implicit feedback in: play counts or listening events from CSV/TSV/Parquet, with id maps both ways.

Two layouts are read by the same loader:

- counts, one row per (user, item) with a play count (``count_col="count"``);
- events, one row per play, e.g. Music4All's listening history (``user``, ``song``, ``timestamp``,
  tab separated in several releases): pass ``count_col=None`` and each row counts as one play.

Files are read by :func:`recsys.tables.read_table` (encodings, byte-order marks, archives, malformed
files). Every check is vectorized (pandas), so files of millions of rows load at parsing speed. A bad
row is reported as ``path:line`` with the file's 1-based physical line (the header is line 1), so it
can be fixed in an editor; Parquet files have no lines and report the 1-based data row instead.

Ids are kept as object arrays, not fixed-width NumPy text: one 10,000-character id would otherwise
widen every id to 10,000 characters. ``save_npz`` turns them into fixed-width text only when saving.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .tables import read_table

__all__ = ["MUSIC4ALL", "Interactions", "LoadReport", "load_interactions"]

# Column layout of Music4All's listening_history.csv: one row per listening event.
MUSIC4ALL = {"user_col": "user", "item_col": "song", "count_col": None, "timestamp_col": "timestamp"}

_EXAMPLES = 5
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class LoadReport:
    """What a loader did with a file: rows read, rows skipped (with the first few reasons), duplicates.

    ``duplicates_summed`` counts the rows added into an earlier row of the same (user, item) pair with
    ``duplicates="sum"``; for event rows (one play per row, where repeats are the point) it counts the
    rows that repeat an earlier one's timestamp too, i.e. plays possibly logged twice (0 without
    timestamps).
    """

    path: str
    rows: int
    skipped: int = 0
    examples: tuple[str, ...] = ()
    duplicates_summed: int = 0


@dataclass(frozen=True, eq=False)
class Interactions:
    """Play counts of users on items, with the original ids of both.

    ``user_items`` is a CSR matrix ``(n_users, n_items)`` of play counts (float32); row ``u`` belongs to
    ``user_ids[u]`` and column ``i`` to ``item_ids[i]``. Ids keep the type they had: strings from text
    files (in object arrays), the column's type from Parquet and data frames.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_items: sp.csr_matrix
    report: LoadReport | None = None

    def __post_init__(self):
        shape = (len(self.user_ids), len(self.item_ids))
        if self.user_items.shape != shape:
            raise ValueError(f"user_items has shape {self.user_items.shape}, ids give {shape}")

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @cached_property
    def _user_lookup(self) -> pd.Index:
        return pd.Index(self.user_ids)

    @cached_property
    def _item_lookup(self) -> pd.Index:
        return pd.Index(self.item_ids)

    def user_index(self, ids):
        """Row(s) of original user id(s): a scalar gives an int, a sequence an int array."""
        return index_of(self._user_lookup, ids, "user")

    def item_index(self, ids):
        """Column(s) of original item id(s): a scalar gives an int, a sequence an int array."""
        return index_of(self._item_lookup, ids, "item")

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        user_col: str = "user",
        item_col: str = "item",
        count_col: str | None = "count",
        *,
        timestamp_col: str | None = None,
        duplicates: str = "sum",
        on_bad_rows: str = "raise",
        item_ids: Sequence | np.ndarray | None = None,
        source: str = "<frame>",
        first_line: int | Callable[[int], int] | None = None,
    ) -> Interactions:
        """Build from a data frame read from ``source``; its row ``k`` is line ``first_line + k`` there, or
        line ``first_line(k)`` when ``first_line`` is a function (files whose quoted fields span lines).

        Without ``first_line`` (Parquet, frames built in memory) bad rows are named by their 1-based row.

        ``duplicates``: ``"sum"`` (the default) adds the counts of repeated (user, item) rows and counts
        the rows so merged in ``report.duplicates_summed``; ``"error"`` makes every repetition after the
        first a bad row (for event rows, a repetition is the same user, item and timestamp: a play logged
        twice). ``on_bad_rows``: ``"raise"`` raises ``ValueError`` naming the first bad line; ``"skip"``
        drops bad rows, warns, and records them in ``report``. A count must be a finite number > 0 that
        float32 holds (at most about 3.4e38). A frame without rows, or with only bad ones, raises.
        ``item_ids`` fixes the item columns and their order (e.g. a catalog's manifest, including items
        nobody played); a row naming another item is then a bad row.
        """
        if duplicates not in ("sum", "error"):
            raise ValueError(f"duplicates must be 'sum' or 'error', got {duplicates!r}")
        if on_bad_rows not in ("raise", "skip"):
            raise ValueError(f"on_bad_rows must be 'raise' or 'skip', got {on_bad_rows!r}")
        if item_ids is not None:
            given = pd.Index(item_ids)
            if not given.is_unique:
                raise ValueError(f"item_ids repeats {given[given.duplicated()][:5].tolist()}")
        wanted = [c for c in (user_col, item_col, count_col, timestamp_col) if c is not None]
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise ValueError(f"{source}: no column {missing[0]!r}; the columns are {list(frame.columns)}")
        if frame.empty:
            raise ValueError(f"{source}: no rows")

        def line(k: int) -> int:
            return first_line(k) if callable(first_line) else k + first_line

        def locate(k: int) -> str:
            return f"row {k + 1}" if first_line is None else f"line {line(k)}"

        def where(k: int) -> str:
            return f": row {k + 1}" if first_line is None else f":{line(k)}"

        checks = _row_checks(frame, user_col, item_col, count_col, timestamp_col, duplicates, item_ids, locate)
        bad = np.zeros(len(frame), dtype=bool)
        for mask, _ in checks:
            bad |= mask
        n_bad = int(bad.sum())
        if n_bad and on_bad_rows == "raise":
            first = int(np.flatnonzero(bad)[0])
            more = f" ({n_bad - 1} more bad rows; on_bad_rows='skip' drops them)" if n_bad > 1 else ""
            raise ValueError(_describe(source, where, first, checks) + more)
        examples = tuple(_describe(source, where, k, checks) for k in np.flatnonzero(bad)[:_EXAMPLES])
        if n_bad == len(frame):
            raise ValueError(f"{source}: all {n_bad} rows are bad, first: {examples[0]}")
        if n_bad:
            warnings.warn(
                f"{source}: skipped {n_bad} bad rows of {len(frame)}, first: {'; '.join(examples)}",
                stacklevel=2,
            )
        good = frame.loc[~bad]

        counts = (
            np.ones(len(good), dtype=np.float32)
            if count_col is None
            else pd.to_numeric(good[count_col]).to_numpy(np.float32)
        )
        if item_ids is None:
            items, item_uniques = pd.factorize(good[item_col], sort=True)
        else:
            item_uniques = np.asarray(item_ids)
            items = pd.Index(item_uniques).get_indexer(good[item_col])
        users, user_uniques = pd.factorize(good[user_col], sort=True)
        user_items = sp.csr_matrix(
            (counts, (users, items)), shape=(len(user_uniques), len(item_uniques)), dtype=np.float32
        )
        overflow = np.flatnonzero(~np.isfinite(user_items.data))
        if overflow.size:
            user = np.searchsorted(user_items.indptr, overflow[0], side="right") - 1
            item = user_items.indices[overflow[0]]
            raise ValueError(
                f"{source}: the counts of user {user_uniques[user]!r} on item {item_uniques[item]!r} add up to "
                "more than float32 holds"
            )
        # For counts, the COO -> CSR conversion above has summed repeated (user, item) rows. For events,
        # summing is the point, and only a repeated timestamp hints at a play logged twice.
        if count_col is not None:
            summed = len(good) - user_items.nnz
        elif timestamp_col is not None:
            summed = int(good.duplicated(subset=[user_col, item_col, timestamp_col]).sum())
        else:
            summed = 0
        user_items.sort_indices()
        report = LoadReport(source, len(frame), n_bad, examples, summed)
        return cls(_as_id_array(user_uniques), _as_id_array(item_uniques), user_items, report)


def load_interactions(
    path: str | Path,
    user_col: str = "user",
    item_col: str = "item",
    count_col: str | None = "count",
    *,
    timestamp_col: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
    duplicates: str = "sum",
    on_bad_rows: str = "raise",
    item_ids: Sequence | np.ndarray | None = None,
) -> Interactions:
    """Read plays from a CSV/TSV (optionally .gz/.bz2/.xz) or Parquet file into :class:`Interactions`.

    ``sep=None`` sniffs the delimiter from the header line (tab, comma, semicolon or pipe).
    ``count_col=None`` reads one play per row (listening events, e.g. ``**MUSIC4ALL``). ``encoding`` is
    that of a text file; a byte-order mark overrides it (see :mod:`recsys.tables`). Repeated (user, item)
    rows are summed by default and counted in ``report.duplicates_summed``; see
    :meth:`Interactions.from_frame` for ``duplicates``, ``on_bad_rows`` and ``item_ids``.
    A row with more fields than the header is a malformed file rather than a bad row: it always raises,
    naming its line. A row with fewer fields lacks the columns it does not reach, a bad row.
    A file without data rows raises.
    """
    path = Path(path)
    columns = [c for c in (user_col, item_col, count_col, timestamp_col) if c is not None]
    frame, line_of = read_table(path, columns, sep=sep, encoding=encoding)
    return Interactions.from_frame(
        frame,
        user_col,
        item_col,
        count_col,
        timestamp_col=timestamp_col,
        duplicates=duplicates,
        on_bad_rows=on_bad_rows,
        item_ids=item_ids,
        source=str(path),
        first_line=line_of,
    )


def _row_checks(frame, user_col, item_col, count_col, timestamp_col, duplicates, item_ids, locate):
    """``[(bad_mask, reason_of_row), ...]`` in the order a row's first failing check is reported."""
    checks = []
    for col in (user_col, item_col):
        checks.append((_missing(frame[col]), lambda k, col=col: f"missing {col!r}"))
    if item_ids is not None:
        unknown = ~frame[item_col].isin(pd.Index(item_ids)).to_numpy() & ~checks[1][0]
        checks.append((unknown, lambda k: f"{item_col} {frame[item_col].iat[k]!r} is not in the item list"))
    if count_col is not None:
        raw = frame[count_col]
        absent = _missing(raw)
        numbers = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            not_number = ~np.isfinite(numbers) & ~absent  # text, nan and inf alike
            not_positive = np.isfinite(numbers) & (numbers <= 0)
            # Larger counts would become inf in the float32 matrix.
            too_large = np.isfinite(numbers) & (numbers > _FLOAT32_MAX)
        checks.append((absent, lambda k: f"missing {count_col!r}"))
        checks.append((not_number, lambda k: f"{count_col} must be a finite number, got {raw.iat[k]!r}"))
        checks.append((not_positive, lambda k: f"{count_col} must be > 0, got {raw.iat[k]!r}"))
        checks.append(
            (too_large, lambda k: f"{count_col} {raw.iat[k]!r} is too large (float32 holds up to {_FLOAT32_MAX:.3g})")
        )
    if duplicates == "error":
        # A play logged twice has the same timestamp; without timestamps every event row is a play.
        key = [user_col, item_col] if count_col is not None else [user_col, item_col, timestamp_col]
        if None not in key:
            ok = np.ones(len(frame), dtype=bool)
            for mask, _ in checks:
                ok &= ~mask
            repeated = np.zeros(len(frame), dtype=bool)
            repeated[ok] = frame.loc[ok].duplicated(subset=key, keep="first").to_numpy()

            def first_of(k: int) -> str:
                same = ok & (frame[key] == frame[key].iloc[k]).all(axis=1).to_numpy()
                return f"duplicate of {locate(int(np.argmax(same)))} for {frame[key].iloc[k].tolist()}"

            checks.append((repeated, first_of))
    return checks


def _describe(source, where, k, checks) -> str:
    reason = next(reason(k) for mask, reason in checks if mask[k])
    return f"{source}{where(k)}: {reason}"


def _missing(column: pd.Series) -> np.ndarray:
    absent = column.isna().to_numpy(dtype=bool)
    if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
        absent = absent | (column.astype(str).str.strip() == "").to_numpy(dtype=bool)
    return absent


def _as_id_array(values) -> np.ndarray:
    """Ids as a plain NumPy array; text stays an object array (see the module docstring)."""
    array = np.asarray(values)
    return array.astype(object) if array.dtype.kind in "US" else array


def index_of(index: pd.Index, ids, kind: str):
    scalar = np.ndim(ids) == 0
    positions = index.get_indexer(np.atleast_1d(np.asarray(ids)))
    if (positions < 0).any():
        unknown = np.atleast_1d(ids)[positions < 0]
        raise KeyError(f"unknown {kind} id(s): {unknown[:5].tolist()}")
    return int(positions[0]) if scalar else positions
