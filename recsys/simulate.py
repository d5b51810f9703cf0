"""A listening simulator: users with sparse tastes over item features, plus long-tail item popularity.

Each user likes a few features and dislikes one or two; each item has a Zipf-like popularity (shared by
items of one group, e.g. an artist, when groups are given). A user plays a lognormal number of distinct
items, drawn without replacement with probability proportional to
exp((taste . standardized features + log popularity) / temperature) via the Gumbel-top-k trick, and plays
each chosen item 1 + Poisson times, more often the more it fits the user's taste. Collaborative factors
learnt from these plays are therefore related to, but not a function of, the content.
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

    Returns:
        plays: DataFrame with int64 columns user, item, plays (> 0), one row per distinct (user, item),
            sorted by user then item.
        user_tastes: (n_users, n_features) float64 taste weights; nonzero on liked (> 0) and disliked (< 0)
            features only.
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
    rng = np.random.default_rng([seed, 0])

    std = x.std(axis=0)
    varying = np.flatnonzero(std > 0)
    if varying.size < n_liked + n_disliked:
        raise ValueError(f"only {varying.size} varying features for {n_liked} liked + {n_disliked} disliked")
    z = np.zeros_like(x)
    z[:, varying] = (x[:, varying] - x[:, varying].mean(axis=0)) / std[varying]

    log_pop = _log_popularity(n_items, popularity_exponent, item_groups, rng)

    tastes = np.zeros((n_users, n_features))
    picks = np.argsort(rng.random((n_users, varying.size)), axis=1)[:, : n_liked + n_disliked]
    weights = taste_strength * rng.uniform(0.6, 1.4, picks.shape)
    weights[:, n_liked:] *= -1.0
    np.put_along_axis(tastes, varying[picks], weights, axis=1)

    median = mean_items_per_user * np.exp(-0.5 * items_sigma**2)
    counts = np.round(rng.lognormal(np.log(median), items_sigma, n_users))
    counts = np.clip(counts, 1, n_items // 2).astype(int)

    users, items, plays = [], [], []
    for block, lo in enumerate(range(0, n_users, _BLOCK)):
        hi = min(lo + _BLOCK, n_users)
        # A generator per block of users keeps memory bounded without making results depend on it.
        block_rng = np.random.default_rng([seed, 1, block])
        affinity = tastes[lo:hi] @ z.T  # (block, n_items)
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
    return df.sort_values(["user", "item"], kind="stable").reset_index(drop=True), tastes


def _log_popularity(n_items: int, exponent: float, groups: np.ndarray | None, rng: np.random.Generator):
    """Zipf by a random rank; with groups, 70 % of an item's log-popularity is its group's."""

    def zipf(n: int) -> np.ndarray:
        return -exponent * np.log1p(rng.permutation(n).astype(np.float64))

    if groups is None:
        return zipf(n_items)
    _, group_index = np.unique(np.asarray(groups), return_inverse=True)
    group_pop = zipf(int(group_index.max()) + 1)
    return 0.7 * group_pop[group_index] + 0.3 * zipf(n_items)
