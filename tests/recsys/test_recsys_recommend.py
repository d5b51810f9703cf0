"""WMF and the recommend API: a checkerboard with an obvious answer, chunked top-k, new items, npz files."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys import WMF, Recommender, load_npz, topk


def checkerboard(n_users=20, n_items=20):
    """Users of group A play only items of group A (and B of B); each user skips one item of their group."""
    half_u, half_i = n_users // 2, n_items // 2
    plays = np.zeros((n_users, n_items), dtype=np.float32)
    for u in range(n_users):
        group = slice(0, half_i) if u < half_u else slice(half_i, n_items)
        plays[u, group] = 1 + (u + np.arange(half_i)) % 3
        plays[u, group.start + u % half_i] = 0  # the one item of their taste they have not heard
    return sp.csr_matrix(plays)


@pytest.fixture(scope="module")
def board():
    plays = checkerboard()
    # Regularisation 1.0 keeps the factors to the two blocks. At 0.1, four factors also fit each user's
    # play pattern and can push the unheard item as low as the other block's; which user that hits then
    # depended on the machine's floating point (user 1 on one machine, none on another).
    model = WMF(factors=4, regularization=1.0, alpha=10, iterations=10, random_state=0).fit(plays)
    return plays, model


def test_checkerboard_recommends_the_unheard_item_of_ones_group(board):
    plays, model = board
    rec = Recommender(model.user_factors, model.item_factors)
    for u in range(20):
        ids, _ = rec.recommend(u, plays[u], N=1)
        group_start = 0 if u < 10 else 10
        assert ids.tolist() == [group_start + u % 10]
    ids, _ = rec.recommend(np.arange(20), plays, N=10, filter_already_liked_items=False)
    assert ids.shape == (20, 10)
    assert (ids[:10] < 10).all() and (ids[10:] >= 10).all()  # the whole top-10 is one's own group


def test_batch_equals_scalar_and_items_restricts(board):
    plays, model = board
    rec = Recommender(model.user_factors, model.item_factors)
    batch_ids, batch_scores = rec.recommend(np.array([3, 15]), plays[[3, 15]], N=5)
    for row, u in enumerate([3, 15]):
        ids, scores = rec.recommend(u, plays[u], N=5)
        np.testing.assert_array_equal(batch_ids[row, : len(ids)], ids)
        np.testing.assert_allclose(batch_scores[row, : len(ids)], scores, rtol=1e-5, atol=1e-6)
    # Only items 12..19 are candidates: user 3 (group A) gets them, in score order, without liked ones.
    ids, scores = rec.recommend(3, plays[3], N=3, items=np.arange(12, 20))
    assert set(ids) <= set(range(12, 20)) and len(ids) == 3
    assert (np.diff(scores) <= 0).all()
    # Fewer candidates than N: a scalar call returns only what exists.
    ids, _ = rec.recommend(3, plays[3], N=50, items=np.arange(0, 10))
    assert ids.tolist() == [3]


def test_fold_in_solves_the_als_item_equations(board):
    _, model = board
    new = sp.csr_matrix(np.r_[[np.arange(20) < 10], [np.zeros(20)]].astype(np.float32) * 2)
    folded = model.fold_in_items(new)
    x = model.user_factors.astype(np.float64)
    c = model.confidence(new).toarray()[0]
    confidence = np.where(c > 0, c, 1.0)
    a = x.T @ (confidence[:, None] * x) + model.regularization * np.eye(4)
    b = x.T @ (confidence * (c > 0))  # Xᵀ C p with p = 1 where played
    np.testing.assert_allclose(folded[0], np.linalg.solve(a, b), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(folded[1], 0)  # no plays, no direction


def test_confidence_follows_hu_koren_volinsky():
    plays = sp.csr_matrix(np.array([[0, 1, 3]], dtype=np.float32))
    assert WMF(alpha=10).confidence(plays).toarray().tolist() == [[0, 11, 31]]
    np.testing.assert_allclose(WMF(alpha=2, scaling="log", epsilon=1).confidence(plays).data, 1 + 2 * np.log([2, 4]))
    with pytest.raises(ValueError, match="alpha must be > 0, got 0"):
        WMF(alpha=0)


@pytest.mark.parametrize(
    ("chunk_size", "user_batch"), [(3, 37), (24, 500), (64, 1), (999, 500), (1500, 37), (5000, 64)]
)
def test_chunked_topk_equals_a_full_argsort(chunk_size, user_batch):
    rng = np.random.default_rng(chunk_size + user_batch)
    queries = rng.standard_normal((120, 8)).astype(np.float32)
    items = rng.standard_normal((2000, 8)).astype(np.float32)
    exclude = sp.random(120, 1500, density=0.05, random_state=1, format="csr")
    ids, scores = topk(queries, items, 25, exclude=exclude, chunk_size=chunk_size, user_batch=user_batch)
    full = queries @ items.T
    full[exclude.nonzero()] = -np.inf
    expected = np.argsort(-full, axis=1, kind="stable")[:, :25]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-6)


def test_topk_pads_rows_with_too_few_candidates():
    ids, scores = topk(np.ones((2, 1)), np.arange(1, 4)[:, None], 5, exclude=sp.csr_matrix([[1, 0, 1], [0, 0, 0]]))
    assert ids.tolist() == [[1, -1, -1], [2, 1, 0]]
    assert np.isneginf(scores[0, 1:]).all()


def test_similar_items_is_cosine():
    factors = np.array([[1, 0], [10, 1], [0, 1], [-1, 0], [0, 0]], dtype=np.float32)
    rec = Recommender(np.ones((1, 2)), factors)
    ids, scores = rec.similar_items(0, N=4)
    assert ids.tolist() == [0, 1, 2, 4]  # 10x as long does not matter; the zero vector scores 0
    np.testing.assert_allclose(scores, [1, 10 / np.sqrt(101), 0, 0], atol=1e-6)
    ids, _ = rec.similar_items(np.array([0, 2]), N=2, items=[1, 2, 3])
    assert ids.tolist() == [[1, 2], [2, 1]]


def test_similar_to_ranks_any_vector_by_cosine():
    """A new track's predicted factors are in no model: the items nearest in angle, whatever its length."""
    factors = np.array([[1, 0], [10, 1], [0, 1], [-1, 0], [0, 0]], dtype=np.float32)
    rec = Recommender(np.ones((1, 2)), factors)
    ids, scores = rec.similar_to(np.array([[3.0, 3.0], [0.0, 0.0]]), N=3)
    assert ids[0].tolist() == [1, 0, 2]  # items 0 and 2 tie at 45 degrees: the lower index first
    np.testing.assert_allclose(scores[0], [11 / np.sqrt(2 * 101), 1 / np.sqrt(2), 1 / np.sqrt(2)], atol=1e-6)
    np.testing.assert_allclose(scores[1], 0, atol=0)  # a zero query has no direction
    with pytest.raises(ValueError, match="2 columns"):
        rec.similar_to(np.ones((1, 3)))


def test_add_items_makes_a_new_item_recommendable(board):
    plays, model = board
    rec = Recommender(model.user_factors, model.item_factors, item_ids=np.array([f"t{i}" for i in range(20)]))
    # A new track predicted to sound like group B: group B users now get it first.
    new = rec.add_items(["new"], model.item_factors[10:].mean(axis=0, keepdims=True) * 3)
    assert new.tolist() == [20] and rec.item_ids[20] == "new"
    ids, _ = rec.recommend(15, plays[15], N=1)  # plays has 20 columns: the new item was never played
    assert ids.tolist() == [20]
    ids, _ = rec.recommend(5, plays[5], N=1)
    assert ids.tolist() == [5]
    assert rec.similar_items(20, N=2)[0][1] >= 10
    with pytest.raises(ValueError, match=r"already in the model: \['t3'\]"):
        rec.add_items(["t3"], np.zeros((1, 4)))


def test_npz_round_trip_without_pickle(tmp_path, board):
    _, model = board
    users = np.array(["ana", "bo"] * 10, dtype=object) + np.arange(20).astype(str)
    rec = Recommender(model.user_factors, model.item_factors, users, np.arange(100, 120), params=model.get_params())
    rec.save(tmp_path / "factors.npz")
    raw = load_npz(tmp_path / "factors.npz")
    assert raw["user_ids"].dtype.kind == "U"  # object text became fixed-width unicode
    loaded = Recommender.load(tmp_path / "factors.npz", chunk_size=7)
    np.testing.assert_array_equal(loaded.item_factors, rec.item_factors)
    np.testing.assert_array_equal(loaded.user_ids, users.astype(str))
    assert loaded.item_ids.tolist() == list(range(100, 120))
    assert loaded.params == model.get_params() and loaded.chunk_size == 7
    assert loaded.user_index("bo1") == 1 and loaded.item_index(105) == 5


@pytest.mark.gpu
def test_gpu_fit_gives_the_checkerboard_answer():
    plays = checkerboard()
    model = WMF(factors=4, alpha=10, iterations=10, use_gpu=True).fit(plays)
    ids, _ = Recommender(model.user_factors, model.item_factors).recommend(0, plays[0], N=1)
    assert ids.tolist() == [0]
