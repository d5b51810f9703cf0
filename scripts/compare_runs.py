"""Two runs of ``make demo`` (or any two output folders) side by side: are their numbers the same?

    python scripts/compare_runs.py BEFORE/runs/demo AFTER/runs/demo [--out compare.md]

Every file both folders hold is compared by what it holds: JSON values (numbers exactly, keys that record
when, where or how long something ran left out), arrays of ``.npy``, ``.npz``, ``.safetensors`` and Parquet files
(exactly, with the largest difference), and the lines of text files (``.md``, ``.txt``, ``.csv``, ``.yaml``)
with times, paths and rates masked. Logs, stage timings and plots are not compared; files only one folder
holds are listed. Exit status 1 if any compared file differs.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import numpy as np

SKIPPED_PARTS = {"logs", "stages", "plots", "lightning_logs", "checkpoints", "wandb"}
# Keys of JSON records that say when, where or how fast something ran, not what it computed.
VOLATILE_KEYS = re.compile(r"(created|time|seconds|elapsed|git|software|path|dir|host|pid|real_time|speed|wall|"
                           r"mtime|started|finished|^s/|/s$|^s$)", re.I)
# In text: durations, rates and absolute paths.
VOLATILE_TEXT = [(re.compile(r"\b\d+(\.\d+)?\s*(s|min|ms|seconds|minutes)\b"), "<time>"),
                 (re.compile(r"\b\d+(\.\d+)?x real time"), "<rate>"),
                 (re.compile(r"(/[\w.+-]+)+/"), "<path>/"),
                 (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[^\s\"',]*"), "<when>")]


def json_differences(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if VOLATILE_KEYS.search(str(key)):
                continue
            if key not in a or key not in b:
                out.append(f"{where}/{key}: only in {'after' if key not in a else 'before'}")
            else:
                out += json_differences(a[key], b[key], f"{where}/{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items before, {len(b)} after"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in json_differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return []
    if isinstance(a, str) and isinstance(b, str) and a.startswith("/") and b.startswith("/"):
        return []  # an absolute path: where the run was, not what it computed
    if isinstance(a, str) and isinstance(b, str) and a[:1] in "{[" and b[:1] in "{[":
        try:
            return json_differences(json.loads(a), json.loads(b), where)  # JSON kept as a string
        except ValueError:
            pass
    return [] if a == b else [f"{where}: {a!r} before, {b!r} after"]


def arrays(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npy":
        return {"array": np.load(path, allow_pickle=False)}
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return load_file(path)
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return {name: np.asarray(table.column(name).to_pylist(), dtype=object) for name in table.column_names}


def array_differences(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[str]:
    out = []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            out.append(f"{name}: only in {'after' if name not in a else 'before'}")
            continue
        x, y = a[name], b[name]
        if x.shape != y.shape:
            out.append(f"{name}: shape {x.shape} before, {y.shape} after")
        elif x.dtype.kind in "fc" and y.dtype.kind in "fc":
            if not np.array_equal(x, y, equal_nan=True):
                out.append(f"{name}: largest difference {np.nanmax(np.abs(x - y)):.3g}")
        else:
            diffs = [d for u, v in zip(x.ravel().tolist(), y.ravel().tolist(), strict=True)
                     for d in json_differences(u, v, name)]
            out += diffs[:1]
    return out


def table_cells(line: str, sep: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split(sep)] if sep == "|" else next(csv.reader([line]))


def masked(text: str, sep: str | None = None) -> list[str]:
    """The lines with times, rates and paths masked; in a table (``sep`` "," or "|": a run of lines holding it,
    the first its header), the cells of the columns whose header names a time (``s/epoch``, ``seconds``) too."""
    lines, header, volatile = [], True, set()
    for line in text.splitlines():
        if sep is not None and sep in line:
            cells = table_cells(line, sep)
            if header:
                volatile = {i for i, cell in enumerate(cells) if VOLATILE_KEYS.search(cell)}
                header = False
            elif volatile and len(cells) > max(volatile):
                line = sep.join("<volatile>" if i in volatile else cell for i, cell in enumerate(cells))
        else:
            header, volatile = True, set()
        for pattern, mask in VOLATILE_TEXT:
            line = pattern.sub(mask, line)
        lines.append(line)
    return lines


def text_differences(a: str, b: str, sep: str | None = None) -> list[str]:
    x, y = masked(a, sep), masked(b, sep)
    if len(x) != len(y):
        return [f"{len(x)} lines before, {len(y)} after"]
    return [f"line {i + 1}: {u!r} before, {v!r} after" for i, (u, v) in enumerate(zip(x, y, strict=True)) if u != v]


def compare(before: Path, after: Path) -> tuple[list[tuple[str, str, list[str]]], list[str]]:
    """``([(file, kind, differences)], [files only one side has])``."""
    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                and not SKIPPED_PARTS & set(p.relative_to(root).parts)}
    left, right = files(before), files(after)
    rows = []
    for name in sorted(left & right):
        a, b = before / name, after / name
        suffix = a.suffix
        if suffix == ".json":
            rows.append((name, "json", json_differences(json.loads(a.read_text()), json.loads(b.read_text()))))
        elif suffix in (".npy", ".npz", ".safetensors", ".parquet"):
            rows.append((name, suffix[1:], array_differences(arrays(a), arrays(b))))
        elif suffix in (".md", ".txt", ".csv", ".tsv", ".yaml", ".m3u", ".jsonl"):
            sep = {".csv": ",", ".tsv": "\t", ".md": "|"}.get(suffix)
            rows.append((name, "text", text_differences(a.read_text(), b.read_text(), sep)))
    return rows, sorted(left ^ right)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    options = parser.parse_args(argv)
    rows, alone = compare(options.before, options.after)
    different = [row for row in rows if row[2]]
    lines = [f"{len(rows)} files compared, {len(rows) - len(different)} the same, {len(different)} different; "
             f"{len(alone)} in one run only.", "", "| file | kind | differences |", "|---|---|---|"]
    lines += [f"| {name} | {kind} | {'; '.join(diffs[:3])}{' ...' if len(diffs) > 3 else ''} |"
              for name, kind, diffs in different]
    lines += [f"| {name} | - | in one run only |" for name in alone]
    text = "\n".join(lines)
    print(text)
    if options.out:
        options.out.write_text(text + "\n")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
