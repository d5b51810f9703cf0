"""A listening simulator: users with sparse tastes over item features, plus long-tail item popularity.

Each user likes a few features and dislikes one or two; each item has a Zipf-like popularity (shared by
items of one group, e.g. an artist, when groups are given). A user plays a lognormal number of distinct
items, drawn without replacement with probability proportional to
exp((taste . standardized features + log popularity) / temperature) via the Gumbel-top-k trick, and plays
each chosen item 1 + Poisson times, more often the more it fits the user's taste. Collaborative factors
learnt from these plays are therefore related to, but not a function of, the content.

Optionally part of the taste follows *hidden* features: properties an item has that the features a model
is given do not list (in a music catalog, traits the audio carries but the annotations leave out). Without
them, a comparison of content that describes the listed features against content that does not is decided
by construction: the listed features are then all there is to like.
"""

import numpy as np
import pandas as pd

_BLOCK = 512  # users scored at once: memory is _BLOCK * n_items floats


def simulate_plays(
    item_features: np.ndarray,
    n_users: int,
    *,
    seed: int,
    mean_items_per_user: float = 20.0,
    items_sigma: float = 0.8,
    popularity_exponent: float = 1.0,
    item_groups: np.ndarray | None = None,
    n_liked: int = 3,
    n_disliked: int = 1,
    taste_strength: float = 1.5,
    temperature: float = 1.0,
    mean_extra_plays: float = 2.0,
    hidden_features: np.ndarray | None = None,
    hidden_share: float = 0.0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Simulate who plays what, and how often.

    Args:
        item_features: (n_items, n_features) float, e.g. multi-hot traits; constant columns are ignored.
        n_users: number of users to simulate.
        seed: everything below is a deterministic function of it.
        mean_items_per_user: mean of the lognormal number of distinct items per user (>= 1 each).
        items_sigma: spread (log scale) of that number; heavy users have many times the median.
        popularity_exponent: Zipf exponent of item popularity by rank; 0 makes all items equally popular.
        item_groups: optional (n_items,) group of each item (an artist); items of one group share most
            of their popularity, as an artist's tracks do.
        n_liked, n_disliked: how many features each user likes and dislikes.
        taste_strength: weight of a liked (minus, of a disliked) standardized feature in the score.
        temperature: divides the score; higher makes choices closer to popularity alone.
        mean_extra_plays: mean of the Poisson repeat count for an item of average affinity.
        hidden_features: optional (n_items, n_hidden) float, features the items have but `item_features`
            does not list; constant columns are ignored. Each user also likes `n_liked` and dislikes
            `n_disliked` of them, drawn from a generator of their own, so that the users' listed tastes,
            item popularity and play counts are the same whether hidden features are given or not.
        hidden_share: in [0, 1], how much of the taste follows the hidden features. The score is
            sqrt(1 - hidden_share) * listed taste . z + sqrt(hidden_share) * hidden taste . z_hidden: the two
            parts' variances stand in the ratio (1 - share) : share (for a user whose liked features are
            independent and alike in number), and the spread of taste is the same at every share, so
            varying the share changes what users like, not how much taste outweighs popularity. At 0
            every output but `user_tastes`' extra columns is bit for bit the output without hidden features.

    Returns:
        plays: DataFrame with int64 columns user, item, plays (> 0), one row per distinct (user, item),
            sorted by user then item.
        user_tastes: (n_users, n_features) float64 taste weights; nonzero on liked (> 0) and disliked (< 0)
            features only. With `hidden_features`, (n_users, n_features + n_hidden): the hidden tastes are
            the last columns, unscaled by the share (a user's likes do not depend on it).
    """
    x = np.asarray(item_features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"item_features must be (n_items >= 2, n_features), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("item_features contains NaN or inf")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    if mean_items_per_user < 1 or temperature <= 0 or taste_strength < 0 or mean_extra_plays < 0:
        raise ValueError(
            f"need mean_items_per_user >= 1 (got {mean_items_per_user}), temperature > 0 (got {temperature}),"
            f" taste_strength >= 0 (got {taste_strength}), mean_extra_plays >= 0 (got {mean_extra_plays})"
        )
    n_items, n_features = x.shape
    if item_groups is not None and len(item_groups) != n_items:
        raise ValueError(f"item_groups has {len(item_groups)} entries for {n_items} items")
    if not 0.0 <= hidden_share <= 1.0:
        raise ValueError(f"hidden_share must be in [0, 1], got {hidden_share}")
    if hidden_features is None and hidden_share > 0:
        raise ValueError(f"hidden_share {hidden_share} > 0 needs hidden_features")
    if hidden_features is not None:
        h = np.asarray(hidden_features, dtype=np.float64)
        if h.ndim != 2 or h.shape[0] != n_items:
            raise ValueError(f"hidden_features must be (n_items={n_items}, n_hidden), got shape {h.shape}")
        if not np.isfinite(h).all():
            raise ValueError("hidden_features contains NaN or inf")
    rng = np.random.default_rng([seed, 0])

    z, varying = _standardize(x, n_liked, n_disliked, "features")
    log_pop = _log_popularity(n_items, popularity_exponent, item_groups, rng)
    tastes = _draw_tastes(varying, n_features, n_users, n_liked, n_disliked, taste_strength, rng)
    if hidden_features is not None:
        z_hidden, varying_hidden = _standardize(h, n_liked, n_disliked, "hidden_features")
        # A stream of their own: the draws above, and so the plays at share 0, stay what they were.
        hidden_tastes = _draw_tastes(varying_hidden, h.shape[1], n_users, n_liked, n_disliked, taste_strength,
                                     np.random.default_rng([seed, 2]))

    median = mean_items_per_user * np.exp(-0.5 * items_sigma**2)
    counts = np.round(rng.lognormal(np.log(median), items_sigma, n_users))
    counts = np.clip(counts, 1, n_items // 2).astype(int)

    users, items, plays = [], [], []
    for block, lo in enumerate(range(0, n_users, _BLOCK)):
        hi = min(lo + _BLOCK, n_users)
        # A generator per block of users keeps memory bounded without making results depend on it.
        block_rng = np.random.default_rng([seed, 1, block])
        affinity = tastes[lo:hi] @ z.T  # (block, n_items)
        if hidden_share > 0:  # skipped at 0, so that the scores are bit for bit those without hidden features
            affinity = (np.sqrt(1.0 - hidden_share) * affinity
                        + np.sqrt(hidden_share) * (hidden_tastes[lo:hi] @ z_hidden.T))
        gumbel = -np.log(-np.log(block_rng.random(affinity.shape)))
        keys = (affinity + log_pop) / temperature + gumbel
        k_max = int(counts[lo:hi].max())
        top = np.argpartition(-keys, k_max - 1, axis=1)[:, :k_max]
        order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        keep = np.arange(k_max)[None, :] < counts[lo:hi, None]
        rows = np.broadcast_to(np.arange(lo, hi)[:, None], top.shape)[keep]
        cols = top[keep]
        aff = affinity[rows - lo, cols]
        # Repeat listens grow with fit, boundedly: even a perfect match is replayed only a few times more.
        rate = mean_extra_plays * np.exp(np.clip(aff / (2.0 * max(taste_strength, 1e-9)), -1.5, 1.5))
        users.append(rows)
        items.append(cols)
        plays.append(1 + block_rng.poisson(rate * block_rng.gamma(2.0, 0.5, rate.shape)))
    df = pd.DataFrame(
        {
            "user": np.concatenate(users).astype(np.int64),
            "item": np.concatenate(items).astype(np.int64),
            "plays": np.concatenate(plays).astype(np.int64),
        }
    )
    if hidden_features is not None:
        tastes = np.hstack([tastes, hidden_tastes])
    return df.sort_values(["user", "item"], kind="stable").reset_index(drop=True), tastes


def _standardize(x: np.ndarray, n_liked: int, n_disliked: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Columns scaled to mean 0 and variance 1, and the indices of those that vary; constant columns stay
    0, for nobody can like what every item has."""
    std = x.std(axis=0)
    varying = np.flatnonzero(std > 0)
    if varying.size < n_liked + n_disliked:
        raise ValueError(f"only {varying.size} varying {name} for {n_liked} liked + {n_disliked} disliked")
    z = np.zeros_like(x)
    z[:, varying] = (x[:, varying] - x[:, varying].mean(axis=0)) / std[varying]
    return z, varying


def _draw_tastes(varying: np.ndarray, n_features: int, n_users: int, n_liked: int, n_disliked: int,
                 strength: float, rng: np.random.Generator) -> np.ndarray:
    """(n_users, n_features): each user weighs `n_liked` varying features up and `n_disliked` down."""
    tastes = np.zeros((n_users, n_features))
    picks = np.argsort(rng.random((n_users, varying.size)), axis=1)[:, : n_liked + n_disliked]
    weights = strength * rng.uniform(0.6, 1.4, picks.shape)
    weights[:, n_liked:] *= -1.0
    np.put_along_axis(tastes, varying[picks], weights, axis=1)
    return tastes


def _log_popularity(n_items: int, exponent: float, groups: np.ndarray | None, rng: np.random.Generator):
    """Zipf by a random rank; with groups, 70 % of an item's log-popularity is its group's."""

    def zipf(n: int) -> np.ndarray:
        return -exponent * np.log1p(rng.permutation(n).astype(np.float64))

    if groups is None:
        return zipf(n_items)
    _, group_index = np.unique(np.asarray(groups), return_inverse=True)
    group_pop = zipf(int(group_index.max()) + 1)
    return 0.7 * group_pop[group_index] + 0.3 * zipf(n_items)
