"""The features fusion trains on are out-of-sample: ``python -m fusion split`` keeps the audio tagger off the
fusion-side tracks.

Labels that are fair coins carry nothing a tagger can generalise; it can only memorise the tracks it trains
on. So its scores beat chance on exactly those tracks, and the fusion-side tracks show whether it heard them.
"""

import json

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multilabel_auroc

from fusion.cli import main as fusion_main
from fusion.data import FUSION_SPLIT
from recsys.cli import main as recsys_main
from tagging.data.features import extract_features
from tagging.labels import LabelSpace, read_manifest
from tagging.models.tagger import AudioTagger
from train import cli_main

COINS = [f"coin{i}" for i in range(8)]


def coin_manifest(catalog, folder):
    """The catalog's manifest whose only labels are eight fair coins per track (seed 0), with their vocabulary."""
    frame = read_manifest(catalog / "manifest.parquet")  # absolute audio paths: they resolve from any folder
    heads = np.random.default_rng(0).random((len(frame), len(COINS))) < 0.5
    frame["coin"] = [[coin for coin, head in zip(COINS, row, strict=True) if head] for row in heads]
    folder.mkdir()
    frame.to_parquet(folder / "manifest.parquet", index=False)
    (folder / "vocab.json").write_text(json.dumps({"groups": {"coin": {"type": "multilabel", "labels": COINS}}}))
    return folder / "manifest.parquet"


@pytest.mark.slow
def test_a_tagger_on_random_labels_is_above_chance_on_its_tracks_and_at_chance_on_the_fusion_side(
        tiny_catalog, tmp_path_factory):
    root = tmp_path_factory.mktemp("random-labels")
    assert recsys_main(["coldstart", "--catalog", str(tiny_catalog), "--out", str(root / "recsys"),
                        "--factors", "8", "--iterations", "5"]) == 0
    dealt = root / "dealt" / "manifest.parquet"
    assert fusion_main(["split", "--manifest", str(coin_manifest(tiny_catalog, root / "coins")),
                        "--recsys", str(root / "recsys"), "--tagger-share", "0.5", "--artist-col", "artist_id",
                        "--out", str(dealt)]) == 0
    # Wider than the smoke config, no weight decay, a high learning rate, 100 steps of the whole training
    # share: enough to memorise the coins of 16 tracks from 1 s crops (macro AUC 0.98-0.99 over seeds 0-3).
    cli_main(["fit", "--config", "configs/tagger_test.yaml", f"--data.init_args.manifest={dealt}",
              "--data.init_args.batch_size=16", "--data.init_args.cache_audio=true",
              "--model.init_args.model.init_args.width=16", "--model.init_args.model.init_args.embedding_dim=64",
              "--model.init_args.lr=0.03", "--model.init_args.weight_decay=0", "--trainer.max_epochs=100",
              "--trainer.limit_val_batches=0", "--trainer.enable_checkpointing=false",
              f"--model.init_args.export_dir={root / 'model'}", f"--trainer.default_root_dir={root}"])

    features = extract_features(dealt, AudioTagger.from_pretrained(root / "model"))
    frame = read_manifest(dealt).set_index("track_id").loc[features.track_ids]
    coins = torch.from_numpy(LabelSpace.from_json(dealt.parent / "vocab.json").encode(frame)["coin"]).int()
    scores = torch.tensor(features.arrays["scores/coin"])
    own = torch.tensor((frame["split"] == "train").to_numpy())
    fusion_side = torch.tensor((frame[FUSION_SPLIT] == "train").to_numpy())
    assert own.sum() >= 12 and fusion_side.sum() >= 12 and not (own & fusion_side).any()

    def auc(rows):
        return multilabel_auroc(scores[rows], coins[rows], num_labels=len(COINS), average="macro").item()

    assert auc(own) > 0.9
    # The coins are independent of the audio, so on tracks the tagger never heard each coin's AUC is a
    # Mann-Whitney null: mean 0.5, sd sqrt((n + 1) / (12 n1 n0)) ~ 0.15 for 8 heads in 16 tracks; the mean
    # of 8 independent coins has sd ~ 0.05, so 0.75 is ~5 sd above chance. A tagger that trained on these
    # tracks scores there as on its own (> 0.9).
    assert auc(fusion_side) < 0.75
