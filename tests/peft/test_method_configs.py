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
    assert get_method("lora").defaults == {"rank": 3, "alpha": 32, "dropout": 0.0, "blocks": None, "stages": None}
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


@pytest.mark.parametrize("method, options, named", [
    ("lora", {"rank": 0}, "rank"), ("lora", {"dropout": 1.0}, "dropout"),
    ("conv_lora", {"top_k": 9}, "top_k"), ("conv_lora", {"num_experts": 3, "scales": [1, 2]}, "scales"),
    ("conv_lora", {"scales": [0.5, 1, 2, 3, 4, 5, 6, 7]}, "scales"), ("conv_lora", {"implementation": "cuda"},
                                                                      "implementation"),
    ("conv_lora", {"gated": "yes"}, "gated"), ("adapter", {"bottleneck": 0}, "bottleneck"),
    ("vpt", {"num_prompts": 1.5}, "num_prompts"), ("lst", {"gate_temperature": 0}, "gate_temperature"),
    ("lst", {"taps": [3, 1]}, "taps"), ("sam_adapter", {"freq_ratio": 1.0}, "freq_ratio"),
    ("ssf", {"init_std": -0.1}, "init_std"),
])
def test_bad_values_are_refused_by_the_config_naming_the_option(method, options, named):
    with pytest.raises(ConfigError, match=named):
        get_method(method).make_config(**options)


def test_the_model_keeps_the_config_it_was_built_with():
    from convlora_lite.models.sam import build_sam
    from convlora_lite.peft import apply_peft

    model = apply_peft(build_sam("test_tiny"), "conv_lora", num_experts=4, top_k=2)
    assert model.peft_config == ConvLoraConfig(num_experts=4, top_k=2)
    assert model.image_encoder.blocks[0].attn.qkv.moe.num_experts == 4


@pytest.mark.parametrize("command", [
    ["train", "--dataset", "polyp", "--method", "lora", "--method-option", "rank=0"],
    ["reproduce", "--datasets", "polyp,camo", "--methods", "lora,conv_lora", "--method-option", "rank=0"],
    ["reproduce", "--datasets", "polyp", "--methods", "conv_lora", "--method-option", "top_k=9"],
    ["train", "--dataset", "polyp", "--method", "conv_lora", "--method-option", "scales=[1,2]"],
])
def test_a_bad_method_option_exits_2_before_any_data_or_checkpoint_is_touched(tmp_path, monkeypatch, capsys,
                                                                               command):
    """On the paper preset (ViT-H, 2.4 GB of weights) the value is refused at once, naming the option."""
    monkeypatch.setenv("CONVLORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONVLORA_DATA_BASE_URL", "http://127.0.0.1:9/nothing")  # a download would fail loudly
    out = tmp_path / "runs"
    code = main(command + ["--preset", "paper", "--root", str(tmp_path / "data"), "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    option = command[-1].split("=")[0]
    assert f"Option {option} must" in err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "data").exists() and not out.exists()


def test_reproduce_takes_the_image_size_and_method_options_of_train(tmp_path, monkeypatch):
    from convlora_lite.training import sweep

    seen = []
    monkeypatch.setattr(sweep, "reproduce", lambda *args, **kwargs: seen.append(kwargs))  # None: grid not complete
    assert main(["reproduce", "--datasets", "synth_polyp", "--methods", "conv_lora", "--image-size", "128",
                 "--method-option", "num_experts=4", "--output-dir", str(tmp_path)]) == 0
    assert seen[0]["image_size"] == 128 and seen[0]["method_options"] == {"num_experts": 4}
