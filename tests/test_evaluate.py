import math

import numpy as np
import pandas as pd
import torch

from tagging.evaluate import baseline_rows, markdown_table, modality_rows
from tagging.features import TrackFeatures
from tagging.multimodal import MultimodalTagger


def test_baseline_rows_put_groups_first_then_temporal_traits():
    tagger = {"attribute": {"roc_auc": 0.8, "pr_auc": 0.5, "per_label": {"banjo": {"roc_auc": 0.9},
                                                                          "swing": {"roc_auc": 0.85}}},
              "graded": {"spearman": 0.7, "per_label": {"tempo": {"spearman": 0.9}, "energy": {"spearman": 0.6}}}}
    baseline = {"attribute": {"roc_auc": 0.7, "per_label": {"swing": {"roc_auc": 0.55}}},
                "graded": {"spearman": 0.5, "per_label": {"tempo": {"spearman": 0.3}}}}
    rows = baseline_rows(tagger, baseline)
    assert [r["what"] for r in rows] == ["attribute (macro roc_auc)", "graded (macro spearman)",
                                         "swing (roc_auc)", "tempo (spearman)"]
    assert rows[2] == {"what": "swing (roc_auc)", "tagger": 0.85, "baseline": 0.55}
    assert markdown_table(rows).splitlines()[2] == "| attribute (macro roc_auc) | 0.800 | 0.700 |"
    assert "| – |" in markdown_table([{"x": math.nan}])


def test_modality_rows_use_only_the_named_modalities_and_tracks(tmp_path):
    vocab = {"groups": {"genre": {"type": "multilabel", "labels": ["a", "b"]}}}
    rng = np.random.default_rng(0)
    n = 40
    label = rng.random(n) < 0.5
    manifest = pd.DataFrame({"track_id": [f"t{i}" for i in range(n)], "audio_path": ["x.wav"] * n,
                             "split": ["test"] * n, "genre": [["a"] if y else ["b"] for y in label]})
    manifest.to_parquet(tmp_path / "manifest.parquet")
    lyrics = rng.normal(size=(n, 3)).astype(np.float32)
    lyrics[:, 0] = np.where(label, 3.0, -3.0)  # the lyrics know the genre, the audio does not
    present = {"audio": np.ones(n, bool), "lyrics": np.arange(n) % 2 == 0}
    features = TrackFeatures(track_ids=manifest["track_id"].to_numpy().astype(str),
                             arrays={"audio": rng.normal(size=(n, 4)).astype(np.float32), "lyrics": lyrics},
                             present=present)
    torch.manual_seed(0)
    model = MultimodalTagger(vocab, {"audio": 4, "lyrics": 3}, hidden=8, dropout=0.0, modality_dropout=0.0)
    with torch.no_grad():  # a hand-made model: genre a is lyrics[0] > 0, whatever the audio says
        for p in model.parameters():
            p.zero_()
        model.projections["lyrics"][1].weight[0, 0] = 1.0
        model.mix[0].weight[0, 0] = 1.0
        model.heads["genre"].weight[:, 0] = torch.tensor([1.0, -1.0])
    model.projections["lyrics"][0] = torch.nn.Identity()  # no LayerNorm: keep the sign of lyrics[0]
    rows = modality_rows(model, tmp_path / "manifest.parquet", features)
    by_name = {(r["inputs"], r["tracks"]): r for r in rows}
    assert by_name[("lyrics only", "all tracks")]["n"] == n // 2
    assert by_name[("lyrics only", "all tracks")]["genre roc_auc"] == 1.0
    assert by_name[("audio only", "all tracks")]["genre roc_auc"] == 0.5  # constant scores
    assert by_name[("fused (audio + lyrics)", "tracks with all modalities")]["n"] == n // 2
