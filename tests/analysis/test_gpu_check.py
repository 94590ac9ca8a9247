"""benchmarks/gpu_check.sh on a machine without a GPU: it starts, says so, and runs its parts on test_tiny."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the dry run is the no-GPU path")
def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--output-dir", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "No GPU found" in out and "all checks passed" in out
    [report] = tmp_path.glob("gpu_check_cpu_dry_run_*.json")
    results = json.loads(report.read_text())
    assert results["meta"]["gpu"] is False and "gpu_check" in results["meta"]["command"]
    parts = results["parts"]
    assert sorted(parts) == sorted(["bench test_tiny 64 px fp32", "bench test_tiny 64 px bf16", "colab step fp32",
                                    "training test_tiny 64 px fp32", "training test_tiny 64 px bf16"])
    assert all(part["ok"] for part in parts.values())
    bench = parts["bench test_tiny 64 px bf16"]["methods"]
    assert set(bench) == {"lora", "conv_lora", "conv_lora:implementation=official"}
    assert parts["colab step fp32"]["activation_checkpointing"] is True
    training = parts["training test_tiny 64 px bf16"]
    assert training["loss_goes_down"] and training["no_nan"] and len(training["train_losses"]) == 5
    summary = report.with_suffix(".md").read_text()
    assert "dry run on the CPU" in summary and "gpu_check" in summary
