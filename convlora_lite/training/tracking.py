"""What a run logs besides ``history.csv``: TensorBoard event files in its run directory, always, and the
experiment trackers of ``log_with`` (``wandb``, ``mlflow``) through Accelerate's tracker classes.

Per epoch (the step is the epoch, 1-based): ``train/loss``, ``train/aux_loss``, ``train/lr``,
``train/epoch_seconds``, ``val/loss`` and ``val/<metric>`` for each validation metric (the selection metric
among them); when the run finishes, ``test/<split>/<metric>`` at the best epoch. A resumed run rewrites the
epochs it resumes from out of ``history.csv`` and hides what its interrupted predecessor logged, so the event
files hold each saved epoch once. Only the main process logs. ``tensorboard --logdir RUN_OR_SWEEP_FOLDER`` shows
one run or every run below a folder.
"""
from __future__ import annotations

import importlib.util
from typing import Callable, Optional

from convlora_lite.errors import ConfigError
from convlora_lite.training.rundir import RunDir

#: history.csv's columns -> TensorBoard tags (``val_<metric>`` -> ``val/<metric>``).
HISTORY_TAGS = {"train_loss": "train/loss", "aux_loss": "train/aux_loss", "lr": "train/lr",
                "time_s": "train/epoch_seconds"}


def check_trackers(names) -> None:
    """Raise :class:`ConfigError` when a tracker of ``names`` (``wandb``, ``mlflow``) is not installed."""
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise ConfigError(f"--log-with {name} needs the {name} package: pip install {name} (and log in as "
                              f"{name} asks). TensorBoard files are written without it.")


def epoch_scalars(row: dict) -> dict[str, float]:
    """The TensorBoard scalars of one ``history.csv`` row."""
    scalars = {tag: float(row[column]) for column, tag in HISTORY_TAGS.items() if column in row}
    scalars.update({f"val/{k.removeprefix('val_')}": float(v) for k, v in row.items() if k.startswith("val_")})
    return scalars


class RunTracker:
    """The loggers of one run, opened at the first epoch this process logs (:meth:`_open`). Give
    :meth:`epoch_hook` and :meth:`finish_hook` to the trainer."""

    def __init__(self, run: RunDir, config) -> None:
        check_trackers(config.log_with)
        self.run, self.config = run, config
        self.writer, self.trackers = None, []

    def _open(self, epoch: int) -> None:
        """Start the loggers at ``epoch``: TensorBoard's files are rewritten from ``history.csv`` for the epochs
        before it (``purge_step=1`` hides whatever an interrupted process logged), so they hold each saved epoch
        once, whether or not the process that trained it logged it before it stopped."""
        from accelerate.tracking import MLflowTracker, WandBTracker
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.run.tensorboard), purge_step=1)
        name = f"{self.config.dataset}/{self.config.method}/seed{self.config.seed}"
        makers = {"wandb": lambda: WandBTracker("convlora_lite", name=name, dir=str(self.run.path)),
                  "mlflow": lambda: MLflowTracker(experiment_name="convlora_lite", run_name=name)}
        self.trackers = [makers[tracker]() for tracker in self.config.log_with]
        for tracker in self.trackers:
            tracker.start()
            tracker.store_init_configuration({k: v if isinstance(v, (bool, int, float, str)) or v is None else str(v)
                                              for k, v in self.config.to_dict().items()})
        if epoch > 1 and self.run.history.exists():
            for row in self.run.read_history().to_dict("records"):
                if row["epoch"] < epoch:
                    self.log(epoch_scalars(row), int(row["epoch"]), trackers=False)

    def log(self, scalars: dict[str, float], step: int, trackers: bool = True) -> None:
        """Write ``scalars`` (tag -> value) at ``step`` to TensorBoard and, with ``trackers``, every tracker."""
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()
        for tracker in self.trackers if trackers else ():
            tracker.log(scalars, step=step)

    def epoch_hook(self, then: Optional[Callable] = None) -> Callable:
        """The trainer's ``on_epoch_end(epoch, row)``: log the epoch's row (main process), then call ``then``."""
        from accelerate import PartialState

        def on_epoch_end(epoch: int, row: dict) -> None:
            if PartialState().is_main_process:
                if self.writer is None:
                    self._open(epoch)
                self.log(epoch_scalars(row), epoch)
            if then is not None:
                then(epoch, row)
        return on_epoch_end

    def finish_hook(self, then: Optional[Callable] = None) -> Callable:
        """The trainer's ``on_finish(run, spec)``: log the test scores at the best epoch and close, then ``then``."""
        def on_finish(run: RunDir, spec) -> None:
            metrics = run.read_metrics()
            if self.writer is None:  # every epoch was logged by an earlier process
                self._open(metrics["epochs_run"] + 1)
            self.log({f"test/{split}/{k}": float(v) for split, values in metrics["test"].items()
                      for k, v in values.items() if isinstance(v, (int, float))}, metrics["best_epoch"])
            self.close()
            if then is not None:
                then(run, spec)
        return on_finish

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        for tracker in self.trackers:
            tracker.finish()
        self.writer, self.trackers = None, []
