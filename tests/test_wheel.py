"""The wheel: built, installed into a fresh virtual environment, and used from there (nothing from the source tree)."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import tomllib

import convlora_lite

ROOT = Path(__file__).resolve().parents[1]
#: top-level folders of a working copy that are not the package's source
_NOT_SOURCE = {".git", ".venv", "runs", "outputs", "data", ".nbval", "build", "dist", ".pytest_cache", "notebooks",
               ".whl", ".gl"}


def _ignore(folder, names):
    top = Path(folder) == ROOT
    return [n for n in names if (top and n in _NOT_SOURCE) or n == "__pycache__" or n.endswith(".egg-info")]


def _run(args, **kwargs):
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_repository_url_is_in_one_place_and_names_the_install_command():
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Repository"] == convlora_lite.REPOSITORY_URL
    assert convlora_lite.install_command() == (
        f'pip install -q "convlora_lite[notebooks] @ git+{convlora_lite.REPOSITORY_URL}@v{convlora_lite.__version__}"')


def test_wheel_installs_into_a_fresh_venv_and_trains_from_there(tmp_path):
    source = tmp_path / "source"  # build from a copy: the worktree gets no build/ or egg-info
    shutil.copytree(ROOT, source, ignore=_ignore)
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w",
          str(tmp_path / "wheels")], cwd=source)
    [wheel] = (tmp_path / "wheels").glob("convlora_lite-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    # the dependencies (torch, ...) come from this interpreter's site-packages, appended after the venv's own
    # (a plain path line: the editable install's finder there is not activated)
    (site / "_deps_from_the_test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)])
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", CONVLORA_CACHE=str(tmp_path / "cache"))
    where = _run([str(python), "-c", "import convlora_lite, sys; print(convlora_lite.__file__)"], cwd=work, env=env)
    assert Path(where.strip()).is_relative_to(venv), where
    convlora = str(venv / "bin" / "convlora")
    counts = json.loads(_run([convlora, "params", "--model", "micro_sam", "--method", "conv_lora", "--json"],
                             cwd=work, env=env))
    card = json.loads((Path(__file__).resolve().parents[1] / "convlora_lite/assets/micro_sam.json").read_text())
    [row] = counts["rows"]
    assert row["method"] == "conv_lora" and row["total"] - row["added"] == card["weights"]["parameters"]
    assert 0 < row["added"] < row["trainable"] < row["total"]
    sam2 = json.loads(_run([convlora, "params", "--model", "micro_sam2", "--method", "conv_lora", "--json"],
                           cwd=work, env=env))  # micro SAM 2's config came with the wheel
    sam2_card = json.loads((ROOT / "convlora_lite/assets/micro_sam2.json").read_text())
    assert sam2["rows"][0]["total"] - sam2["rows"][0]["added"] == sam2_card["weights"]["parameters"]
    _run([convlora, "data", "synth", "synth_polyp", "--root", "data", "--size", "64", "--n-train", "4",
          "--n-val", "2", "--n-test", "2"], cwd=work, env=env)
    _run([convlora, "train", "--dataset", "synth_polyp", "--method", "conv_lora", "--preset", "smoke",
          "--root", "data", "--output-dir", "run", "--image-size", "64"], cwd=work, env=env)
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert metrics["completed"] and metrics["model"] == "micro_sam"  # the bundled asset came with the wheel
    assert not (ROOT / "build").exists() or (ROOT / "build").stat().st_mtime < (tmp_path / "wheels").stat().st_mtime
