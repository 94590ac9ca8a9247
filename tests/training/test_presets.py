"""Presets and how a TrainConfig is resolved from preset + dataset recipe + explicit options."""
import pytest

from convlora_lite.errors import ConfigError
from convlora_lite.training import TrainConfig, presets
from convlora_lite.training.config import preset_value
from convlora_lite.training.devices import resolve_precision
from convlora_lite.training.presets import OFFICIAL_SEED, PRESET_NAMES, get_preset


def test_every_preset_is_documented_and_unknown_names_fail():
    assert PRESET_NAMES == ("smoke", "cpu", "colab", "paper")
    for name in PRESET_NAMES:
        assert get_preset(name).name == name and get_preset(name).purpose
        assert name in presets.__doc__
    with pytest.raises(ConfigError, match="smoke, cpu, colab, paper"):
        get_preset("quick")


def test_paper_preset_is_the_official_recipe():
    # docs/recipe.md: ViT-H, 1024 px, batch 1 x accumulation 4, fp16, seed 42686693, per-dataset epochs/lr
    cfg = TrainConfig.resolve("road", "decoder_only", "paper")
    assert (cfg.model, cfg.image_size, cfg.batch_size, cfg.grad_accum, cfg.precision) == ("vit_h", 1024, 1, 4, "fp16")
    assert cfg.seed == OFFICIAL_SEED == 42686693
    assert (cfg.epochs, cfg.lr) == (20, 3e-4)
    assert (cfg.weight_decay, cfg.max_grad_norm, cfg.num_classes) == (1e-4, 1.0, 1)
    sbu = TrainConfig.resolve("sbu", "decoder_only", "paper")
    assert (sbu.epochs, sbu.lr) == (10, 1e-4)
    assert TrainConfig.resolve("trans10k", "decoder_only", "paper").num_classes == 12
    assert cfg.output_dir == "runs/road/decoder_only/seed42686693"


def test_colab_preset_is_sized_for_a_t4_session():
    cfg = TrainConfig.resolve("polyp", "decoder_only", "colab")
    assert (cfg.model, cfg.precision, cfg.activation_checkpointing, cfg.attention) == ("vit_b", "auto", False, "meta")
    # "auto": fp16 on the T4 (the official setting), fp32 when the CI test runs it on the CPU
    assert (resolve_precision(cfg.precision, "cuda"), resolve_precision(cfg.precision, "cpu")) == ("fp16", "fp32")
    assert (cfg.batch_size, cfg.grad_accum, cfg.image_size, cfg.epochs, cfg.max_train_batches) == (1, 4, 512, 8, 1000)
    assert cfg.lr == 1e-4 and cfg.max_eval_batches is None  # the official lr; whole splits scored
    assert (get_preset("colab").seeds, get_preset("paper").seeds, get_preset("cpu").seeds) == (1, 3, 1)


def test_cpu_and_smoke_presets_use_the_micro_model_at_its_native_size():
    cpu = TrainConfig.resolve("synth_polyp", "decoder_only", "cpu")
    assert (cpu.model, cpu.image_size, cpu.precision) == ("micro_sam", 256, "auto")
    smoke = TrainConfig.resolve("synth_polyp", "decoder_only", "smoke")
    assert (smoke.model, smoke.image_size, smoke.epochs) == ("micro_sam", 256, 1)
    assert smoke.max_train_batches is not None and smoke.max_eval_batches is not None


def test_explicit_options_win_over_preset_and_recipe():
    cfg = TrainConfig.resolve("polyp", "decoder_only", "paper", epochs=2, lr=5e-5, model="vit_b", image_size=512,
                              seed=3, max_grad_norm=None)
    assert ((cfg.epochs, cfg.lr, cfg.model, cfg.image_size, cfg.seed, cfg.max_grad_norm)
            == (2, 5e-5, "vit_b", 512, 3, None))
    assert cfg.output_dir == "runs/polyp/decoder_only/seed3"
    assert TrainConfig.resolve("polyp", "decoder_only", "paper", model="micro_sam", image_size=None).image_size == 256
    with pytest.raises(ConfigError, match="multiple of"):
        TrainConfig.resolve("polyp", "decoder_only", "paper", image_size=1000)


def test_presets_are_named_overrides_of_train_config_fields():
    fields = set(TrainConfig.__dataclass_fields__)
    for name in PRESET_NAMES:
        assert set(get_preset(name).overrides) <= fields, name
    assert (preset_value("cpu", "epochs"), preset_value("cpu", "lr")) == (4, 2e-3)
    assert preset_value("paper", "seed") == TrainConfig.__dataclass_fields__["seed"].default == OFFICIAL_SEED
    # the cpu preset's multi-class head and synth_trans10k's longer schedule (benchmarks/analogs_cpu.md); an explicit
    # setting still wins, and no other preset departs from the official head
    trans10k = TrainConfig.resolve("synth_trans10k", "lora", "cpu")
    assert (trans10k.epochs, trans10k.query_jitter, trans10k.lr) == (12, 1.0, 2e-3)
    assert TrainConfig.resolve("synth_polyp", "lora", "cpu").epochs == 4
    assert TrainConfig.resolve("synth_trans10k", "lora", "cpu", epochs=2, query_jitter=0.0).epochs == 2
    assert [TrainConfig.resolve("trans10k", "lora", name).query_jitter for name in ("colab", "paper")] == [0.0, 0.0]
    with pytest.raises(ConfigError, match="query_jitter=-1"):
        TrainConfig.resolve("synth_trans10k", "lora", "cpu", query_jitter=-1)
    # a preset that leaves image_size out gets the model's native size, whatever the model
    assert TrainConfig.resolve("synth_polyp", "decoder_only", "cpu", model="test_tiny").image_size == 64


def test_method_options_come_from_the_method_config_with_its_defaults():
    cfg = TrainConfig.resolve("synth_polyp", "conv_lora", "smoke", method_options={"num_experts": 4})
    assert cfg.method_options == {"rank": 3, "alpha": 32, "dropout": 0.0, "blocks": None, "stages": None,
                                  "num_experts": 4, "scales": None,
                                  "top_k": 1, "gated": False, "loss_coef": 0.01, "implementation": "fast"}
    assert TrainConfig.resolve("synth_polyp", "decoder_only", "smoke").method_options == {}
    with pytest.raises(ConfigError, match=r"Unknown option\(s\) \['experts'\] for method 'conv_lora'; it takes"):
        TrainConfig.resolve("synth_polyp", "conv_lora", "smoke", method_options={"experts": 4})
    with pytest.raises(ConfigError, match="it takes none"):
        TrainConfig.resolve("synth_polyp", "decoder_only", "smoke", method_options={"rank": 4})


def test_a_run_written_before_a_method_option_existed_has_not_changed():
    cfg = TrainConfig.resolve("synth_polyp", "lora", "smoke", method_options={"rank": 4})
    stored = cfg.to_dict()
    stored["method_options"] = {k: v for k, v in stored["method_options"].items() if k not in ("blocks", "stages")}
    assert cfg.changed_fields(stored) == []
    assert "method_options" in cfg.changed_fields({**stored, "method_options": {**stored["method_options"], "rank": 3}})


def test_sam2_backbone_is_micro_sam2_offline_hiera_s_at_paper_scale_and_refuses_other_names():
    from convlora_lite.training.presets import sam2_backbone

    assert [sam2_backbone(name) for name in PRESET_NAMES] == ["micro_sam2", "micro_sam2", "sam2.1_hiera_small",
                                                              "sam2.1_hiera_small"]
    assert sam2_backbone("cpu", "sam2.1_hiera_tiny") == "sam2.1_hiera_tiny"
    with pytest.raises(ConfigError, match="SAM2_MODEL='vit_b' is not a SAM 2 backbone; choose auto or one of "
                                          "micro_sam2, sam2.1_hiera_tiny"):
        sam2_backbone("cpu", "vit_b")
