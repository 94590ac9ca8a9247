"""The notebooks' shared sweep settings: where data and runs go."""
import pytest
import torch

from convlora_lite.data import get_dataset_spec, is_installed
from convlora_lite.training import TrainConfig
from convlora_lite.training.run_data import ensure_synthetic, preset_data_root
from convlora_lite.training.rundir import RunDir
from convlora_lite.training.sweep import sweep_dir


def test_smoke_data_is_kept_apart_and_generated_small(tmp_path):
    assert preset_data_root("cpu", tmp_path) == tmp_path.resolve()
    root = ensure_synthetic(["synth_polyp"], "smoke", tmp_path)
    assert root == tmp_path.resolve() / "smoke"
    train_csv = next(root.rglob("train.csv"))
    assert len(train_csv.read_text().strip().splitlines()) == 1 + 4  # header + 4 training images
    assert not (tmp_path / "synth_polyp").exists()
    run = RunDir.of(sweep_dir(tmp_path, "cpu"), "synth_polyp", "lora", 7)
    assert run.path == tmp_path.resolve() / "sweep_cpu/synth_polyp/lora/seed7"



def test_an_analog_whose_generation_was_interrupted_is_generated_again(tmp_path):
    spec = get_dataset_spec("synth_leaf")
    root = ensure_synthetic([spec.name], "smoke", tmp_path)
    assert is_installed(spec, root)
    (spec.dataset_dir(root) / "SYNTHETIC.json").unlink()  # written last: a killed generation has none
    (spec.dataset_dir(root) / "test.csv").unlink()
    assert not is_installed(spec, root)
    ensure_synthetic([spec.name], "smoke", tmp_path)
    assert is_installed(spec, root) and (spec.dataset_dir(root) / "test.csv").is_file()


def test_budget_knobs_reach_every_run_and_get_their_own_sweep_folder(tmp_path):
    from convlora_lite.notebook import Session

    session = Session("smoke", tmp_path / "data", output_dir=tmp_path / "out", methods="lora", epochs=2,
                      image_size=None, max_train_batches=1, announce=False)
    assert session.budget == {"epochs": 2, "max_train_batches": 1}
    assert session.sweep == tmp_path.resolve() / "out" / "sweep_smoke_e2_b1"
    assert "budget: epochs=2, max_train_batches=1" in session.describe()
    task = session.task("polyp")
    config = task.config("lora")
    assert (config.epochs, config.max_train_batches) == (2, 1)
    (run,) = session.train([task.name])
    assert TrainConfig.of_run(run.path).epochs == 2 and TrainConfig.of_run(run.path).max_train_batches == 1
    assert run.path.parent.parent.parent == session.sweep


def test_the_grid_of_each_preset_and_the_notebooks_own_models(tmp_path):
    """08's default grid fits a Colab session on colab (polyp x 4 methods) and is the paper's on paper;
    the notebooks' own models use the preset's input size (or IMAGE_SIZE) and plain fp32 on a CPU."""
    from convlora_lite.analysis.parameter_counts import parse_methods
    from convlora_lite.notebook import Session

    def session(preset, **knobs):
        return Session(preset, tmp_path / "data", output_dir=tmp_path / "out", announce=False, **knobs)

    four = ["decoder_only", "vpt", "lora", "conv_lora"]
    assert session("cpu").grid() == (["synth_polyp"], four)
    assert session("colab").grid() == (["polyp"], four)
    datasets, methods = session("paper").grid()
    assert len(datasets) == 7 and "trans10k" in datasets and methods == parse_methods("all")
    assert session("colab").grid("camo", "lora") == (["camo"], ["lora"])
    assert (session("cpu").image_size, session("colab").image_size, session("paper").image_size) == (256, 512, 1024)
    assert session("colab", image_size=128).image_size == 128
    # on every host: the paper-scale description warns only where there is no GPU, and the notebook's own
    # forward passes autocast (fp16) only on CUDA, as the paper preset's runs are scored there
    device = session("colab").device
    assert ("No GPU found" in session("colab").describe()) == (device == "cpu")
    assert "No GPU" not in session("cpu").describe()
    with session("paper").autocast():
        assert torch.is_autocast_enabled(device) == (device == "cuda")


def test_show_curves_draws_the_all_background_floor_of_the_validation_split(tmp_path, monkeypatch):
    from convlora_lite import notebook
    from convlora_lite.plots.figures import BASELINE_NAME
    from convlora_lite.reports import readings

    shown, calls = [], []
    monkeypatch.setattr(notebook.task, "show", lambda *objects: shown.extend(objects))
    real = readings.trivial_baseline

    def counted(dataset, spec, max_items=None):
        calls.append(max_items)
        return real(dataset, spec, max_items)

    monkeypatch.setattr(readings, "trivial_baseline", counted)
    session = notebook.Session("smoke", tmp_path / "data", output_dir=tmp_path / "out", methods="lora",
                               announce=False)
    task = session.task("sbu")  # selects the lowest validation BER
    run = RunDir(tmp_path / "runs" / "lora")
    run.write_json(run.config, dict(dataset=task.name, method="lora", model="micro_sam", seed=0))
    run.write_history([{"epoch": 1, "train_loss": 0.6, "val_ber": 0.45},
                       {"epoch": 2, "train_loss": 0.5, "val_ber": 0.3}])
    task.runs = {"lora": [run]}
    task.show_curves()
    _, curves = shown
    line = curves.axes[0].get_lines()[-1]
    # predicting background everywhere: TPR 0 and TNR 1, so BER = (1 - 0 + 1 - 1) / 2 on any validation image
    assert line.get_label() == f"{BASELINE_NAME} 0.5"
    assert list(line.get_ydata()) == [0.5, 0.5]
    assert calls == [2 * 2]  # the smoke preset scores 2 batches of 2 images: the floor is scored on the same
    assert task.baseline("val") is task.baseline("val") and calls == [4]  # computed once


def test_show_class_iou_draws_the_all_background_miou_of_the_scored_images(tmp_path, monkeypatch):
    import numpy as np

    from convlora_lite import notebook
    from convlora_lite.plots.figures import BASELINE_NAME

    shown = []
    monkeypatch.setattr(notebook.task, "show", lambda *objects: shown.extend(objects))
    session = notebook.Session("smoke", tmp_path / "data", output_dir=tmp_path / "out", methods="lora",
                               announce=False)
    task = session.task("trans10k")
    split = task.spec.test_splits[0]
    run = RunDir(tmp_path / "runs" / "lora")
    iou = {name: 0.5 for name in task.spec.classes}
    run.write_json(run.metrics, {"test": {split: {"iou_per_class": iou}}})
    task.runs = {"lora": [run]}
    task.show_class_iou()
    line = shown[-1].axes[0].get_lines()[-1]
    # all background on the scored images (at most 2 batches of 2): background IoU = its share of the labelled
    # pixels, every other class that occurs IoU 0, absent classes none
    test = task.dataset(split)
    labels = np.concatenate([test[i]["mask"].numpy().ravel() for i in range(min(4, len(test)))])
    labels = labels[labels != 255]
    expected = 100 * (labels == 0).mean() / len(np.unique(labels))
    assert line.get_label() == f"{BASELINE_NAME} mIoU {expected:.3g}"
    np.testing.assert_allclose(line.get_ydata(), [expected] * 2, rtol=1e-6)


def test_the_compared_task_trains_compare_seeds_offline_and_the_preset_seeds_at_paper_scale(tmp_path):
    from convlora_lite.notebook import Session
    from convlora_lite.training.sweep import seeds_for

    session = Session("smoke", tmp_path / "data", output_dir=tmp_path / "out", methods="decoder_only",
                      compare_seeds=2, announce=False)
    assert session.comparison_seeds == 2 and "(2 for the compared task)" in session.describe()
    compared, other = session.task("polyp", compared=True), session.task("leaf")
    assert [r.path.name for r in compared.train()["decoder_only"]] == [f"seed{s}" for s in seeds_for("smoke", 2)]
    assert [r.path.name for r in other.train()["decoder_only"]] == [f"seed{seeds_for('smoke', 1)[0]}"]
    assert all(r.read_metrics() for r in compared.runs["decoder_only"])
    assert Session("smoke", tmp_path, seeds=3, compare_seeds=2, announce=False).comparison_seeds == 3
    assert Session("colab", tmp_path, announce=False).comparison_seeds == 1  # colab's hour: one seed
    assert Session("paper", tmp_path, announce=False).comparison_seeds == 3


def test_on_colab_the_session_says_how_to_keep_outputs_on_drive(tmp_path, monkeypatch):
    import sys
    import types

    from convlora_lite.notebook import Session

    assert "Google Drive" not in Session("smoke", tmp_path, output_dir=tmp_path / "out", announce=False).describe()
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    text = Session("smoke", tmp_path, output_dir=tmp_path / "out", announce=False).describe()
    assert "is lost when the session ends" in text and 'drive.mount("/content/drive")' in text
    on_drive = Session("smoke", tmp_path, output_dir="/content/drive/MyDrive/runs", announce=False).describe()
    assert "Google Drive" not in on_drive


def test_on_kaggle_the_session_says_to_keep_outputs_under_kaggle_working(tmp_path, monkeypatch):
    from convlora_lite.notebook import Session

    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    assert "On Kaggle" not in Session("smoke", tmp_path, output_dir=tmp_path / "out", announce=False).describe()
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")  # what every Kaggle kernel has
    text = Session("smoke", tmp_path, output_dir=tmp_path / "out", announce=False).describe()
    assert f"On Kaggle: OUTPUT_DIR {tmp_path / 'out'} is lost when the session ends" in text
    assert "under /kaggle/working" in text
    kept = Session("smoke", tmp_path, output_dir="/kaggle/working/runs/notebooks", announce=False).describe()
    assert "On Kaggle" not in kept  # the notebooks' default: their working directory there is /kaggle/working


def test_the_grid_reading_and_the_takeaways_print_what_hand_written_runs_hold(tmp_path, fake_run, capsys,
                                                                               monkeypatch):
    """What notebook 08's reading cell and every notebook's takeaways print (Session.show_grid_reading,
    Task.show_reading, Session.show_takeaways), offline and at paper scale, from run directories written by hand."""
    import numpy as np

    from convlora_lite import notebook
    from convlora_lite.reports.readings import CONV_LORA_OFFLINE_NOTE, budget_reading
    from convlora_lite.reports.seed_statistics import minimum_detectable_difference

    history = [{"epoch": 1, "train_loss": 1.0, "val_iou": 0.4}, {"epoch": 2, "train_loss": 0.9, "val_iou": 0.5}]
    printed = {}
    for preset in ("smoke", "colab"):
        if preset == "colab":  # no real dataset here: the floor by hand (the smoke leg computes it)
            monkeypatch.setattr(notebook.task.Task, "baseline", lambda self, split: {"iou": 0.0, "dice": 0.0})
        session = notebook.Session(preset, tmp_path / "data", output_dir=tmp_path / preset, announce=False)
        runs = [RunDir(fake_run(tmp_path / preset / method / str(seed), "synth_leaf", method, seed,
                                {"test": {"iou": iou, "dice": iou - 0.1}}, history=history))
                for method, ious in (("lora", (0.60, 0.62)), ("conv_lora", (0.70, 0.50)))
                for seed, iou in enumerate(ious, 1)]
        session.show_grid_reading(runs)
        session.show_takeaways(budget=True)
        printed[preset] = capsys.readouterr().out.splitlines()
        session.show_takeaways()  # the budget line only where a notebook asks for it (00, 02, 08)
        without = capsys.readouterr().out.splitlines()
        assert without[0] == "Takeaways (computed from this run):" and without[1:] == printed[preset][-2:], preset
    for preset, lines in printed.items():
        reading, takeaways = lines[:lines.index("Takeaways (computed from this run):")], \
            lines[lines.index("Takeaways (computed from this run):") + 1:]
        leader = ("- synth_leaf/test iou: lora 61.0 ahead of conv_lora 60.0 by 1.0, within the spread over seeds "
                  "(std up to 14.1, 2 seeds).")  # conv_lora: (70 + 50) / 2 and std 14.14; lora: 61, std 1.41
        dice = leader.replace("iou", "dice").replace("61.0", "51.0").replace("60.0", "50.0")
        verdict = "Conv-LoRA's mean is ahead of LoRA's on 0 of 2 test metrics."
        assert reading[:3] == ["What these runs show (computed from their run directories):", leader, dice], preset
        # seed by seed (Conv-LoRA - LoRA): +10 and -12, sd 15.6 (sqrt(2 * 11^2)); the paper's leaf gains 0.8 and 0.7
        mdd = minimum_detectable_difference(np.sqrt(2 * 11.0 ** 2), 2)
        assert reading[3].startswith("- synth_leaf/test iou: Conv-LoRA 60.0 vs LoRA 61.0 over the 2 seeds both "
                                     "trained, difference -1.0 (per seed +10.0, -12.0;")
        assert reading[4].endswith(f"The paper's gain on leaf: +0.7. A paper-sized gain of 0.7 could not have been "
                                   f"seen: these seeds detect {mdd:.1f} points or more (80 % power, 5 % two-sided "
                                   "level).")
        assert reading[5] == f"- {verdict}" + (f" {CONV_LORA_OFFLINE_NOTE}" if preset == "smoke" else "")
        assert any(line.startswith("- test iou: predicting background everywhere scores") for line in reading)
        model = "micro_sam" if preset == "smoke" else "vit_b"
        assert takeaways == [f"- {budget_reading(model)}", leader,
                             f"- synth_leaf: {verdict} A paper-sized gain could have been seen on no test metric: "
                             f"these 2 seeds detect iou {mdd:.1f} against the paper's 0.8, dice {mdd:.1f} against the "
                             "paper's 0.7 (80 % power, 5 % two-sided level)."], preset


def test_a_notebook_run_prints_one_line_that_names_no_folder_of_the_machine(tmp_path, capsys):
    """Issue 25, item 6: a run trained (or read back) from a notebook prints one line, its folders written as the
    notebook's parameters (OUTPUT_DIR, DATA_ROOT); the trainer's own lines (size, estimate, resume) stay out."""
    from convlora_lite.notebook import Session

    session = Session("smoke", tmp_path / "data", output_dir=tmp_path / "out", methods="lora",
                      max_train_batches=1, epochs=1)
    seed = session.seeds[0]
    announced = capsys.readouterr()
    where = f"OUTPUT_DIR/sweep_smoke_e1_b1/synth_leaf/lora/seed{seed}"
    assert "data in DATA_ROOT, runs in OUTPUT_DIR/sweep_smoke_e1_b1 | checkpoint: auto" in announced.out
    (run,) = session.train(["synth_leaf"])
    trained = capsys.readouterr()
    assert run.is_complete() and trained.out.splitlines() == [f"[1/1] synth_leaf / lora / seed {seed} -> {where}"]
    session.train(["synth_leaf"])
    assert capsys.readouterr().out.splitlines() == \
        [f"[1/1] synth_leaf / lora / seed {seed} -> {where} (finished earlier: read back)"]
    assert session.fit("synth_leaf", "lora") == run.path
    fitted = capsys.readouterr()
    assert fitted.out.splitlines() == [f"synth_leaf / lora / seed {seed}: micro_sam at 256 px, 1 epoch(s) of 1 "
                                       f"batches, lr 0.001, batch 2 x 1 -> {where} (finished earlier: read back)"]
    for printed in (announced, trained, fitted):
        assert str(tmp_path) not in printed.out + printed.err
    assert session.shown(f"see {session.data_root / 'x'}") == "see DATA_ROOT/x"


def test_the_results_table_leaves_out_the_runs_the_readings_leave_out(tmp_path, fake_run, capsys, monkeypatch):
    """Task.show_results: a seed that never left the all-background floor is counted above the table and left out of
    its means (the readings' rule); when every run is at the floor, the table shows them all and says none is a
    result."""
    from convlora_lite import notebook

    monkeypatch.setattr(notebook.task.Task, "baseline", lambda self, split: {"iou": 0.1, "dice": 0.2})
    monkeypatch.setattr(notebook.task, "show", lambda table: print(table.to_string()))
    monkeypatch.setattr(notebook.task.Task, "show_reading", lambda self: None)
    session = notebook.Session("smoke", tmp_path / "data", output_dir=tmp_path / "out", announce=False)
    task = session.task("leaf")
    write = lambda method, seed, iou: RunDir(fake_run(tmp_path / method / str(seed), "synth_leaf", method, seed,  # noqa: E731
                                                      {"test": {"iou": iou, "dice": iou}}))
    task.runs = {"lora": [write("lora", 1, 0.60), write("lora", 2, 0.05)]}
    task.show_results()
    printed = capsys.readouterr().out
    assert "1 of 2 runs never left the all-background floor (named below): the table leaves them out." in printed
    assert "60.0" in printed and "± " not in printed  # the one kept seed's mean, no spread of two
    task.runs = {"lora": [write("lora", 3, 0.05), write("lora", 4, 0.10)]}
    task.show_results()
    printed = capsys.readouterr().out
    assert "2 of 2 runs never left" in printed and "none of it is a result" in printed
    assert "7.5 ± 3.5" in printed  # both floor runs: (5 + 10) / 2, sample std 3.54


def test_a_session_on_another_backbone_trains_it_in_a_sweep_folder_of_its_own(tmp_path):
    from convlora_lite.errors import ConfigError
    from convlora_lite.notebook import Session

    session = Session("smoke", tmp_path / "data", "none", output_dir=tmp_path / "out", methods="lora",
                      model="micro_sam2", announce=False)
    assert session.model == "micro_sam2" and session.image_size == 256
    assert session.sweep == tmp_path.resolve() / "out" / "sweep_smoke_micro_sam2"
    assert "the bundled micro_sam2 on synthetic analogs" in session.describe()
    assert session.task("polyp").config("lora").model == "micro_sam2"
    assert Session("smoke", tmp_path / "data", output_dir=tmp_path / "out", announce=False).model == "micro_sam"
    with pytest.raises(ConfigError, match="Unknown model 'sam3'"):
        Session("smoke", tmp_path / "data", output_dir=tmp_path / "out", model="sam3", announce=False)
