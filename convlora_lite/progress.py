"""Progress bars that stay out of stored notebook outputs.

In a terminal (``convlora train``) and in a live notebook frontend (JupyterLab, Colab) the loops,
downloads and checks show ``tqdm.auto`` bars. A headless run (papermill, nbval: ``CONVLORA_HEADLESS=1``, which the main
job and ``make test`` set) shows no bars, so an executed notebook stores no refresh debris; the
trainer prints one line per epoch instead.
"""
from __future__ import annotations

import os

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
