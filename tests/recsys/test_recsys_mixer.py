"""The mixer: sliders move tracks, modes change exposure, explanations name what scored, re-ranking is optimal."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from recsys import Mixer, Recommender, gini, list_metrics, long_tail_mask, novelty, rerank, run_metrics

COLUMNS = [("genre", "folk"), ("genre", "metal"), ("mood", "energetic"), ("instrument", "banjo")]


@pytest.fixture(scope="module")
def catalog():
    """60 listeners, 80 tracks by 16 artists, random factors, binary traits, power-law popularity."""
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 80
    recommender = Recommender(rng.normal(size=(n_users, 5)), rng.normal(size=(n_items, 5)))
    traits = (rng.random((n_items, len(COLUMNS))) < 0.3).astype(float)
    item_plays = np.floor(1000 / np.arange(1, n_items + 1) ** 1.2)  # item 0 the most played
    plays = sp.csr_matrix((rng.random((n_users, n_items)) < 0.1).astype(np.float32))
    return recommender, traits, item_plays, plays, np.arange(n_items) % 16


def test_without_facets_the_mixer_ranks_as_the_recommender(catalog):
    recommender, traits, item_plays, plays, _ = catalog
    mixer = Mixer(recommender, traits, COLUMNS, item_plays, taste=0.0)
    ids, _ = mixer.recommend(np.arange(60), plays, N=10)
    np.testing.assert_array_equal(ids, recommender.recommend(np.arange(60), plays, N=10)[0])
    assert ids.dtype == np.int32


def test_a_slider_moves_every_track_with_the_trait_up(catalog):
    recommender, traits, item_plays, plays, _ = catalog
    mixer = Mixer(recommender, traits, COLUMNS, item_plays)
    energetic = traits[:, 2] == 1
    before, _ = mixer.recommend(7, plays[7], N=80, filter_already_liked_items=False)
    after, _ = mixer.recommend(7, plays[7], N=80, filter_already_liked_items=False, sliders={"energetic": 0.8})
    rank_before, rank_after = np.argsort(before), np.argsort(after)  # rank of each item
    assert (rank_after[energetic] <= rank_before[energetic]).all()
    assert (rank_after[~energetic] >= rank_before[~energetic]).all()
    assert energetic[after[:10]].mean() > energetic[before[:10]].mean()
    # A group of labels with signs: folk up, metal down.
    top, _ = mixer.recommend(7, plays[7], N=10, sliders={"genre": {"folk": 3.0, "metal": -3.0}})
    assert traits[top, 0].mean() > traits[before[:10], 0].mean() and traits[top, 1].sum() == 0


def test_a_range_slider_keeps_tracks_inside_it(catalog):
    recommender, traits, item_plays, plays, _ = catalog
    tempo = np.linspace(60, 200, 80)
    mixer = Mixer(recommender, np.c_[traits, tempo], [*COLUMNS, ("rhythm", "tempo")], item_plays)
    ids, _ = mixer.recommend(3, plays[3], N=5, sliders={"tempo": (120, 140, 50.0)})  # 11 tracks inside
    assert ((tempo[ids] >= 120) & (tempo[ids] <= 140)).all()


def test_explore_raises_the_long_tail_share_and_popular_lowers_it(catalog):
    recommender, traits, item_plays, plays, _ = catalog
    mixer = Mixer(recommender, traits, COLUMNS, item_plays)
    tail = long_tail_mask(item_plays)
    users = np.arange(60)
    share = {mode: run_metrics(mixer.recommend(users, plays, N=10, mode=mode)[0], 80, tail)["long_tail_share"]
             for mode in (None, "explore", "popular")}
    assert share["explore"] > share[None] > share["popular"]


def test_novelty_and_long_tail_have_their_stated_definitions():
    np.testing.assert_allclose(novelty([0, 9, 99]), [1, 1 - np.log(10) / np.log(100), 0])
    # 100 + 50 plays are 75 % of 200 < 80 %: the item with 30 still joins the head, the 20 is the tail.
    assert long_tail_mask(np.array([50, 20, 100, 30])).tolist() == [False, True, False, False]


def test_deep_cuts_stay_with_the_artist_and_need_artists(catalog):
    recommender, traits, item_plays, plays, artists = catalog
    ids, _ = Mixer(recommender, traits, COLUMNS, item_plays, artists).recommend(
        2, plays[2], N=3, mode="deep_cuts", artist=5)
    assert len(ids) == 3 and (artists[ids] == 5).all()
    with pytest.raises(ValueError, match="deep_cuts' needs item artists"):
        Mixer(recommender, traits, COLUMNS, item_plays).recommend(2, plays[2], mode="deep_cuts", artist=5)
    with pytest.raises(ValueError, match="needs item_plays"):
        Mixer(recommender, traits, COLUMNS).recommend(2, plays[2], mode="explore")


def test_similar_mode_ranks_by_the_seed_track(catalog):
    recommender, traits, item_plays, plays, _ = catalog
    mixer = Mixer(recommender, traits, COLUMNS, item_plays, taste=0.0)
    ids, _ = mixer.recommend(0, plays[0], N=5, mode="similar", track=11, filter_already_liked_items=False)
    expected, _ = recommender.similar_items(11, N=6)
    assert ids.tolist() == expected[1:].tolist()  # cosine order, the seed itself left out


def test_removing_the_facet_named_first_costs_the_most(catalog):
    recommender, traits, item_plays, plays, _ = catalog
    rng = np.random.default_rng(1)
    attributes = traits + 0.3 * rng.random(traits.shape)  # no two facets tie
    mixer = Mixer(recommender, attributes, COLUMNS, item_plays, taste=0.7)
    sliders = {"energetic": 0.4, "novelty": 0.3}
    ids, scores = mixer.recommend(9, plays[9], N=5, sliders=sliders)
    for item, score in zip(ids, scores, strict=True):
        why = mixer.explain(9, plays[9], item, sliders=sliders)
        assert why.score == pytest.approx(score, rel=1e-5) == pytest.approx(sum(why.terms.values()), rel=1e-5)
        drops = {}
        for j, (group, label) in enumerate(COLUMNS):
            kept = [c for c in range(len(COLUMNS)) if c != j]
            without = Mixer(recommender, attributes[:, kept], [COLUMNS[c] for c in kept], item_plays, taste=0.7)
            sliders_without = {k: v for k, v in sliders.items() if k != label}
            _, rescored = without.recommend(9, plays[9], N=80, items=[item], sliders=sliders_without)
            drops[f"{group}/{label}"] = score - rescored[0]
        assert why.top, "each of these tracks owes something to a facet"
        assert max(drops, key=drops.get) == why.top[0]


def banjo_world(cold_banjo=False):
    """A listener who plays banjo tracks only; collaborative scores carry nothing (all items alike)."""
    n_items = 12
    traits = np.zeros((n_items, len(COLUMNS)))
    traits[:6, 3] = 1  # tracks 0-5 have banjo
    traits[::2, 0] = 1  # folk on even tracks, with and without banjo: it says nothing of this taste
    traits[[1, 7], 2] = 1
    recommender = Recommender(np.ones((1, 2)), np.ones((n_items, 2)))
    plays = sp.csr_matrix(np.r_[[3, 1, 2, 4, 0, 0], np.zeros(6)][None].astype(np.float32))
    cold = np.zeros(n_items, bool)
    cold[5] = cold_banjo
    return Mixer(recommender, traits, COLUMNS, np.r_[np.full(11, 10.0), 0], cold=cold), plays


def test_a_track_recommended_for_its_banjo_is_explained_by_the_banjo():
    mixer, plays = banjo_world()
    ids, _ = mixer.recommend(0, plays, N=2)
    assert sorted(ids.tolist()) == [4, 5]  # the unplayed banjo tracks
    why = mixer.explain(0, plays, 4)
    assert why.top[0] == "instrument/banjo" and not why.cold
    assert why.terms["collaborative"] == 0 and "banjo" in why.sentence
    assert why.sentence.startswith("Suggested for its banjo")


def test_a_cold_track_is_explained_from_its_predicted_attributes():
    mixer, plays = banjo_world(cold_banjo=True)
    why = mixer.explain(0, plays, 5)
    assert why.cold and why.top[0] == "instrument/banjo"
    assert why.sentence.startswith("New track, no plays yet: suggested for its predicted banjo")


def test_slider_names_are_checked():
    mixer, plays = banjo_world()
    with pytest.raises(ValueError, match="no facet 'tuba'"):
        mixer.recommend(0, plays, sliders={"tuba": 1.0})
    twice = Mixer(Recommender(np.ones((1, 2)), np.ones((2, 2))), np.eye(2), [("mood", "dark"), ("genre", "dark")])
    with pytest.raises(ValueError, match="say 'group/dark'"):
        twice.recommend(0, sp.csr_matrix((1, 2)), sliders={"dark": 1.0})
    assert twice.recommend(0, sp.csr_matrix((1, 2)), N=1, sliders={"genre/dark": 1.0})[0].tolist() == [1]


def test_rerank_matches_a_brute_force_search():
    rng = np.random.default_rng(5)
    mask = rng.random(40) < 0.3
    for trial in range(20):
        candidates = rng.choice(40, size=9, replace=False)
        scores = rng.normal(size=9)
        N, share = 4, [0.25, 0.5, 0.75][trial % 3]
        need = int(np.ceil(share * N))
        if mask[candidates].sum() < need:
            continue
        best = max((c for c in itertools.combinations(range(9), N) if mask[candidates[list(c)]].sum() >= need),
                   key=lambda c: scores[list(c)].sum())
        best = sorted(best, key=lambda i: -scores[i])
        result = rerank(candidates[None], scores[None], mask, share, N)
        assert result.ids[0].tolist() == candidates[best].tolist() and result.shortfall[0] == 0


def test_rerank_reports_a_shortfall_when_the_tail_is_too_short():
    mask = np.zeros(10, bool)
    mask[[7]] = True
    result = rerank(np.arange(10)[None], -np.arange(10.0)[None], mask, 0.5, 4)
    assert result.ids[0].tolist() == [0, 1, 2, 7] and result.shortfall.tolist() == [1]


def test_metrics_have_known_values():
    ids = np.array([[0, 1, -1], [0, 2, 3]])
    relevant = sp.csr_matrix(np.array([[0, 1, 0, 0, 1], [0, 0, 0, 0, 0]]))
    tail = np.array([False, True, True, True, False])
    vectors = np.array([[1, 0], [0, 1], [1, 0], [-1, 0], [1, 1]])
    table = list_metrics(ids, relevant, tail, vectors)
    assert table["recall"][0] == 0.5 and np.isnan(table["recall"][1])
    assert table["ndcg"][0] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    assert table["long_tail_share"].tolist() == [0.5, 2 / 3]
    assert table["diversity"].tolist() == pytest.approx([1.0, 4 / 3])  # cosines 0 | 1, -1, -1
    run = run_metrics(ids, 5, tail, artists=["a", "a", "b", None, "c"])
    assert run["coverage"] == 0.8 and run["long_tail_share"] == 0.6
    # Slots per artist a, b, c: 3, 1, 0 (item 3's artist is unknown); Gini = Σ|xi − xj| / (2 n² mean) = 12 / 24.
    assert run["artist_gini"] == pytest.approx(gini([3, 1, 0])) == pytest.approx(0.5)
    assert gini([2, 2, 2]) == 0
    assert np.isnan(run_metrics(ids, 5)["artist_gini"])


def test_many_users_are_ranked_a_block_at_a_time_with_the_same_result(catalog, monkeypatch):
    recommender, traits, item_plays, plays, _ = catalog
    mixer = Mixer(recommender, traits, COLUMNS, item_plays)
    users = np.arange(60)
    whole = mixer.recommend(users, plays, N=5, sliders={"energetic": 0.5}, mode="explore")
    monkeypatch.setattr("recsys.mixer._SCORES_PER_BLOCK", 7 * recommender.n_items)  # seven users a block
    blocks = mixer.recommend(users, plays, N=5, sliders={"energetic": 0.5}, mode="explore")
    np.testing.assert_array_equal(whole[0], blocks[0])
    np.testing.assert_array_equal(whole[1], blocks[1])


def test_a_track_raised_for_lacking_what_the_listener_avoids_says_so():
    """A listener who played only tracks without metal; a candidate without metal gains from that facet
    (both below average), and the sentence says "lack of metal", not "its metal"."""
    n_items = 8
    traits = np.zeros((n_items, len(COLUMNS)))
    traits[4:, 1] = 1  # metal on tracks 4-7
    recommender = Recommender(np.zeros((1, 2)), np.zeros((n_items, 2)))
    plays = sp.csr_matrix(np.r_[[1.0, 1.0], np.zeros(6)][None].astype(np.float32))
    why = Mixer(recommender, traits, COLUMNS).explain(0, plays, 3)
    assert why.top == ["genre/metal"] and why.terms["genre/metal"] > 0
    assert why.sentence.startswith("Suggested for its lack of metal")
