"""Readings: sentences computed from runs, checked against hand-made tables and direct formulas."""
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from convlora_lite.reports import readings
from convlora_lite.training.rundir import RunDir

BINARY = SimpleNamespace(task="binary", classes=("background", "foreground"), select_metric="iou", select_mode="max")


def _runs(values: dict, metric="iou", dataset="synth_polyp", split="test"):
    rows = [dict(dataset=dataset, method=m, seed=s, split=split, metric=metric, value=v, run_dir="x")
            for m, vs in values.items() for s, v in enumerate(vs)]
    return pd.DataFrame(rows)


def test_one_seed_draws_no_conclusion():
    (sentence,) = readings.method_readings(_runs({"lora": [0.70], "conv_lora": [0.68]}))
    assert sentence == "synth_polyp/test iou: lora 70.0 ahead of conv_lora 68.0 by 2.0; one seed: no conclusion."


def test_gap_is_weighed_against_the_spread_over_seeds():
    # conv_lora mean 0.75 (std 0.01), lora mean 0.70 (std 0.01): 5.0 points > 1.0
    (clear,) = readings.method_readings(_runs({"lora": [0.69, 0.70, 0.71], "conv_lora": [0.74, 0.75, 0.76]}))
    assert clear.startswith("synth_polyp/test iou: conv_lora 75.0 ahead of lora 70.0 by 5.0, larger than")
    assert "std up to 1.0, 3 seeds" in clear
    (noisy,) = readings.method_readings(_runs({"lora": [0.60, 0.70, 0.80], "conv_lora": [0.70, 0.72, 0.74]}))
    assert "by 2.0, within the spread over seeds (std up to 10.0" in noisy


def test_equal_means_are_a_tie_not_a_lead():
    # both methods predict background everywhere (synth_trans10k at 4 epochs): the same score on every seed
    runs = pd.concat([_runs({"lora": [0.743] * 3, "conv_lora": [0.743] * 3}, metric="acc"),
                      _runs({"lora": [0.062] * 3, "conv_lora": [0.0624] * 3}, metric="miou")])
    assert readings.method_readings(runs) == ["synth_polyp/test acc: conv_lora and lora tie at 74.3.",
                                              "synth_polyp/test miou: conv_lora and lora tie at 6.2."]
    assert readings.conv_lora_verdict(runs) == "Conv-LoRA and LoRA tie on all 2 test metrics."
    mixed = pd.concat([runs[runs["metric"] == "acc"], _runs({"lora": [0.7], "conv_lora": [0.6]})])
    assert readings.conv_lora_verdict(mixed) == ("Conv-LoRA's mean is ahead of LoRA's on 0 of 2 test metrics "
                                                 "(tied on 1).")


def test_lower_is_better_metrics_rank_the_other_way():
    (sentence,) = readings.method_readings(_runs({"lora": [0.10], "conv_lora": [0.05]}, metric="ber"))
    assert sentence.startswith("synth_polyp/test ber (lower is better): conv_lora 5.0 ahead of lora 10.0")


def test_conv_lora_verdict_points_to_the_measured_reasons_offline_only():
    runs = pd.concat([_runs({"lora": [0.7], "conv_lora": [0.6]}), _runs({"lora": [0.1], "conv_lora": [0.05]}, "ber")])
    verdict = readings.conv_lora_verdict(runs, offline=True)
    assert verdict == ("Conv-LoRA's mean is ahead of LoRA's on 1 of 2 test metrics. One seed: no conclusion. "
                       + readings.CONV_LORA_OFFLINE_NOTE)
    assert "benchmarks/transfer_micro_sam_cpu.md" in verdict
    # at paper scale (a ViT-B/H on real data) the micro SAM's explanation does not apply
    assert readings.conv_lora_verdict(runs) == verdict.removesuffix(" " + readings.CONV_LORA_OFFLINE_NOTE)
    assert readings.conv_lora_verdict(_runs({"lora": [0.7]})) is None
    assert "One seed: no conclusion." in verdict
    ahead = readings.conv_lora_verdict(_runs({"lora": [0.10], "conv_lora": [0.05]}, metric="ber"))
    assert ahead == "Conv-LoRA's mean is ahead of LoRA's on the 1 test metric. One seed: no conclusion."
    three = readings.conv_lora_verdict(_runs({"lora": [0.6, 0.61, 0.62], "conv_lora": [0.7, 0.71, 0.72]}))
    assert three == "Conv-LoRA's mean is ahead of LoRA's on the 1 test metric."


def test_zero_shot_reading_says_better_or_worse_in_the_metric_s_direction():
    table = pd.DataFrame({"ber": [9.6, 12.2, 6.5], "images": [3, 3, 3]},
                         index=["one box", "one point", "filled box (no model)"])
    (first, _) = readings.zero_shot_readings(table, _runs({"lora": [0.05]}, metric="ber"), "test")
    assert "one box is worse than the filled box alone (6.5, difference +3.1)" in first


def test_trivial_baseline_is_the_all_background_score():
    masks = [torch.zeros(8, 8), torch.zeros(8, 8)]
    masks[0][:4] = 1  # half foreground
    masks[1][:2] = 1  # a quarter
    data = [dict(mask=m) for m in masks]
    floor = readings.trivial_baseline(data, BINARY)
    assert floor["iou"] == 0.0 and floor["dice"] == 0.0
    assert floor["ber"] == pytest.approx(0.5)  # TPR 0, TNR 1
    assert floor["mae"] == pytest.approx((0.5 + 0.25) / 2)  # |0 - gt| averaged per image
    multi = SimpleNamespace(task="multiclass", classes=("background", "a", "b"))
    labels = torch.zeros(4, 4, dtype=torch.long)
    labels[0] = 1
    floor = readings.trivial_baseline([dict(mask=labels)], multi)
    assert floor["acc"] == pytest.approx(12 / 16)


def test_baseline_and_convergence_readings(tmp_path):
    runs = _runs({"lora": [0.2], "conv_lora": [0.0]})
    (sentence,) = readings.baseline_readings(runs, {"iou": 0.0}, "test")
    assert sentence == "test iou: predicting background everywhere scores 0.0; conv_lora does NOT beat it."
    run = RunDir(tmp_path / "run")
    run.write_json(run.config, dict(dataset="synth_polyp", method="lora", seed=3))
    run.write_history([{"epoch": 1, "val_iou": 0.1}, {"epoch": 2, "val_iou": 0.3}])
    (still,) = readings.convergence_readings([run.path], BINARY)
    assert still.startswith("lora (seed 3): val iou was still improving at the last epoch (2)")
    run.write_history([{"epoch": 1, "val_iou": 0.4}, {"epoch": 2, "val_iou": 0.3}])
    assert readings.convergence_readings([run.path], BINARY) == ["lora (seed 3): best val iou at epoch 1 of 2."]
    second = RunDir(tmp_path / "run2")
    second.write_json(second.config, dict(dataset="synth_polyp", method="lora", seed=4))
    second.write_history([{"epoch": 1, "val_iou": 0.1}, {"epoch": 2, "val_iou": 0.3}])
    assert readings.convergence_readings([run.path, second.path], BINARY) == [
        "lora (2 seeds): best val iou at epochs 1, 2 of 2; still improving at the last epoch in 1 of 2: a longer "
        "schedule would likely score higher."]


def test_routing_reading_names_collapsed_layers():
    usage = pd.DataFrame([dict(block=0, expert=e, fraction=f) for e, f in enumerate([0.95, 0.05, 0.0])]
                         + [dict(block=1, expert=e, fraction=f) for e, f in enumerate([0.4, 0.3, 0.3])])
    sentence = readings.routing_reading(usage)
    assert sentence.startswith("Routing collapses onto one or two experts in 1 of 2 layers (blocks [0])")
    assert "block 1: 3 expert(s) used, top two 70 %" in sentence and "despite the load-balancing loss" in sentence
    assert "despite" not in readings.routing_reading(usage, trained=False)


def test_zero_shot_readings_compare_box_filled_box_and_fine_tuned():
    table = pd.DataFrame({"iou": [55.8, 40.0, 55.9], "images": [3, 3, 3]},
                         index=pd.Index(["one box", "one point", "filled box (no model)"], name="prompt"))
    box_line, tuned_line = readings.zero_shot_readings(table, _runs({"lora": [0.70], "conv_lora": [0.5]}), "test")
    assert box_line == ("zero-shot test iou: one box 55.8, one point 40.0; one box is level with the filled box "
                        "alone (55.9, difference -0.1).")
    assert tuned_line == ("fine-tuned without prompts, the best method (lora, 70.0) beats zero-shot SAM with one box "
                          "(55.8).")


def test_budget_reading_counts_the_paper_ratio_on_vit_h():
    line = readings.budget_reading("vit_h")
    # docs/recipe.md: Conv-LoRA 4.02 M, 0.63 %; decoder-only 3.51 M of it
    assert line.startswith("conv_lora on vit_h: 4,020,096 of ") and "(0.63 %, counted as the paper's table" in line
    assert f"{100 * 3_505_536 / 4_020_096:.0f} % of them in the mask decoder" in line
    micro = readings.budget_reading("micro_sam")
    assert micro.startswith("conv_lora on micro_sam: ") and "; on SAM ViT-H: 4,020,096 (0.63 %)" in micro


def test_task_readings_print_what_hand_written_runs_hold(tmp_path, fake_run):
    """The lines a domain notebook prints (Task.show_reading), from run directories written by hand."""
    from convlora_lite.reports.results_tables import collect_runs

    spec = SimpleNamespace(metrics=("iou",), test_splits=("test",), select_metric="iou", select_mode="max")
    paths = []
    for method, values, best in (("lora", (0.60, 0.62), (0.3, 0.5)), ("conv_lora", (0.70, 0.72), (0.5, 0.4))):
        for seed, value in enumerate(values):
            history = [{"epoch": 1, "train_loss": 1.0, "val_iou": best[0]}, {"epoch": 2, "train_loss": 0.8,
                                                                             "val_iou": best[1]}]
            paths.append(fake_run(tmp_path / method / str(seed), "synth_leaf", method, seed,
                                  {"test": {"iou": value, "dice": value}}, history=history))
    runs = collect_runs([tmp_path])
    lines = readings.task_readings(runs, paths, spec, {"test": {"iou": 0.0}})
    assert "Conv-LoRA's mean is ahead of LoRA's on all 2 test metrics." in lines
    assert readings.task_readings(runs, paths, spec, {"test": {"iou": 0.0}}, offline=True) == lines  # ahead: no note
    behind = collect_runs([tmp_path / "lora", fake_run(tmp_path / "conv_lora" / "9", "synth_leaf", "conv_lora", 9,
                                                        {"test": {"iou": 0.1, "dice": 0.1}}, history=history)])
    assert readings.CONV_LORA_OFFLINE_NOTE in " ".join(readings.task_readings(behind, paths, spec, {"test": {}},
                                                                           offline=True))
    assert readings.CONV_LORA_OFFLINE_NOTE not in " ".join(readings.task_readings(behind, paths, spec, {"test": {}}))
    assert lines[0].startswith("synth_leaf/test iou: conv_lora 71.0 ahead of lora 61.0 by 10.0")
    assert "test iou: predicting background everywhere scores 0.0; every method beats it." in lines
    assert "lora (2 seeds): best val iou at epochs 2, 2 of 2; still improving at the last epoch in 2 of 2" in \
        " ".join(lines)
    assert "conv_lora (2 seeds): best val iou at epochs 1, 1 of 2." in lines
    takeaways = readings.takeaways("micro_sam", [runs])
    assert takeaways[1] == lines[0] and takeaways[0] == readings.budget_reading("micro_sam")
