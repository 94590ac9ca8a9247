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
