"""scripts/seed_spread.py: a variant of a config is named on the command line (--set)."""

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "seed_spread", Path(__file__).resolve().parents[1] / "scripts" / "seed_spread.py")
seed_spread = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(seed_spread)


def test_a_setting_is_a_dotted_path_and_a_yaml_value():
    config = {"model": {"init_args": {"mix_share": 0.0, "model": {"init_args": {"harmony": False}}}}}
    for text in ["model.init_args.model.init_args.harmony=true", "model.init_args.mix_groups=[instrument]",
                 "model.init_args.mix_share=0.5"]:
        seed_spread.apply_setting(config, *seed_spread.parse_setting(text))
    assert config == {"model": {"init_args": {"mix_share": 0.5, "mix_groups": ["instrument"],
                                              "model": {"init_args": {"harmony": True}}}}}
    with pytest.raises(ValueError, match=r"DOTTED\.KEY=VALUE"):
        seed_spread.parse_setting("harmony")
    with pytest.raises(SystemExit, match=r"the config has no model\.init_args\.modle"):
        seed_spread.apply_setting(config, ["model", "init_args", "modle", "x"], 1)


def test_a_number_in_the_path_indexes_a_list():
    config = {"trainer": {"callbacks": [{"init_args": {"monitor": "val/loss"}},
                                        {"init_args": {"patience": 8}}]}}
    seed_spread.apply_setting(config, *seed_spread.parse_setting("trainer.callbacks.1.init_args.patience=60"))
    assert config["trainer"]["callbacks"] == [{"init_args": {"monitor": "val/loss"}}, {"init_args": {"patience": 60}}]
    with pytest.raises(SystemExit, match=r"the config has no trainer\.callbacks\.2"):
        seed_spread.apply_setting(config, ["trainer", "callbacks", "2", "init_args", "patience"], 1)
