"""Results tables from run directories: numbers checked against NumPy on hand-written runs."""

import numpy as np
import pytest

from convlora_lite.cli import main
from convlora_lite.errors import DataError
from convlora_lite.reports.results_tables import collect_runs, results_table, table_markdown
from convlora_lite.training.rundir import RunDir


@pytest.fixture
def runs(tmp_path, fake_run):
    values = {("lora", 0): 0.80, ("lora", 1): 0.84, ("conv_lora", 0): 0.90}
    for (method, seed), iou in values.items():
        fake_run(tmp_path / "synth_leaf" / method / f"seed{seed}", "synth_leaf", method, seed,
                 {"test": {"iou": iou, "dice": iou + 0.05, "s_alpha": 0.5}})
    fake_run(tmp_path / "synth_polyp" / "lora" / "seed0", "synth_polyp", "lora", 0,
             {"test": {"s_alpha": 0.7, "e_phi": 0.75}})
    return tmp_path


def test_collect_keeps_only_the_datasets_table_metrics(runs):
    long = collect_runs([runs])
    assert len(RunDir.find([runs])) == 4
    leaf = long[long.dataset == "synth_leaf"]
    assert set(leaf.metric) == {"iou", "dice"}  # s_alpha is not a leaf metric in the paper
    assert set(long[long.dataset == "synth_polyp"].metric) == {"s_alpha", "e_phi"}


def test_table_cells_are_mean_and_sample_std_times_100(runs):
    table = results_table(collect_runs([runs]))
    assert list(table.index) == ["lora", "conv_lora"]  # the paper's order, not alphabetical
    ious = np.array([0.80, 0.84]) * 100
    assert table.loc["lora", ("synth_leaf", "test", "iou")] == f"{ious.mean():.1f} ± {ious.std(ddof=1):.1f}"
    assert table.loc["conv_lora", ("synth_leaf", "test", "iou")] == "90.0"  # one seed: no ±
    assert table.loc["conv_lora", ("synth_polyp", "test", "s_alpha")] == "–"  # not run
    assert table.attrs["n"].loc["lora", ("synth_leaf", "test", "iou")] == 2
    markdown = table_markdown(table)
    assert markdown.splitlines()[0].startswith("| method | synth_leaf/test dice")
    assert "| conv_lora | 95.0 | 90.0 | – | – |" in markdown


def test_cli_table_writes_markdown(runs, tmp_path, capsys):
    out = tmp_path / "table.md"
    assert main(["table", str(runs), "--output", str(out)]) == 0
    assert out.read_text() == capsys.readouterr().out


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="No finished runs"):
        collect_runs([tmp_path])
    with pytest.raises(DataError, match="does not exist"):
        collect_runs([tmp_path / "missing"])


def _recorded(path, **fields):
    """Add what a trainer records beside the scores (``test_s``, ``device``, ``processes``) to a hand-written run."""
    run = RunDir(path)
    run.write_metrics({**run.read_metrics(), **fields})


def test_the_table_adds_each_methods_recorded_device_hours(tmp_path, fake_run, capsys):
    scores = {"test": {"iou": 0.8, "dice": 0.85}}

    def epochs(*seconds):
        return [dict(epoch=i + 1, train_loss=0.5, time_s=s) for i, s in enumerate(seconds)]

    _recorded(fake_run(tmp_path / "l0", "synth_leaf", "lora", 0, scores, epochs(600.0, 900.0)),
              test_s=300.0, device="NVIDIA H200", processes=1)
    _recorded(fake_run(tmp_path / "l1", "synth_leaf", "lora", 1, scores, epochs(1800.0)),
              test_s=0.0, device="NVIDIA H200", processes=2)
    _recorded(fake_run(tmp_path / "c0", "synth_leaf", "conv_lora", 0, scores, epochs(3600.0, 3600.0)),
              test_s=720.0, device="cpu", processes=1)
    fake_run(tmp_path / "c1", "synth_leaf", "conv_lora", 1, scores, [dict(epoch=1, train_loss=0.5)])  # no time
    assert main(["table", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("| device-hours |")
    cells = {line.split(" | ")[0].strip("| "): line.split("|")[-2].strip() for line in lines[2:4]}
    # lora: 600 + 900 + 300 s, and 1,800 s on 2 processes: 5,400 s; conv_lora: 7,920 s, its untimed run not counted
    assert cells == {"lora": "1.50", "conv_lora": "2.20"}
    assert lines[-1].startswith("device-hours: ") and lines[-1].endswith(
        "cpu (1 run, 2.20 h), NVIDIA H200 (2 runs, 1.50 h); 1 run(s) recorded no time, not counted.")
