"""One process at a time on a shared folder: :func:`exclusive`, a file lock beside the folder.

Two notebooks of the main job (``scripts/run_notebooks.py --jobs 2``), two sweeps or two terminals may
ask for the same run directory or the same synthetic dataset. The second waits for the first and
then reads what it wrote: a finished run is not trained again, a generated analog is not generated
again, and neither writes into the other's files.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


@contextmanager
def exclusive(folder, log=print):
    """Hold the lock ``{parent}/.{name}.lock`` of ``folder`` for the block (the parent is created
    if needed; the folder itself is not). When another process holds it, say so through ``log`` and
    wait for it. Under a multi-process launch (``WORLD_SIZE`` > 1) no lock is taken: the launcher's
    processes share one run on purpose."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        yield
        return
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder.parent / f".{folder.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"{folder} is in use by another process: waiting until it is done.")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
