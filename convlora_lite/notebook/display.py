"""What the notebook presenters share: showing an object in the notebook, and where the kernel runs."""
from __future__ import annotations

import os
import sys

#: where Colab mounts Google Drive (``drive.mount``); outputs under it survive the session.
COLAB_DRIVE = "/content/drive"
#: a Kaggle notebook's working directory: what is under it is kept as the notebook's output when a version is
#: saved ("Save & Run All"); anything elsewhere ends with the session.
KAGGLE_WORKING = "/kaggle/working"


def on_colab() -> bool:
    """Whether this kernel runs on Google Colab."""
    return "google.colab" in sys.modules


def on_kaggle() -> bool:
    """Whether this kernel runs on Kaggle: every Kaggle kernel sets ``$KAGGLE_KERNEL_RUN_TYPE`` (``Interactive``
    or ``Batch``), which Kaggle's own ``kagglehub`` reads to tell its notebooks."""
    return "KAGGLE_KERNEL_RUN_TYPE" in os.environ


def show(*objects) -> None:
    """Display ``objects`` in the notebook (IPython's ``display``: tables as HTML, figures as pictures)."""
    from IPython.display import display

    display(*objects)
