"""convlora reproduce: a grid of runs, finished runs skipped, a lost run redone, the table written."""
import json

import pandas as pd
import pytest

from convlora_lite.cli import main
from convlora_lite.data import generate_synthetic
from convlora_lite.errors import ConfigError
from convlora_lite.training.presets import OFFICIAL_SEED
from convlora_lite.training.sweep import reproduce, seeds_for


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    generate_synthetic("synth_leaf", root, image_size=64, n_train=4, n_val=2, n_test=2, seed=0)
    return root


def _sweep(data_root, out):
    return reproduce("smoke", ["synth_leaf"], ["decoder_only", "lora"], seeds=2, output_dir=out,
                     log=lambda *_: None, model="test_tiny", data_root=str(data_root))


def _checkpoint_stamps(out):
    """``method/seedN`` -> modification time of that run's best checkpoint."""
    return {f"{p.parents[2].name}/{p.parents[1].name}": p.stat().st_mtime_ns for p in out.rglob("best.safetensors")}


def test_sweep_writes_the_table_and_skips_finished_runs(data_root, tmp_path):
    out = tmp_path / "runs"
    table = _sweep(data_root, out)
    long = pd.read_csv(out / "results.csv")
    assert sorted(set(long.seed)) == [OFFICIAL_SEED, OFFICIAL_SEED + 1]
    assert len(long) == 2 * 2 * 2  # methods x seeds x the leaf metrics (iou, dice)
    assert set(long.metric) == {"iou", "dice"}
    assert table.read_text().startswith("| method | synth_leaf/test dice | synth_leaf/test iou |")

    stamps = _checkpoint_stamps(out)
    assert len(stamps) == 4
    lost = out / "synth_leaf" / "lora" / f"seed{OFFICIAL_SEED + 1}"
    for path in sorted(lost.rglob("*"), reverse=True):  # an interrupted sweep lost this run
        path.unlink() if path.is_file() else path.rmdir()
    lost.rmdir()

    _sweep(data_root, out)
    again = _checkpoint_stamps(out)
    unchanged = [name for name in stamps if again[name] == stamps[name]]
    assert sorted(unchanged) == sorted(n for n in stamps if n != f"lora/seed{OFFICIAL_SEED + 1}")
    # the redone run is the same run (seeded): the table's numbers do not move
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv").drop(columns="run_dir"),
                                  long.drop(columns="run_dir"))


def test_cli_and_bad_arguments(data_root, tmp_path, capsys):
    out = tmp_path / "cli_runs"
    assert main(["reproduce", "--preset", "smoke", "--datasets", "synth_leaf", "--methods", "decoder_only",
                 "--model", "test_tiny", "--root", str(data_root), "--output-dir", str(out),
                 "--max-train-batches", "1", "--epochs", "2"]) == 0
    assert "Table written to" in capsys.readouterr().out and (out / "results.md").exists()
    run_dir = out / "synth_leaf" / "decoder_only" / f"seed{seeds_for('smoke', 1)[0]}"
    assert json.loads((run_dir / "config.json").read_text())["max_train_batches"] == 1
    assert len(pd.read_csv(run_dir / "history.csv")) == 2
    assert main(["reproduce", "--datasets", "synth_leaf", "--methods", "nope", "--output-dir", str(out)]) == 2
    assert "Unknown PEFT method 'nope'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="at least 1"):
        seeds_for("smoke", 0)
    with pytest.raises(ConfigError, match="sets 'seed' itself"):
        reproduce("smoke", ["synth_leaf"], ["lora"], output_dir=out, seed=3)
