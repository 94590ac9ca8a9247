"""Readings: sentences computed from runs, checked against hand-made tables and direct formulas."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from convlora_lite.reports import readings
from convlora_lite.reports.paired_readings import conv_lora_readings, detectability_reading
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


def test_conv_lora_verdict_points_to_the_local_prior_experiment_offline_only():
    runs = pd.concat([_runs({"lora": [0.7], "conv_lora": [0.6]}), _runs({"lora": [0.1], "conv_lora": [0.05]}, "ber")])
    verdict = readings.conv_lora_verdict(runs, offline=True)
    assert verdict == ("Conv-LoRA's mean is ahead of LoRA's on 1 of 2 test metrics. One seed: no conclusion. "
                       + readings.CONV_LORA_OFFLINE_NOTE)
    assert "benchmarks/local_prior_cpu.md" in verdict
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
    takeaways = readings.takeaways("micro_sam", [runs], [{"test": {"iou": 0.0}}])
    assert takeaways[1] == lines[0] and takeaways[0] == readings.budget_reading("micro_sam")
    # without floors, scored from the runs' data: these hand-written runs recorded none, and the takeaways say so
    assert readings.takeaways("micro_sam", [runs])[1] == f"synth_leaf: {readings.NO_FLOOR}"


HISTORY = [{"epoch": 1, "train_loss": 1.0, "val_iou": 0.1, "val_miou": 0.1},
           {"epoch": 2, "train_loss": 0.9, "val_iou": 0.2, "val_miou": 0.1}]


def _hand_runs(fake_run, root, dataset, values: dict, **config):
    """Run directories written by hand: ``values`` method -> {seed: {metric: value}}; returns their collect_runs
    table and paths."""
    from convlora_lite.reports.results_tables import collect_runs

    paths = [fake_run(root / dataset / method / str(seed), dataset, method, seed, {"test": test}, history=HISTORY,
                      **config)
             for method, seeds in values.items() for seed, test in seeds.items()]
    return collect_runs(paths), paths


ROAD = {"lora": {1: {"iou": 0.17, "dice": 0.27}, 2: {"iou": 0.12, "dice": 0.22}, 3: {"iou": 0.0, "dice": 0.0}},
        "conv_lora": {1: {"iou": 0.15, "dice": 0.25}, 2: {"iou": 0.14, "dice": 0.24}, 3: {"iou": 0.13, "dice": 0.22}}}
FAILED = ("synth_road: 1 of 3 lora seeds never left the trivial baseline (seed 3: test iou 0.0; predicting "
          "background everywhere scores 0.0): it is left out of the means and paired differences that follow.")


def test_a_seed_that_never_left_the_floor_is_named_counted_and_left_out(tmp_path, fake_run):
    """synth_road at the cpu preset: one LoRA seed kept predicting background (test IoU 0.0, the floor)."""
    from convlora_lite.data.registry import get_dataset_spec

    runs, paths = _hand_runs(fake_run, tmp_path, "synth_road", ROAD)
    lines = readings.task_readings(runs, paths, get_dataset_spec("synth_road"), {"test": {"iou": 0.0, "dice": 0.0}})
    assert lines[0] == FAILED
    # without seed 3, lora's IoU is (17 + 12) / 2 = 14.5 (sd 3.5) against conv_lora's (15 + 14 + 13) / 3 = 14.0
    assert lines[1] == ("synth_road/test iou: lora 14.5 ahead of conv_lora 14.0 by 0.5, within the spread over "
                        "seeds (std up to 3.5, 2 seeds).")
    # paired on seeds 1 and 2 only: differences -2 and +2, sd 2.83, interval 0 +- t(0.975, 1) 2.83 / sqrt(2)
    half = stats.t.ppf(0.975, 1) * np.sqrt(8) / np.sqrt(2)
    assert lines[3].startswith(f"synth_road/test iou: Conv-LoRA 14.5 vs LoRA 14.5 over the 2 seeds both trained, a tie "
                               f"(per seed -2.0, +2.0; 95 % CI {-half:+.1f} to {half:+.1f}, includes 0)")
    # with the dead seed lora's means would be 9.7 and 16.3: a Conv-LoRA "win" on both metrics; without it, none
    assert "Conv-LoRA's mean is ahead of LoRA's on 0 of 2 test metrics." in lines
    assert "test iou: predicting background everywhere scores 0.0; every method beats it." in lines
    take = readings.takeaways("micro_sam", [runs], [{"test": {"iou": 0.0, "dice": 0.0}}])
    assert take[1:3] == [FAILED, lines[1]]
    assert take[3].startswith("synth_road: Conv-LoRA's mean is ahead of LoRA's on 0 of 2 test metrics. A paper-sized "
                              "gain could have been seen on no test metric: these 2 seeds detect iou ")
    assert "against the paper's 0.4" in take[3] and "against the paper's 0.3 (80 % power" in take[3]


def test_the_index_flags_the_same_seed_from_the_data_the_runs_recorded(tmp_path, fake_run):
    from convlora_lite.data.synthetic import generate_synthetic

    data = tmp_path / "data"
    generate_synthetic("synth_road", data, image_size=64, n_train=1, n_val=1, n_test=2)
    runs, _ = _hand_runs(fake_run, tmp_path / "runs", "synth_road", ROAD, data_root=str(data), image_size=64)
    kept, lines = readings.index_readings(runs)
    assert lines[0] == FAILED and set(kept["seed"][kept["method"] == "lora"]) == {1, 2}
    assert lines[-1] == "Conv-LoRA's mean is ahead of LoRA's on 0 of 2 test metrics."
    unscored, _ = _hand_runs(fake_run, tmp_path / "elsewhere", "synth_road", ROAD, data_root=str(tmp_path / "none"))
    assert readings.index_readings(unscored)[1][0] == f"synth_road: {readings.NO_FLOOR}"


def test_shown_means_that_print_alike_are_a_tie_and_differences_are_of_the_shown_numbers(tmp_path, fake_run):
    # means 96.14 and 96.06: both print 96.1, a tie (never "ahead by 0.1")
    tie = {"conv_lora": {s: {"iou": v} for s, v in enumerate((0.9604, 0.9614, 0.9624))},
           "lora": {s: {"iou": v} for s, v in enumerate((0.9601, 0.9606, 0.9611))}}
    runs, _ = _hand_runs(fake_run, tmp_path, "synth_leaf", tie)
    assert readings.method_readings(runs) == ["synth_leaf/test iou: conv_lora and lora tie at 96.1."]
    (paired,) = conv_lora_readings(runs)
    assert paired.startswith("synth_leaf/test iou: Conv-LoRA 96.1 vs LoRA 96.1 over the 3 seeds both trained, a tie")
    assert readings.conv_lora_verdict(runs) == "Conv-LoRA and LoRA tie on the 1 test metric."
    # means 82.34 and 84.46 print 82.3 and 84.5: the difference is -2.2, not the -2.1 of the unrounded means
    gap = {"conv_lora": {s: {"iou": v} for s, v in enumerate((0.8224, 0.8234, 0.8244))},
           "lora": {s: {"iou": v} for s, v in enumerate((0.8436, 0.8446, 0.8456))}}
    runs, _ = _hand_runs(fake_run, tmp_path / "gap", "synth_leaf", gap)
    assert conv_lora_readings(runs)[0].startswith("synth_leaf/test iou: Conv-LoRA 82.3 vs LoRA 84.5 over the 3 seeds "
                                                  "both trained, difference -2.2 (per seed -2.1, -2.1, -2.1;")
    assert readings.method_readings(runs)[0].startswith("synth_leaf/test iou: lora 84.5 ahead of conv_lora 82.3 by 2.2")


def test_a_gap_the_seeds_can_detect_is_read_against_the_paper_s_gain(tmp_path, fake_run):
    # ISIC 2017 IoU: the paper's Conv-LoRA 77.6 against LoRA 76.6, a gain of 1.0; here +5.0, +5.2, +4.9 per seed
    lora = (0.70, 0.72, 0.68)
    values = {"lora": {s: {"iou": v} for s, v in enumerate(lora)},
              "conv_lora": {s: {"iou": v + d} for s, (v, d) in enumerate(zip(lora, (0.050, 0.052, 0.049)))}}
    runs, _ = _hand_runs(fake_run, tmp_path, "synth_isic2017", values)
    (sentence,) = conv_lora_readings(runs)
    differences = np.array([5.0, 5.2, 4.9])
    interval = stats.ttest_rel(100 * np.array(lora) + differences, 100 * np.array(lora)).confidence_interval()
    sd = differences.std(ddof=1)  # 0.153; the hand table: sd 1.5 over 3 seeds detects 4.9, so 4.9 / 1.5 per unit sd
    assert sentence == (
        f"synth_isic2017/test iou: Conv-LoRA 75.0 vs LoRA 70.0 over the 3 seeds both trained, difference +5.0 (per "
        f"seed +5.0, +5.2, +4.9; 95 % CI {interval.low:+.1f} to {interval.high:+.1f}, above 0); seed sd Conv-LoRA "
        f"{np.std([75.0, 77.2, 72.9], ddof=1):.1f}, LoRA 2.0, of the differences {sd:.1f}. The paper's gain on "
        f"isic2017: +1.0. A paper-sized gain of 1.0 could have been seen: these seeds detect {sd * 4.9 / 1.5:.1f} "
        "points or more (80 % power, 5 % two-sided level).")
    assert interval.low > 0 and f"{interval.low:+.1f} to {interval.high:+.1f}" == "+4.7 to +5.4"


def test_a_gap_the_seeds_cannot_detect_says_so(tmp_path, fake_run):
    # leaf IoU: the paper's gain is 74.5 - 73.7 = 0.8; here +6, -4, +1 per seed (sd 5.0)
    lora = (0.60, 0.62, 0.64)
    values = {"lora": {s: {"iou": v} for s, v in enumerate(lora)},
              "conv_lora": {s: {"iou": v + d} for s, (v, d) in enumerate(zip(lora, (0.06, -0.04, 0.01)))}}
    runs, _ = _hand_runs(fake_run, tmp_path, "synth_leaf", values)
    (sentence,) = conv_lora_readings(runs)
    assert "difference +1.0 (per seed +6.0, -4.0, +1.0;" in sentence and "includes 0" in sentence
    assert sentence.endswith("The paper's gain on leaf: +0.8. A paper-sized gain of 0.8 could not have been seen: "
                             f"these seeds detect {5.0 * 4.9 / 1.5:.1f} points or more (80 % power, 5 % two-sided "
                             "level).")
    assert detectability_reading(runs) == ("A paper-sized gain could have been seen on no test metric: these 3 seeds "
                                           "detect iou 16.3 against the paper's 0.8 (80 % power, 5 % two-sided level).")


def test_takeaways_say_when_no_method_beats_predicting_background(tmp_path, fake_run):
    # synth_trans10k at 4 epochs: every run predicts background everywhere (acc 74.3, mIoU 6.2, the floor)
    floor = {"acc": 0.743, "miou": 0.062}
    runs, _ = _hand_runs(fake_run, tmp_path, "synth_trans10k",
                         {m: {s: dict(floor) for s in (1, 2)} for m in ("lora", "conv_lora")})
    assert readings.takeaways("micro_sam", [runs], [{"test": floor}])[1:] == [
        *(f"synth_trans10k: 2 of 2 {m} seeds never left the trivial baseline (seed 1: test miou 6.2, seed 2: test "
          "miou 6.2; predicting background everywhere scores 6.2): they are left out of the means and paired "
          "differences that follow." for m in ("conv_lora", "lora")),
        "synth_trans10k/test acc: no method beats predicting background everywhere (74.3).",
        "synth_trans10k/test miou: no method beats predicting background everywhere (6.2)."]


def test_offline_note_states_the_recorded_local_prior_experiment():
    """Every number of CONV_LORA_OFFLINE_NOTE is recomputed from the experiment's recorded per-seed results."""
    from convlora_lite.analysis.local_prior import recorded
    from convlora_lite.reports.local_prior_analysis import analyse

    result = analyse(recorded())
    rows = result["differences"].set_index(["task", "difference"])
    d, e = rows.loc[("texture", "d")], rows.loc[("texture", "e")]
    assert result["H1"] == "not detected" and result["H2"] == "not detected"
    expected = (f"Conv-LoRA minus LoRA was {d['mean']:+.1f} test IoU points (95 % interval {d['low']:.1f} to "
                f"{d['high']:+.1f}; those seeds detect {d['mdd']:.1f}), and one scale-1 expert did as well as the "
                f"eight-scale mixture ({e['mean']:.1f}, interval {e['low']:.1f} to {e['high']:+.1f})")
    assert expected in readings.CONV_LORA_OFFLINE_NOTE
    assert f"{d['n']} seeds" in readings.CONV_LORA_OFFLINE_NOTE
