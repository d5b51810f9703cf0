"""Lightning wrappers of the taggers: losses, metrics per label group, threshold calibration, export.

`TaggerModule` trains `AudioTagger` on waveforms: random crops in training, whole tracks through the
model's fixed chunk grid (`AudioTagger.track_outputs`) in validation and test, so the numbers logged
are the ones a user gets from the packaged model. `MultimodalTaggerModule` trains `MultimodalTagger` on
cached per-modality embeddings (`tagging.data.features`).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from coldtag.storage import atomic_write, write_json
from tagging.evaluation.metrics import GradedScores, MultilabelScores
from tagging.labels import MULTILABEL
from tagging.models.multimodal import MultimodalTagger
from tagging.models.tagger import AudioTagger, TaggerBase
from tagging.pretrained.convert import resolve_model

# Not hyperparameters: where a run writes. LightningCLI puts a checkpoint's hyperparameters over the
# command line's (``test --ckpt_path``), which would send a test's tables to the training run's folder.
RUN_SETTINGS = ["model", "export_dir", "tables_dir"]


def masked_losses(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                  types: dict[str, str]) -> dict[str, torch.Tensor]:
    """Per-group loss over the labels that are present (targets NaN where missing).

    Multilabel groups: binary cross-entropy with logits; regression groups: mean squared error on the
    [0, 1]-scaled values. A group with no label in the batch contributes a zero that keeps the graph.
    """
    losses = {}
    for name, out in outputs.items():
        target = targets[name].to(out.dtype)
        present = ~torch.isnan(target)
        if not present.any():
            losses[name] = out.sum() * 0.0
            continue
        out, target = out[present].float(), target[present].float()
        if types[name] == MULTILABEL:
            losses[name] = F.binary_cross_entropy_with_logits(out, target)
        else:
            losses[name] = F.mse_loss(out, target)
    return losses


def mix_clips(batch: dict, share: float, union_groups: list[str]) -> dict:
    """Mixing augmentation (see `TaggerModule`): ``round(share * batch)`` clips, drawn with torch's generator,
    get another clip of the batch added at a gain of 0.5 to 1; their ``union_groups`` targets become the
    union of both clips' (1 if either is 1, 0 if both are 0, unknown otherwise), other groups' unknown."""
    wave, targets = batch["wave"], batch["targets"]
    size = len(wave)
    count = round(share * size)
    if count == 0 or size < 2:
        return batch
    mixed = torch.randperm(size, device=wave.device)[:count]
    partner = (mixed + torch.randint(1, size, (count,), device=wave.device)) % size  # never itself
    gain = 0.5 + 0.5 * torch.rand(count, 1, device=wave.device, dtype=wave.dtype)
    wave = wave.clone()
    wave[mixed] = wave[mixed] + gain * batch["wave"][partner]
    new_targets = {}
    for name, target in targets.items():
        target = target.clone()
        if name in union_groups:
            a, b = target[mixed], target[partner]
            union = torch.where((a == 1) | (b == 1), 1.0, torch.where((a == 0) & (b == 0), 0.0, torch.nan))
            target[mixed] = union.to(target.dtype)
        else:
            target[mixed] = torch.nan
        new_targets[name] = target
    return {**batch, "wave": wave, "targets": new_targets}


def decay_groups(params: nn.Module | Iterable[nn.Parameter], weight_decay: float, **settings) -> list[dict]:
    """Optimizer parameter groups of a module's (or these) trainable parameters: weight decay on weight matrices
    and kernels only. On norms' scales and on biases it only pulls them towards zero, which is not
    regularisation (as nanoGPT's ``configure_optimizers``). ``settings`` (a learning rate) go into both groups."""
    params = [p for p in (params.parameters() if isinstance(params, nn.Module) else params) if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay, **settings},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, **settings}]


class LabelGroupsModule(pl.LightningModule):
    """What both taggers' training shares; a subclass sets ``self.model`` (a `TaggerBase`) and calls
    `_init_training`, and its ``_outputs(batch, stage)`` returns logits and pooled scores."""

    model: TaggerBase

    def _init_training(self, group_weights: dict[str, float] | None, export_dir: str | None,
                       tables_dir: str | None) -> None:
        groups = self.model.labels.groups
        unknown = set(group_weights or {}) - set(groups)
        if unknown:
            raise ValueError(f"group_weights names unknown group(s) {sorted(unknown)}; groups are {list(groups)}")
        self.group_weights = {name: float((group_weights or {}).get(name, 1.0)) for name in groups}
        self.types = {name: group.type for name, group in groups.items()}
        self.metrics = nn.ModuleDict({
            stage: nn.ModuleDict({name: MultilabelScores(group.labels) if group.type == MULTILABEL
                                  else GradedScores(group) for name, group in groups.items()})
            for stage in ("val", "test")})
        self.export_dir, self.tables_dir = export_dir, tables_dir

    def _outputs(self, batch: dict, stage: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        raise NotImplementedError

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        outputs, scores = self._outputs(batch, stage)
        if stage != "train":
            for name, metric in self.metrics[stage].items():
                metric.update(scores[name], batch["targets"][name])
        losses = masked_losses(outputs, batch["targets"], self.types)
        loss = sum(self.group_weights[name] * value for name, value in losses.items())
        batch_size = len(next(iter(batch["targets"].values())))
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=stage != "train")
        for name, value in losses.items():
            self.log(f"{stage}/{name}/loss", value, batch_size=batch_size, sync_dist=stage != "train")
        return loss

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        # Dropout and timbre dropout draw from torch's generator, which Lightning and the DataLoader also
        # draw from between steps, differently in a resumed run. Reseeded from (seed, epoch, batch, rank)
        # before every step, a run resumed from the end of an epoch draws what the uninterrupted run drew
        # (the data order and crops come from `TrainingOrder`). A run without seed_everything stays unseeded.
        seed = os.environ.get("PL_GLOBAL_SEED")
        if seed is not None:
            key = [int(seed), self.current_epoch, batch_idx, self.global_rank]
            torch.manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        results = self._log_scores("val")
        # Thresholds follow the model: the best checkpoint carries those of its own validation.
        for name, result in results.items():
            if self.types[name] == MULTILABEL:
                self.model.set_thresholds(name, result["thresholds"].to(self.device))

        if self.trainer.state.fn == "validate" and self.trainer.is_global_zero:
            self._write_tables("val", results)

    def on_test_epoch_end(self) -> None:
        results = self._log_scores("test")
        if self.trainer.is_global_zero:
            self._write_tables("test", results)

    def _log_scores(self, stage: str) -> dict:
        results = {}
        for name, metric in self.metrics[stage].items():
            result = metric.compute()
            metric.reset()
            results[name] = result
            if self.types[name] == MULTILABEL:
                self._log_finite(f"{stage}/{name}/roc_auc", result["roc_auc"])
                self._log_finite(f"{stage}/{name}/pr_auc", result["pr_auc"])
            else:
                self._log_finite(f"{stage}/{name}/spearman", result["spearman_mean"])
                for label, mae in zip(metric.labels, result["mae"], strict=True):
                    self._log_finite(f"{stage}/{name}/{label}/mae", mae)
        return results

    def _log_finite(self, key: str, value: float) -> None:
        if not math.isnan(value):
            self.log(key, value, sync_dist=False)

    def _write_tables(self, stage: str, results: dict) -> None:
        """``{stage}_per_tag.csv`` and ``{stage}_scores.json``: scores per group and label, how many tracks
        each group was scored on, and the F1-optimal thresholds those tracks give."""
        folder = Path(self.tables_dir or (self.logger.log_dir if self.logger and self.logger.log_dir else "."))
        rows, summary = [], {}
        for name, result in results.items():
            labels = self.metrics[stage][name].labels
            if self.types[name] == MULTILABEL:
                per_tag = zip(labels, result["per_tag"]["roc_auc"], result["per_tag"]["pr_auc"],
                              result["thresholds"].tolist(), strict=True)
                per_label = {label: {"roc_auc": roc, "pr_auc": pr, "threshold": t} for label, roc, pr, t in per_tag}
                rows += [[name, label, v["roc_auc"], v["pr_auc"], "", ""] for label, v in per_label.items()]
                summary[name] = {"roc_auc": result["roc_auc"], "pr_auc": result["pr_auc"]}
            else:
                per_label = {label: {"spearman": rho, "mae": mae}
                             for label, mae, rho in zip(labels, result["mae"], result["spearman"], strict=True)}
                rows += [[name, label, "", "", v["mae"], v["spearman"]] for label, v in per_label.items()]
                summary[name] = {"spearman": result["spearman_mean"]}
            summary[name] |= {"tracks": result["tracks"], "per_label": per_label}
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(["group", "label", "roc_auc", "pr_auc", "mae", "spearman"])
        writer.writerows(rows)
        atomic_write(folder / f"{stage}_per_tag.csv", table.getvalue())
        write_json(folder / f"{stage}_scores.json", summary)

    def export(self, directory: str | Path) -> None:
        """Package the model (`save_pretrained`), recording the packages that made its inputs."""
        self.model.save_pretrained(directory, inputs=self.export_inputs())

    def export_inputs(self) -> dict | None:
        return None

    def param_groups(self) -> list[dict]:
        """The optimizer's parameter groups, each with its (peak) learning rate ``"lr"``."""
        return decay_groups(self, self.hparams.weight_decay, lr=self.hparams.lr)

    def configure_optimizers(self):
        groups = [group for group in self.param_groups() if group["params"]]
        optimizer = torch.optim.AdamW(groups)
        steps = self.trainer.estimated_stepping_batches
        if not steps or math.isinf(steps) or steps < 3:  # too few steps to warm up and anneal
            return optimizer
        # At least two warm-up steps: with exactly one (10 steps at 10 %) OneCycleLR divides by zero.
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[group["lr"] for group in groups],
                                                       total_steps=int(steps), pct_start=max(0.1, 2 / steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class TaggerModule(LabelGroupsModule):
    """Trains an `AudioTagger`, given ready-made (its arguments are declared once, by the model) or
    started from a package (fine-tuning).

    Args:
        model: the network; in a config, ``class_path: tagging.models.tagger.AudioTagger`` with its ``init_args``
            (the vocabulary is linked from the datamodule by ``train.py``).
        pretrained: a packaged `AudioTagger` (``save_pretrained`` directory) to fine-tune: the network becomes
            ``AudioTagger.from_pretrained(pretrained, vocab=model's vocabulary)``, the package's weights below
            the heads and new heads for groups it does not have as they are. ``model`` still describes the
            network (``train.py`` sizes the data's sample rate and crops from it): it must be the package's,
            and only its `AudioTagger.TRAINING_SETTINGS` (dropout, crop length, ...) may differ.
        freeze_backbone: train the heads only (a linear probe): everything below them keeps the package's
            weights and stays in eval mode, so batch-norm statistics do not move either.
        backbone_lr_scale: everything below the heads (front-end and backbone) trains at ``lr *
            backbone_lr_scale``, the heads at ``lr``, both on the one-cycle schedule (discriminative fine-tuning:
            new heads start random and need steps large enough to wreck pretrained features). 0 keeps those
            weights as they are while their batch-norm statistics still follow the new data. Without effect
            under ``freeze_backbone``, which trains nothing below the heads; allowed there all the same, so a
            fine-tune config becomes a linear probe by ``--model.init_args.freeze_backbone=true`` alone.
        compile_backbone: run the backbone through ``torch.compile`` (on GPUs; the front-end stays in eager float32).
            The module and its weights' names are unchanged, so checkpoints and packages are the same.
        lr, weight_decay: AdamW settings (decay on weight matrices only); the learning rate warms up, then
            anneals (one-cycle schedule).
        group_weights: loss weight per label group (default 1 each).
        mix_share, mix_groups: mixing augmentation. That share of each training batch has another clip of the
            batch added to it (at a random gain between -6 and 0 dB); the labels of ``mix_groups`` (sounds
            that add up, such as instruments) become the union of both clips', every other group's are
            unknown for a mixed clip (its loss skips them). A tagger that has heard instruments in other
            company names them by their sound, not by the genre they usually come with.
        export_dir: where ``train.py`` writes the packaged model (`save_pretrained`) after ``fit``; a fine-tuned
            model's package names the package it started from as its ``"pretrained"`` input.
        tables_dir: where per-tag test scores are written (default: the logger's folder).
    """

    def __init__(
        self,
        model: AudioTagger,
        pretrained: str | None = None,
        freeze_backbone: bool = False,
        backbone_lr_scale: float = 1.0,
        compile_backbone: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        group_weights: dict[str, float] | None = None,
        mix_share: float = 0.0,
        mix_groups: list[str] | None = None,
        export_dir: str | None = None,
        tables_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=RUN_SETTINGS)
        self.model = _start_from(pretrained, model) if pretrained is not None else model
        if not 0.0 <= mix_share <= 1.0:
            raise ValueError(f"mix_share must be in [0, 1], got {mix_share}")
        groups = self.model.labels.groups
        bad = [name for name in mix_groups or [] if name not in groups or groups[name].type != MULTILABEL]
        if bad:
            raise ValueError(f"mix_groups: {bad} are not multilabel groups of the model ({list(groups)})")
        self.mix_share, self.mix_groups = mix_share, list(mix_groups or [])
        if backbone_lr_scale < 0:
            raise ValueError(f"backbone_lr_scale must be >= 0, got {backbone_lr_scale}")
        self.freeze_backbone, self.compile_backbone = freeze_backbone, compile_backbone
        if freeze_backbone:
            for part in self._below_heads():
                part.requires_grad_(False)
        # A loaded package comes in eval mode, and Lightning starts fitting in whatever mode it finds.
        self.train()
        self._init_training(group_weights, export_dir, tables_dir)

    def _below_heads(self) -> list[nn.Module]:
        # Everything the heads read from (what freeze_backbone freezes and backbone_lr_scale slows); the
        # dropout before the heads belongs to the heads' training.
        return [part for name, part in self.model.named_children() if name not in ("heads", "dropout")]

    def param_groups(self) -> list[dict]:
        below = {id(p) for part in self._below_heads() for p in part.parameters()}
        params = list(self.parameters())
        lr, decay = self.hparams.lr, self.hparams.weight_decay
        return (decay_groups([p for p in params if id(p) in below], decay, lr=lr * self.hparams.backbone_lr_scale)
                + decay_groups([p for p in params if id(p) not in below], decay, lr=lr))

    def train(self, mode: bool = True) -> TaggerModule:
        super().train(mode)
        if self.freeze_backbone:
            # Lightning puts the whole module in training mode each epoch; batch norm would then still move
            # its running statistics (and dropout act) in parts whose weights are frozen.
            for part in self._below_heads():
                part.eval()
        return self

    def configure_model(self) -> None:
        # The bound forward is compiled, not the module: wrapping the module would rename every weight
        # (``_orig_mod.``) in checkpoints and packages. Lightning calls this hook in every stage.
        if self.compile_backbone and "forward" not in vars(self.model.backbone):
            self.model.backbone.forward = torch.compile(self.model.backbone.forward)

    def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(wave)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.mix_share > 0:
            batch = mix_clips(batch, self.mix_share, self.mix_groups)
        return self._step(batch, "train")

    def _outputs(self, batch: dict, stage: str):
        if stage == "train":
            return self.model(batch["wave"]), {}
        track = self.model.track_outputs(batch["wave"], batch["length"])
        # Whole-track scores are probabilities / values; the loss wants logits for multilabel groups.
        logits = {name: torch.logit(s.clamp(1e-6, 1 - 1e-6)) if self.types[name] == MULTILABEL else s
                  for name, s in track.scores.items()}
        return logits, track.scores

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        track = self.model.track_outputs(batch["wave"], batch["length"])
        return {"track_id": batch["track_id"], "embedding": track.embedding.cpu(),
                "scores": {name: s.cpu() for name, s in track.scores.items()}}


class MultimodalTaggerModule(LabelGroupsModule):
    """Trains a `MultimodalTagger` on cached embeddings, given ready-made.

    Args:
        model: the network (``class_path: tagging.models.multimodal.MultimodalTagger``); its vocabulary and input
            sizes are linked from the datamodule by ``train.py``.
        eval_modalities: restrict validation/test to these modalities (default: all the model has).
        input_sources: the packages and encoders that produced the cached embeddings (linked from the
            datamodule); recorded in the exported package, the audio tagger bundled in it.
        Others: as `TaggerModule`.
    """

    def __init__(
        self,
        model: MultimodalTagger,
        eval_modalities: list[str] | None = None,
        input_sources: dict | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        group_weights: dict[str, float] | None = None,
        export_dir: str | None = None,
        tables_dir: str | None = None,
    ):
        super().__init__()
        unknown = set(eval_modalities or []) - set(model.modalities)
        if unknown:
            raise ValueError(f"eval_modalities names {sorted(unknown)}, not among {model.modalities}")
        self.save_hyperparameters(ignore=RUN_SETTINGS)
        self.model = model
        self.eval_modalities = eval_modalities
        self.input_sources = input_sources
        self._init_training(group_weights, export_dir, tables_dir)

    def export_inputs(self) -> dict | None:
        # The audio tagger is bundled: with it inside, the package runs on a raw audio file alone.
        sources = self.input_sources or {}
        return {m: {**ref, "bundle": "sha256" in ref} for m, ref in sources.items() if m in self.model.modalities}

    def _outputs(self, batch: dict, stage: str):
        inputs, present = batch["inputs"], batch["present"]
        if stage != "train" and self.eval_modalities is not None:
            inputs = {m: x for m, x in inputs.items() if m in self.eval_modalities}
        logits = self.model(inputs, present)
        return logits, self.model.scores(logits)


def _start_from(pretrained: str, model: AudioTagger) -> AudioTagger:
    """The package ``pretrained`` on ``model``'s vocabulary and training settings, once ``model`` is found to
    describe the package's network (else a ``ValueError`` naming what differs)."""
    settings = {key: model.config[key] for key in AudioTagger.TRAINING_SETTINGS}
    network = AudioTagger.from_pretrained(resolve_model(pretrained), vocab=model.config["vocab"], **settings)
    differ = {key: (value, network.config[key]) for key, value in model.config.items()
              if key != "vocab" and network.config[key] != value}
    if differ:
        shown = ", ".join(f"{key}={mine!r} (the package has {theirs!r})" for key, (mine, theirs) in differ.items())
        raise ValueError(f"model does not describe the network of pretrained={pretrained}: {shown}; give model the "
                         "settings of the config that trained the package")
    return network
