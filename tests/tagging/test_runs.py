"""A variant of a config named by a dotted path (`tagging.runs`, scripts/seed_spread.py --set)."""

import pytest

from tagging.runs import apply_setting, parse_setting


def test_a_setting_is_a_dotted_path_and_a_yaml_value():
    config = {"model": {"init_args": {"mix_share": 0.0, "model": {"init_args": {"harmony": False}}}}}
    for text in ["model.init_args.model.init_args.harmony=true", "model.init_args.mix_groups=[instrument]",
                 "model.init_args.mix_share=0.5"]:
        apply_setting(config, *parse_setting(text))
    assert config == {"model": {"init_args": {"mix_share": 0.5, "mix_groups": ["instrument"],
                                              "model": {"init_args": {"harmony": True}}}}}
    with pytest.raises(ValueError, match=r"DOTTED\.KEY=VALUE"):
        parse_setting("harmony")
    with pytest.raises(ValueError, match=r"the config has no model\.init_args\.modle"):
        apply_setting(config, ["model", "init_args", "modle", "x"], 1)


def test_a_number_in_the_path_indexes_a_list():
    config = {"trainer": {"callbacks": [{"init_args": {"monitor": "val/loss"}},
                                        {"init_args": {"patience": 8}}]}}
    apply_setting(config, *parse_setting("trainer.callbacks.1.init_args.patience=60"))
    assert config["trainer"]["callbacks"] == [{"init_args": {"monitor": "val/loss"}}, {"init_args": {"patience": 60}}]
    with pytest.raises(ValueError, match=r"the config has no trainer\.callbacks\.2"):
        apply_setting(config, ["trainer", "callbacks", "2", "init_args", "patience"], 1)
