"""`convlora reproduce --dry-run` and `--emit-slurm`: a grid's cost checked by hand against the FLOP budget and the
H200's recorded step times, nothing touched; the sbatch script read back through bash."""
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from convlora_lite.bench.compute_budget import (
    HOST_S_PER_OPERATOR,
    USUAL_SPLIT_SIZES,
    dataset_sizes,
    run_estimate,
    step_flops,
)
from convlora_lite.bench.grid_cost import H200_PEAK_MIB, H200_STEP_S, device_profile, grid_cost
from convlora_lite.cli import build_parser, main
from convlora_lite.cli.reproduce_plan import grid_arguments
from convlora_lite.training.slurm import default_time_limit, time_limit
from convlora_lite.training.sweep import grid_configs

ROOT = Path(__file__).resolve().parents[2]
H200_REPORT = ROOT / "benchmarks" / "results" / "gpu_check_nvidia_h200_20261204T1454Z.json"
#: the small grid: 2 datasets x 2 methods x 2 seeds of the paper's recipe on ViT-B (ViT-B: a second to count).
GRID = ["--preset", "paper", "--model", "vit_b", "--datasets", "polyp,camo", "--methods", "lora,conv_lora",
        "--seeds", "2"]


@pytest.fixture
def untouched(tmp_path, monkeypatch):
    """A data root and an output folder that do not exist, no network, no training, no download, no analog; the
    working directory is an empty folder. Yields the two paths' options."""
    def refuse(*args, **kwargs):
        raise AssertionError("a dry run reached for the network, the data or the trainer")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for target in ("convlora_lite.training.trainer.fit", "convlora_lite.data.install.ensure_dataset",
                   "convlora_lite.data.install.download_dataset", "convlora_lite.data.synthetic.generate_synthetic"):
        monkeypatch.setattr(target, refuse)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    root, out = tmp_path / "no_data", tmp_path / "no_runs"
    yield ["--root", str(root), "--output-dir", str(out)]
    assert not root.exists() and not out.exists()


def _rows(text: str) -> list[list[str]]:
    """The cells of every markdown row of ``text`` that starts with a number or a name (not the header lines)."""
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith(("| # ", "| dataset |", "| method |"))]


def _configs(**overrides):
    """The configs of :data:`GRID`, in the grid's order."""
    return grid_configs("paper", ["polyp", "camo"], ["lora", "conv_lora"], 2, "unused", model="vit_b", **overrides)


def test_the_dry_run_prices_every_run_with_the_flop_budget_and_adds_them_up(untouched, capsys):
    assert main(["reproduce", *GRID, *untouched, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert not os.listdir(".")  # nothing written where it ran either
    rows = _rows(out)
    runs = [r for r in rows if r[0].isdigit()]
    assert [(r[1], r[2], r[3]) for r in runs] == [(d, m, str(s)) for d in ("polyp", "camo")
                                                 for m in ("lora", "conv_lora") for s in (42686693, 42686694)]
    hours = {}
    costs = grid_cost(_configs(), device_profile("t4"))
    for r, config, cost in zip(runs, _configs(), costs):  # each run: run_estimate of its config on the usual sizes
        expected = run_estimate(config, *dataset_sizes(config.dataset, config.max_train_batches)).total_s
        assert cost.seconds == expected and r[9] == f"{expected / 3600:,.2f}"
        hours[r[1], r[2], r[3]] = expected / 3600
    # polyp: 1,450 images x 30 epochs, batch 1; camo: 1,000 x 20 (docs/data.md, the registry's epochs)
    assert {r[6] for r in runs} == {"1,450 x 30", "1,000 x 20"}
    totals = {r[0]: (int(r[1]), r[2]) for r in rows if not r[0].isdigit()}
    for dataset in ("polyp", "camo"):
        assert totals[dataset] == (4, f"{sum(h for k, h in hours.items() if k[0] == dataset):,.2f}")
    for method in ("lora", "conv_lora"):
        assert totals[method] == (4, f"{sum(h for k, h in hours.items() if k[1] == method):,.2f}")
    assert f"Total: 8 runs, {sum(hours.values()):,.2f} GPU-hours on t4" in out
    assert "2 datasets x 2 methods x 2 seeds = 8 runs" in out


def test_the_h200_estimate_is_the_recorded_step_times_the_batches(untouched, capsys):
    medians = {m: s["median_step_s"]
               for m, s in json.loads(H200_REPORT.read_text())["parts"]["bench vit_b 1024 px fp16"]["methods"].items()}
    assert main(["reproduce", *GRID, *untouched, "--dry-run", "--device-profile", "h200"]) == 0
    out = capsys.readouterr().out
    runs = {(r[1], r[2]): r for r in _rows(out) if r[0].isdigit()}
    lora = 1450 * 30 * medians["lora"]  # polyp: 1,450 batches of 1 x 30 epochs, one measured step each
    assert runs["polyp", "lora"][7] == f"{lora / 3600:,.2f}"
    conv = 1000 * 20 * medians["conv_lora"]
    assert runs["camo", "conv_lora"][7] == f"{conv / 3600:,.2f}"
    # evaluation: validation (145 = 10 % of polyp's train set) every epoch and the 162 test images, each a
    # forward pass: the step x the forward's share of the step's operators (1,891 of 3,997), larger than its FLOPs'
    flops = step_flops("vit_b", 1024, "lora")
    assert flops.forward / flops.train < 1891 / 3997
    evaluation = (145 * 30 + 162) * medians["lora"] * 1891 / 3997
    assert runs["polyp", "lora"][8] == f"{evaluation / 3600:,.2f}"
    polyp_lora = grid_cost(_configs(), device_profile("h200"))[0].estimate
    assert polyp_lora.train_s == pytest.approx(lora, rel=1e-5) and polyp_lora.eval_s == pytest.approx(evaluation,
                                                                                                      rel=1e-5)
    assert runs["polyp", "lora"][10] == "in the step"
    assert f"H200 median step {medians['conv_lora'] * 1e3:.0f} ms (vit_b, 1024 px, fp16, conv_lora)" in out
    assert "conservative" in out and "gpu_check_nvidia_h200_20261204T1454Z.json" in out


def test_the_h200_tables_are_the_reports_medians():
    parts = json.loads(H200_REPORT.read_text())["parts"]
    recorded = {(model, label, precision): stats["median_step_s"] for model in ("vit_b", "vit_h")
                for precision in ("fp16", "bf16")
                for label, stats in parts[f"bench {model} 1024 px {precision}"]["methods"].items()}
    assert H200_STEP_S.keys() == recorded.keys()
    assert all(H200_STEP_S[key] == pytest.approx(value, abs=1e-6) for key, value in recorded.items())
    for (model, precision), peak in H200_PEAK_MIB.items():
        methods = parts[f"bench {model} 1024 px {precision}"]["methods"].values()
        assert peak == round(max(m["peak_memory_mib"] for m in methods))


def test_another_gpu_is_priced_at_the_t4_assumptions_share_of_its_peak(untouched, capsys):
    assert main(["reproduce", *GRID, *untouched, "--dry-run", "--gpu-tflops", "312"]) == 0
    out = capsys.readouterr().out
    sustained = 312e12 * 12 / 65
    assert "57.6 TFLOP/s sustained" in out
    runs = {(r[1], r[2]): r for r in _rows(out) if r[0].isdigit()}
    config = _configs()[2]  # polyp, conv_lora
    assert runs["polyp", "conv_lora"][9] == f"{run_estimate(config, 1450, 145, 162, sustained).total_s / 3600:,.2f}"
    # the host's floor: 5,150 operators x 20 us = 103 ms per batch, over the 2.18 TFLOP at 57.6 TFLOP/s (38 ms)
    share = 1 - step_flops("vit_b", 1024, "conv_lora").train / sustained / (5150 * HOST_S_PER_OPERATOR)
    assert 0.5 < share < 0.7 and runs["polyp", "conv_lora"][10] == f"{share:.0%}"


def test_a_shard_shows_its_part_of_the_grid(untouched, capsys):
    assert main(["reproduce", *GRID, *untouched, "--dry-run", "--shard", "1/3"]) == 0
    out = capsys.readouterr().out
    assert [r[0] for r in _rows(out) if r[0].isdigit()] == ["1", "4", "7"]
    assert "Total: 3 runs (one shard's part of the grid's 8)" in out


def test_the_paper_grid_is_priced_on_the_meta_device_in_a_small_process(tmp_path):
    """All seven datasets on ViT-H: shapes only, no ViT-H in memory (its fp32 weights alone are 2.5 GB)."""
    code = ("import resource; from convlora_lite.cli import main; "
            f"main(['reproduce', '--preset', 'paper', '--datasets', {','.join(USUAL_SPLIT_SIZES)!r}, '--methods', "
            f"'conv_lora,lora', '--dry-run', '--root', 'no_data', '--output-dir', 'no_runs']); "
            "print('peak kB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "Total: 42 runs" in done.stdout and not os.listdir(tmp_path)
    # measured 0.9-1.8 GB (the process's peak varies between runs); a ViT-H built in fp32 needs 2.5 GB for its weights
    assert int(re.search(r"peak kB (\d+)", done.stdout).group(1)) < 2.5e6
    assert "vit_h step at 1024 px (fp16, batch 1) needed 18.5 GiB on the H200, more than the 15 GiB of a t4" \
        in done.stdout


@pytest.mark.parametrize("argv, message", [
    (["--dry-run", "--device-profile", "h200", "--preset", "colab"], "512 px"),  # the later --preset wins
    (["--dry-run", "--device-profile", "t4", "--gpu-tflops", "100"], "name two devices"),
    (["--dry-run", "--gpu-tflops", "0"], "dense fp16 tensor peak"),
    (["--device-profile", "h200"], "add --dry-run"),
    (["--dry-run", "--slurm-time", "01:00:00"], "option of --emit-slurm"),
    (["--emit-slurm", "job.sbatch", "--shard", "0/2"], "leave out --shard"),
    (["--emit-slurm", "job.sbatch", "--slurm-shards", "9"], "give 1 to 8"),
    (["--emit-slurm", "job.sbatch", "--slurm-time", "90 minutes"], "HH:MM:SS"),
    (["--emit-slurm", "job.sbatch", "--slurm-partition", "gpu long"], "an #SBATCH line cannot hold"),
    (["--emit-slurm", "job.sbatch", "--slurm-gpus", "two"], "TYPE:N"),
    (["--emit-slurm", "my jobs/job.sbatch"], "a folder whose path has none"),
])
def test_a_mistake_is_a_clear_error_and_writes_nothing(untouched, capsys, argv, message):
    assert main(["reproduce", *GRID, *untouched, *argv]) == 2
    assert message in capsys.readouterr().err
    assert not os.listdir(".")


def test_time_limits_are_slurms_format():
    assert time_limit(59) == "00:01:00" and time_limit(3600 * 25 + 1) == "1-01:01:00"
    assert default_time_limit(3600) == "02:00:00"  # 1 h x 1.5 + 30 min


def _task_argv(script: str, task: int) -> list[str]:
    """The argv the script's last line runs as array task ``task``, as bash expands and splits it."""
    command = script.rstrip("\n").splitlines()[-1]
    assert command.startswith("exec ")
    done = subprocess.run(["bash", "-c", "printf '%s\\0' " + command.removeprefix("exec ")], check=True,
                          capture_output=True, env={**os.environ, "SLURM_ARRAY_TASK_ID": str(task)})
    return done.stdout.decode().split("\0")[:-1]


def test_the_sbatch_script_runs_each_shard_of_the_same_grid(untouched, tmp_path, capsys, monkeypatch):
    odd = tmp_path / "it's a \"work\" dir"  # the task changes into it: quoted
    odd.mkdir()
    monkeypatch.chdir(odd)
    script_path = tmp_path / "jobs" / "paper-grid.sbatch"
    root = str(tmp_path / "the data's root")  # a later --root wins: one the shell would split and unquote
    options = [*GRID, *untouched, "--lr", "5e-4", "--method-option", "rank=2", "--method-option", "alpha=16",
               "--compile", "--prompt", "box", "--root", root]
    argv = ["reproduce", *options, "--emit-slurm", str(script_path), "--slurm-shards", "3", "--slurm-gpus",
            "a100:2", "--slurm-partition", "gpu-long", "--slurm-mem", "64G"]
    assert main(argv) == 0
    assert "3 array tasks for 8 runs" in capsys.readouterr().out
    script = script_path.read_text()
    subprocess.run(["bash", "-n", str(script_path)], check=True)
    assert os.access(script_path, os.X_OK) and sorted(os.listdir(script_path.parent)) == ["paper-grid.sbatch",
                                                                                        "slurm-logs"]
    sbatch = dict(line.removeprefix("#SBATCH --").partition("=")[::2] for line in script.splitlines()
                  if line.startswith("#SBATCH"))
    costs = grid_cost(_configs(lr=5e-4, compile="default", prompt="box", method_options={"rank": 2, "alpha": 16}),
                      device_profile("t4"))
    largest = max(sum(c.seconds for c in costs[k::3]) for k in range(3))  # task k: runs k, k + 3, ...
    assert sbatch == {"job-name": "paper-grid", "array": "0-2",
                      "output": f"{script_path.parent}/slurm-logs/%x_%A_%a.out", "open-mode": "append",
                      "requeue": "", "time": time_limit(largest * 1.5 + 1800),
                      "gres": "gpu:a100:2", "cpus-per-task": str(2 * (4 + 1)),  # 2 GPUs x (paper's 4 loaders + 1)
                      "partition": "gpu-long", "mem": "64G"}
    cd = next(line for line in script.splitlines() if line.startswith("cd "))
    assert subprocess.run(["bash", "-c", f"{cd} && pwd"], capture_output=True, text=True).stdout.strip() == str(odd)
    expected = vars(build_parser().parse_args(["reproduce", *options]))
    for task in range(3):
        args = _task_argv(script, task)
        assert args[:7] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                            "convlora_lite"]
        parsed = vars(build_parser().parse_args(args[7:]))
        assert parsed.pop("shard") == f"{task}/3"
        assert {k: v for k, v in parsed.items() if k not in ("reproduce_parser", "func")} == \
            {k: v for k, v in expected.items() if k not in ("reproduce_parser", "func", "shard")}
    # by hand, without a shard (the task has none): the command line the grid was given, in the parser's order
    alone = build_parser().parse_args(["reproduce", *options, "--shard", "1/2", "--dry-run"])
    assert shlex.join(grid_arguments(alone)) == shlex.join([
        "--preset", "paper", "--datasets", "polyp,camo", "--methods", "lora,conv_lora", "--seeds", "2",
        "--output-dir", untouched[3], "--model", "vit_b", "--lr", "0.0005", "--root", root,
        "--compile", "default", "--method-option", "rank=2", "--method-option", "alpha=16", "--prompt", "box"])
    unset = subprocess.run(["bash", str(script_path)], capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k != "SLURM_ARRAY_TASK_ID"})
    assert unset.returncode != 0 and "submit this job array with sbatch" in unset.stderr


def test_the_time_limit_follows_the_device_profile_and_one_task_per_run_by_default(untouched, tmp_path):
    script_path = tmp_path / "grid.sbatch"
    assert main(["reproduce", *GRID, *untouched, "--emit-slurm", str(script_path), "--device-profile", "h200"]) == 0
    script = script_path.read_text()
    costs = grid_cost(_configs(), device_profile("h200"))
    assert "#SBATCH --array=0-7" in script and f"#SBATCH --time={default_time_limit(max(c.seconds for c in costs))}" \
        in script
    assert "#SBATCH --gres=gpu:1" in script and "-m convlora_lite reproduce" in script
    assert "--partition" not in script and "--mem" not in script
    assert main(["reproduce", *GRID, *untouched, "--emit-slurm", str(script_path), "--slurm-time", "2-00:00:00"]) == 0
    assert "#SBATCH --time=2-00:00:00" in script_path.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".grid.sbatch.tmp")]
