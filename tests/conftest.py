"""Test-wide settings: nothing reaches a network, caches live in temporary folders, GPU tests skip here."""

import os

import pytest
import torch

# Set before any library reads them: no hub, no wandb account, datasets' cache out of the home folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "hf-cache"
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path_factory.getbasetemp() / "wandb"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread():
    """Small models run several times faster on one thread when other work shares the cores; a module
    uses it with ``pytestmark = pytest.mark.usefixtures("one_thread")`` or asks for it by name."""
    from fusion.ablation import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory):
    """The tiny preset of the toy catalog, built once per test session."""
    from toycatalog import build_catalog

    out = tmp_path_factory.mktemp("catalog") / "tiny"
    build_catalog(out, preset="tiny", seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_tagger(tiny_catalog, tmp_path_factory):
    """A tiny audio tagger trained for two epochs on the tiny catalog through ``train.py``, once per test
    session: ``.export`` is its package, ``.checkpoint`` its last checkpoint."""
    from types import SimpleNamespace

    from train import cli_main

    root = tmp_path_factory.mktemp("tiny-tagger")
    cli_main(["fit", "--config", "configs/tagger_test.yaml",
              f"--data.init_args.manifest={tiny_catalog / 'manifest.parquet'}", "--trainer.max_epochs=2",
              f"--model.init_args.export_dir={root / 'model'}", f"--trainer.default_root_dir={root}"])
    (checkpoint,) = (root / "checkpoints").glob("*.ckpt")
    return SimpleNamespace(export=root / "model", checkpoint=checkpoint)


@pytest.fixture(scope="session")
def tiny_inputs(tiny_catalog, tmp_path_factory):
    """What the ablation of the tiny catalog reads, once per test session: ``tagger`` (a small untrained tagger's
    package), ``features.npz`` (its features of every track) and ``recsys`` (the cold-start split)."""
    from recsys.cli import main as recsys_main
    from tagging.data.features import extract_features
    from tagging.labels import LabelSpace
    from tagging.models.tagger import AudioTagger

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
