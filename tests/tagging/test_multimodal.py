import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from tagging.data.features import TrackFeatures, extract_features
from tagging.data.modules import FeatureDataModule
from tagging.evaluation.metrics import MultilabelScores
from tagging.models.image import CoverEncoder
from tagging.models.multimodal import MultimodalTagger
from tagging.models.tagger import AudioTagger
from tagging.models.text import LyricsEncoder
from train import cli_main

VOCAB = {"groups": {"genre": {"type": "multilabel", "labels": ["a", "b"]},
                    "graded": {"type": "regression", "labels": ["energy"], "ranges": [[0, 1]]}}}
DIMS = {"audio": 6, "lyrics": 5, "cover": 4}


def make_model(**kwargs) -> MultimodalTagger:
    torch.manual_seed(0)
    return MultimodalTagger(VOCAB, DIMS, hidden=16, **kwargs)


@pytest.mark.parametrize("subset", [s for r in range(1, 4) for s in itertools.combinations(DIMS, r)])
def test_every_subset_of_modalities_gets_a_prediction_that_names_it(subset):
    model = make_model()
    record = model.annotate({m: torch.randn(DIMS[m]) for m in subset})
    assert record["modalities"] == list(subset)
    assert set(record["genre"]["probabilities"]) == {"a", "b"}
    assert np.isfinite(record["graded"]["energy"])


def test_absent_rows_never_leak_into_the_present_ones():
    model = make_model().eval()
    inputs = {m: torch.randn(4, d) for m, d in DIMS.items()}
    present = {"audio": torch.tensor([True, True, True, True]), "lyrics": torch.tensor([True, False, True, False]),
               "cover": torch.tensor([False, False, True, True])}
    inputs["lyrics"][1] = float("nan")  # a placeholder for missing lyrics must not poison anything
    out = model(inputs, present)
    assert all(torch.isfinite(v).all() for v in out.values())
    alone = model({"audio": inputs["audio"][1:2]})  # row 1 has audio only
    torch.testing.assert_close(out["genre"][1:2], alone["genre"])
    with pytest.raises(ValueError, match="no modality"):
        model(inputs, {m: torch.zeros(4, dtype=torch.bool) for m in DIMS})


def test_modality_dropout_hides_some_modalities_but_never_all_of_a_track():
    model = make_model(modality_dropout=0.9).train()
    inputs = {m: torch.randn(2000, d) for m, d in DIMS.items()}
    masks = model.presence(inputs, None)
    stacked = torch.stack(list(masks.values()), dim=1)
    assert stacked.any(dim=1).all()
    assert stacked.float().mean() < 0.5  # most were hidden


def test_the_model_learns_which_modality_carries_the_label():
    torch.manual_seed(0)
    n = 512
    inputs = {m: torch.randn(n, d) for m, d in DIMS.items()}
    label = (inputs["lyrics"][:, 0] > 0).float()  # only the lyrics know the genre
    targets = torch.stack([label, 1 - label], dim=1)
    model = make_model(modality_dropout=0.5).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(inputs)["genre"], targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test = {m: torch.randn(256, d) for m, d in DIMS.items()}
    test_targets = torch.stack([(test["lyrics"][:, 0] > 0).float(), (test["lyrics"][:, 0] <= 0).float()], dim=1)

    def auc(modalities):
        metric = MultilabelScores(["a", "b"])
        metric.update(torch.sigmoid(model({m: test[m] for m in modalities})["genre"]), test_targets)
        return metric.compute()["roc_auc"]
    assert auc(["lyrics"]) > 0.85
    assert auc(["audio"]) < 0.65
    assert auc(["audio", "lyrics", "cover"]) > 0.8


def test_save_and_load_round_trip(tmp_path):
    model = make_model()
    model.save_pretrained(tmp_path / "mm")
    loaded = MultimodalTagger.from_pretrained(tmp_path / "mm")
    inputs = {"audio": torch.randn(6), "cover": torch.randn(4)}
    assert model.annotate(inputs) == loaded.annotate(inputs)


def synthetic_features(tiny_catalog, path):
    manifest = pd.read_parquet(tiny_catalog / "manifest.parquet")
    rng = np.random.default_rng(0)
    n = len(manifest)
    features = TrackFeatures(track_ids=manifest["track_id"].to_numpy().astype(str),
                             arrays={m: rng.normal(size=(n, d)).astype(np.float32) for m, d in DIMS.items()},
                             present={m: rng.random(n) < 0.8 for m in DIMS})
    features.present["audio"][:] = True
    features.save(path)
    return features


def test_feature_data_splits_by_the_named_column_and_leaves_out_null_rows(tmp_path):
    """Six tracks: the audio tagger's ``split`` sends t0-t2 to train; ``fusion_split`` leaves those out and
    splits t3-t5. The features file covers only t3-t5, as features of left-out tracks are never needed."""
    (tmp_path / "vocab.json").write_text('{"groups": {"genre": {"type": "multilabel", "labels": ["a", "b"]}}}')
    manifest = pd.DataFrame({"track_id": [f"t{i}" for i in range(6)], "audio_path": ["x.wav"] * 6,
                             "genre": [["a"], ["b"]] * 3,
                             "split": ["train", "train", "train", "val", "test", "test"],
                             "fusion_split": [None, None, None, "train", "val", "test"]})
    manifest.to_parquet(tmp_path / "manifest.parquet")
    TrackFeatures(track_ids=np.array(["t3", "t4", "t5"]), arrays={"audio": np.ones((3, 2), np.float32)},
                  present={"audio": np.ones(3, bool)}).save(tmp_path / "features.npz")

    def module(column):
        return FeatureDataModule(str(tmp_path / "manifest.parquet"), str(tmp_path / "features.npz"),
                                 split_column=column)
    data = module("fusion_split")
    data.setup()
    assert {split: [item["track_id"] for item in items] for split, items in data.items.items()} == {
        "train": ["t3"], "val": ["t4"], "test": ["t5"]}
    assert next(iter(data.train_dataloader()))["targets"]["genre"].tolist() == [[0.0, 1.0]]
    with pytest.raises(KeyError, match="no features for 3 track"):
        module("split").setup()  # the tagger's own split needs t0-t2, which have no features here
    with pytest.raises(ValueError, match=r"manifest.parquet: manifest has no split column 'fusion'"):
        module("fusion").setup()
    manifest.loc[3, "fusion_split"] = "validation"
    manifest.to_parquet(tmp_path / "manifest.parquet")
    with pytest.raises(ValueError, match=r"manifest.parquet: column 'fusion_split' has unknown split value\(s\) "
                                         r"\['validation'\]"):
        module("fusion_split").setup()


def test_train_py_fits_the_multimodal_tagger_from_cached_features(tiny_catalog, tmp_path):
    synthetic_features(tiny_catalog, tmp_path / "features.npz")
    cli_main(["fit", "--model=tagging.lightning.MultimodalTaggerModule",
              "--model.model=tagging.models.multimodal.MultimodalTagger", "--model.model.hidden=8",
              f"--model.export_dir={tmp_path / 'model'}", "--data=tagging.data.modules.FeatureDataModule",
              f"--data.manifest={tiny_catalog / 'manifest.parquet'}", f"--data.features={tmp_path / 'features.npz'}",
              "--trainer.fast_dev_run=true", "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}"])
    model = MultimodalTagger.from_pretrained(tmp_path / "model")
    assert model.config["input_dims"] == DIMS
    assert model.config["hidden"] == 8
    assert model.labels.to_dict() == pd.read_json(tiny_catalog / "vocab.json", typ="series").to_dict()


def test_feature_extraction_falls_back_when_a_lyrics_or_cover_file_is_bad(tiny_catalog, tmp_path):
    import shutil
    catalog = tmp_path / "catalog"
    shutil.copytree(tiny_catalog, catalog, ignore=shutil.ignore_patterns(".cache"))
    manifest = pd.read_parquet(catalog / "manifest.parquet")
    both = manifest[manifest["lyrics_path"].notna() & manifest["cover_path"].notna()].iloc[0]
    (catalog / both["lyrics_path"]).write_bytes(b"\x00\x01\x02binary\x00" * 50)
    (catalog / both["cover_path"]).write_bytes(b"not an image")
    torch.manual_seed(0)
    tagger = AudioTagger(pd.read_json(catalog / "vocab.json", typ="series").to_dict(), backbone="tiny", width=4,
                         embedding_dim=8, sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, chunk_seconds=1.0)
    features = extract_features(catalog / "manifest.parquet", tagger, LyricsEncoder(max_length=64),
                                CoverEncoder("resnet18"), cover_size=64)
    row = features.rows([both["track_id"]])[0]
    assert features.present["audio"][row] and not features.present["lyrics"][row]
    assert not features.present["cover"][row]
    assert both["lyrics_path"].split("/")[-1] in features.errors[row]
    assert both["cover_path"].split("/")[-1] in features.errors[row]
    assert features.present["lyrics"].sum() == manifest["lyrics_path"].notna().sum() - 1
    assert features.arrays["scores/genre"].shape == (len(manifest), len(tagger.labels.groups["genre"]))
    features.save(tmp_path / "f.npz")
    again = TrackFeatures.load(tmp_path / "f.npz")
    np.testing.assert_array_equal(again.arrays["lyrics"], features.arrays["lyrics"])
    assert list(again.errors) == list(features.errors)
