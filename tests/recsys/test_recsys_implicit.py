"""A Recommender answers implicit's calls as an implicit ALS model with the same factors does."""

import implicit.cpu.als
import numpy as np
import pytest
import scipy.sparse as sp
from implicit.evaluation import ranking_metrics_at_k
from threadpoolctl import threadpool_limits

from recsys import WMF, Recommender


@pytest.fixture(scope="module")
def fitted():
    """An implicit ALS model on random plays (no ties in its scores), a test split, and our twin of it."""
    rng = np.random.default_rng(0)
    plays = sp.random(60, 40, density=0.2, random_state=1, format="csr", data_rvs=lambda n: rng.integers(1, 6, n))
    plays = plays.astype(np.float32)
    test = sp.random(60, 40, density=0.1, random_state=2, format="csr")
    test.data[:] = 1
    with threadpool_limits(1, "blas"):
        model = implicit.cpu.als.AlternatingLeastSquares(
            factors=6, regularization=0.3, alpha=4.0, iterations=5, random_state=0, num_threads=1
        )
        model.fit(plays, show_progress=False)
    twin = Recommender(model.user_factors, model.item_factors, regularization=0.3, alpha=4.0)
    return plays, test, model, twin


def test_ranking_metrics_at_k_agree(fitted):
    plays, test, model, twin = fitted
    theirs = ranking_metrics_at_k(model, plays, test, K=5, show_progress=False)
    ours = ranking_metrics_at_k(twin, plays, test, K=5, show_progress=False)
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert theirs["precision"] > 0  # a model that hits nothing would agree trivially


def test_recommend_agrees_for_one_user_a_batch_and_filters(fitted):
    plays, _, model, twin = fitted
    users = np.arange(10, 20)
    for kwargs in ({}, {"filter_items": np.array([0, 3, 7])}, {"items": np.arange(5, 30)},
                   {"filter_already_liked_items": False}):
        theirs = model.recommend(users, plays[users], N=8, **kwargs)
        ours = twin.recommend(users, plays[users], N=8, **kwargs)
        # implicit's ids are int32 (with ``items``, the dtype of that array); ours always int32.
        assert ours[0].dtype == np.int32 and ours[1].dtype == theirs[1].dtype == np.float32
        np.testing.assert_array_equal(ours[0], theirs[0])
        np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5)
    ids, scores = twin.recommend(12, plays[12], N=8)
    theirs = model.recommend(12, plays[12], N=8)[0]
    assert theirs.dtype == np.int32
    np.testing.assert_array_equal(ids, theirs)
    assert ids.shape == scores.shape == (8,)


def test_recalculate_user_agrees_and_folds_in_a_new_listener(fitted):
    plays, _, model, twin = fitted
    users = np.arange(0, 60, 7)
    np.testing.assert_allclose(twin.recalculate_user(users, plays[users]), model.recalculate_user(users, plays[users]),
                               rtol=1e-4, atol=1e-5)
    # A listener the model never saw: only their plays exist; userid is a placeholder, as in implicit.
    newcomer = sp.csr_matrix(plays[5].toarray() + plays[6].toarray())
    theirs = model.recommend(0, newcomer, N=6, recalculate_user=True)
    ours = twin.recommend(0, newcomer, N=6, recalculate_user=True)
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-4)


def test_each_reads_the_others_npz(tmp_path, fitted):
    plays, _, model, twin = fitted
    model.save(tmp_path / "theirs.npz")
    loaded = Recommender.load(tmp_path / "theirs.npz")
    assert (loaded.regularization, loaded.alpha) == (pytest.approx(0.3), pytest.approx(4.0))
    assert loaded.params["iterations"] == 5 and loaded.item_ids.tolist() == list(range(40))
    np.testing.assert_allclose(loaded.recalculate_user(3, plays[3]), model.recalculate_user(3, plays[3]), rtol=1e-4)

    twin.save(tmp_path / "ours.npz")
    theirs = implicit.cpu.als.AlternatingLeastSquares.load(str(tmp_path / "ours.npz"))
    assert (theirs.regularization, theirs.alpha, theirs.factors) == (pytest.approx(0.3), pytest.approx(4.0), 6)
    np.testing.assert_allclose(theirs.recalculate_user(3, plays[3]), twin.recalculate_user(3, plays[3]), rtol=1e-4)


def test_a_wmf_model_folds_a_user_in_as_its_fit_did():
    """WMF hands implicit confidences 1 + α·r with alpha 1: folding in a fitted user's confidence row
    reproduces that user's ALS step against the final item factors."""
    rng = np.random.default_rng(3)
    plays = sp.random(30, 20, density=0.3, random_state=4, format="csr", data_rvs=lambda n: rng.integers(1, 4, n))
    wmf = WMF(factors=4, regularization=0.5, alpha=5, iterations=3, use_gpu=False, num_threads=1).fit(plays)
    rec = Recommender(wmf.user_factors, wmf.item_factors, params=wmf.get_params())
    assert (rec.regularization, rec.alpha) == (0.5, 1.0)
    confidence = wmf.confidence(plays[7])
    y = wmf.item_factors.astype(np.float64)
    c = np.ones(20)
    c[confidence.indices] = confidence.data
    expected = np.linalg.solve(y.T @ (c[:, None] * y) + 0.5 * np.eye(4), y.T @ (c * (c > 1)))
    np.testing.assert_allclose(rec.recalculate_user(7, confidence), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="needs the regularization"):
        Recommender(wmf.user_factors, wmf.item_factors).recalculate_user(7, confidence)
