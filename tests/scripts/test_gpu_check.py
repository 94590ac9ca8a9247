"""benchmarks/gpu_check.sh: the quick check on whatever this host has, the full one as its CPU dry run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from gpu_check import part_names, plan, recorded_colab_stand_in

ROOT = Path(__file__).resolve().parents[2]


def _gpu_check(out: Path, *flags: str) -> tuple[dict, str]:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--output-dir", str(out), *flags], env=env,
                          capture_output=True, text=True, timeout=600)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-4000:]
    [report] = out.glob("gpu_check_*.json")
    return json.loads(report.read_text()), report.with_suffix(".md").read_text()


def test_the_quick_check_runs_on_this_host(tmp_path):
    """Where CUDA is visible, the real quick check (ViT-B at 1024 px, random weights, under 3 minutes);
    elsewhere its dry run on test_tiny. Either way every planned part ran and passed, and the fits in
    both mixed precisions finished with validation and test scores."""
    results, summary = _gpu_check(tmp_path, "--quick")
    meta = results["meta"]
    assert meta["gpu"] is torch.cuda.is_available() and meta["quick"] is True
    assert list(results["parts"]) == meta["parts_planned"] == part_names(plan(meta["gpu"], quick=True))
    assert results["ok"] and all(part["ok"] for part in results["parts"].values())
    training = [part for name, part in results["parts"].items() if name.startswith("training ")]
    assert [part["precision"] for part in training] == list(plan(meta["gpu"], quick=True)["train_precisions"])
    assert all(part["no_nan"] and part["loss_goes_down"] and "s_alpha" in part["test"]["test"] for part in training)
    assert "--quick" in meta["command"] and "gpu_check" in summary


def test_the_full_check_dry_run_on_the_cpu(tmp_path):
    # pinned to the CPU (--cpu): on a GPU the full check takes about 10 minutes; the quick one above
    # checks the GPU itself.
    results, summary = _gpu_check(tmp_path, "--cpu")
    assert results["meta"]["gpu"] is False and "gpu_check" in results["meta"]["command"]
    parts = results["parts"]
    assert list(parts) == part_names(plan(False)) == [
        "bench test_tiny 64 px fp32", "bench test_tiny 64 px bf16", "colab step fp32",
        "training test_tiny 64 px fp32", "training test_tiny 64 px bf16"]
    assert all(part["ok"] for part in parts.values())
    bench = parts["bench test_tiny 64 px bf16"]["methods"]
    assert set(bench) == {"lora", "conv_lora", "conv_lora:implementation=official"}
    assert parts["colab step fp32"]["activation_checkpointing"] is False  # the preset's (docs/performance.md)
    assert parts["colab step fp32"]["attention"] == "meta"
    assert parts["colab step fp32"]["host_peak_gib"] > 0
    training = parts["training test_tiny 64 px bf16"]
    assert training["loss_goes_down"] and training["no_nan"] and len(training["train_losses"]) == 5
    assert "dry run on the CPU" in summary and "| training test_tiny 64 px bf16 | yes |" in summary


def test_the_recorded_colab_stand_in_is_the_colab_step_at_its_true_size():
    """benchmarks/results holds the colab step measured on the CPU at the preset's model and image size in
    bf16 (``--colab-stand-in``): the record the colab notebooks' memory test reads."""
    from convlora_lite.training import TrainConfig

    colab = TrainConfig.resolve("polyp", "conv_lora", "colab", checkpoint=None)
    record = recorded_colab_stand_in()
    assert (record["model"], record["image_size"], record["batch_size"], record["precision"]) == (
        colab.model, colab.image_size, colab.batch_size, "bf16")
    assert record["ok"] and 0.5 < record["host_peak_gib"] < 8  # ViT-B's weights alone are 0.35 GiB in fp32
    assert "--colab-stand-in" in record["meta"]["command"] and record["meta"]["device"] == "cpu"
