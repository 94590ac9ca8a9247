"""The set-up files agree with each other: pyproject.toml, environment.yml, Makefile, .ci/run."""
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pip_section(env: dict) -> list[str]:
    for dep in env["dependencies"]:
        if isinstance(dep, dict) and "pip" in dep:
            return dep["pip"]
    raise AssertionError("environment.yml has no pip section")


def test_environment_yml_installs_the_package_with_its_pinned_torch():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert env["name"] == "convlora_lite"
    assert any(str(d).startswith("python=3.") for d in env["dependencies"])
    pip_part = _pip_section(env)
    assert "-e .[dev]" in pip_part
    # torch and torchvision are listed first so conda users get them before the package; their
    # constraints must be the package's own.
    for name in ("torch", "torchvision"):
        listed = [p for p in pip_part if p.split(">")[0].split("=")[0] == name]
        declared = [d for d in project["dependencies"] if d.split(">")[0].split("=")[0] == name]
        assert listed == declared


def test_environment_yml_pip_part_resolves(tmp_path):
    """Dry-run the pip part (conda is not available here) against the current environment."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    req = tmp_path / "requirements.txt"
    req.write_text("\n".join(_pip_section(env)) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-build-isolation", "-r", str(req)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()
          if line and not line.startswith(("#", "set ", "cd "))]
    assert ci[-1] == "make test"
    # before it, only the guarded install of the browser test's Debian packages
    assert all("chrom" in line or line == "fi" for line in ci[:-1]), ci
    assert "make test" in readme and "make run" in readme
    assert "test:" in (ROOT / "Makefile").read_text()


def test_the_onnx_extra_is_in_dev_and_named_where_it_is_missing():
    from convlora_lite.inference.onnx_model import INSTALL

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras["onnx"]) <= set(extras["dev"])
    assert "'convlora_lite[onnx]'" in INSTALL and all(f" {r.split('>')[0]}" in INSTALL for r in extras["onnx"])


def test_the_sam2_extra_is_in_dev_and_installed_by_one_command_everywhere():
    from convlora_lite.models.sam2 import SAM2_INSTALL

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras["sam2"]) <= set(extras["dev"])
    pinned = next(r for r in extras["sam2"] if r.startswith("sam2=="))
    assert f'"{pinned}"' in SAM2_INSTALL and "SAM2_BUILD_CUDA=0" in SAM2_INSTALL
    for doc in ("README.md", "docs/sam2.md"):
        assert SAM2_INSTALL in (ROOT / doc).read_text(), doc
    makefile = (ROOT / "Makefile").read_text()
    assert SAM2_INSTALL.replace("pip install", "$(PY) -m pip install --quiet") in makefile
    assert makefile.index("SAM2_BUILD_CUDA=0") < makefile.index('-e ".[dev]"')  # sam2 first, then the extra
    assert "SAM2_BUILD_CUDA=0 conda env create" in (ROOT / "environment.yml").read_text()
