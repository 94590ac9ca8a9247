"""What the notebook presenters share: showing an object in the notebook, and where the kernel runs."""
from __future__ import annotations

import sys

#: where Colab mounts Google Drive (``drive.mount``); outputs under it survive the session.
COLAB_DRIVE = "/content/drive"


def on_colab() -> bool:
    """Whether this kernel runs on Google Colab."""
    return "google.colab" in sys.modules


def show(*objects) -> None:
    """Display ``objects`` in the notebook (IPython's ``display``: tables as HTML, figures as pictures)."""
    from IPython.display import display

    display(*objects)
