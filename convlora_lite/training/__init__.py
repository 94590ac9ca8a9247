"""Training: the config and its presets, the optimiser and schedule, the trainer, evaluation,
the losses and metrics, the run directory and sweeps over grids of runs."""
from convlora_lite.training.config import DEVICES, PRECISIONS, TrainConfig
from convlora_lite.training.devices import end_distributed
from convlora_lite.training.evaluation import evaluate, evaluate_model
from convlora_lite.training.model import build_model, load_run
from convlora_lite.training.presets import PRESET_NAMES, get_preset
from convlora_lite.training.rundir import RunDir
from convlora_lite.training.trainer import Trainer, fit

__all__ = ["DEVICES", "PRECISIONS", "PRESET_NAMES", "RunDir", "TrainConfig", "Trainer", "build_model",
           "end_distributed", "evaluate", "evaluate_model", "fit", "get_preset", "load_run"]
