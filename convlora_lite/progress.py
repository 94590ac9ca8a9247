"""What a person sees of a run in progress: bars that stay out of stored notebook outputs, durations, paths.

In a terminal (``convlora train``) and in a live notebook frontend (JupyterLab, Colab) the loops,
downloads and checks show ``tqdm.auto`` bars. A headless run (papermill, nbval: ``CONVLORA_HEADLESS=1``, which the main
job and ``make test`` set) shows no bars, so an executed notebook stores no refresh debris; the
trainer prints its few lines instead, and a notebook one line per run (:class:`convlora_lite.notebook.Session`),
whose paths :func:`hide_folders` writes relative to the notebook's folders (``OUTPUT_DIR/...``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from tqdm.auto import tqdm

#: set to 1 to turn every progress bar off (the main job and the notebook tests do).
HEADLESS_ENV = "CONVLORA_HEADLESS"


def is_headless() -> bool:
    """Whether this process runs headless (no one watches the bars)."""
    return os.environ.get(HEADLESS_ENV, "") not in ("", "0")


def progress_bar(iterable=None, *, total=None, desc: str = "", disable: bool = False, **options):
    """A transient ``tqdm.auto`` bar, disabled when headless or when ``disable``; ``options`` go to
    ``tqdm`` (e.g. ``unit="B", unit_scale=True`` for a download)."""
    return tqdm(iterable, total=total, desc=desc, leave=False, disable=disable or is_headless(), **options)


def format_duration(seconds: float) -> str:
    """``seconds`` as a person reads them: ``"42 s"``, ``"3.5 min"``, ``"2.1 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def hide_folders(text, folders: Mapping[str, Path]) -> str:
    """``text`` (a path or a message) with every folder of ``folders`` (label -> folder) written as its label:
    ``/home/me/runs/sweep_cpu/x`` with ``{"OUTPUT_DIR": "/home/me/runs"}`` gives ``OUTPUT_DIR/sweep_cpu/x``. The
    deepest folder wins where one holds another, and a folder counts only as a whole path component (``/a/runs``
    does not rewrite ``/a/runs2``), so a notebook's outputs name no folder of the machine that ran it."""
    text = str(text)
    resolved = {label: str(Path(folder).resolve()) for label, folder in folders.items()}
    for label, prefix in sorted(resolved.items(), key=lambda item: -len(item[1])):
        text = re.sub(re.escape(prefix) + r"(?![\w-])", lambda _match, label=label: label, text)
    return text
