"""Cold start from a pretrained tagger, measured in a listening world over real recordings.

    .venv/bin/python scripts/real_world.py --manifest data/real/manifest.csv --out runs/real-world

The tracks are the real-recording corpus (``make corpus``: Debian game soundtracks, an album per soundtrack).
Nobody has labelled them and nobody has listened to them, so the listeners are simulated
(`toycatalog.simulate.simulate_plays`), with a taste that is, in equal parts (``hidden_share`` 0.5: the
two parts' variances are equal), per album (the listed features: which album a track is on) and per track
(each track's own random traits, which nothing labels and no model is given). An album's popularity is
shared by its tracks. Everything about the world is decided by ``--seed`` and the settings below, and
written to ``OUT/world.json`` before any model runs; a second run refuses settings that differ.

Two kinds of cold track, both never played by the warm model:

- **known album**: a share (``--cold-share``) of the tracks of each album that has warm tracks;
- **new album**: whole albums nobody has played (drawn with the seed until ``--new-album-share`` of the
  tracks is reached).

A share (``--val-share``) of each known album's tracks is ``cold_val``: the fusion rows stop on it.

Steps, each reused when its output exists (an interrupted run picks up where it stopped):

1. ``OUT/manifest.csv`` (track_id, audio_path, album, split, kind) and ``OUT/plays.csv`` (user,item,count);
2. ``OUT/references.npz``: ``python -m fusion references`` with the log-mel statistics, random features and
   the student's tags (``--student``), the rows a pipeline does not serve but which say what the tagger's
   features are worth;
3. ``OUT/chain``: ``python -m fusion chain --tagger musicnn-mtt --split-col split --artist-col album
   --references ... --skip-audio``: warm factors by WMF, the cold tracks' fold-in factors (the oracle), the
   tagger's features, and one fusion row per input set;
4. ``OUT/worlds.md``: per kind of cold track, every row's NDCG and Recall on that kind's cold tracks
   against random, popularity (the album's warm plays) and the oracle; the best row a new track can run
   (the lowest validation cosine distance among the pipeline's rows, as ``python -m fusion package``
   chooses it) as a share of the oracle's NDCG@50, and its difference from the log-mel statistics row
   with a 95 % interval that resamples the cold tracks by album.

Each kind has fewer than 50 cold tracks here, so NDCG@50 scores each listener's whole ranking of them and
Recall@50 is 1 for every row; NDCG@10 and Recall@10 are the top of the list.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fusion.ablation import ROWS_FILE, ablation_predictions  # noqa: E402
from fusion.references import LOGMEL  # noqa: E402
from fusion.stages import best_content_row  # noqa: E402
from recsys import ColdStartSplit  # noqa: E402
from recsys.evaluation import baseline_metrics, evaluate_cold_start, paired_ranking_difference  # noqa: E402
from scripts.coldstart_worlds import run  # noqa: E402
from tagging.labels import read_manifest  # noqa: E402
from toycatalog.simulate import simulate_plays  # noqa: E402

KINDS = {"known album": "known_album", "new album": "new_album"}
KS = (10, 50)


@dataclasses.dataclass(frozen=True)
class World:
    """The settings of the listening world, fixed before any model runs."""

    seed: int = 0
    users: int = 3000
    mean_items_per_user: float = 20.0
    hidden_share: float = 0.5  # the per-track part of the taste; the rest is per album
    track_traits: int = 16  # random traits per track, the per-track taste
    popularity_exponent: float = 1.0  # Zipf exponent of album popularity
    cold_share: float = 0.2  # of each known album's tracks: cold test
    val_share: float = 0.1  # of each known album's tracks: cold validation
    new_album_share: float = 0.15  # of all tracks, as whole albums nobody played
    # "album+track": taste per album (which album a track is on) and per track (`track_traits`);
    # "traits": taste on the realistic toy catalog's labelled traits and, `hidden_share` of it, on the traits
    # its audio carries and its vocabulary omits (`toy_traits`).
    taste: str = "album+track"
    group: str = "album"  # the manifest column of albums (the toy catalog: artist_id)


def deal(manifest: pd.DataFrame, world: World) -> pd.DataFrame:
    """``manifest`` with ``split`` (warm / cold_val / cold_test) and ``kind`` (warm, val, known_album,
    new_album), drawn with the world's seed."""
    rng = np.random.default_rng([world.seed, 1])
    sizes = manifest.groupby("album").size()
    albums = list(sizes.index[rng.permutation(len(sizes))])
    target, new = world.new_album_share * len(manifest), []
    for album in albums:
        if sum(sizes[a] for a in new) >= target:
            break
        if sum(sizes[a] for a in new) + sizes[album] <= 1.5 * target and sizes[album] < len(manifest) / 4:
            new.append(album)
    frame = manifest.assign(split="warm", kind="warm")
    for album, rows in frame.groupby("album").groups.items():
        rows = np.asarray(rows)
        if album in new:
            frame.loc[rows, ["split", "kind"]] = ["cold_test", KINDS["new album"]]
            continue
        order = rows[rng.permutation(len(rows))]
        n_cold = max(1, round(world.cold_share * len(rows))) if len(rows) >= 3 else 0
        n_val = round(world.val_share * len(rows))
        frame.loc[order[:n_cold], ["split", "kind"]] = ["cold_test", KINDS["known album"]]
        frame.loc[order[n_cold:n_cold + n_val], ["split", "kind"]] = ["cold_val", "val"]
    return frame


def toy_traits(manifest: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The realistic toy catalog's tracks as ``(listed, hidden)`` trait vectors: listed, what its vocabulary
    labels (genres, instruments, meter, mode, tempo); hidden, what the audio carries and no label says (swing,
    drums, note density, the key's place on the circle of fifths)."""
    def multi_hot(column: str) -> pd.DataFrame:
        return pd.get_dummies(manifest[column].map(list).explode()).groupby(level=0).max()

    fifths = 2 * np.pi * ((7 * manifest["key_root"].to_numpy()) % 12) / 12
    listed = pd.concat([multi_hot("genre"), multi_hot("instrument"), pd.get_dummies(manifest["meter"]),
                        (manifest["mode"] == "minor").rename("minor"), manifest["tempo"]], axis=1)
    hidden = np.column_stack([manifest["swing"], manifest["drums"], manifest["density"], np.cos(fifths),
                              np.sin(fifths)])
    return listed.to_numpy(dtype=np.float64), hidden.astype(np.float64)


def listen(manifest: pd.DataFrame, world: World) -> pd.DataFrame:
    """Plays ``user,item,count`` of every track, warm or cold, by the world's listeners."""
    if world.taste == "traits":
        albums, traits = toy_traits(manifest)
    else:
        albums = pd.get_dummies(manifest["album"]).to_numpy(dtype=np.float64)
        traits = np.random.default_rng([world.seed, 2]).standard_normal((len(manifest), world.track_traits))
    plays, _ = simulate_plays(albums, world.users, seed=world.seed, mean_items_per_user=world.mean_items_per_user,
                              popularity_exponent=world.popularity_exponent,
                              item_groups=manifest["album"].to_numpy(), hidden_features=traits,
                              hidden_share=world.hidden_share)
    ids = manifest["track_id"].to_numpy()
    return pd.DataFrame({"user": "u" + plays["user"].astype(str), "item": ids[plays["item"].to_numpy()],
                         "count": plays["plays"]})


def build_world(manifest_path: Path, world: World, out: Path) -> pd.DataFrame:
    """Steps 1: the world's settings, manifest and plays (reused when the settings are the same)."""
    out.mkdir(parents=True, exist_ok=True)
    settings = {"manifest": str(manifest_path), **dataclasses.asdict(world)}
    written = out / "world.json"
    if written.is_file():
        if json.loads(written.read_text()) != settings:
            raise SystemExit(f"{written} holds other settings; the world is fixed before any model runs: "
                             "give another --out")
    else:
        written.write_text(json.dumps(settings, indent=1) + "\n")
    manifest_file = out / f"manifest{manifest_path.suffix}"
    if not manifest_file.is_file():
        frame = read_manifest(manifest_path.resolve())  # absolute paths, wherever OUT lies
        if world.taste == "album+track":
            frame = frame[["track_id", "audio_path", "album"]]
        else:  # the toy catalog keeps its labels, which the chain that trains its own tagger reads
            frame = frame.assign(album=frame[world.group].astype(str))
        dealt = deal(frame, world)
        listen(dealt, world).to_csv(out / "plays.csv", index=False)
        if manifest_file.suffix == ".parquet":
            dealt.to_parquet(manifest_file, index=False)
        else:
            dealt.to_csv(manifest_file, index=False)
    return read_manifest(manifest_file)


def kind_split(split: ColdStartSplit, cold: np.ndarray) -> ColdStartSplit:
    """``split`` whose cold test items are those of ``cold`` (a mask over its cold test items); the other
    cold test items become validation items, which no figure below reads."""
    labels = split.item_split.copy()
    test = split.items("cold_test")
    labels[test[~cold]] = "cold_val"
    return dataclasses.replace(split, item_split=labels)


def kind_tables(chain: Path, manifest: pd.DataFrame, resamples: int, seed: int, noun: str = "album") -> str:
    """Step 4: the Markdown of both kinds' tables."""
    split = ColdStartSplit.load(chain / "recsys" / "coldstart.npz")
    predictions = ablation_predictions(chain / "fusion")
    rows = json.loads((chain / "fusion" / ROWS_FILE).read_text())
    best = next(row["name"] for row in rows if Path(row["dir"]) / "model" == best_content_row(chain / "fusion"))
    logmel = next(row["name"] for row in rows if row["inputs"] == [LOGMEL])
    kinds = manifest.set_index("track_id").reindex(split.item_ids[split.items("cold_test")].astype(str))
    users = split.user_factors.astype(np.float64)
    lines = []
    for kind in KINDS.values():
        cold = (kinds["kind"] == kind).to_numpy()
        sub = kind_split(split, cold)
        items = sub.items("cold_test")
        metrics = {name: evaluate_cold_start(p[cold], sub, KS, seed=seed) for name, p in predictions.items()}
        baselines = baseline_metrics(sub, KS, subset="cold_test", seed=seed)
        metrics |= {name: baselines[name] for name in ("random", "popularity", "oracle") if name in baselines}
        oracle = metrics["oracle"]["ndcg@50"]
        albums = kinds["album"].to_numpy()[cold]
        listeners = int((sub.plays[:, items].getnnz(axis=1) > 0).sum())
        heading = f"{noun}s nobody has played" if kind == "new_album" else f"known {noun}s"
        lines += [f"### Cold tracks of {heading}",
                  "", f"{len(items)} tracks of {len(set(albums))} {noun}s, {listeners} listeners with a play among "
                  "them.", "",
                  "| row | NDCG@10 | Recall@10 | NDCG@50 | x oracle NDCG@50 | cosine distance |",
                  "|---|---|---|---|---|---|"]
        for name, m in metrics.items():
            mark = " (pipeline's row)" if name == best else ""
            lines.append(f"| {name}{mark} | {m['ndcg@10']:.3f} | {m['recall@10']:.3f} | {m['ndcg@50']:.3f} | "
                         f"{m['ndcg@50'] / oracle:.2f} | {m['cosine_distance']:.3f} |")
        scores = {name: users @ np.asarray(predictions[name][cold], dtype=np.float64).T for name in (best, logmel)}
        d = paired_ranking_difference(scores[best], scores[logmel], sub.plays[:, items], albums, "ndcg@50", KS,
                                      resamples=resamples, seed=seed)
        lines += ["", f"{best} minus {logmel}, NDCG@50: {d.difference:+.3f} [{d.low:+.3f}, {d.high:+.3f}] "
                  f"(95 %, {d.resamples} resamples of the {d.clusters} {noun}s).", ""]
    return "\n".join(lines)


WORLDS = {"real": (Path("data/real/manifest.csv"), Path("runs/real-world"), World()),
          "toy": (Path("data/realistic/manifest.parquet"), Path("runs/toy-world"),
                  World(taste="traits", group="artist_id"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=tuple(WORLDS), default="real",
                        help="real: the real recordings (make corpus); toy: the realistic toy catalog")
    parser.add_argument("--manifest", type=Path, help="default: the world's")
    parser.add_argument("--out", type=Path, help="default: runs/real-world or runs/toy-world")
    parser.add_argument("--tagger", default="musicnn-mtt", help="the attribute source of the chain")
    parser.add_argument("--student", default="musicnn-distil-s", help="its tags are a reference row")
    parser.add_argument("--tagger-config", type=Path, default=Path("configs/tagger_demo.yaml"),
                        help="toy world: the config of the tagger the catalog trains, the yardstick")
    parser.add_argument("--seed", type=int, default=0, help="of the world")
    parser.add_argument("--resamples", type=int, default=1000)
    options = parser.parse_args()
    default_manifest, default_out, world = WORLDS[options.world]
    source, out = options.manifest or default_manifest, options.out or default_out
    if not source.is_file():
        maker = "make corpus" if options.world == "real" else "python -m toycatalog build --preset realistic"
        parser.error(f"--manifest {source}: not found ({maker} writes it)")
    manifest = build_world(source, dataclasses.replace(world, seed=options.seed), out)
    manifest_file = out / f"manifest{source.suffix}"
    references = out / "references.npz"
    run([sys.executable, "-m", "fusion", "references", "--manifest", str(manifest_file), "--logmel-stats",
         "--random", "64", "--tagger", options.student, "--out", str(references)], references)
    chain = [sys.executable, "-m", "fusion", "chain", "--manifest", str(manifest_file), "--plays",
             str(out / "plays.csv"), "--split-col", "split", "--artist-col", "album", "--references",
             str(references), "--skip-audio"]
    chains = {f"{options.tagger}'s tags and embedding, no label": (out / "chain", ["--tagger", options.tagger])}
    if options.world == "toy":
        chains["the catalog's own tagger, trained on its labels (the yardstick)"] = (
            out / "chain-trained", ["--vocab", str(source.parent / "vocab.json"), "--tagger-config",
                                    str(options.tagger_config)])
    noun = "album" if world.group == "album" else "artist"
    text = []
    for title, (folder, extra) in chains.items():
        run([*chain, *extra, "--out", str(folder)], folder / "fusion" / "table.md")
        text += [f"## {title}", "", kind_tables(folder, manifest, options.resamples, options.seed, noun)]
    (out / "worlds.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
