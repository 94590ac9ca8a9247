"""RunDir owns a run's layout: finding runs, reading who they are from their config, atomic files,
and no other module of the project naming a run's files."""
import re
from pathlib import Path

import pytest

from convlora_lite.errors import DataError
from convlora_lite.io import atomic_write
from convlora_lite.training.rundir import RunDir

ROOT = Path(__file__).resolve().parents[2]
RUN_FILES = ("config.json", "metrics.json", "history.csv", "split.json", "best.safetensors", "last.safetensors",
             "resume.pt", "loss_curve.png")


def test_find_returns_every_run_below_the_folders_given(tmp_path, fake_run):
    a = fake_run(RunDir.of(tmp_path / "sweep", "synth_leaf", "lora", 1).path, "synth_leaf", "lora", 1, {"test": {}})
    b = fake_run(tmp_path / "elsewhere" / "my_run", "synth_polyp", "conv_lora", 7, {"test": {}})
    fake_run(tmp_path / "sweep" / "unfinished", "synth_leaf", "lora", 2)  # no metrics: not a run yet
    assert RunDir.find([tmp_path]) == [RunDir(b), RunDir(a)] or RunDir.find([tmp_path]) == [RunDir(a), RunDir(b)]
    assert RunDir.find([a, tmp_path / "sweep"]) == [RunDir(a)]
    with pytest.raises(DataError, match="does not exist"):
        RunDir.find([tmp_path / "nothing"])


def test_dataset_method_and_seed_come_from_the_config_not_the_path(tmp_path, fake_run):
    # a run moved (or named) freely keeps its identity
    path = fake_run(tmp_path / "lora" / "seed1", "synth_polyp", "conv_lora", 42, {"test": {}})
    run = RunDir(path)
    assert (run.dataset, run.method, run.seed) == ("synth_polyp", "conv_lora", 42)
    assert RunDir.of(tmp_path, "synth_polyp", "conv_lora", 42).path == tmp_path / "synth_polyp" / "conv_lora" / "seed42"


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "a" / "file.txt"
    atomic_write(target, lambda tmp: tmp.write_text("first"))

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert target.read_text() == "first" and sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]


def test_no_module_but_rundir_names_a_runs_files():
    """The package, the scripts and the benchmarks read and write run files through RunDir only."""
    pattern = re.compile("|".join(re.escape(f'"{name}"') + "|" + re.escape(f"'{name}'") for name in RUN_FILES))
    sources = [p for folder in ("convlora_lite", "scripts", "benchmarks") for p in (ROOT / folder).rglob("*.py")]
    assert len(sources) > 50
    named = {str(p.relative_to(ROOT)) for p in sources if p.name != "rundir.py" and pattern.search(p.read_text())}
    # another format's file of the same name: a Hugging Face model folder's config.json
    assert named == {"convlora_lite/models/hf_checkpoint.py"}
