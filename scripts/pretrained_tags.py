"""The tags a pretrained model gives a folder of recordings, through ``coldtag annotate``: a Markdown table of
each track's top tags with their probabilities (the mean over its chunks), for docs/pretrained.md.

    .venv/bin/python scripts/pretrained_tags.py --audio /usr/share/games/warzone2100/music/albums/legacy_soundtrack \
        --model musicnn-mtt --model vgg-mtt --top 4 --out runs/pretrained_tags

(Debian's ``warzone2100-music``, GPL-2+ game music: ``apt-get install warzone2100-music`` as root.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from annotation.cli import cli_main
from annotation.records import read_annotations


def top_tags(record: pd.Series, groups: list[str], top: int) -> str:
    scores = {label: p for group in groups for label, p in record[group]["probabilities"].items()}
    return ", ".join(f"{label} {p:.2f}" for label, p in sorted(scores.items(), key=lambda x: -x[1])[:top])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", required=True, type=Path)
    parser.add_argument("--model", action="append", required=True, help="a package or a pretrained name; repeat")
    parser.add_argument("--top", type=int, default=4)
    parser.add_argument("--out", required=True, type=Path,
                        help="annotate's output folders go here, one per model (a rerun reuses their records)")
    options = parser.parse_args()
    titles = {}
    album = options.audio / "album.json"
    if album.is_file():  # warzone2100's albums name their tracks
        titles = {t["filename"]: t["title"] for t in json.loads(album.read_text()).get("tracks", [])}
    columns = {}
    for model in options.model:
        out = options.out / model.replace("/", "_")
        started = time.perf_counter()
        if cli_main([str(options.audio), "--model", model, "--out", str(out), "--no-progress"]) != 0:
            sys.exit(f"coldtag annotate failed for --model {model}")
        seconds = time.perf_counter() - started
        records = read_annotations(out).to_pandas().set_index("id").sort_index()
        groups = [c for c in records.columns if isinstance(records[c].iloc[0], dict)
                  and "probabilities" in records[c].iloc[0]]
        columns[model] = {track: top_tags(records.loc[track], groups, options.top) for track in records.index}
        print(f"{model}: {len(records)} tracks, {records['duration'].sum() / 60:.1f} min of audio, "
              f"annotate took {seconds:.0f} s", file=sys.stderr)
    tracks = sorted(next(iter(columns.values())))
    print("| track | " + " | ".join(f"{model} (top {options.top})" for model in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for track in tracks:
        name = f"{track} ({titles[track]})" if track in titles else track
        print(f"| {name} | " + " | ".join(column.get(track, "") for column in columns.values()) + " |")


if __name__ == "__main__":
    main()
