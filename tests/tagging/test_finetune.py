"""Fine-tuning a packaged tagger on a catalog's own vocabulary: what it keeps, what a linear probe trains,
what its package records, and that it beats training from scratch on the same few labels."""

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from torchmetrics.functional.classification import multilabel_auroc

from coldtag.storage import read_package
from tagging.data.modules import collate_tracks
from tagging.lightning import TaggerModule, decay_groups, masked_losses
from tagging.models.tagger import AudioTagger
from train import cli_main

TINY = {"backbone": "tiny", "width": 4, "embedding_dim": 16, "sample_rate": 8000, "n_fft": 256,
        "hop_length": 128, "n_mels": 32, "chunk_seconds": 1.0}
OLD = {"groups": {
    "genre": {"type": "multilabel", "labels": ["rock", "jazz", "folk"]},
    "mood": {"type": "multilabel", "labels": ["happy", "sad"]},
    "graded": {"type": "regression", "labels": ["tempo"], "ranges": [[40, 240]]},
}}
NEW = {"groups": {
    "genre": OLD["groups"]["genre"],  # unchanged: keeps its head
    "mood": {"type": "multilabel", "labels": ["calm", "dark"]},  # same name and size, other labels: a new head
    "scene": {"type": "multilabel", "labels": ["club", "cafe", "church", "car"]},  # a group of its own
}}


@pytest.fixture
def package(tmp_path):
    torch.manual_seed(0)
    model = AudioTagger(OLD, **TINY)
    with torch.no_grad():  # batch-norm statistics unlike a fresh model's, so keeping them is visible
        model.backbone.input_norm.running_mean.fill_(-30.0)
        model.backbone.input_norm.running_var.fill_(400.0)
    model.set_thresholds("genre", torch.tensor([0.2, 0.5, 0.9]))
    model.set_thresholds("mood", torch.tensor([0.3, 0.7]))
    model.save_pretrained(tmp_path / "package")
    return tmp_path / "package"


def test_a_fine_tune_keeps_the_weights_below_the_heads_and_unchanged_groups(package, tmp_path):
    start = AudioTagger.from_pretrained(package)
    torch.manual_seed(1)
    tuned = AudioTagger.from_pretrained(package, vocab=NEW)
    assert tuned.labels.to_dict() == NEW
    old, new = start.state_dict(), tuned.state_dict()
    below = [k for k in old if k.startswith(("frontend.", "backbone."))]
    assert below and all(torch.equal(old[k], new[k]) for k in below)
    assert torch.equal(new["heads.genre.weight"], old["heads.genre.weight"])
    assert tuned.thresholds("genre").tolist() == pytest.approx([0.2, 0.5, 0.9])
    assert new["heads.scene.weight"].shape == (4, 16) and new["heads.mood.weight"].shape == (2, 16)
    assert not torch.equal(new["heads.mood.weight"], old["heads.mood.weight"])  # its labels changed
    assert tuned.thresholds("mood").tolist() == [0.5, 0.5] and tuned.thresholds("scene").tolist() == [0.5] * 4
    assert "heads.graded.weight" not in new

    record = tuned.save_pretrained(tmp_path / "tuned")
    pretrained = record["inputs"]["pretrained"]
    assert pretrained["sha256"] == read_package(package)["sha256"] and pretrained["kind"] == "AudioTagger"
    assert pretrained["source"] == str(package.resolve()) and "bundled" not in pretrained
    assert not (tmp_path / "tuned" / "inputs").exists()
    assert AudioTagger.from_pretrained(tmp_path / "tuned").labels.to_dict() == NEW


def test_a_model_that_is_not_the_packages_network_is_refused(package):
    with pytest.raises(ValueError, match=r"width=8 \(the package has 4\)"):
        TaggerModule(AudioTagger(NEW, **{**TINY, "width": 8}), pretrained=str(package))
    module = TaggerModule(AudioTagger(NEW, **{**TINY, "dropout": 0.1, "eval_chunks": 2}), pretrained=str(package))
    assert module.model.config["dropout"] == 0.1 and module.model.eval_chunks == 2  # training settings are its own


def _one_step(module: TaggerModule) -> None:
    torch.manual_seed(0)
    items = [{"track_id": str(i), "wave": torch.randn(8000),
              "targets": {"genre": torch.tensor([1.0, 0.0, 0.0]), "mood": torch.tensor([0.0, 1.0]),
                          "scene": torch.tensor([0.0, 0.0, 1.0, 0.0])}} for i in range(4)]
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, DataLoader(items, batch_size=4, collate_fn=collate_tracks))


@pytest.mark.parametrize("freeze", [True, False])
def test_a_linear_probe_trains_the_heads_only_and_keeps_batch_norm_statistics(package, freeze):
    module = TaggerModule(AudioTagger(NEW, **TINY), pretrained=str(package), freeze_backbone=freeze, lr=0.01)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainable = {id(p) for group in decay_groups(module, 0.01) for p in group["params"]}
    heads = {id(p) for p in module.model.heads.parameters()}
    assert trainable == heads if freeze else trainable > heads
    _one_step(module)
    after = module.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    if freeze:
        assert changed == {f"heads.{g}.{p}" for g in NEW["groups"] for p in ("weight", "bias")}
    else:  # the same step without freezing moves the backbone and the statistics: the check above can fail
        assert "backbone.input_norm.running_mean" in changed and "backbone.conv.0.weight" in changed


def test_below_the_heads_trains_at_backbone_lr_scale_times_the_heads_learning_rate():
    module = TaggerModule(AudioTagger(NEW, **TINY), lr=0.01, backbone_lr_scale=0.1)
    module.trainer = SimpleNamespace(estimated_stepping_batches=100)  # all configure_optimizers reads of it
    optimizer = module.configure_optimizers()["optimizer"]
    peak = {}  # parameter -> max_lr of every group it is in
    for group in optimizer.param_groups:
        for p in group["params"]:
            peak.setdefault(p, []).append(group["max_lr"])
    named = dict(module.model.named_parameters())
    below = {name for name in named if name.startswith(("frontend.", "backbone."))}
    assert below and set(named) - below == {f"heads.{g}.{p}" for g in NEW["groups"] for p in ("weight", "bias")}
    assert set(peak) == set(module.parameters()) == set(named.values())
    assert {name: peak[p] for name, p in named.items()} == {
        name: [pytest.approx(0.001 if name in below else 0.01)] for name in named}


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 10, 11])
def test_the_one_cycle_schedule_runs_every_step_of_a_short_run(steps):
    """Ten steps once crashed the schedule (a one-step warm-up divides by zero): each step's learning rate is a
    number no higher than the peak."""
    module = TaggerModule(AudioTagger(NEW, **TINY), lr=0.01)
    module.trainer = SimpleNamespace(estimated_stepping_batches=steps)
    configured = module.configure_optimizers()
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    schedule = configured["lr_scheduler"]["scheduler"] if isinstance(configured, dict) else None
    for _ in range(steps):
        optimizer.step()
        if schedule is not None:
            schedule.step()
        rates = [group["lr"] for group in optimizer.param_groups]
        assert all(0 <= rate <= 0.01 + 1e-12 for rate in rates)


def test_a_zero_backbone_lr_scale_trains_the_heads_and_leaves_the_weights_below_them(package):
    module = TaggerModule(AudioTagger(NEW, **TINY), pretrained=str(package), lr=0.01, backbone_lr_scale=0.0)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    _one_step(module)
    after = module.model.state_dict()
    weights = {name for name, _ in module.model.named_parameters()}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed & weights == {f"heads.{g}.{p}" for g in NEW["groups"] for p in ("weight", "bias")}
    # unlike freeze_backbone, batch norm still follows the new data
    assert "backbone.input_norm.running_mean" in changed


def test_a_negative_backbone_lr_scale_is_refused():
    with pytest.raises(ValueError, match=r"backbone_lr_scale must be >= 0, got -0.1"):
        TaggerModule(AudioTagger(NEW, **TINY), backbone_lr_scale=-0.1)


# Fine-tune versus scratch, on sounds whose labels are known. Pre-training names the kinds of sound in a clip
# ("source"); the held-out group ("contour") asks whether a clip glides in pitch (a rising or falling sweep) or
# holds one (a steady or pulsing tone), which the pre-trained detectors answer and a fresh network must learn
# from ten labelled clips.
KINDS = ["rising", "falling", "steady", "pulsing", "noise"]
SOUND = {**TINY, "width": 8, "embedding_dim": 32, "dropout": 0.0, "chunk_seconds": 0.5}
CONTOUR = {"groups": {"contour": {"type": "multilabel", "labels": ["glide", "held"]}}}


def _sounds(pairs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict, dict]:
    """Half-second clips of two kinds of sound each (``pairs``: ``(clips, 2)`` indices into KINDS) at random
    pitches, speeds and levels over faint noise: ``(waves, {"source": ...}, {"contour": ...})``."""
    n, samples, rate = len(pairs), 4000, 8000
    t = torch.arange(samples) / rate
    source = torch.zeros(n, len(KINDS)).scatter_(1, pairs, 1.0)
    u = torch.rand(n, len(KINDS), 3, generator=generator)
    level, f0 = 0.2 + 0.3 * u[..., 0:1], 300 * 2 ** (2 * u[..., 1:2])  # 300 to 1200 Hz
    speed = 2 + 2 * u[:, :2, 2:3]  # sweeps of 2 to 4 octaves per second, 1 to 2 octaves a clip
    rising = torch.sin(2 * math.pi * f0[:, 0] * (2 ** (speed[:, 0] * t) - 1) / (speed[:, 0] * math.log(2)))
    top = f0[:, 1] * 2 ** (speed[:, 1] * t[-1])
    falling = torch.sin(2 * math.pi * top * (1 - 2 ** (-speed[:, 1] * t)) / (speed[:, 1] * math.log(2)))
    steady = torch.sin(2 * math.pi * f0[:, 2] * t)
    pulse = torch.sin(2 * math.pi * (4 + 8 * u[:, 3, 2:3]) * t) > 0  # on and off 4 to 12 times a second
    pulsing = torch.sin(2 * math.pi * f0[:, 3] * t) * pulse
    noise = 0.2 * torch.randn(n, samples, generator=generator).clamp(-3, 3)
    parts = torch.stack([rising, falling, steady, pulsing, noise], dim=1)  # (clips, kinds, samples)
    waves = (parts * level * source.unsqueeze(2)).sum(dim=1) + 0.01 * torch.randn(n, samples, generator=generator)
    contour = torch.stack([source[:, :2].amax(dim=1), source[:, 2:4].amax(dim=1)], dim=1)
    return waves, {"source": source}, {"contour": contour}


def _random_pairs(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, len(KINDS), generator=generator).argsort(dim=1)[:, :2]


def _fit(module: TaggerModule, waves: torch.Tensor, targets: dict, steps: int, lr: float,
         batch: int | None = None, seed: int = 0) -> TaggerModule:
    """Plain AdamW steps on in-memory clips, with the module's parameter groups and training modes."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(decay_groups(module, 1e-4), lr=lr)
    module.train()
    for _ in range(steps):
        rows = torch.randperm(len(waves), generator=generator)[:batch] if batch else torch.arange(len(waves))
        losses = masked_losses(module(waves[rows]), {g: t[rows] for g, t in targets.items()}, module.types)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    return module.eval()


@pytest.fixture(scope="module")
def sound_tagger(tmp_path_factory):
    """A tagger pre-trained to name the kinds of sound (ROC-AUC about 0.99 on new clips), packaged."""
    generator = torch.Generator().manual_seed(0)
    waves, source, _ = _sounds(_random_pairs(512, generator), generator)
    torch.manual_seed(0)
    vocab = {"groups": {"source": {"type": "multilabel", "labels": KINDS}}}
    module = _fit(TaggerModule(AudioTagger(vocab, **SOUND)), waves, source, steps=250, lr=3e-3, batch=64)
    directory = tmp_path_factory.mktemp("sound-tagger") / "model"
    module.model.save_pretrained(directory)
    return directory


@pytest.mark.slow
def test_fine_tuning_a_package_beats_training_from_scratch_on_a_few_labels(sound_tagger):
    generator = torch.Generator().manual_seed(1000)
    test_waves, _, test_targets = _sounds(_random_pairs(256, generator), generator)
    every_pair = torch.combinations(torch.arange(len(KINDS)), 2)  # ten clips, each pair of kinds once
    scores = {"scratch": [], "fine-tune": [], "linear probe": []}
    for seed in (1, 2, 3):
        waves, _, targets = _sounds(every_pair, torch.Generator().manual_seed(seed))
        for name, pretrained, freeze, lr in [("scratch", None, False, 3e-3), ("fine-tune", sound_tagger, False, 3e-3),
                                             ("linear probe", sound_tagger, True, 1e-2)]:
            torch.manual_seed(seed)  # new heads (and the scratch backbone) drawn from the same seed
            module = TaggerModule(AudioTagger(CONTOUR, **SOUND), pretrained=pretrained and str(pretrained),
                                  freeze_backbone=freeze)
            _fit(module, waves, targets, steps=50, lr=lr, seed=seed)
            with torch.no_grad():
                logits = module(test_waves)["contour"]
            scores[name].append(multilabel_auroc(logits, test_targets["contour"].long(), num_labels=2).item())
    mean = {name: sum(values) / len(values) for name, values in scores.items()}
    # What a user starting from a package relies on: a clearly better tagger from the same few labels.
    assert mean["fine-tune"] >= mean["scratch"] + 0.05, scores
    assert mean["linear probe"] >= mean["scratch"] + 0.05, scores


def test_the_cli_fine_tunes_a_package_on_the_datamodules_vocabulary(tiny_catalog, tiny_tagger, tmp_path):
    # The catalog's own vocabulary: genre as the package has it, mood renamed "feel" (a group it lacks).
    manifest = pd.read_parquet(tiny_catalog / "manifest.parquet")
    manifest["audio_path"] = [str(tiny_catalog / path) for path in manifest["audio_path"]]
    manifest["feel"] = manifest["mood"]
    manifest[["track_id", "audio_path", "split", "genre", "feel"]].to_parquet(tmp_path / "manifest.parquet")
    groups = json.loads((tiny_catalog / "vocab.json").read_text())["groups"]
    vocab = {"groups": {"genre": groups["genre"], "feel": groups["mood"]}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))

    export = tmp_path / "model"
    cli_main(["fit", "--config", "configs/tagger_test.yaml",
              f"--data.init_args.manifest={tmp_path / 'manifest.parquet'}",
              f"--model.init_args.pretrained={tiny_tagger.export}", "--trainer.fast_dev_run=true",
              f"--model.init_args.export_dir={export}", f"--trainer.default_root_dir={tmp_path}"])
    assert AudioTagger.from_pretrained(export).labels.to_dict() == vocab
    inputs = json.loads((export / "package.json").read_text())["inputs"]
    assert inputs["pretrained"]["sha256"] == read_package(tiny_tagger.export)["sha256"]
    assert inputs["pretrained"]["source"] == str(tiny_tagger.export.resolve())


def test_a_cli_model_unlike_the_package_is_a_clear_error(tiny_catalog, tiny_tagger, tmp_path):
    with pytest.raises(ValueError, match=r"n_mels=16 \(the package has 32\)"):
        cli_main(["fit", "--config", "configs/tagger_test.yaml",
                  f"--data.init_args.manifest={tiny_catalog / 'manifest.parquet'}",
                  f"--model.init_args.pretrained={tiny_tagger.export}", "--model.init_args.model.init_args.n_mels=16",
                  "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}"])
