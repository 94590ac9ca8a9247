"""Every run writes TensorBoard event files (read back with TensorBoard's own reader) that equal its
history.csv and metrics.json, once per epoch across a resume; --log-with reaches Accelerate's trackers."""
import importlib.util
import json

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_trainer import BINARY, Interrupt, config, datasets

from convlora_lite.errors import ConfigError
from convlora_lite.training import TrainConfig, fit


def _scalars(run) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard reads the run's event files."""
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _expected(run) -> dict[str, list[tuple[int, float]]]:
    """The same series computed from history.csv and metrics.json."""
    history = pd.read_csv(run / "history.csv")
    names = {"train_loss": "train/loss", "aux_loss": "train/aux_loss", "lr": "train/lr",
             "time_s": "train/epoch_seconds"}
    names.update({c: "val/" + c.removeprefix("val_") for c in history if c.startswith("val_")})
    series = {tag: list(zip(history["epoch"], history[column])) for column, tag in names.items()}
    metrics = json.loads((run / "metrics.json").read_text())
    series.update({f"test/test/{k}": [(metrics["best_epoch"], v)] for k, v in metrics["test"]["test"].items()
                   if isinstance(v, (int, float))})
    return series


def _assert_same(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for tag, points in expected.items():
        assert [step for step, _ in got[tag]] == [step for step, _ in points], tag
        assert [value for _, value in got[tag]] == pytest.approx([value for _, value in points], rel=1e-6), tag


def test_a_run_writes_its_history_and_test_scores_as_tensorboard_scalars(tmp_path):
    run = fit(config(tmp_path, epochs=2), spec=BINARY, datasets=datasets())
    got = _scalars(run)
    assert {"train/loss", "train/lr", "val/loss", "val/iou", "val/s_alpha", "test/test/iou"} <= set(got)
    assert [step for step, _ in got["val/loss"]] == [1, 2] and all(value > 0 for _, value in got["val/loss"])
    _assert_same(got, _expected(run))


def test_a_resumed_run_holds_each_epoch_once_even_one_it_did_not_log(tmp_path, monkeypatch):
    from convlora_lite.training import tracking

    real_log = tracking.RunTracker.log

    def stop_at_epoch_2(self, scalars, step, trackers=True):
        if step == 2:  # epoch 2 is saved, the process stops before logging it
            raise Interrupt
        real_log(self, scalars, step, trackers)

    cfg = config(tmp_path, epochs=3)
    monkeypatch.setattr(tracking.RunTracker, "log", stop_at_epoch_2)
    with pytest.raises(Interrupt):
        fit(cfg, spec=BINARY, datasets=datasets())
    assert [step for step, _ in _scalars(tmp_path / "run")["train/loss"]] == [1]
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 2
    monkeypatch.undo()
    run = fit(TrainConfig(**{**cfg.to_dict(), "resume": True}), spec=BINARY, datasets=datasets())
    _assert_same(_scalars(run), _expected(run))  # epochs 1, 2, 3 once each, epoch 1 not twice


def test_log_with_reaches_accelerate_s_tracker_and_a_missing_package_is_named(tmp_path, monkeypatch, capsys):
    import accelerate.tracking

    calls = []

    class Recorder:
        def __init__(self, run_name, **kwargs):
            calls.append(("init", run_name, kwargs))

        def start(self):
            calls.append(("start",))

        def store_init_configuration(self, values):
            calls.append(("config", values["method"], values["log_with"]))

        def log(self, values, step=None):
            calls.append(("log", step, dict(values)))

        def finish(self):
            calls.append(("finish",))

    with pytest.raises(ConfigError, match="log_with"):
        config(tmp_path, log_with=["comet"])
    cfg = config(tmp_path, epochs=2, log_with=["wandb"])
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(ConfigError, match="pip install wandb"):
            fit(cfg, spec=BINARY, datasets=datasets())
        from convlora_lite.cli import main

        assert main(["train", "--dataset", "synth_polyp", "--method", "lora", "--log-with", "wandb",
                     "--output-dir", str(tmp_path / "cli")]) == 2
        assert "pip install wandb" in capsys.readouterr().err and not (tmp_path / "cli").exists()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "wandb"
                        else real_find_spec(name, *a))
    monkeypatch.setattr(accelerate.tracking, "WandBTracker", Recorder)
    run = fit(cfg, spec=BINARY, datasets=datasets())
    assert calls[:3] == [("init", "convlora_lite", {"name": f"discs/decoder_only/seed{cfg.seed}", "dir": str(run)}),
                         ("start",), ("config", "decoder_only", "['wandb']")]
    logs = [c for c in calls if c[0] == "log"]
    tensorboard = _scalars(run)
    assert [step for _, step, _ in logs] == [1, 2, json.loads((run / "metrics.json").read_text())["best_epoch"]]
    for _, step, values in logs:  # what the tracker got is what TensorBoard got
        assert all(dict(tensorboard[tag])[step] == pytest.approx(value, rel=1e-6) for tag, value in values.items())
    assert calls[-1] == ("finish",)
