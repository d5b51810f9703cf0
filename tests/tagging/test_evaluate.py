import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from tagging.data.features import TrackFeatures
from tagging.evaluation.evaluate import (
    REFERENCE,
    ModalityScores,
    baseline_rows,
    main,
    markdown_table,
    modality_scores,
    pr_auc,
    resampling_clusters,
    roc_auc,
)
from tagging.labels import LabelSpace
from tagging.models.multimodal import MultimodalTagger

VOCAB = {"groups": {"genre": {"type": "multilabel", "labels": ["a", "b"]}}}


def test_baseline_rows_put_groups_first_then_the_labels_asked_for():
    tagger = {"attribute": {"roc_auc": 0.8, "pr_auc": 0.5, "per_label": {"banjo": {"roc_auc": 0.9},
                                                                          "swing": {"roc_auc": 0.85}}},
              "graded": {"spearman": 0.7, "per_label": {"tempo": {"spearman": 0.9}, "energy": {"spearman": 0.6}}}}
    baseline = {"attribute": {"roc_auc": 0.7, "per_label": {"swing": {"roc_auc": 0.55}}},
                "graded": {"spearman": 0.5, "per_label": {"tempo": {"spearman": 0.3}}}}
    rows = baseline_rows(tagger, baseline, labels=("swing", "tempo"))
    assert [r["what"] for r in rows] == ["attribute (macro roc_auc)", "graded (macro spearman)",
                                         "swing (roc_auc)", "tempo (spearman)"]
    assert rows[2] == {"what": "swing (roc_auc)", "tagger": 0.85, "baseline": 0.55}
    assert markdown_table(rows).splitlines()[2] == "| attribute (macro roc_auc) | 0.800 | 0.700 |"
    assert "| – |" in markdown_table([{"x": math.nan}])


def test_macro_auc_counts_ties_half_and_leaves_out_unknown_tracks_and_one_class_labels():
    """Label 0: positives score 0.9 and 0.5, negatives 0.9 and 0.1: ROC-AUC (0.5 + 1 + 0 + 1) / 4; the
    positives come at precision 1/2 (the tied pair) and 2/3. Label 1 has no negative, so no AUC; the last
    track has no target at all."""
    truth = np.array([[1, 1], [0, 1], [1, 1], [0, 1], [np.nan, np.nan]])
    scores = np.array([[0.9, 0.1], [0.9, 0.2], [0.5, 0.3], [0.1, 0.4], [0.0, 0.5]])
    assert roc_auc(truth, scores) == pytest.approx(0.625)
    assert pr_auc(truth, scores) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert math.isnan(roc_auc(truth[:, 1], scores[:, 1])) and math.isnan(pr_auc(truth[1:2], scores[1:2]))
    rng = np.random.default_rng(0)
    for _ in range(5):  # many ties, scattered unknown targets: as scikit-learn, label by label
        truth = (rng.random((30, 4)) < 0.4).astype(float)
        truth[rng.random((30, 4)) < 0.1] = np.nan
        scores = rng.integers(0, 4, (30, 4)) / 3
        known = [~np.isnan(truth[:, j]) for j in range(4)]
        assert roc_auc(truth, scores) == pytest.approx(np.mean([roc_auc_score(truth[k, j], scores[k, j])
                                                                for j, k in enumerate(known)]))
        assert pr_auc(truth, scores) == pytest.approx(np.mean([average_precision_score(truth[k, j], scores[k, j])
                                                               for j, k in enumerate(known)]))


def scores_of(truth, tagger, model):
    """A one-population `ModalityScores` of ``model`` against the ``tagger`` reference, on every track."""
    n = len(truth)
    everyone = np.ones(n, dtype=bool)
    return ModalityScores(LabelSpace.from_dict(VOCAB), pd.DataFrame({"track_id": [f"t{i}" for i in range(n)]}),
                          {"genre": truth}, {"all tracks": everyone}, {REFERENCE: everyone, "fused": everyone},
                          {REFERENCE: {"genre": tagger}, "fused": {"genre": model}})


def test_a_model_identical_to_the_tagger_differs_by_zero_with_interval_zero_to_zero():
    rng = np.random.default_rng(0)
    truth = (rng.random((20, 2)) < 0.5).astype(np.float32)
    tagger = rng.random((20, 2)).astype(np.float32)
    rows = scores_of(truth, tagger, tagger.copy()).differences(np.arange(20), resamples=100)
    assert [(r["metric"], r["difference"], r["95 % low"], r["95 % high"]) for r in rows] == [
        ("roc_auc", 0.0, 0.0, 0.0), ("pr_auc", 0.0, 0.0, 0.0)]
    assert rows[0]["multimodal"] == rows[0]["tagger"] == roc_auc(truth, tagger)
    assert rows[0]["n"] == rows[0]["clusters"] == 20


def test_a_lead_carried_by_one_artist_gets_a_wider_interval_when_artists_are_resampled():
    """Twelve artists of four tracks; the tagger ranks every track at random, the model too except on
    artist 0's tracks, which it ranks right. Resampling tracks treats those four as independent evidence;
    resampling artists sees one artist, drawn zero, one or more times (the spread of a count of four tracks
    that come together, about twice that of four apart, less what the AUC's bounds take off)."""
    rng = np.random.default_rng(0)
    artists = np.repeat([f"artist{i}" for i in range(12)], 4)
    truth = np.tile([[1, 0], [0, 1]], (24, 1)).astype(np.float32)
    tagger = rng.random((48, 2)).astype(np.float32)
    model = tagger.copy()
    model[:4] = 0.5 + 0.5 * truth[:4]  # artist0: positives at 1 above every other score, negatives at 0.5
    scores = scores_of(truth, tagger, model)
    by_artist, by_track = (scores.differences(clusters, resamples=300)[0] for clusters in (artists, np.arange(48)))
    assert by_artist["difference"] == by_track["difference"] > 0
    assert by_artist["clusters"] == 12 and by_track["clusters"] == 48
    width = {name: row["95 % high"] - row["95 % low"] for name, row in (("artist", by_artist),
                                                                          ("track", by_track))}
    assert width["artist"] > 1.2 * width["track"]  # 1.24-1.57 over seeds 0-7 of the scores


def test_clusters_are_artists_when_the_manifest_has_them_else_each_track_alone():
    frame = pd.DataFrame({"track_id": ["t0", "t1", "t2"], "artist_id": ["x", "x", None], "label": [1, 1, 2]})
    clusters, column = resampling_clusters(frame, None, "m.parquet")
    assert column == "artist_id" and clusters[:2].tolist() == ["x", "x"] and pd.isna(clusters[2])
    clusters, column = resampling_clusters(frame.drop(columns="artist_id"), None, "m.parquet")
    assert column is None and clusters.tolist() == [0, 1, 2]
    assert resampling_clusters(frame, "label", "m.parquet")[0].tolist() == [1, 1, 2]
    with pytest.raises(ValueError, match=r"m\.parquet: manifest has no column 'artist'"):
        resampling_clusters(frame, "artist", "m.parquet")


def handmade(tmp_path):
    """40 test tracks of ten artists (four each), only even ones with lyrics, and a hand-made model that
    tags genre a iff lyrics[0] > 0, which the lyrics know; it ignores the audio. The audio tagger's cached
    scores are 0.5 for everything. Tracks t40-t43 are in no split of ``fusion_split`` and have no features."""
    rng = np.random.default_rng(0)
    n = 40
    label = rng.random(n) < 0.5
    manifest = pd.DataFrame({"track_id": [f"t{i}" for i in range(n + 4)], "audio_path": ["x.wav"] * (n + 4),
                             "artist_id": [f"artist{i // 4}" for i in range(n + 4)], "split": "train",
                             "fusion_split": ["test"] * n + [None] * 4,
                             "genre": [["a"] if y else ["b"] for y in label] + [["a"]] * 4})
    manifest.to_parquet(tmp_path / "manifest.parquet")
    lyrics = np.zeros((n, 3), dtype=np.float32)
    lyrics[:, 0] = np.where(label, 3.0, -3.0)  # the layer norm keeps its sign: the other two are equal
    features = TrackFeatures(track_ids=manifest["track_id"].to_numpy()[:n].astype(str),
                             arrays={"audio": rng.normal(size=(n, 4)).astype(np.float32), "lyrics": lyrics,
                                     "scores/genre": np.full((n, 2), 0.5, dtype=np.float32)},
                             present={"audio": np.ones(n, bool), "lyrics": np.arange(n) % 2 == 0})
    features.save(tmp_path / "features.npz")
    torch.manual_seed(0)
    model = MultimodalTagger(VOCAB, {"audio": 4, "lyrics": 3}, hidden=8, dropout=0.0, modality_dropout=0.0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.projections["lyrics"][0].weight.fill_(1.0)
        model.projections["lyrics"][1].weight[0, 0] = 1.0
        model.mix[0].weight[0, 0] = 1.0
        model.heads["genre"].weight[:, 0] = torch.tensor([1.0, -1.0])
    return model, features


def test_modality_rows_use_only_the_named_modalities_and_tracks(tmp_path):
    model, features = handmade(tmp_path)
    rows = modality_scores(model, tmp_path / "manifest.parquet", features, split_column="fusion_split").rows()
    by_name = {(r["inputs"], r["tracks"]): r for r in rows}
    assert by_name[("lyrics only", "all tracks")]["n"] == 20
    assert by_name[("lyrics only", "all tracks")]["genre roc_auc"] == 1.0
    assert by_name[("audio only", "all tracks")]["genre roc_auc"] == 0.5  # constant scores
    assert by_name[("fused (audio + lyrics)", "tracks with all modalities")]["n"] == 20
    assert by_name[(REFERENCE, "all tracks")]["n"] == 40
    with pytest.raises(KeyError, match="no features for 4 track"):  # t40-t43 are test tracks of `split`...
        modality_scores(model, tmp_path / "manifest.parquet", features, split="train")
    with pytest.raises(ValueError, match=r"manifest\.parquet: manifest has no split column 'fusion'"):
        modality_scores(model, tmp_path / "manifest.parquet", features, split_column="fusion")


def test_modalities_command_writes_the_difference_to_the_tagger_with_artist_intervals(tmp_path, capsys):
    """The lyrics alone rank genre perfectly and the tagger's constant scores at random: +0.5 ROC-AUC on
    every resample. The audio alone gives constant scores too, so exactly the tagger's."""
    model, _ = handmade(tmp_path)
    model.save_pretrained(tmp_path / "model")
    main(["modalities", "--model", str(tmp_path / "model"), "--manifest", str(tmp_path / "manifest.parquet"),
          "--features", str(tmp_path / "features.npz"), "--split-column", "fusion_split", "--resamples", "50",
          "--out", str(tmp_path / "out")])
    table = pd.read_csv(tmp_path / "out" / "modalities_vs_tagger.csv")
    roc = table[table["metric"] == "roc_auc"].set_index(["inputs", "tracks"])
    lyrics = roc.loc[("lyrics only", "all tracks")]
    assert (lyrics["n"], lyrics["clusters (artist_id)"]) == (20, 10)
    assert (lyrics["difference"], lyrics["95 % low"], lyrics["95 % high"]) == (0.5, 0.5, 0.5)
    audio = roc.loc[("audio only", "all tracks")]
    assert (audio["n"], audio["clusters (artist_id)"]) == (40, 10)
    assert (audio["difference"], audio["95 % low"], audio["95 % high"]) == (0.0, 0.0, 0.0)
    assert len(table) == 3 * 2 * 2  # (audio, lyrics, fused) x populations x (ROC-AUC, PR-AUC)
    modalities = pd.read_csv(tmp_path / "out" / "modalities.csv").set_index(["inputs", "tracks"])
    fused = roc.loc[("fused (audio + lyrics)", "tracks with all modalities")]
    assert fused["multimodal"] == modalities.loc[fused.name, "genre roc_auc"]
    markdown = (tmp_path / "out" / "modalities_vs_tagger.md").read_text()
    assert "clusters (artist_id)" in markdown and "fusion_split = test" in markdown
    assert "resamples of clusters (artist_id)" in capsys.readouterr().out
