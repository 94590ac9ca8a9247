"""Each method's options live in one config dataclass; `key=value` options parse the same way for
`convlora train --method-option` and `convlora bench --methods m:key=value`."""
import dataclasses

import pytest

from convlora_lite.cli import main
from convlora_lite.errors import ConfigError
from convlora_lite.peft import METHOD_NAMES, get_method
from convlora_lite.peft.base import parse_options
from convlora_lite.peft.conv_lora import ConvLoraConfig, ConvLoRALinear, NoisyTopKGate
from convlora_lite.peft.lora import LoraConfig, LoRALinear


def test_every_method_has_a_frozen_config_whose_fields_are_its_defaults():
    for name in METHOD_NAMES:
        method = get_method(name)
        assert dataclasses.is_dataclass(method.config) and method.config.__dataclass_params__.frozen
        assert method.defaults == dataclasses.asdict(method.config())
    assert get_method("lora").defaults == {"rank": 3, "alpha": 32, "dropout": 0.0}
    assert get_method("adapter").defaults == {"bottleneck": 2}


def test_layers_default_to_the_method_config():
    import inspect

    from torch import nn

    lora = LoRALinear(nn.Linear(6, 18))
    assert (lora.rank, lora.alpha) == (LoraConfig.rank, LoraConfig.alpha) == (3, 32)
    conv = ConvLoRALinear(nn.Linear(6, 18))
    assert len(conv.moe.experts) == ConvLoraConfig.num_experts == 8
    assert inspect.signature(NoisyTopKGate).parameters["loss_coef"].default == ConvLoraConfig.loss_coef == 0.01


def test_parse_options_reads_json_values_and_rejects_bad_pairs():
    assert parse_options(["num_experts=4", "gated=true", "scales=[1,2]", "implementation=official"]) == {
        "num_experts": 4, "gated": True, "scales": [1, 2], "implementation": "official"}
    with pytest.raises(ConfigError, match="write options as key=value"):
        parse_options(["num_experts"])


def test_train_cli_rejects_an_unknown_method_option(capsys):
    code = main(["train", "--dataset", "synth_polyp", "--method", "lora", "--preset", "smoke",
                 "--method-option", "experts=4"])
    assert code == 2
    assert "Unknown option(s) ['experts'] for method 'lora'" in capsys.readouterr().err
