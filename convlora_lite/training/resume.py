"""What a run directory already holds, and the random streams a resumed run restores.

A run directory (:class:`~convlora_lite.training.rundir.RunDir`) is started, resumed or found finished by
:func:`previous_state`; each epoch saves every process's random state (:func:`rng_state`), and a resumed run
restores it (:func:`set_rng_state`), so that ``--resume`` ends exactly where an uninterrupted run ends.
"""
from __future__ import annotations

import random
from typing import Callable

import numpy as np
import torch

from convlora_lite.errors import ConfigError
from convlora_lite.training.config import TrainConfig
from convlora_lite.training.rundir import RunDir


def previous_state(config: TrainConfig, run: RunDir, log: Callable[[str], None]) -> dict:
    """What ``run`` already holds for ``config``: ``{}`` for a fresh run, ``{"completed": True}`` for a
    finished one, ``{"resume": state}`` to continue (``config.resume``). A run directory that holds a run of
    another configuration, or a run when ``resume`` is off, is a :class:`ConfigError` that says what to do."""
    if not run.config.exists():
        if config.resume:
            log(f"Nothing to resume in {run.path}: starting a new run.")
        return {}
    if not config.resume:
        raise ConfigError(f"{run.path} already holds a run. Pass --resume to continue it, "
                          "or choose another --output-dir (or delete that folder).")
    stored = TrainConfig.with_defaults(run.read_config_dict())
    changed = config.changed_fields(stored)
    if changed:
        current = config.to_dict()
        details = "; ".join(f"{k}: run has {stored.get(k)!r}, now {current[k]!r}" for k in changed)
        raise ConfigError(f"Cannot resume {run.path} with a different configuration ({details}). "
                          "Use the same options, or another --output-dir for a new run.")
    if run.is_complete():
        log(f"{run.path} is already complete: nothing to resume.")
        return {"completed": True}
    if not run.resume_state.exists():
        log(f"{run.path} has no completed epoch: starting it again.")
        return {}
    return {"resume": run.load_state()}


def rng_state() -> dict:
    """This process's random streams: torch (and CUDA's), numpy, Python's ``random``."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
