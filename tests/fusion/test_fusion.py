"""Content -> factors regression: the models, their training, and the ablation and packaging commands."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
import yaml

from fusion.ablation import (
    DataPaths,
    Row,
    ablation_rows,
    row_config,
    row_differences,
    run_ablation,
    run_audio_rows,
    train_row,
)
from fusion.cli import main
from fusion.data import FUSION_SPLIT, available_sources, split_warm_tracks
from fusion.lightning import mean_cosine_distance
from fusion.model import AudioFactorRegressor, LateFusionRegressor
from recsys import ColdStartSplit
from tagging.data.features import TrackFeatures
from tagging.labels import read_manifest
from tagging.runs import apply_setting, parse_setting

DIMS = {"audio": 6, "lyrics": 5, "cover": 4}
ROOT = Path(__file__).resolve().parents[2]


def config(name: str, *settings: str) -> dict:
    """A shipped LightningCLI config with some settings changed (``DOTTED.KEY=VALUE``)."""
    config = yaml.safe_load((ROOT / "configs" / name).read_text())
    for text in settings:
        apply_setting(config, *parse_setting(text))
    return config


def linear_split(n_items=600, n_users=80, n_factors=8, seed=0):
    """Items whose factors are a fixed linear map of their (audio, lyrics) inputs, and users who play the
    ten items that suit them best: a content model can learn both the factors and the rankings."""
    rng = np.random.default_rng(seed)
    sources = {"audio": rng.normal(size=(n_items, 10)), "lyrics": rng.normal(size=(n_items, 6))}
    sources = {k: v.astype(np.float32) for k, v in sources.items()}
    factors = np.concatenate(list(sources.values()), axis=1) @ rng.normal(size=(16, n_factors))
    users = rng.normal(size=(n_users, n_factors))
    subsets = np.array(["warm"] * (n_items - 200) + ["cold_val"] * 100 + ["cold_test"] * 100)
    plays = sp.lil_matrix((n_users, n_items))
    for subset in ("warm", "cold_val", "cold_test"):
        items = np.flatnonzero(subsets == subset)
        best = np.argsort(-(users @ factors[items].T), axis=1)[:, :10]
        for user, row in enumerate(best):
            plays[user, items[row]] = 1.0
    split = ColdStartSplit(np.arange(n_users), np.array([f"t{i}" for i in range(n_items)]), subsets,
                           users.astype(np.float32), factors.astype(np.float32), plays.tocsr())
    present = {"audio": np.ones(n_items, dtype=bool), "lyrics": np.ones(n_items, dtype=bool)}
    return split, (sources, present)


def test_fusion_learns_factors_that_are_a_linear_map_of_the_inputs(tmp_path, one_thread):
    """A row trained through train.py's CLI from files (split, features, manifest) as the ablation runs it."""
    split, (sources, present) = linear_split()
    split.save(tmp_path / "recsys" / "coldstart.npz")
    TrackFeatures(track_ids=split.item_ids.astype(str), arrays=sources, present=present).save(tmp_path / "f.npz")
    pd.DataFrame({"track_id": split.item_ids, "audio_path": "none.wav"}).to_parquet(tmp_path / "manifest.parquet")
    (tmp_path / "vocab.json").write_text(json.dumps({"groups": {"genre": {"labels": ["x"]}}}))
    paths = DataPaths(tmp_path / "manifest.parquet", tmp_path / "vocab.json", tmp_path / "f.npz", tmp_path / "recsys")
    row = Row("audio + lyrics", ("audio", "lyrics"))
    untrained = train_row(row_config(config("fusion_demo.yaml", "trainer.max_epochs=0"), row, paths, 0, (10,), 50),
                          tmp_path / "untrained")
    settings = ["model.init_args.model.init_args.hidden=64", "model.init_args.model.init_args.dropout=0.1",
                "data.init_args.batch_size=64", "model.init_args.lr=0.003", "trainer.max_epochs=27",
                "trainer.callbacks.1.init_args.patience=30"]
    result = train_row(row_config(config("fusion_demo.yaml", *settings), row, paths, 0, (10,), 50),
                       tmp_path / "trained")
    assert untrained["test"]["cosine_distance"] > 0.7
    assert result["test"]["cosine_distance"] < 0.05
    assert result["val"]["cosine_distance"] < 0.05  # the weights kept are those of the best validation epoch
    assert result["test"]["recall@10"] > 0.5 > untrained["test"]["recall@10"]
    assert (tmp_path / "trained" / "model" / "model.safetensors").is_file()
    metrics = pd.read_csv(tmp_path / "trained" / "logs" / "version_0" / "metrics.csv")
    for key in ("train/loss", "val/cosine_distance", "val/cold/recall@10", "test/cosine_distance",
                "test/cold/recall@10", "test/cold/map@50"):
        assert key in metrics.columns
    # The kept model is the best validation epoch's, not the last one's: its cold_val predictions give the lowest
    # distance logged.
    distances = metrics["val/cosine_distance"].dropna().to_numpy()
    assert distances.argmin() < len(distances) - 1  # this run's last epoch is not its best
    model = LateFusionRegressor.from_pretrained(tmp_path / "trained" / "model").eval()
    items = split.items("cold_val")
    with torch.no_grad():
        predicted = model({n: torch.from_numpy(x[items]) for n, x in sources.items()},
                          {n: torch.from_numpy(m[items]) for n, m in present.items()}).numpy()
    assert mean_cosine_distance(predicted, split.item_factors[items]) == pytest.approx(
        metrics["val/cosine_distance"].min(), abs=1e-6)
    # The row's config is kept beside its model, so train.py reruns it alone.
    assert yaml.safe_load((tmp_path / "trained" / "config.yaml").read_text())["data"]["init_args"]["inputs"] == \
        ["audio", "lyrics"]


def test_a_modality_no_track_has_gives_no_row():
    """A catalog without lyrics or covers (the features stage still writes their empty arrays) has no
    "+ lyrics" or "+ cover" row: such a row would learn from nothing and read as if lyrics did nothing."""
    tracks = 4
    sources = {"audio": np.ones((tracks, 2)), "scores/genre": np.ones((tracks, 2)),
               "scores/attribute": np.ones((tracks, 2)), "lyrics": np.zeros((tracks, 2)),
               "cover": np.zeros((tracks, 2))}
    present = {"audio": np.ones(tracks, bool), "lyrics": np.zeros(tracks, bool),
               "cover": np.array([False, True, False, False])}
    available = available_sources(sources, present)
    assert available == ["audio", "scores/genre", "scores/attribute", "cover"]
    names = [row.name for row in ablation_rows(["attribute", "genre"], ["attribute"], available, audio=False)]
    assert not any("lyrics" in name for name in names) and any("cover" in name for name in names)


def test_a_masked_batch_gives_the_rows_of_the_present_only_batches():
    torch.manual_seed(0)
    model = LateFusionRegressor(DIMS, n_factors=3, hidden=8).train()
    inputs = {m: torch.randn(16, d) for m, d in DIMS.items()}
    for _ in range(3):  # running statistics of batch norm away from their initial values
        model(inputs)
    model.eval()
    present = {"audio": torch.ones(16, dtype=torch.bool), "lyrics": torch.arange(16) % 2 == 0,
               "cover": torch.arange(16) % 3 == 0}
    inputs["lyrics"][~present["lyrics"]] = float("nan")  # placeholders of missing lyrics never leak
    out = model(inputs, present)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(16))
    for row in range(16):
        alone = {m: inputs[m][row:row + 1] for m in DIMS if present[m][row]}
        torch.testing.assert_close(out[row:row + 1], model(alone))
    both = present["lyrics"] & present["cover"]
    torch.testing.assert_close(out[both], model({m: x[both] for m, x in inputs.items()}))


def test_masked_training_keeps_absent_rows_out_of_the_gradients():
    torch.manual_seed(0)
    model = LateFusionRegressor(DIMS, n_factors=3, hidden=8).train()
    inputs = {m: torch.randn(8, d) for m, d in DIMS.items()}
    present = {m: torch.ones(8, dtype=torch.bool) for m in DIMS}
    present["cover"][:7] = False  # a single present row: batch norm cannot train on it, the branch is off
    inputs["cover"][:7] = float("nan")
    model(inputs, present).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.branches["cover"][0].weight.grad is None


def test_audio_model_pools_patches_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = AudioFactorRegressor(n_factors=4, sample_rate=8000, n_mels=32, width=4, embedding_dim=8,
                                 patch_seconds=0.5).eval()
    wave = torch.randn(1, 4 * model.patch_samples) * 0.1  # exactly four patches
    with torch.no_grad():
        patches = model(wave.view(4, model.patch_samples))
        track = model.predict_tracks(wave)
        centre = model.predict_tracks(torch.cat([wave, torch.zeros(1, 1000)], dim=1), torch.tensor([wave.shape[1]]),
                                      pooling="centre")
        middle = model(wave[:, 2 * model.patch_samples - model.patch_samples // 2:][:, :model.patch_samples])
    torch.testing.assert_close(track, torch.nn.functional.normalize(patches.sum(0, keepdim=True), dim=1))
    torch.testing.assert_close(centre, middle)
    model.save_pretrained(tmp_path / "audio")
    loaded = AudioFactorRegressor.from_pretrained(tmp_path / "audio")
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict_tracks(wave), track)
    with pytest.raises(ValueError, match="pooling"):
        model.predict_tracks(wave, pooling="max")


def test_ablation_writes_its_table_reuses_rows_and_packages_the_best_pipeline(tiny_catalog, tiny_inputs, tmp_path,
                                                                              capsys):
    paths = DataPaths.catalog(tiny_catalog, tiny_inputs / "features.npz", tiny_inputs / "recsys")
    fusion = config("fusion_demo.yaml", "model.init_args.model.init_args.hidden=16", "trainer.max_epochs=3",
                    "trainer.callbacks.1.init_args.patience=3")
    network = "model.init_args.model.init_args"
    audio = config("fusion_audio_demo.yaml", f"{network}.sample_rate=8000", f"{network}.n_mels=32",
                   f"{network}.width=4", f"{network}.embedding_dim=8", f"{network}.patch_seconds=1.0",
                   "trainer.max_epochs=1")
    # The audio rows alone first, with no features file (as beside the tagger that makes it): the ablation
    # then reuses them rather than training them again.
    audio_rows = run_audio_rows(dataclasses.replace(paths, features=None), tmp_path / "fusion", audio)
    assert [row["name"] for row in audio_rows] == ["Audio (patches)", "Audio (full track)"]
    assert json.loads((tmp_path / "fusion" / "audio_rows.json").read_text()) == audio_rows
    audio_result = next((tmp_path / "fusion" / "units").glob("audio-cnn-*/result.json"))
    audio_stamp = audio_result.stat().st_mtime_ns
    table = run_ablation(paths, tmp_path / "fusion", fusion, audio, ("attribute", "graded"), resamples=20)
    assert audio_result.stat().st_mtime_ns == audio_stamp
    assert table.loc["Audio (full track)", "cosine_distance"] == pytest.approx(
        audio_rows[1]["test"]["cosine_distance"])
    rows = [row["name"] for row in json.loads((tmp_path / "fusion" / "rows.json").read_text())]
    assert rows == ["Audio (patches)", "Audio (full track)", "Audio (tagger embedding)",
                    "MGP (annotated attribute, graded)", "MLG (predicted attribute, graded)", "Audio + MLG",
                    "Audio + MLG + genre", "All content (+ mood)"]  # these features have no lyrics, no covers
    assert list(table.index[:len(rows)]) == rows
    assert {"random", "popularity", "oracle"} <= set(table.index)
    assert table.loc["oracle", "cosine_distance"] == pytest.approx(0.0, abs=1e-6)
    assert table.loc["Audio (patches)", "epochs"] == table.loc["Audio (full track)", "epochs"] == 1
    for name in ("table.md", "table.csv", "table.png", "rows.json", "differences.md", "differences.csv"):
        assert (tmp_path / "fusion" / name).is_file()
    differences = pd.read_csv(tmp_path / "fusion" / "differences.csv")
    # Each row against the one before it (two metrics) and against popularity (one).
    assert len(differences) == 2 * (len(rows) - 1) + len(rows)
    mlg = differences[(differences["row"] == "Audio + MLG") & (differences["metric"] == "cosine_distance")].iloc[0]
    assert mlg["versus"] == "MLG (predicted attribute, graded)"
    assert mlg["row_value"] == pytest.approx(table.loc["Audio + MLG", "cosine_distance"], abs=1e-5)
    assert mlg["low"] <= mlg["difference"] <= mlg["high"]
    results = sorted((tmp_path / "fusion" / "units").glob("*/result.json"))
    assert len(results) == len(rows) - 1  # the two audio rows share one model
    stamps = [p.stat().st_mtime_ns for p in results]
    again = run_ablation(paths, tmp_path / "fusion", fusion, audio, ("attribute", "graded"), resamples=20)
    assert again.equals(table)
    assert [p.stat().st_mtime_ns for p in results] == stamps  # reused, not retrained

    pipeline = tmp_path / "pipeline"
    assert main(["package", "--tagger", str(tiny_inputs / "tagger"), "--ablation", str(tmp_path / "fusion"),
                 "--recsys", str(tiny_inputs / "recsys"), "--out", str(pipeline), "--n-users", "3"]) == 0
    chosen = json.loads((pipeline / "fusion" / "config.json").read_text())["input_dims"]
    assert chosen and not any(name.startswith("annotated/") for name in chosen)  # a new track has no annotation
    capsys.readouterr()
    audio_file = next((tiny_catalog / "audio").iterdir())
    assert main(["coldstart", "--pipeline", str(pipeline), "--audio", str(audio_file)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["modalities"] == ["audio"] and record["errors"] == {}
    assert len(record["users"]) == 3 and record["tags_from"] == "audio"


def small_split() -> tuple[pd.DataFrame, ColdStartSplit]:
    """Ten warm tracks by five artists (two each), two cold-validation and two cold-test tracks, and one
    manifest track nobody played."""
    ids = [f"t{i}" for i in range(14)]
    item_split = np.array(["warm"] * 10 + ["cold_val"] * 2 + ["cold_test"] * 2)
    rng = np.random.default_rng(0)
    split = ColdStartSplit(np.arange(3), np.array(ids), item_split, rng.normal(size=(3, 2)).astype(np.float32),
                           rng.normal(size=(14, 2)).astype(np.float32), sp.csr_matrix(np.ones((3, 14))))
    manifest = pd.DataFrame({"track_id": [*ids, "unplayed"], "audio_path": [f"/a/{i}.wav" for i in range(15)],
                             "artist": [f"a{i // 2}" for i in range(14)] + ["a9"]})
    return manifest, split


def test_warm_tracks_are_dealt_whole_artists_to_the_tagger_or_the_fusion_stage():
    manifest, split = small_split()
    frame = split_warm_tracks(manifest, split, tagger_share=0.6, seed=0, artist_col="artist").set_index("track_id")
    warm = frame.iloc[:10]
    tagger, fusion = warm[warm["split"] == "train"], warm[warm[FUSION_SPLIT] == "train"]
    assert len(tagger) == 6 and len(fusion) == 4  # three artists of two tracks, and the other two
    assert set(tagger.index).isdisjoint(fusion.index)
    assert set(tagger["artist"]).isdisjoint(fusion["artist"])
    assert fusion["split"].isna().all() and tagger[FUSION_SPLIT].isna().all()
    assert list(frame["split"].iloc[10:14]) == list(frame[FUSION_SPLIT].iloc[10:14]) == ["val"] * 2 + ["test"] * 2
    assert frame.loc["unplayed", "split"] == "train" and pd.isna(frame.loc["unplayed", FUSION_SPLIT])
    other = split_warm_tracks(manifest, split, 0.6, seed=1, artist_col="artist")
    assert not other["split"].equals(frame.reset_index()["split"])  # another seed, another deal

    in_sample = split_warm_tracks(manifest, split, tagger_share=1.0)
    assert (in_sample["split"].iloc[:10] == "train").all() and (in_sample[FUSION_SPLIT].iloc[:10] == "train").all()
    with pytest.raises(ValueError, match="tagger_share"):
        split_warm_tracks(manifest, split, tagger_share=0.0)
    with pytest.raises(ValueError, match="no fusion-side track"):
        split_warm_tracks(manifest.assign(artist="one"), split, tagger_share=0.5, artist_col="artist")
    with pytest.raises(ValueError, match="'singer'"):
        split_warm_tracks(manifest, split, tagger_share=0.5, artist_col="singer")


def test_split_command_writes_a_manifest_whose_paths_still_resolve(tmp_path, capsys):
    manifest, split = small_split()
    (tmp_path / "catalog").mkdir()
    manifest.assign(audio_path=[f"audio/{t}.wav" for t in manifest["track_id"]]).to_csv(
        tmp_path / "catalog" / "manifest.csv", index=False)
    (tmp_path / "catalog" / "vocab.json").write_text('{"groups": {"genre": {"labels": ["rock"]}}}')
    (tmp_path / "recsys").mkdir()
    split.save(tmp_path / "recsys" / "coldstart.npz")
    out = tmp_path / "runs" / "manifest.parquet"
    assert main(["split", "--manifest", str(tmp_path / "catalog" / "manifest.csv"), "--recsys",
                 str(tmp_path / "recsys"), "--tagger-share", "0.5", "--artist-col", "artist", "--out", str(out)]) == 0
    written = read_manifest(out)
    assert Path(written["audio_path"].iloc[0]).resolve() == (tmp_path / "catalog" / "audio" / "t0.wav").resolve()
    assert set(written[FUSION_SPLIT].dropna()) == {"train", "val", "test"}
    assert (out.parent / "vocab.json").read_text() == (tmp_path / "catalog" / "vocab.json").read_text()
    assert main(["split", "--manifest", str(tmp_path / "catalog" / "manifest.csv"), "--recsys", str(tmp_path),
                 "--out", str(out)]) == 2
    assert "coldstart.npz: not found" in capsys.readouterr().err


def test_row_differences_of_the_truth_against_noise_and_against_itself():
    """Three rows on the linear split's cold-test items: the true factors, the same again, and noise. The
    truth against noise is clearly better on both metrics; the copy against the truth differs by exactly 0."""
    split, _ = linear_split()
    items = split.items("cold_test")
    truth = split.item_factors[items]
    noise = np.random.default_rng(1).normal(size=truth.shape).astype(np.float32)
    predictions = {"noise": noise, "truth": truth, "copy": truth.copy()}
    artists = np.array([f"a{i // 4}" for i in range(len(items))], dtype=object)
    table = row_differences(predictions, split, artists, ks=(10,), map_k=50, resamples=200)
    assert list(zip(table["row"], table["versus"], table["metric"], strict=True)) == [
        ("truth", "noise", "cosine_distance"), ("truth", "noise", "recall@10"),
        ("copy", "truth", "cosine_distance"), ("copy", "truth", "recall@10")]  # no prior: no popularity rows
    better = table.iloc[0]
    assert better["row_value"] == pytest.approx(0.0, abs=1e-5) and better["high"] < -0.5
    assert table.iloc[1]["low"] > 0.3
    same = table.iloc[2:]
    assert (same["difference"] == 0).all() and (same["low"] == 0).all() and (same["high"] == 0).all()
    assert (table["clusters"] == 25).all()  # 100 items, four per artist


def test_ablation_command_names_a_missing_input(tmp_path, capsys):
    """The command line reaches the ablation (its parser once shadowed the function, so `python -m fusion
    ablation` failed with a TypeError before reading a file)."""
    manifest, split = small_split()
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "vocab.json").write_text('{"groups": {"genre": {"labels": ["rock"]}}}')
    split.save(tmp_path / "coldstart.npz")
    assert main(["ablation", "--manifest", str(tmp_path / "manifest.csv"), "--features", str(tmp_path / "f.npz"),
                 "--recsys", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "f.npz: not found" in capsys.readouterr().err
    # Only the audio rows may go without features.
    assert main(["ablation", "--manifest", str(tmp_path / "manifest.csv"), "--recsys", str(tmp_path), "--out",
                 str(tmp_path / "out")]) == 2
    assert "--features is required" in capsys.readouterr().err
