"""The local-prior experiment: its arms' configs, the resumable grid, the per-seed table, and the preregistered
analysis and decision rule on hand-written run directories (numbers checked by hand)."""

import numpy as np
import pandas as pd
import pytest

from convlora_lite.analysis import local_prior
from convlora_lite.analysis.local_prior import ARMS, SEEDS, collect, run_config, run_directory, train_grid
from convlora_lite.reports.local_prior_analysis import analyse, failed_runs, verdict, verdict_lines

#: t_{0.975} quantiles (tables): 2 and 3 degrees of freedom.
T_975 = {2: 4.302652729911275, 3: 3.182446305284263}


def _write_run(output_dir, task, arm, seed, iou, best_epoch=3, completed=True):
    """A hand-written run directory: config.json and metrics.json (test IoU ``iou`` as a fraction)."""
    run = run_directory(output_dir, task, arm, seed)
    run.path.mkdir(parents=True)
    method, options = ARMS[arm]
    run.write_config({"dataset": f"synth_prior_{task}", "method": method, "seed": seed, "method_options": options})
    run.write_metrics({"dataset": f"synth_prior_{task}", "method": method, "seed": seed, "best_epoch": best_epoch,
                       "epochs_run": 4, "val": {"iou": iou}, "test": {"test": {"iou": iou, "dice": iou}},
                       "completed": completed})
    return run


def _frame(values):
    """A :func:`collect`-shaped table from {(task, arm): [test IoU x100 per seed]} on seeds 1, 2, 3, ..."""
    rows = [dict(task=task, arm=arm, seed=seed, test_iou=iou, best_epoch=4, run_dir=f"{task}/{arm}/seed{seed}")
            for (task, arm), ious in values.items() for seed, iou in enumerate(ious, start=1)]
    return pd.DataFrame(rows)


def test_the_arms_are_lora_conv_lora_and_one_scale_1_expert_on_the_cpu_preset(tmp_path):
    configs = {arm: run_config("texture", arm, SEEDS[0], tmp_path / "runs", tmp_path / "data") for arm in ARMS}
    assert configs["lora"].method == "lora"
    assert configs["conv_lora"].method == configs["one_expert"].method == "conv_lora"
    assert configs["conv_lora"].method_options["num_experts"] == 8
    assert configs["conv_lora"].method_options["scales"] is None  # the official 1..8
    assert (configs["one_expert"].method_options["num_experts"], configs["one_expert"].method_options["scales"]) == (
        1, [1])
    for config in configs.values():
        assert (config.dataset, config.model, config.image_size, config.batch_size, config.epochs, config.lr) == (
            "synth_prior_texture", "micro_sam", 256, 4, 4, 2e-3)
        assert config.resume and config.seed == 42686693
    assert configs["one_expert"].output_dir == str(tmp_path / "runs" / "texture" / "one_expert" / "seed42686693")
    assert SEEDS == tuple(range(42686693, 42686703)) and len(SEEDS) == 10


def test_collect_reads_finished_runs_only_with_relative_paths(tmp_path):
    _write_run(tmp_path, "texture", "lora", 11, 0.5)
    _write_run(tmp_path, "colour", "conv_lora", 12, 0.875, best_epoch=2)
    _write_run(tmp_path, "colour", "lora", 12, 0.9, completed=False)
    frame = collect(tmp_path, seeds=(11, 12))
    assert frame.to_dict("records") == [
        dict(task="texture", arm="lora", seed=11, test_iou=50.0, best_epoch=3, run_dir="texture/lora/seed11"),
        dict(task="colour", arm="conv_lora", seed=12, test_iou=87.5, best_epoch=2, run_dir="colour/conv_lora/seed12"),
    ]


def test_the_grid_reads_finished_runs_back_and_trains_only_the_missing_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(local_prior, "ensure_synthetic", lambda datasets, preset, root: tmp_path / "data")
    _write_run(tmp_path / "runs", "texture", "lora", 11, 0.25)
    trained = []

    def fake_fit(config, log=None):
        trained.append((config.dataset, config.method, config.method_options["num_experts"], config.seed))
        task, arm = config.dataset.removeprefix("synth_prior_"), config.output_dir.split("/")[-2]
        _write_run(tmp_path / "runs", task, arm, config.seed, 0.5)

    monkeypatch.setattr(local_prior, "fit", fake_fit)
    lines = []
    runs = train_grid(tmp_path / "runs", tmp_path / "data", tasks=("texture",), arms=("lora", "one_expert"),
                      seeds=(11,), log=lines.append)
    assert trained == [("synth_prior_texture", "conv_lora", 1, 11)]
    assert lines == ["texture / lora / seed 11: test IoU 25.0 (best epoch 3) (finished earlier: read back)",
                     "texture / one_expert / seed 11: test IoU 50.0 (best epoch 3)"]
    assert [run.path.relative_to(tmp_path / "runs").as_posix() for run in runs] == [
        "texture/lora/seed11", "texture/one_expert/seed11"]
    train_grid(tmp_path / "runs", tmp_path / "data", tasks=("texture",), arms=("lora", "one_expert"), seeds=(11,),
               log=lines.append)
    assert len(trained) == 1  # a second call trains nothing


def test_the_analysis_computes_paired_differences_by_hand():
    frame = _frame({("texture", "lora"): [50, 50, 50], ("texture", "conv_lora"): [51, 52, 53],
                    ("texture", "one_expert"): [51, 50.5, 53],
                    ("colour", "lora"): [80, 80, 80], ("colour", "conv_lora"): [80, 80.5, 79.5],
                    ("colour", "one_expert"): [80, 80, 80]})
    result = analyse(frame)
    d = result["differences"].set_index(["task", "difference"])
    # texture d = 1, 2, 3: mean 2, sd 1, interval 2 +- t_{0.975, 2} / sqrt(3)
    row = d.loc[("texture", "d")]
    assert row["differences"] == (1.0, 2.0, 3.0) and row["seeds"] == (1, 2, 3) and row["n"] == 3
    assert (row["mean"], row["sd"]) == pytest.approx((2.0, 1.0))
    assert (row["low"], row["high"]) == pytest.approx((2 - T_975[2] / np.sqrt(3), 2 + T_975[2] / np.sqrt(3)))
    # e = 0, 1.5, 0: mean 0.5, sd sqrt(0.75)
    assert d.loc[("texture", "e"), "sd"] == pytest.approx(np.sqrt(0.75))
    # interaction per seed: (1 - 0, 2 - 0.5, 3 + 0.5) = (1, 1.5, 3.5)
    assert result["interaction"]["per_seed"].tolist() == [1.0, 1.5, 3.5]
    assert result["interaction"]["mean"] == pytest.approx(2.0)
    means = result["means"].set_index(["task", "arm"])
    assert means.loc[("texture", "conv_lora"), "mean"] == pytest.approx(52.0)
    assert means.loc[("texture", "conv_lora"), "std"] == pytest.approx(1.0)


def test_the_minimum_detectable_difference_matches_the_preregistered_table():
    # three seeds whose differences have sd 1.5: the preregistration's table says 4.9 points
    frame = _frame({("texture", "lora"): [50, 50, 50], ("texture", "conv_lora"): [48.5, 50, 51.5],
                    ("texture", "one_expert"): [50, 50, 50], ("colour", "lora"): [80, 80, 80],
                    ("colour", "conv_lora"): [80, 80, 80], ("colour", "one_expert"): [80, 80, 80]})
    row = analyse(frame)["differences"].set_index(["task", "difference"]).loc[("texture", "d")]
    assert row["sd"] == pytest.approx(1.5) and round(row["mdd"], 1) == 4.9


def test_a_failed_run_is_named_and_left_out_of_its_pairs_only():
    frame = _frame({("texture", "lora"): [50, 0.4, 50, 50], ("texture", "conv_lora"): [52, 53, 53, 51],
                    ("texture", "one_expert"): [51, 51, 51, 51], ("colour", "lora"): [80, 80, 80, 80],
                    ("colour", "conv_lora"): [80, 80, 81, 80], ("colour", "one_expert"): [80, 80, 80, 80]})
    assert failed_runs(frame)["run_dir"].tolist() == ["texture/lora/seed2"]
    result = analyse(frame)
    d = result["differences"].set_index(["task", "difference"])
    assert d.loc[("texture", "d"), "seeds"] == (1, 3, 4)  # seed 2's lora run failed
    assert d.loc[("texture", "e"), "seeds"] == (1, 2, 3, 4)  # its conv_lora and one_expert runs did not
    assert result["interaction"]["per_seed"].index.tolist() == [1, 3, 4]
    assert result["means"].set_index(["task", "arm"]).loc[("texture", "lora"), "count"] == 3
    assert verdict_lines(result)[0] == "Failed runs (test IoU below 1, left out of their pairs): texture/lora/seed2."


def test_the_decision_rule():
    assert verdict((0.1, 2.0)) == "supported" and verdict((-2.0, -0.1)) == "contradicted"
    assert verdict((-0.5, 1.0)) == "not detected" and verdict(None) == "not detected"
    assert verdict((np.nan, np.nan)) == "not detected"
    base = {("colour", "lora"): [80, 80, 80, 80], ("colour", "one_expert"): [80, 80, 80, 80],
            ("texture", "lora"): [50, 50, 50, 50], ("texture", "one_expert"): [50, 50, 50, 50]}
    # texture gain 3 +- small, colour none: d(texture) and the interaction above 0, e above 0
    supported = analyse(_frame({**base, ("texture", "conv_lora"): [53, 53.2, 52.8, 53.1],
                                ("colour", "conv_lora"): [80, 80.2, 79.8, 80.1]}))
    assert (supported["H1"], supported["H2"]) == ("supported", "supported")
    # texture gain, but the same gain on colour: the interaction's interval holds 0
    no_interaction = analyse(_frame({**base, ("texture", "conv_lora"): [53, 53.2, 52.8, 53.1],
                                     ("colour", "conv_lora"): [83, 83.1, 82.9, 83.2]}))
    assert no_interaction["H1"] == "not detected"
    contradicted = analyse(_frame({**base, ("texture", "conv_lora"): [47, 47.2, 46.8, 47.1],
                                   ("colour", "conv_lora"): [80, 80, 80, 80]}))
    assert (contradicted["H1"], contradicted["H2"]) == ("contradicted", "contradicted")
    spread = analyse(_frame({**base, ("texture", "conv_lora"): [45, 55, 48, 54],
                             ("colour", "conv_lora"): [80, 80, 80, 80]}))
    assert (spread["H1"], spread["H2"]) == ("not detected", "not detected")
    lines = verdict_lines(spread)
    assert lines[1].startswith("H1 (local prior) not detected") and "texture +0.5 [" in lines[1]
    # 4 seeds, d = -5, 5, -2, 4: mean 0.5, interval 0.5 +- t_{0.975, 3} sd / 2
    sd = np.std([-5, 5, -2, 4], ddof=1)
    assert f"[{0.5 - T_975[3] * sd / 2:+.1f}, {0.5 + T_975[3] * sd / 2:+.1f}]" in lines[1]
    # the paper's largest gain over LoRA is polyp CVC-612's E_phi, 1.5 points: inside [-6.9, +7.9], below the MDD
    assert lines[3] == ("The paper's gains of Conv-LoRA over LoRA span +0.2 to +1.5 points; on texture a true d of "
                        "+1.5 is inside d's interval (the data do not rule it out) and below its MDD: these seeds "
                        "could not reliably have seen a paper-sized gain.")
    assert "+1.5 is outside d's interval (the data rule it out) and at or above its MDD: these seeds could have" in (
        verdict_lines(supported)[3])
