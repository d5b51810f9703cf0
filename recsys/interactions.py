"""Implicit feedback in: play counts or listening events from CSV/TSV/Parquet, with id maps both ways.

Two layouts are read by the same loader:

- counts, one row per (user, item) with a play count (``count_col="count"``);
- events, one row per play, e.g. Music4All's listening history (``user``, ``song``, ``timestamp``,
  tab separated in several releases): pass ``count_col=None`` and each row counts as one play.

Every check is vectorized (pandas), so files of millions of rows load at parsing speed. A bad row is
reported as ``path:line`` with the file's 1-based line number (the header is line 1), so it can be fixed
in an editor; Parquet files have no lines and report the 1-based data row instead.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import scipy.sparse as sp

__all__ = ["MUSIC4ALL", "Interactions", "LoadReport", "load_interactions"]

# Column layout of Music4All's listening_history.csv: one row per listening event.
MUSIC4ALL = {"user_col": "user", "item_col": "song", "count_col": None, "timestamp_col": "timestamp"}

_DELIMITERS = ("\t", ",", ";", "|")
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_EXAMPLES = 5


@dataclass(frozen=True)
class LoadReport:
    """What a loader did with a file: rows read, rows skipped (with the first few reasons), duplicates."""

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
    files, the column's type from Parquet and data frames.
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
        first_line: int | None = None,
    ) -> Interactions:
        """Build from a data frame read from ``source``; its row ``k`` is line ``first_line + k`` there.

        Without ``first_line`` (Parquet, frames built in memory) bad rows are named by their 1-based row.

        ``duplicates``: ``"sum"`` adds the counts of repeated (user, item) rows; ``"error"`` makes every
        repetition after the first a bad row (for event rows, a repetition is the same user, item and
        timestamp: a play logged twice). ``on_bad_rows``: ``"raise"`` raises ``ValueError`` naming the
        first bad line; ``"skip"`` drops bad rows, warns, and records them in ``report``.
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

        def locate(k: int) -> str:
            return f"row {k + 1}" if first_line is None else f"line {k + first_line}"

        checks = _row_checks(frame, user_col, item_col, count_col, timestamp_col, duplicates, item_ids, locate)
        bad = np.zeros(len(frame), dtype=bool)
        for mask, _ in checks:
            bad |= mask
        n_bad = int(bad.sum())
        if n_bad and on_bad_rows == "raise":
            first = int(np.flatnonzero(bad)[0])
            more = f" ({n_bad - 1} more bad rows; on_bad_rows='skip' drops them)" if n_bad > 1 else ""
            raise ValueError(_describe(source, first_line, first, checks) + more)
        examples = tuple(_describe(source, first_line, k, checks) for k in np.flatnonzero(bad)[:_EXAMPLES])
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
        # The COO -> CSR conversion above has summed repeated (user, item) pairs.
        summed = len(good) - user_items.nnz
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
    duplicates: str = "sum",
    on_bad_rows: str = "raise",
    item_ids: Sequence | np.ndarray | None = None,
) -> Interactions:
    """Read plays from a CSV/TSV (optionally .gz/.bz2/.xz) or Parquet file into :class:`Interactions`.

    ``sep=None`` sniffs the delimiter from the header line (tab, comma, semicolon or pipe).
    ``count_col=None`` reads one play per row (listening events, e.g. ``**MUSIC4ALL``). See
    :meth:`Interactions.from_frame` for ``duplicates``, ``on_bad_rows`` and ``item_ids``.
    Rows with the wrong number of fields are a malformed file rather than a bad row: they always raise.
    """
    path = Path(path)
    columns = [c for c in (user_col, item_col, count_col, timestamp_col) if c is not None]
    if path.suffix == ".parquet":
        names = pq.read_schema(path).names
        missing = [c for c in columns if c not in names]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r}; the columns are {names}")
        frame = pd.read_parquet(path, columns=columns)
        first_line = None
    else:
        sep = _sniff_delimiter(path) if sep is None else sep
        header = _read_header(path, sep)
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r}; the header has {header}")
        try:
            # Everything as text: ids keep leading zeros and bad counts are caught by the checks below.
            # Blank lines are kept as rows so that row k stays line k + 2.
            frame = pd.read_csv(
                path, sep=sep, usecols=columns, dtype=str, keep_default_na=False, skip_blank_lines=False
            )
        except pd.errors.ParserError as error:
            raise ValueError(f"{path}: malformed file: {error}") from error
        first_line = 2
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
        first_line=first_line,
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
            not_number = ~np.isfinite(numbers) & ~absent
            not_positive = np.isfinite(numbers) & (numbers <= 0)
        checks.append((absent, lambda k: f"missing {count_col!r}"))
        checks.append((not_number, lambda k: f"{count_col} must be a number, got {raw.iat[k]!r}"))
        checks.append((not_positive, lambda k: f"{count_col} must be > 0, got {raw.iat[k]!r}"))
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


def _describe(source, first_line, k, checks) -> str:
    reason = next(reason(k) for mask, reason in checks if mask[k])
    where = f": row {k + 1}" if first_line is None else f":{k + first_line}"
    return f"{source}{where}: {reason}"


def _missing(column: pd.Series) -> np.ndarray:
    absent = column.isna().to_numpy(dtype=bool)
    if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
        absent = absent | (column.astype(str).str.strip() == "").to_numpy(dtype=bool)
    return absent


def _open_text(path: Path):
    return _OPENERS.get(path.suffix, open)(path, "rt", encoding="utf-8", newline="")


def _sniff_delimiter(path: Path) -> str:
    """The most frequent candidate delimiter in the header line (a header is only names and delimiters)."""
    with _open_text(path) as handle:
        header = handle.readline()
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _read_header(path: Path, sep: str) -> list[str]:
    with _open_text(path) as handle:
        return [name.strip().strip('"') for name in handle.readline().rstrip("\r\n").split(sep)]


def _as_id_array(values) -> np.ndarray:
    """Ids as a plain NumPy array; text becomes fixed-width unicode so it saves without pickle."""
    array = np.asarray(values)
    return array.astype(str) if array.dtype == object else array


def index_of(index: pd.Index, ids, kind: str):
    scalar = np.ndim(ids) == 0
    positions = index.get_indexer(np.atleast_1d(np.asarray(ids)))
    if (positions < 0).any():
        unknown = np.atleast_1d(ids)[positions < 0]
        raise KeyError(f"unknown {kind} id(s): {unknown[:5].tolist()}")
    return int(positions[0]) if scalar else positions
