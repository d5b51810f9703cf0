"""Intervals that resample artists: they cover the truth when tracks of an artist are alike."""

import numpy as np
import pytest
import scipy.sparse as sp

from coldtag.intervals import cluster_indices, cluster_resamples, paired_difference, runs_difference
from recsys import paired_ranking_difference, ranking_metrics
from recsys.evaluation import _recall


def mean_of_scores(truth, scores):
    return scores.mean()


@pytest.mark.slow
def test_clustered_bootstrap_covers_where_the_track_bootstrap_does_not():
    """Model A beats B by 0.2 per track on average, but by how much depends on the artist (sd 1) far more
    than on the track (sd 0.3): 30 artists of 1-8 tracks. Over 150 simulated test sets, the 90 % interval
    that resamples artists covers 0.2 about 90 % of the time; the one that resamples tracks treats an
    artist's tracks as independent, is too narrow, and misses far more often."""
    rng = np.random.default_rng(1)
    covered = {"artist": 0, "track": 0}
    simulations = 150
    for simulation in range(simulations):
        artist = np.repeat(np.arange(30), rng.integers(1, 9, 30))
        lead = 0.2 + rng.normal(0, 1.0, 30)[artist] + rng.normal(0, 0.3, len(artist))
        zeros = np.zeros(len(lead))
        for name, clusters in (("artist", artist), ("track", np.arange(len(lead)))):
            result = paired_difference(mean_of_scores, zeros, lead, zeros, clusters, resamples=300, level=0.9,
                                       seed=simulation)
            covered[name] += result.low <= 0.2 <= result.high
    assert 0.82 <= covered["artist"] / simulations <= 0.97
    assert covered["track"] / simulations < 0.7


def test_a_resample_draws_whole_clusters_and_unknown_artists_stand_alone():
    clusters = ["a", "b", "a", None, "b", np.nan, "c"]
    assert [g.tolist() for g in cluster_indices(clusters)] == [[0, 2], [1, 4], [6], [3], [5]]
    for rows in cluster_resamples(clusters, 50, seed=3):
        drawn = [clusters[i] for i in rows]
        for label in ("a", "b"):
            assert drawn.count(label) % 2 == 0  # both tracks of the artist, or neither, or twice both
        assert len({i for i in rows if clusters[i] is None or clusters[i] != clusters[i]}) <= 2


def test_identical_models_differ_by_exactly_zero_and_undefined_resamples_are_skipped():
    truth = np.array([1, 0, 1, 0, 0, 1])
    scores = np.array([0.9, 0.1, 0.8, 0.3, 0.2, 0.7])

    def auc(t, s):
        if t.min() == t.max():
            return float("nan")
        return float(np.mean([a > b for a in s[t == 1] for b in s[t == 0]]))
    result = paired_difference(auc, truth, scores, scores, ["x", "y", "z", "w", "v", "u"], resamples=200)
    assert (result.a, result.b, result.difference, result.low, result.high) == (1.0, 1.0, 0.0, 0.0, 0.0)
    assert result.clusters == 6 and 0 < result.resamples < 200  # resamples of one class have no AUC


def test_per_user_ranking_metrics_on_resampled_items_leave_out_users_with_nothing_drawn():
    """Items 0-1 by artist x, 2-3 by y. User 0 played item 0, user 1 item 3, and model a ranks each
    user's item first. Drawing artist x twice gives candidates [0, 1, 0, 1]: user 0 has two relevant
    candidates (both copies, both on top) and user 1 none, so user 1 is left out of the mean rather than
    counted as a miss. Model a then scores recall@2 = 1 on every resample, and model b, which ranks
    each user's item last, 0: the difference is 1 with the interval [1, 1]. Counting the user without
    drawn items as a miss would put resamples at 0.5."""
    relevant = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 1]]))
    best = np.array([[0.9, 0.1, 0.2, 0.3], [0.1, 0.2, 0.3, 0.9]])
    worst = -best
    drawn = ranking_metrics(lambda users: best[users][:, [0, 1, 0, 1]], relevant[:, [0, 1, 0, 1]], ks=(2,), map_k=4)
    assert drawn["users"] == 1 and drawn["recall@2"] == 1.0
    result = paired_ranking_difference(best, worst, relevant, ["x", "x", "y", "y"], metric="recall@2", ks=(2,),
                                       map_k=4, resamples=300)
    assert (result.a, result.b, result.difference, result.low, result.high) == (1.0, 0.0, 1.0, 1.0, 1.0)
    assert result.clusters == 2 and result.resamples == 300
    with pytest.raises(ValueError, match="recall@10"):
        paired_ranking_difference(best, worst, relevant, ["x", "x", "y", "y"], metric="recall@10", ks=(2,))


def test_recall_intervals_score_the_full_sample_as_ranking_metrics_does():
    """Recall has a fast path (each user's ranking computed once, resamples pick columns of it); on the full
    sample it must give `ranking_metrics`' values, users without a relevant item left out alike."""
    rng = np.random.default_rng(0)
    relevant = sp.csr_matrix((rng.random((40, 25)) < 0.15).astype(np.float32))
    a, b = rng.normal(size=(40, 25)), rng.normal(size=(40, 25))
    result = paired_ranking_difference(a, b, relevant, [i // 3 for i in range(25)], metric="recall@5", ks=(5,),
                                       map_k=25, resamples=50)
    assert result.a == pytest.approx(ranking_metrics(lambda users: a[users], relevant, ks=(5,), map_k=25)["recall@5"])
    assert result.b == pytest.approx(ranking_metrics(lambda users: b[users], relevant, ks=(5,), map_k=25)["recall@5"])
    assert result.low <= result.difference <= result.high


def test_the_seed_averaged_difference_of_one_run_is_the_paired_difference_and_of_two_their_mean():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=40)
    a1, a2, b = truth + rng.normal(size=40), truth + rng.normal(size=40), rng.normal(size=40)
    artists = np.repeat(np.arange(10), 4)

    def correlation(t, s):
        return float(np.corrcoef(t, s)[0, 1])
    assert runs_difference(correlation, truth, [a1], b, artists, resamples=100) == \
        paired_difference(correlation, truth, a1, b, artists, resamples=100)
    both = runs_difference(correlation, truth, [a1, a2], b, artists, resamples=100)
    one, two = (paired_difference(correlation, truth, a, b, artists, resamples=100) for a in (a1, a2))
    assert both.a == pytest.approx((one.a + two.a) / 2)
    assert both.difference == pytest.approx((one.difference + two.difference) / 2)
    assert both.low <= both.difference <= both.high and both.clusters == 10
    # Runs on both sides: b's seeds are averaged like a's, so two runs of b that are the same are one.
    assert runs_difference(correlation, truth, [a1, a2], [b, b], artists, resamples=100) == both
    swapped = runs_difference(correlation, truth, [b], [a1, a2], artists, resamples=100)
    assert swapped.difference == pytest.approx(-both.difference)


def test_a_resampled_recall_is_ranking_metrics_on_the_drawn_candidates_repeats_included():
    """The fast recall of a resample (counts of each candidate drawn) is `ranking_metrics`' recall on the
    drawn columns themselves, a candidate drawn twice standing twice; users with nothing relevant drawn
    left out, and NaN when no user has."""
    rng = np.random.default_rng(1)
    relevant = sp.csr_matrix((rng.random((60, 30)) < 0.1).astype(np.float32))
    scores = rng.normal(size=(60, 30))
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    order = np.argsort(-scores[users], axis=1)
    ordered_hits = np.take_along_axis(relevant[users].toarray() > 0, order, axis=1)
    for k in (1, 5, 29):
        for _ in range(20):
            columns = rng.integers(0, 30, 30)
            expected = ranking_metrics(lambda u, c=columns: scores[u][:, c], relevant[:, columns], ks=(k,),
                                       map_k=30)[f"recall@{k}"]
            assert _recall(order, ordered_hits, np.bincount(columns, minlength=30), k) == pytest.approx(expected)
    nothing = np.flatnonzero(np.asarray(relevant.sum(axis=0)).ravel() == 0)[:3]
    assert np.isnan(_recall(order, ordered_hits, np.bincount(nothing, minlength=30), 5))
