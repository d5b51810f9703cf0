"""The listeners of a toy catalog: each track as a vector of traits, listed and hidden, and the plays and
users simulated over them (`toycatalog.simulate.simulate_plays`).

Listed traits are those the vocabulary names (genres, moods, attributes, graded values); hidden ones are
what the audio carries beyond them (`toycatalog.catalog.hidden_traits`). With a hidden taste of 0 users
like listed traits only, and content that describes the listed traits has, by construction, all there is
to know; a hidden taste above 0 gives audio something to hear that no annotation says.
"""

import numpy as np
import pandas as pd

from toycatalog.catalog import ATTRIBUTES, GENRES, GRADED, GRADED_RANGES, HIDDEN_TRAITS, MOODS, hidden_traits
from toycatalog.simulate import simulate_plays
from toycatalog.synth import TrackSpec

# Zipf exponent of artist and track popularity: the top tenth of tracks draws about a third of listeners.
POPULARITY = 1.3


def item_features(manifest: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """The noiseless trait vector of each track (genres, moods, true attributes, graded in [0, 1])."""
    names = ([f"genre:{g}" for g in GENRES] + [f"mood:{m}" for m in MOODS]
             + [f"attribute:{a}" for a in ATTRIBUTES] + [f"graded:{g}" for g in GRADED])
    x = np.zeros((len(manifest), len(names)))
    col = {n: j for j, n in enumerate(names)}
    for i, row in enumerate(manifest.itertuples(index=False)):
        for g in row.genre:
            x[i, col[f"genre:{g}"]] = 1.0
        for m in row.mood:
            x[i, col[f"mood:{m}"]] = 1.0
        for a in row.true_attribute:
            x[i, col[f"attribute:{a}"]] = 1.0
    lo, hi = GRADED_RANGES[0]
    x[:, col["graded:tempo"]] = (manifest["bpm"].to_numpy() - lo) / (hi - lo)
    for g in GRADED[1:]:
        x[:, col[f"graded:{g}"]] = manifest[f"true_{g}"].to_numpy()
    return x, names


def hidden_features(specs: list[TrackSpec]) -> tuple[np.ndarray, list[str]]:
    """(n_tracks, len(HIDDEN_TRAITS)) hidden traits of each track, and their names (`hidden:<trait>`)."""
    return np.array([hidden_traits(spec) for spec in specs]), [f"hidden:{t}" for t in HIDDEN_TRAITS]


def simulate_listeners(manifest: pd.DataFrame, artist_index: np.ndarray, n_users: int, *, seed: int,
                       items_per_user: float, specs: list[TrackSpec] | None = None,
                       hidden_taste: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Plays and users of the catalog `manifest`, whose tracks' artists are `artist_index` (n_tracks,).

    `specs` (the tracks' specs, in manifest order) add the hidden traits: users then like and dislike
    hidden traits too, with weight `hidden_taste` (in [0, 1], the `hidden_share` of `simulate_plays`),
    and their hidden likes are listed. Without them the users are those of a catalog built before hidden
    traits existed, bit for bit.

    Returns:
        plays: user_id, track_id, plays (> 0); one row per pair that met.
        users: user_id, n_tracks, total_plays, liked and disliked (lists of trait names).
    """
    features, names = item_features(manifest)
    hidden = None
    if specs is not None:
        hidden, hidden_names = hidden_features(specs)
        names = names + hidden_names
    plays, tastes = simulate_plays(
        features, n_users, seed=seed, mean_items_per_user=items_per_user, item_groups=artist_index,
        popularity_exponent=POPULARITY, hidden_features=hidden, hidden_share=hidden_taste,
    )
    track_ids = manifest["track_id"].to_numpy()
    user_ids = np.array([f"u{u:05d}" for u in range(n_users)])
    per_user = plays.groupby("user")["plays"].agg(["size", "sum"]).reindex(range(n_users), fill_value=0)
    return pd.DataFrame({
        "user_id": user_ids[plays["user"].to_numpy()],
        "track_id": track_ids[plays["item"].to_numpy()],
        "plays": plays["plays"].to_numpy(),
    }), pd.DataFrame({
        "user_id": user_ids,
        "n_tracks": per_user["size"].to_numpy(),
        "total_plays": per_user["sum"].to_numpy(),
        "liked": [[names[j] for j in np.flatnonzero(t > 0)] for t in tastes],
        "disliked": [[names[j] for j in np.flatnonzero(t < 0)] for t in tastes],
    })
