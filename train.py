"""Train, validate, test and package the taggers with LightningCLI.

    python train.py fit --config configs/tagger_demo.yaml
    python train.py test --config configs/tagger_demo.yaml --ckpt_path runs/demo/tagger/checkpoints/best.ckpt
    python train.py fit --config configs/multimodal_demo.yaml
    python train.py fit --config configs/finetune_demo.yaml  # the demo package on a catalog's own vocabulary

A config names its model and datamodule classes (``class_path``); every argument of their ``__init__``
is a config key (``python train.py fit --config ... --print_config``). After ``fit``, the best
checkpoint is packaged with ``save_pretrained`` into ``model.init_args.export_dir``.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from coldtag.storage import PACKAGE_FILE
from tagging.lightning import LabelGroupsModule


class TaggerCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The datamodule decodes at the network's rate and crops what it takes in one chunk; the
        # network's label space and input sizes come from the data. A link whose classes lack the
        # argument (the multimodal pair has no sample rate) does not apply.
        network = "model.init_args.model.init_args"
        parser.link_arguments(f"{network}.sample_rate", "data.init_args.sample_rate")
        parser.link_arguments(f"{network}.chunk_seconds", "data.init_args.clip_seconds")
        parser.link_arguments("data.vocab", f"{network}.vocab", apply_on="instantiate")
        parser.link_arguments("data.input_dims", f"{network}.input_dims", apply_on="instantiate")
        parser.link_arguments("data.input_sources", "model.init_args.input_sources", apply_on="instantiate")

    def before_fit(self) -> None:
        # Refuse before hours of training, not after: the export would not replace a foreign folder.
        export = self.model.export_dir
        if export and Path(export).is_dir() and any(Path(export).iterdir()) \
                and not (Path(export) / PACKAGE_FILE).is_file():
            raise FileExistsError(f"model.init_args.export_dir={export} holds files and is not a saved package; "
                                  "choose another folder or empty it")

    def after_fit(self) -> None:
        module, trainer = self.model, self.trainer
        if not module.export_dir or not trainer.is_global_zero:
            return
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best:
            # Our own checkpoint holds tensors and plain Python values only; nothing else is unpickled.
            module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
        module.export(module.export_dir)


def cli_main(args: list[str] | None = None) -> TaggerCLI:
    return TaggerCLI(LabelGroupsModule, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                     args=args, save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    cli_main()
