"""The real-recording listening world (scripts/real_world.py): how its cold tracks are dealt and its settings
kept, on a made-up album list."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import ColdStartSplit
from scripts.real_world import World, build_world, deal, kind_split, listen


def albums(sizes: dict[str, int]) -> pd.DataFrame:
    rows = [(f"{album}/{i}", f"/x/{album}/{i}.ogg", album) for album, n in sizes.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["track_id", "audio_path", "album"])


SIZES = {"a": 40, "b": 30, "c": 18, "d": 16, "e": 14, "f": 13, "g": 10, "h": 4, "i": 3, "j": 3}


def test_new_albums_are_whole_and_every_known_album_keeps_warm_and_cold_tracks():
    manifest = albums(SIZES)
    dealt = deal(manifest, World(seed=3))
    new = dealt.loc[dealt["kind"] == "new_album", "album"].unique()
    assert len(new) >= 1
    for album, rows in dealt.groupby("album"):
        kinds = set(rows["kind"])
        if album in new:
            assert kinds == {"new_album"}  # nobody played any of its tracks
            continue
        assert "warm" in kinds and "new_album" not in kinds
        assert (rows["kind"] == "known_album").sum() == max(1, round(0.2 * len(rows)))
    share = (dealt["kind"] == "new_album").mean()
    assert 0.15 <= share <= 0.15 * 1.5
    assert set(dealt.loc[dealt["kind"] == "val", "split"]) == {"cold_val"}
    assert set(dealt.loc[dealt["kind"].isin(["known_album", "new_album"]), "split"]) == {"cold_test"}
    assert deal(manifest, World(seed=3)).equals(dealt)  # the seed decides


def test_listeners_play_the_albums_they_like_and_every_track_has_an_id_of_the_manifest():
    manifest = albums({name: 8 for name in "abcdef"})
    plays = listen(manifest, World(users=400, mean_items_per_user=6))
    assert set(plays["item"]) <= set(manifest["track_id"])
    assert (plays["count"] > 0).all()
    # Taste is half per album: a listener's plays gather on fewer albums than plays drawn at random would.
    album_of = manifest.set_index("track_id")["album"]
    per_user = plays.assign(album=album_of.loc[plays["item"]].to_numpy()).groupby("user")
    top_share = per_user["album"].agg(lambda a: a.value_counts(normalize=True).iloc[0])
    shuffled_albums = pd.Series(np.random.default_rng(0).permutation(album_of.to_numpy()), album_of.index)
    shuffled = plays.assign(album=shuffled_albums.loc[plays["item"]].to_numpy())
    chance = shuffled.groupby("user")["album"].agg(lambda a: a.value_counts(normalize=True).iloc[0])
    assert top_share.mean() > chance.mean() + 0.05


def test_the_world_is_fixed_before_any_model_runs(tmp_path):
    source = tmp_path / "manifest.csv"
    albums({"a": 6, "b": 5, "c": 4, "d": 4, "e": 3}).to_csv(source, index=False)
    out = tmp_path / "world"
    build_world(source, World(users=50), out)
    assert json.loads((out / "world.json").read_text())["users"] == 50
    build_world(source, World(users=50), out)  # the same settings: reused
    with pytest.raises(SystemExit, match="other settings"):
        build_world(source, World(users=60), out)


def test_a_kind_split_keeps_that_kinds_cold_tracks_for_test():
    split = ColdStartSplit(np.array(["u"]), np.array(["w", "k", "n"]), np.array(["warm", "cold_test", "cold_test"]),
                           np.ones((1, 2)), np.ones((3, 2)), sp.csr_matrix(np.ones((1, 3))))
    known = kind_split(split, np.array([True, False]))
    assert known.items("cold_test").tolist() == [1]
    assert known.items("cold_val").tolist() == [2]
