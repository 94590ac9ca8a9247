"""Experiment files: `convlora train --config` / `convlora reproduce --config` (YAML keyed by TrainConfig's fields),
flags over the file, unknown keys and wrong types refused with exit 2, and the example files in configs/."""
import functools
import json
from pathlib import Path

import pytest

from convlora_lite.cli import main
from convlora_lite.training.experiment_file import GRID_KEYS, RUN_KEYS, read_experiment_file

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_a_run_from_a_file_with_a_flag_over_it(tmp_path, monkeypatch, capsys):
    from convlora_lite.data import synthetic

    small = functools.partial(synthetic.generate_synthetic, image_size=64, n_train=4, n_val=2, n_test=2)
    monkeypatch.setattr(synthetic, "generate_synthetic", small)
    out = tmp_path / "run"
    (tmp_path / "exp.yaml").write_text(f"""
dataset: synth_polyp
method: conv_lora
preset: smoke
model: test_tiny
checkpoint: null          # random weights
epochs: 3                 # overridden by --epochs 1 below
lr: 1e-3                  # YAML 1.1 reads this as text: taken as 0.001
data_root: {tmp_path / "data"}
output_dir: {out}
method_options:
  num_experts: 4
  top_k: 1                # overridden by --method-option top_k=2
""")
    args = ["train", "--config", str(tmp_path / "exp.yaml"), "--epochs", "1", "--method-option", "top_k=2"]
    assert main(args) == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert (config["dataset"], config["method"], config["preset"], config["model"], config["checkpoint"]) == (
        "synth_polyp", "conv_lora", "smoke", "test_tiny", None)
    assert (config["epochs"], config["lr"]) == (1, 0.001)  # the flag over the file; the file over the preset
    assert (config["method_options"]["num_experts"], config["method_options"]["top_k"]) == (4, 2)


@pytest.mark.parametrize("command,key,hint", [("train", "learning_rate", None), ("train", "epoch", "epochs"),
                                              ("reproduce", "dataset", "datasets"),
                                              ("train", "num_classes", None)])
def test_an_unknown_key_exits_2_naming_it_and_the_valid_ones(tmp_path, capsys, command, key, hint):
    (tmp_path / "bad.yaml").write_text(f"{key}: 1\n")
    base = ["--datasets", "synth_polyp"] if command == "reproduce" else ["--dataset", "synth_polyp", "--method", "lora"]
    assert main([command, "--config", str(tmp_path / "bad.yaml"), *base, "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"unknown key {key!r}" in err and "Valid keys: " in err
    valid = GRID_KEYS if command == "reproduce" else RUN_KEYS
    assert err.split("Valid keys: ")[1].strip().rstrip(".").split(", ") == sorted(valid)
    if hint:
        assert f"Did you mean {hint!r}?" in err
    assert not (tmp_path / "o").exists()  # refused before anything is written


@pytest.mark.parametrize("text,message", [("epochs: ten\n", "epochs = 'ten' must be int"),
                                          ("lr: fast\n", "lr = 'fast' must be int or float"),
                                          ("epochs: yes\n", "epochs = True must be"),
                                          ("- a\n- b\n", "must hold a mapping"),
                                          ("epochs: [1\n", "is not valid YAML")])
def test_a_wrong_value_or_shape_exits_2_with_what_to_write(tmp_path, capsys, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    assert main(["train", "--config", str(tmp_path / "bad.yaml"), "--dataset", "synth_polyp", "--method", "lora"]) == 2
    assert message in capsys.readouterr().err


def test_train_needs_a_method_from_the_flags_or_the_file(tmp_path, capsys):
    (tmp_path / "exp.yaml").write_text("dataset: synth_polyp\n")
    assert main(["train", "--config", str(tmp_path / "exp.yaml")]) == 2
    assert "give --method NAME" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml"), "--method", "lora"]) == 2
    assert "No experiment file at" in capsys.readouterr().err


def test_a_grid_from_a_file_with_flags_over_it(tmp_path, monkeypatch):
    from convlora_lite.training import sweep

    calls = []
    monkeypatch.setattr(sweep, "reproduce", lambda *args, **kwargs: calls.append((args, kwargs)))
    (tmp_path / "grid.yaml").write_text("preset: smoke\ndatasets: synth_polyp,synth_leaf\nmethods: [lora]\nseeds: 2\n"
                                        f"output_dir: {tmp_path / 'sweep'}\nepochs: 3\nshard: 1/2\n"
                                        "method_options: {rank: 2}\n")
    assert main(["reproduce", "--config", str(tmp_path / "grid.yaml"), "--methods", "lora,conv_lora",
                 "--epochs", "1"]) == 0
    (args, kwargs), = calls
    assert args == ("smoke", ["synth_polyp", "synth_leaf"], ["lora", "conv_lora"], 2, str(tmp_path / "sweep"))
    assert kwargs["shard"] == "1/2" and kwargs["epochs"] == 1 and kwargs["method_options"] == {"rank": 2}


def test_the_example_files_resolve_to_the_runs_they_say():
    from convlora_lite.training import TrainConfig
    from convlora_lite.training.sweep import grid_configs

    paper = read_experiment_file(CONFIGS / "paper_grid.yaml", grid=True)
    grid = grid_configs(paper.pop("preset"), paper.pop("datasets"), paper.pop("methods"), paper.pop("seeds"),
                        paper.pop("output_dir"), **paper)
    assert len(grid) == 7 * 9 * 3 and {c.model for c in grid} == {"vit_h"} and {c.image_size for c in grid} == {1024}
    one = read_experiment_file(CONFIGS / "polyp_conv_lora.yaml")
    config = TrainConfig.resolve(one.pop("dataset"), one.pop("method"), one.pop("preset"), **one)
    assert (config.model, config.method_options["num_experts"], config.method_options["top_k"]) == ("vit_b", 8, 1)
    own = read_experiment_file(CONFIGS / "own_data.yaml")
    assert own["lr"] == 1e-4 and own["method"] == "conv_lora" and set(own) <= set(RUN_KEYS)
