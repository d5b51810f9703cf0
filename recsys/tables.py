"""Tables as users have them: CSV/TSV (optionally .gz/.bz2/.xz) or Parquet, read with errors that name the file.

Text files are read as UTF-8 unless told otherwise (``encoding=``); a byte-order mark (UTF-8 or UTF-16)
decides the encoding whatever ``encoding`` says, since it cannot be wrong. A file with NUL bytes in its
first 64 KiB is not a text table. Text that does not decode, a broken archive, a row with more fields
than the header and a header without rows all raise ``ValueError`` naming the file (and the line).
Line numbers are physical lines of the file (the header is line 1), counted as the csv module counts
them, so a quoted field spanning lines moves the rows after it down; Parquet has rows, not lines.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import lzma
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.parquet as pq

__all__ = ["read_table"]

_DELIMITERS = ("\t", ",", ";", "|")
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_HEAD = 1 << 16  # bytes probed for a byte-order mark, NUL bytes and the header line
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# What a corrupt or truncated .gz/.bz2/.xz raises while being read (BadGzipFile is an OSError).
_BROKEN_ARCHIVE = (OSError, EOFError, lzma.LZMAError)


def read_table(
    path: str | Path, columns: Sequence[str], *, sep: str | None = None, encoding: str = "utf-8"
) -> tuple[pd.DataFrame, Callable[[int], int] | None]:
    """The ``columns`` of a table file and where its rows are: ``(frame, line_of)``.

    Text files give every column as ``str`` (ids keep leading zeros; values are checked by the caller)
    and ``line_of(k)``, the 1-based line where data row ``k`` starts; Parquet keeps its column types and
    gives ``line_of=None``. ``sep=None`` sniffs the delimiter from the header line (tab, comma, semicolon
    or pipe); ``sep`` is one character. Blank lines are kept as rows of empty strings, so that they are
    reported rather than silently shift the rows. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` naming the file for everything else listed in the module docstring.
    """
    path = Path(path)
    if path.suffix == ".parquet":
        return _read_parquet(path, list(columns)), None
    if sep is not None and len(sep) != 1:
        raise ValueError(f"sep must be one character, got {sep!r}")
    encoding, first_line = _probe(path, encoding)
    sep = _sniff_delimiter(first_line) if sep is None else sep
    header = [name.strip() for name in next(csv.reader([first_line], delimiter=sep), [])]
    _check_columns(path, columns, header, "the header has")
    try:
        # No usecols and no header: pandas then raises for a row with more fields than the first line
        # instead of silently dropping the extra fields.
        frame = pd.read_csv(
            path, sep=sep, header=None, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding=encoding
        )
    except pd.errors.ParserError as error:
        raise ValueError(_malformed(path, encoding, sep, len(header), error)) from error
    except UnicodeDecodeError as error:
        raise ValueError(_undecodable(path, encoding)) from error
    except _BROKEN_ARCHIVE as error:
        raise ValueError(f"{path}: not a readable {path.suffix} file ({error})") from error
    frame = frame.iloc[1:, [header.index(c) for c in columns]].reset_index(drop=True)
    frame.columns = list(columns)
    if frame.empty:
        raise ValueError(f"{path}: no rows, only a header")

    @cache
    def starts() -> np.ndarray:
        return _record_starts(path, encoding, sep)

    def line_of(k: int) -> int:
        return int(starts()[k + 1])

    return frame, line_of


def _read_parquet(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        names = pq.read_schema(path).names
    except pyarrow.ArrowInvalid as error:
        raise ValueError(f"{path}: not a Parquet file ({error})") from error
    _check_columns(path, columns, names, "the columns are")
    frame = pd.read_parquet(path, columns=columns)
    if frame.empty:
        raise ValueError(f"{path}: no rows")
    return frame


def _check_columns(path: Path, wanted: Sequence[str], names: list[str], which: str) -> None:
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r}; {which} {names}")
    twice = [c for c in wanted if names.count(c) > 1]
    if twice:
        raise ValueError(f"{path}: column {twice[0]!r} appears {names.count(twice[0])} times in the header")


def _open_binary(path: Path):
    return _OPENERS.get(path.suffix, open)(path, "rb")


def _probe(path: Path, encoding: str) -> tuple[str, str]:
    """The encoding to read with (a byte-order mark wins) and the decoded header line."""
    with _open_binary(path) as handle:
        try:
            head = handle.read(_HEAD)
        except _BROKEN_ARCHIVE as error:
            raise ValueError(f"{path}: not a readable {path.suffix} file ({error})") from error
    if not head:
        raise ValueError(f"{path}: empty file, not even a header")
    encoding = next((name for bom, name in _BOMS if head.startswith(bom)), encoding)
    nul = head.find(b"\0")
    if nul >= 0 and not codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
        raise ValueError(
            f"{path}: not a text table (NUL byte at byte {nul}); a text file in UTF-16 without a byte-order "
            "mark needs encoding='utf-16-le' or 'utf-16-be'"
        )
    try:
        # Not final: the probe may end inside a multi-byte character.
        text = codecs.getincrementaldecoder(encoding)().decode(head)
    except UnicodeDecodeError as error:
        raise ValueError(_undecodable(path, encoding)) from error
    return encoding, text.splitlines()[0] if text else ""


def _sniff_delimiter(header: str) -> str:
    """The most frequent candidate delimiter in the header line (a header is only names and delimiters)."""
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _undecodable(path: Path, encoding: str) -> str:
    """Where the first byte that ``encoding`` cannot decode is, as an error message."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, line = 0, 1
    with _open_binary(path) as handle:
        while True:
            chunk = handle.read(1 << 20)
            pending = len(decoder.getstate()[0])  # bytes of an unfinished character from the last chunk
            try:
                line += decoder.decode(chunk, final=not chunk).count("\n")
            except UnicodeDecodeError as error:
                line += error.object[: error.start].decode(encoding, errors="replace").count("\n")
                bad = error.object[error.start : error.end]
                return (
                    f"{path}:{line}: not {encoding} text (byte {offset + error.start - pending} is {bad!r}); if "
                    "the file was written in another encoding, pass it, e.g. encoding='latin-1' (--encoding latin-1)"
                )
            if not chunk:
                break
            offset += len(chunk)
    return f"{path}: not {encoding} text"


def _record_starts(path: Path, encoding: str, sep: str) -> np.ndarray:
    """The 1-based line where each record (header included) starts, as the csv module splits them."""
    starts = []
    with _OPENERS.get(path.suffix, open)(path, "rt", encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=sep)
        end = 0
        for _ in reader:
            starts.append(end + 1)
            end = reader.line_num
    return np.asarray(starts, dtype=np.int64)


def _malformed(path: Path, encoding: str, sep: str, n_fields: int, error: Exception) -> str:
    """The first record with more fields than the header, as an error message (pandas counts records,
    not lines, so its own message gives the wrong line after a quoted line break)."""
    with _OPENERS.get(path.suffix, open)(path, "rt", encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=sep)
        end = 0
        for fields in reader:
            if len(fields) > n_fields:
                return f"{path}:{end + 1}: {len(fields)} fields, the header has {n_fields}"
            end = reader.line_num
    return f"{path}: malformed file ({str(error).strip()})"
