"""Writing files so that no reader ever sees half of one, and plain JSON values.

Every file the project writes for a user to read back (a run's files, a prediction's masks, an
export, a pretraining state) goes through :func:`atomic_write`: a crash leaves the old file or the
new one, never a partial file to be mistaken for a good one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


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


def jsonable(value):
    """Plain JSON types (numpy / torch scalars to float, tuples to lists)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
