"""SAM 2.1 priced on a T4 in fp32 (it has no bf16 there), and notebook 13's colab plan."""
import pytest

from convlora_lite.bench.compute_budget import T4_FP16_FLOPS, T4_FP32_FLOPS, run_estimate, step_flops
from convlora_lite.bench.grid_cost import colab_plan, colab_plan_reading, device_profile, run_cost
from convlora_lite.training.config import TrainConfig


def test_sam2_runs_are_priced_at_the_t4s_fp32_throughput_and_sam_at_fp16():
    assert T4_FP32_FLOPS == pytest.approx(8.1e12 * 12 / 65)
    t4 = device_profile("t4")
    for model, throughput in (("sam2.1_hiera_small", T4_FP32_FLOPS), ("vit_b", T4_FP16_FLOPS)):
        config = TrainConfig.resolve("polyp", "lora", "colab", model=model, max_train_batches=10, epochs=1)
        cost = run_cost(config, t4)
        flops = step_flops(model, config.image_size, "lora")
        assert cost.seconds == pytest.approx(run_estimate(config, 1450, 145, 162, throughput, flops).total_s)
        assert ("fp32" in cost.basis) == (model != "vit_b")


def test_colab_plan_prices_one_run_per_method_and_says_whether_it_fits():
    plan = colab_plan("polyp", "sam2.1_hiera_tiny", ["lora", "conv_lora"])
    assert list(plan["minutes"]) == ["lora", "conv_lora"] and plan["minutes"]["lora"] > 0
    assert plan["total_minutes"] == pytest.approx(sum(plan["minutes"].values()))
    assert plan["command"].startswith("convlora reproduce --preset colab --model sam2.1_hiera_tiny --datasets polyp")
    reading = colab_plan_reading("polyp", "sam2.1_hiera_tiny", ["lora", "conv_lora"], session_minutes=1e6)
    assert "which fits the 1000000 minutes" in reading and "fp32" in reading
    assert "does not fit" in colab_plan_reading("polyp", "sam2.1_hiera_tiny", ["lora"], session_minutes=1)
