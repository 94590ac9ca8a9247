"""convlora reproduce: a grid of runs, finished runs skipped, a lost run redone, the table written."""
import json

import pandas as pd
import pytest

from convlora_lite.cli import main
from convlora_lite.data import generate_synthetic
from convlora_lite.errors import ConfigError
from convlora_lite.reports.results_tables import write_results
from convlora_lite.training.presets import OFFICIAL_SEED
from convlora_lite.training.sweep import reproduce, seeds_for


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    generate_synthetic("synth_leaf", root, image_size=64, n_train=4, n_val=2, n_test=2, seed=0)
    return root


def _sweep(data_root, out):
    """The grid's runs and, as `convlora reproduce` writes it, its table (returns results.md)."""
    # Pinned to the CPU: a redone run must give the same numbers bit for bit, and CUDA's backward of
    # interpolate and of indexing accumulates with atomics, in no fixed order.
    runs = reproduce("smoke", ["synth_leaf"], ["decoder_only", "lora"], seeds=2, output_dir=out,
                     log=lambda *_: None, model="test_tiny", data_root=str(data_root), device="cpu")
    assert [run.method for run in runs] == ["decoder_only", "decoder_only", "lora", "lora"]
    return write_results(out, runs)


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
                 "--max-train-batches", "1", "--epochs", "2", "--lr", "5e-4"]) == 0
    assert "Table written to" in capsys.readouterr().out and (out / "results.md").exists()
    run_dir = out / "synth_leaf" / "decoder_only" / f"seed{seeds_for('smoke', 1)[0]}"
    stored = json.loads((run_dir / "config.json").read_text())
    assert (stored["max_train_batches"], stored["lr"]) == (1, 5e-4)
    assert len(pd.read_csv(run_dir / "history.csv")) == 2
    assert main(["reproduce", "--datasets", "synth_leaf", "--methods", "nope", "--output-dir", str(out)]) == 2
    assert "Unknown PEFT method 'nope'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="at least 1"):
        seeds_for("smoke", 0)
    assert seeds_for("paper") == [OFFICIAL_SEED, OFFICIAL_SEED + 1, OFFICIAL_SEED + 2]  # the preset's count
    assert seeds_for("colab") == [OFFICIAL_SEED]
    with pytest.raises(ConfigError, match="sets 'seed' itself"):
        reproduce("smoke", ["synth_leaf"], ["lora"], output_dir=out, seed=3)


def test_shards_cover_the_grid_exactly_once():
    from convlora_lite.training.sweep import grid_configs, parse_shard, shard_of

    configs = grid_configs("smoke", ["synth_leaf", "synth_polyp"], ["decoder_only", "lora", "conv_lora"], seeds=3,
                           output_dir="out", model="test_tiny")
    assert len(configs) == 18
    for n in (1, 2, 4, 5, 18, 25):
        parts = [[c.output_dir for c in shard_of(configs, f"{k}/{n}")] for k in range(n)]
        flat = [d for part in parts for d in part]
        assert sorted(flat) == sorted(c.output_dir for c in configs) and len(set(flat)) == len(flat), n
        assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    assert [c.output_dir for c in shard_of(configs, None)] == [c.output_dir for c in configs]
    assert parse_shard((1, 3)) == (1, 3)
    for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_an_interrupted_shard_resumes_and_the_last_shard_writes_the_table(data_root, tmp_path, monkeypatch):
    import convlora_lite.training.trainer as trainer

    out = tmp_path / "sharded"
    kwargs = dict(seeds=2, output_dir=out, log=lambda *_: None, model="test_tiny", data_root=str(data_root))
    methods = ["decoder_only", "lora"]
    real_fit, calls = trainer.fit, []

    def crash_on_second(config, **kw):
        calls.append(config.output_dir)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the worker is killed during its second run
        return real_fit(config, **kw)

    monkeypatch.setattr(trainer, "fit", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        reproduce("smoke", ["synth_leaf"], methods, shard="0/2", **kwargs)
    monkeypatch.setattr(trainer, "fit", real_fit)
    stamps = _checkpoint_stamps(out)
    assert list(stamps) == [f"decoder_only/seed{OFFICIAL_SEED}"]  # shard 0 has runs 0 and 2 of 4

    assert reproduce("smoke", ["synth_leaf"], methods, shard="0/2", **kwargs) is None  # shard 1 not run yet
    again = _checkpoint_stamps(out)
    assert sorted(again) == [f"decoder_only/seed{OFFICIAL_SEED}", f"lora/seed{OFFICIAL_SEED}"]
    assert again[f"decoder_only/seed{OFFICIAL_SEED}"] == stamps[f"decoder_only/seed{OFFICIAL_SEED}"]  # not redone
    assert not (out / "results.md").exists()

    assert main(["reproduce", "--preset", "smoke", "--datasets", "synth_leaf", "--methods", ",".join(methods),
                 "--seeds", "2", "--model", "test_tiny", "--root", str(data_root), "--output-dir", str(out),
                 "--shard", "1/2"]) == 0
    assert len(_checkpoint_stamps(out)) == 4 and (out / "results.md").exists()
    assert len(pd.read_csv(out / "results.csv")) == 2 * 2 * 2
