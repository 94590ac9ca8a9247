"""The operator-count benchmark: exact counts on a hand example, phases and blocks on a tiny SAM, the CLI."""
import json
from collections import Counter

import pytest
import torch

from convlora_lite.bench.op_count import OperatorCounter, format_count, run_count
from convlora_lite.cli import main


def test_counts_each_phase_of_a_hand_example():
    x = torch.randn(3, requires_grad=True)
    counter = OperatorCounter()
    with counter:
        (x * 2).sum().backward()
        x.grad.zero_()
    assert counter.counts["forward"] == Counter({"mul": 1, "sum": 1, "ones_like": 1})  # ones_like: d loss / d loss
    assert {"expand", "mul"} <= set(counter.counts["backward"])  # sum's and mul's backward
    assert counter.counts["optimizer"] == Counter({"zero_": 1})


@pytest.fixture(scope="module")
def tiny_count():
    return run_count("test_tiny", 64, "lora,conv_lora,decoder_only")


def test_phases_add_up_and_the_adapters_cost_operators(tiny_count):
    lora, conv_lora, decoder_only = tiny_count["methods"]
    for m in tiny_count["methods"]:
        assert m["total"] == sum(m["by_phase"].values())
        counts = [count for _, count in m["top"]]
        assert counts == sorted(counts, reverse=True) and sum(counts) <= m["total"]
    assert decoder_only["total"] < lora["total"] < conv_lora["total"]
    assert lora["ratio"] == 1.0 and conv_lora["ratio"] == pytest.approx(conv_lora["total"] / lora["total"])
    # test_tiny: block 0 windowed (left out), block 1 global; the global block of Conv-LoRA adds the gate and experts
    assert set(conv_lora["per_block"]) == {"global block forward", "global block backward"}
    assert conv_lora["per_block"]["global block forward"] > lora["per_block"]["global block forward"]
    assert decoder_only["by_phase"]["backward"] < lora["by_phase"]["backward"]  # no gradient through the encoder


def test_conv_lora_dispatches_at_most_1_3_times_lora_per_step_on_vit_b():
    """The target of ``docs/performance.md`` on the benchmark's own setting (ViT-B, 256 px; about 10 s)."""
    lora, conv_lora = run_count("vit_b", 256, "lora,conv_lora")["methods"]
    assert conv_lora["total"] <= 1.3 * lora["total"]
    assert conv_lora["by_phase"]["optimizer"] == lora["by_phase"]["optimizer"]  # fused AdamW: one call for all
    assert conv_lora["profiler_events"] <= 1.3 * lora["profiler_events"]  # the profile's count, nested calls too
    assert conv_lora["profiler_events"] > conv_lora["total"]


def test_format_and_cli(tiny_count, capsys, tmp_path):
    text = format_count(tiny_count)
    assert all(m["label"] in text for m in tiny_count["methods"]) and "ratios are to lora" in text
    out = tmp_path / "count.json"
    assert main(["bench", "--count-ops", "--model", "test_tiny", "--image-size", "64", "--methods", "lora,conv_lora",
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert [m["label"] for m in report["methods"]] == ["lora", "conv_lora"]
    assert f"{report['methods'][1]['total']:,}" in printed
    assert report["methods"][1]["total"] == tiny_count["methods"][1]["total"]  # deterministic
