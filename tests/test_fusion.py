"""Content -> factors regression: the models, their training, and the ablation and packaging commands."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fusion.__main__ import main
from fusion.ablation import ROWS, AudioSettings, DataPaths, FusionSettings, run_ablation, torch_threads, train_fusion
from fusion.model import AudioFactorRegressor, LateFusionRegressor
from recsys import ColdStartSplit
from recsys.__main__ import main as recsys_main
from tagging.features import extract_features
from tagging.labels import LabelSpace
from tagging.models import AudioTagger

DIMS = {"audio": 6, "lyrics": 5, "cover": 4}


@pytest.fixture
def one_thread():
    """Small models train several times faster on one thread when other work shares the cores."""
    with torch_threads(1):
        yield


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
    split, catalog = linear_split()
    settings = FusionSettings(hidden=64, dropout=0.1, batch_size=64, lr=3e-3, max_epochs=30, patience=30)
    untrained = train_fusion(("audio", "lyrics"), split, catalog, FusionSettings(max_epochs=0), 0, (10,), 50,
                             tmp_path / "untrained")
    result = train_fusion(("audio", "lyrics"), split, catalog, settings, 0, (10,), 50, tmp_path / "trained")
    assert untrained["test"]["cosine_distance"] > 0.7
    assert result["test"]["cosine_distance"] < 0.05
    assert result["val"]["cosine_distance"] < 0.05  # the weights kept are those of the best validation epoch
    assert result["test"]["recall@10"] > 0.5 > untrained["test"]["recall@10"]
    assert (tmp_path / "trained" / "model" / "model.safetensors").is_file()
    metrics = (tmp_path / "trained" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    for key in ("train/loss", "val/cosine_distance", "val/cold/recall@10", "test/cosine_distance",
                "test/cold/recall@10", "test/cold/map@50"):
        assert key in metrics.split(",")


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


@pytest.fixture(scope="module")
def tiny_inputs(tiny_catalog, tmp_path_factory):
    """Tagger features (a small untrained tagger) and the cold-start split of the tiny catalog."""
    root = tmp_path_factory.mktemp("fusion-inputs")
    torch.manual_seed(0)
    vocab = LabelSpace.from_json(tiny_catalog / "vocab.json").to_dict()
    tagger = AudioTagger(vocab, backbone="tiny", width=4, embedding_dim=8, sample_rate=8000, n_fft=256,
                         hop_length=128, n_mels=32, chunk_seconds=1.0, eval_chunks=2)
    tagger.save_pretrained(root / "tagger")
    extract_features(tiny_catalog / "manifest.parquet", tagger).save(root / "features.npz")
    assert recsys_main(["coldstart", "--catalog", str(tiny_catalog), "--out", str(root / "recsys"),
                        "--factors", "8", "--iterations", "5"]) == 0
    return root


def test_ablation_writes_its_table_reuses_rows_and_packages_the_best_pipeline(tiny_catalog, tiny_inputs, tmp_path,
                                                                              capsys):
    paths = DataPaths(tiny_catalog, tiny_inputs / "features.npz", tiny_inputs / "recsys")
    rows = tuple(r for r in ROWS if not r.inputs or r.inputs in (("mgp",), ("audio", "mlg", "genre")))
    fusion = FusionSettings(hidden=16, max_epochs=3, patience=3)
    audio = AudioSettings(sample_rate=8000, n_mels=32, width=4, embedding_dim=8, patch_seconds=1.0, max_epochs=1)
    table = run_ablation(paths, tmp_path / "fusion", rows, fusion, audio)
    assert list(table.index[:4]) == [r.name for r in rows]
    assert {"random", "popularity", "oracle"} <= set(table.index)
    assert table.loc["oracle", "cosine_distance"] == pytest.approx(0.0, abs=1e-6)
    assert table.loc["Audio (patches)", "epochs"] == table.loc["Audio (full track)", "epochs"] == 1
    for name in ("table.md", "table.csv", "table.png", "rows.json"):
        assert (tmp_path / "fusion" / name).is_file()
    results = sorted((tmp_path / "fusion" / "units").glob("*/result.json"))
    assert len(results) == 3  # the two audio rows share one model
    stamps = [p.stat().st_mtime_ns for p in results]
    again = run_ablation(paths, tmp_path / "fusion", rows, fusion, audio)
    assert again.equals(table)
    assert [p.stat().st_mtime_ns for p in results] == stamps  # reused, not retrained

    pipeline = tmp_path / "pipeline"
    assert main(["package", "--tagger", str(tiny_inputs / "tagger"), "--ablation", str(tmp_path / "fusion"),
                 "--recsys", str(tiny_inputs / "recsys"), "--out", str(pipeline), "--n-users", "3"]) == 0
    chosen = json.loads((pipeline / "fusion" / "config.json").read_text())["input_dims"]
    assert set(chosen) == {"audio", "mlg", "genre"}  # MGP is not available for a new track
    capsys.readouterr()
    audio_file = next((tiny_catalog / "audio").iterdir())
    assert main(["coldstart", "--pipeline", str(pipeline), "--audio", str(audio_file)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["modalities"] == ["audio"] and record["errors"] == {}
    assert len(record["users"]) == 3 and record["tags_from"] == "audio"
