"""The listening simulator: tastes show in the plays, popularity is long-tailed, the seed decides all, and a
share of the taste can follow features the content does not list."""

import numpy as np
import pytest

from toycatalog.simulate import simulate_plays


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    """2000 items with 12 binary traits of prevalence 10-50 %."""
    rng = np.random.default_rng(7)
    prevalence = np.linspace(0.1, 0.5, 12)
    return (rng.random((2000, 12)) < prevalence).astype(float)


@pytest.fixture(scope="module")
def simulated(features):
    return simulate_plays(features, 800, seed=3, mean_items_per_user=25.0)


@pytest.fixture(scope="module")
def hidden() -> np.ndarray:
    """5 unlisted traits of the same 2000 items, independent of the listed ones."""
    return np.random.default_rng(8).normal(size=(2000, 5))


def test_output_shapes_and_types(features, simulated):
    plays, tastes = simulated
    assert list(plays.columns) == ["user", "item", "plays"]
    assert all(str(t) == "int64" for t in plays.dtypes)
    assert (plays["plays"] >= 1).all() and not plays.duplicated(["user", "item"]).any()
    assert plays["user"].between(0, 799).all() and plays["item"].between(0, 1999).all()
    assert plays["user"].nunique() == 800  # everyone listens to something
    assert 15 < plays.groupby("user").size().mean() < 35
    assert tastes.shape == (800, 12)
    assert ((tastes > 0).sum(1) == 3).all() and ((tastes < 0).sum(1) == 1).all()


def test_users_play_what_they_like_and_avoid_what_they_dislike(features, simulated):
    plays, tastes = simulated
    item_share = features.mean(0)
    lifts, drops = [], []
    for user, rows in plays.groupby("user"):
        weights = rows["plays"].to_numpy()
        played = features[rows["item"].to_numpy()]
        share = (played * weights[:, None]).sum(0) / weights.sum()  # this user's play share per trait
        lifts += list(share[tastes[user] > 0] / item_share[tastes[user] > 0])
        drops += list(share[tastes[user] < 0] / item_share[tastes[user] < 0])
    assert np.mean(lifts) > 1.8
    assert np.mean(drops) < 0.6


def test_repeat_plays_follow_affinity(features, simulated):
    plays, tastes = simulated
    affinity = np.einsum("uf,uf->u", tastes[plays["user"]], features[plays["item"]])
    assert np.corrcoef(affinity, np.log(plays["plays"]))[0, 1] > 0.15


def test_popularity_is_long_tailed(features, simulated):
    plays, _ = simulated
    def top_decile_share(item_column) -> float:
        listeners = np.sort(np.bincount(item_column, minlength=len(features)))[::-1]
        return listeners[: len(features) // 10].sum() / listeners.sum()

    listeners = np.bincount(plays["item"], minlength=len(features))
    assert top_decile_share(plays["item"]) > 0.4
    assert np.median(listeners) < 0.5 * listeners.mean()
    flat, _ = simulate_plays(features, 800, seed=3, mean_items_per_user=25.0, popularity_exponent=0.0)
    assert top_decile_share(flat["item"]) < top_decile_share(plays["item"]) - 0.08


def test_items_of_a_group_share_their_popularity(features):
    groups = np.arange(2000) // 10  # 200 artists of 10 tracks
    plays, _ = simulate_plays(features, 800, seed=3, item_groups=groups, taste_strength=0.5)
    listeners = np.bincount(plays["item"], minlength=2000).reshape(200, 10).astype(float)
    group_means = listeners.mean(1)
    within = listeners.var(1).mean()
    # Most of the spread in listeners is between artists, not between one artist's tracks.
    assert group_means.var() > within


def test_the_seed_decides_everything(features, simulated):
    plays, tastes = simulated
    again, tastes_again = simulate_plays(features, 800, seed=3, mean_items_per_user=25.0)
    assert plays.equals(again) and np.array_equal(tastes, tastes_again)
    other, _ = simulate_plays(features, 800, seed=4, mean_items_per_user=25.0)
    assert not plays.equals(other)


def test_bad_arguments_are_named(features):
    with pytest.raises(ValueError, match=r"shape \(2000,\)"):
        simulate_plays(features[:, 0], 10, seed=0)
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        simulate_plays(features, 10, seed=-1)
    with pytest.raises(ValueError, match="n_users must be >= 1, got 0"):
        simulate_plays(features, 0, seed=0)
    with pytest.raises(ValueError, match="item_groups has 3 entries for 2000 items"):
        simulate_plays(features, 10, seed=0, item_groups=np.arange(3))
    with pytest.raises(ValueError, match="varying features"):
        simulate_plays(np.ones((50, 4)), 10, seed=0)


def test_without_hidden_share_the_plays_are_those_without_hidden_features(features, hidden, simulated):
    plays, tastes = simulated
    again, both = simulate_plays(features, 800, seed=3, mean_items_per_user=25.0, hidden_features=hidden)
    assert again.equals(plays) and np.array_equal(both[:, :12], tastes)
    assert both.shape == (800, 17)
    assert ((both[:, 12:] > 0).sum(1) == 3).all() and ((both[:, 12:] < 0).sum(1) == 1).all()


def _fit_lift(plays, z, tastes) -> tuple[float, float]:
    """Mean over features of (mean z of the items played by users who like the feature) minus (the same
    for the other users): how much more of a feature its fans play, in standard deviations."""
    per_user = np.zeros((plays["user"].max() + 1, z.shape[1]))
    np.add.at(per_user, plays["user"].to_numpy(), z[plays["item"].to_numpy()])
    per_user /= np.bincount(plays["user"])[:, None]
    likes = tastes > 0
    return float(np.mean([per_user[likes[:, j], j].mean() - per_user[~likes[:, j], j].mean()
                          for j in range(z.shape[1])]))


def test_a_full_hidden_share_moves_taste_off_the_listed_features(features, hidden):
    z_listed = (features - features.mean(0)) / features.std(0)
    z_hidden = (hidden - hidden.mean(0)) / hidden.std(0)
    lifts = {}
    for share in (0.0, 1.0):
        plays, tastes = simulate_plays(features, 800, seed=3, mean_items_per_user=25.0, hidden_features=hidden,
                                       hidden_share=share)
        lifts[share] = (_fit_lift(plays, z_listed, tastes[:, :12]), _fit_lift(plays, z_hidden, tastes[:, 12:]))
    # Fans of a trait play items over one standard deviation higher on it, as long as that is what they like.
    assert lifts[0.0][0] > 1.0 and abs(lifts[0.0][1]) < 0.1
    assert lifts[1.0][1] > 1.0 and abs(lifts[1.0][0]) < 0.1


def test_bad_hidden_arguments_are_named(features, hidden):
    with pytest.raises(ValueError, match=r"hidden_share must be in \[0, 1\], got 1.5"):
        simulate_plays(features, 10, seed=0, hidden_features=hidden, hidden_share=1.5)
    with pytest.raises(ValueError, match=r"hidden_share 0\.3 > 0 needs hidden_features"):
        simulate_plays(features, 10, seed=0, hidden_share=0.3)
    with pytest.raises(ValueError, match=r"hidden_features must be \(n_items=2000, n_hidden\), got shape \(50, 5\)"):
        simulate_plays(features, 10, seed=0, hidden_features=hidden[:50])
    with pytest.raises(ValueError, match="only 3 varying hidden_features for 3 liked"):
        simulate_plays(features, 10, seed=0, hidden_features=np.c_[hidden[:, :3], np.ones((2000, 2))])
