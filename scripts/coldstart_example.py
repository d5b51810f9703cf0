"""The demo's last stage: one cold-test track, which the warm model never saw played, through the pipeline.

    .venv/bin/python scripts/coldstart_example.py --catalog data/demo --pipeline runs/demo/pipeline \
        --out runs/demo/coldstart_example.json

Prints its predicted tags beside the catalog's annotations, the users it would be recommended to and
whether they really played it, and its most similar catalog tracks with their genres.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coldtag.storage import write_json
from fusion.pipeline import ColdStartPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--pipeline", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    manifest = pd.read_parquet(args.catalog / "manifest.parquet")
    cold = manifest[(manifest["item_split"] == "cold_test") & manifest["lyrics_path"].notna()
                    & manifest["cover_path"].notna()]
    if cold.empty:
        raise SystemExit(f"{args.catalog}: no cold-test track with lyrics and a cover")
    track = cold.iloc[0]
    pipeline = ColdStartPipeline.from_pretrained(args.pipeline)
    record = pipeline(audio=args.catalog / track["audio_path"], lyrics=args.catalog / track["lyrics_path"],
                      cover=args.catalog / track["cover_path"])
    record["track_id"] = track["track_id"]
    write_json(args.out, record)

    plays = pd.read_parquet(args.catalog / "plays.parquet")
    listeners = set(plays.loc[plays["track_id"] == track["track_id"], "user_id"])
    genres = manifest.set_index("track_id")["genre"]
    tags = record["tags"]
    print(f"cold-test track {track['track_id']} ({', '.join(record['modalities'])}; tags from {record['tags_from']})")
    for group in ("genre", "mood", "attribute"):
        print(f"  {group:9} predicted {sorted(tags[group]['tags'])}\n  {'':9} annotated {sorted(track[group])}")
    graded = ", ".join(f"{k} {v:.2f} (annotated {track[k]:.2f})" for k, v in tags["graded"].items())
    print(f"  graded    {graded}")
    hits = sum(u["user_id"] in listeners for u in record["users"])
    print(f"  recommended to {len(record['users'])} users; {hits} of them did play it "
          f"({len(listeners)} of {plays['user_id'].nunique()} users did)")
    similar = ", ".join(f"{t['track_id']} ({'/'.join(genres[t['track_id']])})" for t in record["similar_tracks"][:5])
    print(f"  similar tracks: {similar}")
    if record["errors"]:
        print(f"  errors: {record['errors']}")


if __name__ == "__main__":
    main()
