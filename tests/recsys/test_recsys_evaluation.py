"""Cold-start protocol and metrics: hand-computed values, the oracle's ordering, the CLI on a toy catalog."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import (
    WMF,
    ColdStartSplit,
    Interactions,
    Recommender,
    artist_prior,
    baseline_metrics,
    evaluate_cold_start,
    make_cold_start_split,
    ranking_metrics,
)
from recsys.cli import main


def _metrics(scores, relevant, **kwargs):
    scores = np.asarray(scores, dtype=float)
    return ranking_metrics(lambda users: scores[users], sp.csr_matrix(np.asarray(relevant)), **kwargs)


def test_metrics_on_a_hand_computed_ranking():
    # Ranked 0, 1, 2, 3; relevant 1 and 3: hits at ranks 2 and 4.
    m = _metrics([[0.9, 0.8, 0.7, 0.1]], [[0, 1, 0, 1]], ks=(2, 4), map_k=500)
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["recall@4"] == pytest.approx(1.0)
    assert m["ndcg@2"] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    assert m["ndcg@4"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3)))
    assert m["map@500"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert m["auc"] == pytest.approx(1 / 4)  # of the 4 (relevant, irrelevant) pairs only 0.8 > 0.7 is right
    assert m["users"] == 1


def test_map_cutoff_divides_by_min_k_relevant():
    # Relevant at ranks 1 and 3; MAP@2 sees rank 1 only and divides by min(2, |R| = 2).
    assert _metrics([[3, 2, 1]], [[1, 0, 1]], map_k=2)["map@2"] == pytest.approx(0.5)


def test_metrics_average_over_users_and_skip_users_without_plays():
    scores = [[0.9, 0.8, 0.7, 0.1], [1, 1, 0, 0], [5, 4, 3, 2]]
    relevant = [[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]]
    m = _metrics(scores, relevant, ks=(4,))
    assert m["users"] == 2
    # User 2: its relevant item ties one irrelevant item (half a pair) and beats two.
    assert m["auc"] == pytest.approx((1 / 4 + (0.5 + 1 + 1) / 3) / 2)
    assert m["recall@4"] == pytest.approx(1.0)


def test_ties_are_broken_at_random_not_by_storage_order():
    relevant = np.zeros((400, 10))
    relevant[:, 0] = 1  # everyone's relevant item is stored first
    m = _metrics(np.zeros((400, 10)), relevant, ks=(1,))
    assert m["recall@1"] == pytest.approx(0.1, abs=0.05)
    assert m["auc"] == pytest.approx(0.5)


def two_taste_catalog(n_users=40, n_items=40, seed=0):
    """Two user groups, two item groups; every 5th item is cold_val or cold_test; item artist = its group."""
    rng = np.random.default_rng(seed)
    group_u = np.arange(n_users) >= n_users // 2
    group_i = np.arange(n_items) >= n_items // 2
    likes = group_u[:, None] == group_i[None, :]
    plays = np.where(likes & (rng.random((n_users, n_items)) < 0.7), rng.integers(1, 6, (n_users, n_items)), 0)
    split = np.array(["warm", "warm", "warm", "cold_val", "cold_test"] * (n_items // 5))
    return plays.astype(np.float32), split, group_u, group_i


@pytest.fixture(scope="module")
def cold():
    plays, split, _, group_i = two_taste_catalog()
    interactions = Interactions(
        np.array([f"u{u}" for u in range(40)]), np.array([f"t{i}" for i in range(40)]), sp.csr_matrix(plays)
    )
    prior = artist_prior(interactions.user_items, group_i.astype(int), split == "warm")
    model = WMF(factors=4, regularization=0.1, alpha=10, iterations=10, random_state=0)
    return make_cold_start_split(interactions, split, model, prior)


def test_oracle_ranks_each_users_own_cold_items_first(cold):
    _, _, group_u, group_i = two_taste_catalog()
    test_items = cold.items("cold_test")
    oracle = cold.item_factors[test_items]
    scores = cold.user_factors @ oracle.T
    own = group_u[:, None] == group_i[test_items][None, :]
    # Every user scores every cold-test item of their own taste above every item of the other taste.
    assert (np.where(own, scores, np.inf).min(axis=1) > np.where(own, -np.inf, scores).max(axis=1)).all()
    m = evaluate_cold_start(oracle, cold, ks=(4,))
    assert m["cosine_distance"] == pytest.approx(0, abs=1e-6)
    assert m["auc"] > 0.75


def test_evaluate_cold_start_checks_and_keys(cold):
    n_test = len(cold.items("cold_test"))
    m = evaluate_cold_start(np.ones((n_test, 4)), cold)
    assert set(m) == {"cosine_distance", "recall@50", "ndcg@50", "map@500", "auc", "users"}
    with pytest.raises(ValueError, match=r"expected \(8, 4\) for the cold_test items"):
        evaluate_cold_start(np.ones((3, 4)), cold)
    flipped = evaluate_cold_start(-cold.item_factors[cold.items("cold_test")], cold)
    assert flipped["cosine_distance"] == pytest.approx(2, abs=1e-6)


def test_baselines_bracket_the_oracle(cold):
    rows = baseline_metrics(cold, ks=(4,))
    assert list(rows) == ["random", "mean warm factor", "popularity", "popularity (held-out plays)", "oracle"]
    assert rows["oracle"]["auc"] > 0.75 > rows["random"]["auc"]
    assert rows["oracle"]["recall@4"] > rows["random"]["recall@4"]
    # One vector for every item ties them all: AUC exactly one half, whatever the users.
    assert rows["mean warm factor"]["auc"] == pytest.approx(0.5, abs=1e-3)
    assert np.isnan(rows["popularity"]["cosine_distance"])
    # Both taste groups have the same artist prior here, and one order for everybody cannot serve both.
    assert rows["popularity"]["auc"] == pytest.approx(0.5, abs=0.1)


def test_split_round_trip(cold, tmp_path):
    cold.save(tmp_path / "cold.npz")
    back = ColdStartSplit.load(tmp_path / "cold.npz")
    np.testing.assert_array_equal(back.item_factors, cold.item_factors)
    np.testing.assert_array_equal(back.plays.toarray(), cold.plays.toarray())
    assert back.item_split.tolist() == cold.item_split.tolist()
    assert back.params == cold.params
    predicted = cold.item_factors[cold.items("cold_test")]
    assert evaluate_cold_start(predicted, back) == evaluate_cold_start(predicted, cold)


def test_coldstart_cli_on_a_toy_catalog(tmp_path, capsys):
    plays, split, _, group_i = two_taste_catalog()
    users, items = np.nonzero(plays)
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    pd.DataFrame({"user_id": users, "track_id": [f"t{i:02d}" for i in items], "plays": plays[users, items]}).to_parquet(
        catalog / "plays.parquet"
    )
    manifest = pd.DataFrame(
        {"track_id": [f"t{i:02d}" for i in range(40)], "artist_id": group_i.astype(int), "item_split": split}
    )
    manifest.to_parquet(catalog / "manifest.parquet")
    out = tmp_path / "out"
    assert main(["coldstart", "--catalog", str(catalog), "--out", str(out), "--factors", "4", "--iterations", "8"]) == 0
    printed = capsys.readouterr().out
    assert "| oracle |" in printed and "fit (4 factors, 8 iterations)" in printed
    table = pd.read_csv(out / "baselines.csv", index_col="model")
    assert table.loc["oracle", "cosine_distance"] == pytest.approx(0, abs=1e-6)
    assert table.loc["oracle", "auc"] > table.loc["random", "auc"]
    header = "| model | recall@10 | recall@50 | ndcg@10 | ndcg@50 | map@500 | auc |"
    assert (out / "baselines.md").read_text().startswith(header)
    saved = ColdStartSplit.load(out / "coldstart.npz")
    assert saved.item_ids.tolist() == manifest["track_id"].tolist()
    assert saved.item_factors.shape == (40, 4)


def test_fit_cli_reads_listening_events(tmp_path, capsys):
    rows = ["user\tsong\ttimestamp"] + [f"u{u}\ts{(u + k) % 6}\t{k}" for u in range(12) for k in range(3)]
    (tmp_path / "history.tsv").write_text("\n".join(rows) + "\n")
    args = ["fit", "--plays", str(tmp_path / "history.tsv"), "--item-col", "song", "--count-col", "none"]
    assert main([*args, "--out", str(tmp_path / "f.npz"), "--factors", "3", "--iterations", "3"]) == 0
    assert "12 users × 6 items, 36 pairs, 36 plays" in capsys.readouterr().out
    rec = Recommender.load(tmp_path / "f.npz")
    assert rec.item_ids.tolist() == [f"s{i}" for i in range(6)]
    assert rec.user_factors.shape == (12, 3)


def test_artist_prior_counts_only_warm_plays_of_the_same_artist():
    plays = sp.csr_matrix(np.array([[1, 2, 3, 4, 5], [1, 0, 0, 0, 5]], dtype=np.float32))
    artists = np.array(["a", "a", "b", None, "b"], dtype=object)
    warm = np.array([True, False, True, True, False])
    # a: warm item 0 has 2 plays; b: warm item 2 has 3; the artist-less item gets nothing.
    assert artist_prior(plays, artists, warm).tolist() == [2, 2, 3, 0, 3]


def test_artist_prior_is_zero_when_no_artist_is_known():
    plays = sp.csr_matrix(np.array([[1, 2, 3]], dtype=np.float32))
    artists = np.array([None, None, np.nan], dtype=object)
    assert artist_prior(plays, artists, np.array([True, False, True])).tolist() == [0, 0, 0]
