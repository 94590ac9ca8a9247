"""Writing files so that no reader ever sees half of one, reading PyTorch files without running code, and plain
JSON values.

Every file the project writes for a user to read back (a run's files, a prediction's masks, an
export, a pretraining state) goes through :func:`atomic_write`: a crash leaves the old file or the
new one, never a partial file to be mistaken for a good one. A folder written as one thing (a Hub
export, a downloaded Hub repository) goes through :func:`atomic_folder`.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

from convlora_lite.errors import CheckpointError


def atomic_write(path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then move it onto ``path``
    (``os.replace``, atomic on one file system); the temporary file is removed if ``write`` fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_folder(path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on an empty temporary folder next to ``path``, then move it onto ``path``; the
    temporary folder is removed if ``write`` fails, so no half-written folder is ever at ``path``. An existing
    ``path`` is replaced: moved aside, the new folder moved in (put back if that fails), then deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = (path.with_name(f".{path.name}.{what}{os.getpid()}") for what in ("tmp", "old"))
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        if path.exists():
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if old.exists():
                os.replace(old, path)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def jsonable(value):
    """Plain JSON types (numpy / torch scalars to float, tuples to lists)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def load_torch_file(path, what: str, allowed: Sequence = ()) -> Any:
    """``torch.load(path)`` on the CPU with ``weights_only=True``: tensors, plain Python values, numpy arrays (the
    random states a resume file holds) and the classes in ``allowed``, nothing else. Python's full unpickler would
    run whatever code a file names; a file that needs it raises :class:`CheckpointError` saying that ``what`` (e.g.
    "the resume state of runs/x") was not loaded and why."""
    import torch

    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch 2.5 and later
    with safe_globals([*_numpy_array_globals(), *allowed]) if safe_globals else nullcontext():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            named = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
            raise CheckpointError(
                f"{path} ({what}) holds Python objects other than tensors and plain values"
                f"{f' ({named.group(1)})' if named else ''}, and was not loaded: reading them could run code. If this "
                "project wrote it, it is from an older version or was changed since: delete it and start again."
            ) from err


def _numpy_array_globals() -> list:
    """What a pickled numpy array names: its reconstructor, ``ndarray``, ``dtype`` and the array's dtype class."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32)), type(np.dtype(np.float64))]
