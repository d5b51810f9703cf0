"""Evaluation under DDP counts every track once: two processes give the one-process numbers exactly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tagging.labels import LabelSpace, read_manifest
from train import cli_main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/tagger_test.yaml"


@pytest.mark.slow
def test_one_checkpoint_on_one_and_two_processes_gives_the_same_metrics_and_thresholds(
        tiny_catalog, tiny_tagger, tmp_path):
    manifest = tiny_catalog / "manifest.parquet"
    frame = read_manifest(manifest)
    test = frame[frame["split"] == "test"]
    assert len(test) % 2 == 1  # an odd count: Lightning's DistributedSampler would repeat one track
    common = ["test", "--config", CONFIG, f"--data.init_args.manifest={manifest}",
              f"--ckpt_path={tiny_tagger.checkpoint}"]
    cli_main([*common, f"--model.init_args.tables_dir={tmp_path / 'one'}", f"--trainer.default_root_dir={tmp_path}"])
    # Lightning's ddp re-launches the command line for the second process, so the real CLI runs in a
    # subprocess (gloo on the CPU).
    subprocess.run([sys.executable, "train.py", *common, "--trainer.devices=2", "--trainer.strategy=ddp",
                    f"--model.init_args.tables_dir={tmp_path / 'two'}", f"--trainer.default_root_dir={tmp_path}"],
                   cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, check=True, capture_output=True,
                   timeout=600)
    one = json.loads((tmp_path / "one" / "test_scores.json").read_text())
    two = json.loads((tmp_path / "two" / "test_scores.json").read_text())

    labels = LabelSpace.from_json(tiny_catalog / "vocab.json")
    targets = labels.encode(test, source=str(manifest))
    for name, group in labels.groups.items():
        annotated = ~np.isnan(targets[name]).all(axis=1) if group.type == "multilabel" else np.ones(len(test), bool)
        assert one[name]["tracks"] == two[name]["tracks"] == int(annotated.sum()), name
        assert one[name].keys() == two[name].keys()
        for index, (label, values) in enumerate(one[name]["per_label"].items()):
            for key, value in values.items():  # AUCs, thresholds, MAE and Spearman of each label
                other = two[name]["per_label"][label][key]
                # The MAE is in the label's units, which stretch the [0, 1] scale the model predicts on by
                # the range's width; the others are unitless on [0, 1] or [-1, 1].
                bound = 1e-6 * np.diff(group.ranges[index])[0] if key == "mae" else 1e-6
                assert (np.isnan(value) and np.isnan(other)) or value == pytest.approx(other, abs=bound), (name, key)


def _sync_batchnorm_step(rank: int, world: int, folder: str) -> None:
    """One SGD step of `_step_model` on this process's half of the batch, batch norm synchronised."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29517")
    dist.init_process_group("nccl", rank=rank, world_size=world)
    torch.cuda.set_device(rank)
    model, waves, targets = _step_model()
    model = DistributedDataParallel(torch.nn.SyncBatchNorm.convert_sync_batchnorm(model).cuda(rank),
                                    device_ids=[rank])
    share = slice(rank * len(waves) // world, (rank + 1) * len(waves) // world)
    _train_step(model, model.module, waves[share].cuda(rank), {g: t[share].cuda(rank) for g, t in targets.items()})
    if rank == 0:
        torch.save(model.module.state_dict(), Path(folder) / "two.pt")
    dist.destroy_process_group()


def _step_model():
    from tagging.models.tagger import AudioTagger

    vocab = {"groups": {"tag": {"type": "multilabel", "labels": ["a", "b", "c"]}}}
    torch.manual_seed(0)
    model = AudioTagger(vocab, width=4, embedding_dim=8, dropout=0.0, sample_rate=8000, n_fft=256, hop_length=128,
                        n_mels=32, chunk_seconds=1.0)
    waves = torch.randn(8, 8000)
    return model, waves, {"tag": (torch.rand(8, 3) > 0.5).float()}


def _train_step(model, network, waves, targets) -> None:
    from tagging.lightning import masked_losses

    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    network.train()
    losses = masked_losses(model(waves), targets, {"tag": "multilabel"})
    sum(losses.values()).backward()
    optimizer.step()


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs (PyTorch's SyncBatchNorm refuses CPU tensors)")
def test_a_synchronised_batch_norm_step_on_two_gpus_is_the_step_on_the_whole_batch(tmp_path):
    model, waves, targets = _step_model()
    model = model.cuda()
    _train_step(model, model, waves.cuda(), {g: t.cuda() for g, t in targets.items()})
    torch.multiprocessing.spawn(_sync_batchnorm_step, args=(2, str(tmp_path)), nprocs=2)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(two[name].cpu(), value.cpu(), atol=1e-5, rtol=1e-5, msg=name)
