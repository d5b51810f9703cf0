"""Seeded runs repeat exactly on one machine, and a run resumed at an epoch boundary ends where an
uninterrupted one does."""

import json

import pytest
import pytorch_lightning as pl
import torch
from safetensors.torch import load_file

from tagging.lightning import TaggerModule
from tagging.models.tagger import AudioTagger
from train import cli_main

CONFIG = "configs/tagger_test.yaml"
# Dropout and timbre dropout draw random numbers in every training step.
NETWORK = ["--model.init_args.model.init_args.dropout=0.3", "--model.init_args.model.init_args.rhythm=true"]


class StopAfterEpoch(pl.Callback):
    """Ends a run after ``epochs`` epochs, as a crash or a time limit would, with the schedule of the
    whole run (a smaller max_epochs would change the one-cycle schedule)."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def fit(tiny_catalog, folder, *extra):
    cli_main(["fit", "--config", CONFIG, f"--data.init_args.manifest={tiny_catalog / 'manifest.parquet'}",
              "--trainer.max_epochs=3", "--trainer.deterministic=true", f"--trainer.default_root_dir={folder}",
              f"--model.init_args.export_dir={folder / 'model'}", *NETWORK, *extra])
    return load_file(folder / "model" / "model.safetensors")


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    different = [name for name in a if not (a[name] == b[name]).all()]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.mark.slow
def test_a_seeded_run_repeats_exactly(tiny_catalog, tmp_path):
    first = fit(tiny_catalog, tmp_path / "first")
    second = fit(tiny_catalog, tmp_path / "second")
    assert_same_weights(first, second)
    for run in ("first", "second"):
        (checkpoint,) = (tmp_path / run / "checkpoints").glob("*.ckpt")
        cli_main(["test", "--config", CONFIG, f"--data.init_args.manifest={tiny_catalog / 'manifest.parquet'}",
                  f"--ckpt_path={checkpoint}", f"--model.init_args.tables_dir={tmp_path / run}", *NETWORK,
                  f"--trainer.default_root_dir={tmp_path / run}"])
    scores = [json.loads((tmp_path / run / "test_scores.json").read_text()) for run in ("first", "second")]
    assert scores[0] == scores[1]
    other_seed = fit(tiny_catalog, tmp_path / "other", "--seed_everything=1")
    assert any(not (other_seed[name] == first[name]).all() for name in first)  # the seed is what decides


@pytest.mark.slow
def test_resuming_from_the_end_of_an_epoch_continues_exactly(tiny_catalog, tmp_path):
    whole = fit(tiny_catalog, tmp_path / "whole")
    fit(tiny_catalog, tmp_path / "cut", "--trainer.callbacks+=tests.tagging.test_reruns.StopAfterEpoch",
        "--trainer.callbacks.epochs=2")
    (checkpoint,) = (tmp_path / "cut" / "checkpoints").glob("*.ckpt")
    assert checkpoint.name.startswith("epoch=1-")
    resumed = fit(tiny_catalog, tmp_path / "resumed", f"--ckpt_path={checkpoint}")
    assert_same_weights(whole, resumed)


@pytest.mark.slow
def test_a_compiled_backbone_gives_the_eager_outputs_under_the_same_weight_names(tiny_catalog):
    """Compiled training cannot repeat eager training exactly (fused kernels round differently, and compiled
    dropout draws other masks); what must hold is the function and the names a package is saved under.
    Without the rhythm branch: on random noise its beat period is an argmax over nearly equal candidates,
    which rounding differences of 1e-7 can flip (0.01 apart in the outputs here)."""
    vocab = json.loads((tiny_catalog / "vocab.json").read_text())
    torch.manual_seed(0)
    model = AudioTagger(vocab, backbone="tiny", width=4, embedding_dim=16, sample_rate=8000, n_fft=256,
                        hop_length=128, n_mels=32, chunk_seconds=1.0).eval()
    wave = torch.randn(3, 8000)
    with torch.no_grad():
        eager = model(wave)
    names = list(model.state_dict())
    module = TaggerModule(model, compile_backbone=True)
    module.configure_model()
    module.eval()
    with torch.no_grad():
        compiled = module(wave)
    assert "forward" in vars(model.backbone)  # it did compile
    for group in eager:
        torch.testing.assert_close(compiled[group], eager[group], atol=1e-5, rtol=1e-4)
    assert list(module.model.state_dict()) == names


def test_each_epoch_draws_another_order_and_other_crops_and_the_same_ones_when_asked_again(tiny_catalog):
    from tagging.data.modules import CatalogDataModule, TrainingOrder

    data = CatalogDataModule(str(tiny_catalog / "manifest.parquet"), sample_rate=8000, clip_seconds=1.0, seed=3)
    data.setup()
    dataset = data._dataset("train", train=True)
    order = TrainingOrder(dataset, seed=3)
    first = list(order)
    assert {epoch for epoch, _ in first} == {0} and sorted(i for _, i in first) == list(range(len(dataset)))
    order.set_epoch(1)
    second = list(order)
    assert [i for _, i in second] != [i for _, i in first] and {epoch for epoch, _ in second} == {1}
    crop = dataset[(0, 5)]["wave"]
    assert torch.equal(dataset[(0, 5)]["wave"], crop)  # (seed, epoch, track) decides the crop
    assert not torch.equal(dataset[(1, 5)]["wave"], crop)
