"""Train, validate, test and package the taggers with LightningCLI.

    python train.py fit --config configs/tagger_demo.yaml
    python train.py test --config configs/tagger_demo.yaml --ckpt_path runs/demo/tagger/checkpoints/best.ckpt
    python train.py fit --config configs/multimodal_demo.yaml

A config names its model and datamodule classes (``class_path``); every argument of their ``__init__``
is a config key (``python train.py fit --config ... --print_config``). After ``fit``, the best
checkpoint is packaged with ``save_pretrained`` into ``model.init_args.export_dir``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from tagging.lightning import LabelGroupsModule


class TaggerCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The datamodule decodes at the model's rate and crops what the model takes in one chunk; the
        # model's label space and input sizes come from the data. A link whose classes lack the
        # argument (the multimodal pair has no sample rate) does not apply.
        parser.link_arguments("model.init_args.sample_rate", "data.init_args.sample_rate")
        parser.link_arguments("model.init_args.chunk_seconds", "data.init_args.clip_seconds")
        parser.link_arguments("data.vocab", "model.init_args.vocab", apply_on="instantiate")
        parser.link_arguments("data.input_dims", "model.init_args.input_dims", apply_on="instantiate")

    def after_fit(self) -> None:
        module, trainer = self.model, self.trainer
        if not module.export_dir or not trainer.is_global_zero:
            return
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best:
            module.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["state_dict"])
        export = Path(module.export_dir)
        export.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{export.name}-", dir=export.parent))
        module.model.save_pretrained(staging)
        if export.exists():
            shutil.rmtree(export)
        staging.rename(export)


def cli_main(args: list[str] | None = None) -> TaggerCLI:
    return TaggerCLI(LabelGroupsModule, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                     args=args, save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    cli_main()
