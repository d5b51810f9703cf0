"""The one training command's LightningCLI, shared by the taggers and the content -> factors models.

``train.py`` runs it (``python train.py fit --config configs/...yaml``); ``python -m fusion ablation`` runs it
in-process, one config per row. A config names its model and datamodule classes (``class_path``); every
argument of their ``__init__`` is a config key (``--print_config``). After ``fit``, the best checkpoint is
packaged with the module's ``export`` into ``model.init_args.export_dir``.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from coldtag.storage import PACKAGE_FILE


class TrainCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The datamodule decodes at the network's rate and crops what it takes in one chunk (or patch); the
        # network's label space, input sizes and number of factors come from the data. A link whose classes
        # lack the argument (the multimodal pair has no sample rate) does not apply.
        network = "model.init_args.model.init_args"
        parser.link_arguments(f"{network}.sample_rate", "data.init_args.sample_rate")
        parser.link_arguments(f"{network}.chunk_seconds", "data.init_args.clip_seconds")
        parser.link_arguments(f"{network}.patch_seconds", "data.init_args.patch_seconds")
        parser.link_arguments("data.vocab", f"{network}.vocab", apply_on="instantiate")
        parser.link_arguments("data.input_dims", f"{network}.input_dims", apply_on="instantiate")
        parser.link_arguments("data.n_factors", f"{network}.n_factors", apply_on="instantiate")
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
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best:
            # Our own checkpoint holds tensors and plain Python values only; nothing else is unpickled.
            module.load_state_dict(torch.load(best, map_location=module.device, weights_only=True)["state_dict"])
        if module.export_dir and trainer.is_global_zero:
            module.export(module.export_dir)


def cli_main(args: list[str] | None = None, run: bool = True) -> TrainCLI:
    return TrainCLI(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                    run=run, args=args, save_config_kwargs={"overwrite": True})
