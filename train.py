"""Train, validate, test and package the taggers and the content -> factors models with LightningCLI.

    python train.py fit --config configs/tagger_demo.yaml
    python train.py test --config configs/tagger_demo.yaml --ckpt_path runs/demo/tagger/checkpoints/best.ckpt
    python train.py fit --config configs/multimodal_demo.yaml
    python train.py fit --config configs/finetune_demo.yaml  # the demo package on a catalog's own vocabulary
    python train.py fit --config configs/fusion_demo.yaml    # one row of the cold-start ablation

A config names its model and datamodule classes (``class_path``); every argument of their ``__init__``
is a config key (``python train.py fit --config ... --print_config``). After ``fit``, the best
checkpoint is packaged with ``save_pretrained`` into ``model.init_args.export_dir`` (`coldtag.training`).
"""

from coldtag.training import TrainCLI, cli_main

__all__ = ["TrainCLI", "cli_main"]

if __name__ == "__main__":
    cli_main()
