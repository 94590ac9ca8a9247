"""Point the notebooks' install cells and every "Open in Colab" / "Open in Kaggle" badge at ``REPOSITORY_URL``.

The repository URL lives in ``convlora_lite.REPOSITORY_URL`` (and pyproject's ``[project.urls]``).
A notebook cannot import the package before it is installed, so its install cell and its badges
carry the URL as text; after a fork changes ``REPOSITORY_URL``, this rewrites them::

    python scripts/sync_repository_links.py            # rewrite notebooks/*.ipynb and README.md
    python scripts/sync_repository_links.py --check    # exit 1 and list the files that are out of date

Every notebook's install cell becomes :data:`INSTALL_CELL` around ``!{install_command()}`` (this version's
tag): it installs on Colab and on Kaggle, nowhere else. Each Colab badge opens that repository's ``main``
branch copy of the notebook on Colab and is followed by the Kaggle badge of the same copy (added where missing).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: the first code cell of every notebook; ``{install}`` is ``convlora_lite.install_command()``. Kaggle sets
#: $KAGGLE_KERNEL_RUN_TYPE ("Interactive" or "Batch") in every kernel, notebook or script (Kaggle's own
#: kagglehub detects its notebooks by it); IPython stores a ``!`` command's exit status in ``_exit_code``
#: (Colab's shell too), so a pip that cannot reach GitHub stops the notebook with what to do.
INSTALL_CELL = """\
import os
import sys
# On Colab or Kaggle, install this notebook's version of convlora_lite; elsewhere, the README's install commands.
# Kaggle kernels set $KAGGLE_KERNEL_RUN_TYPE; there pip needs Internet on (the notebook's Settings/Session options).
if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    !{install}
    if _exit_code:  # pip's exit status (IPython sets _exit_code after a `!` command)
        raise RuntimeError("pip could not install convlora_lite (see above). On Kaggle, switch Internet on in the "
                           "notebook's settings (it needs a phone-verified account) and run this cell again.")"""
_INSTALL = re.compile(r'!pip install -q "convlora_lite\[notebooks\] @ git\+[^"]*"')
_OWNER_NAME = r"[^/\s)]+/[^/\s)]+"
#: a Colab badge, and the Kaggle badge after it when there is one.
_BADGES = re.compile(
    r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]"
    rf"\(https://colab\.research\.google\.com/github/{_OWNER_NAME}/blob/main/(?P<path>notebooks/[^\s)]+)\)"
    r"(?: \[!\[Open In Kaggle\]\(https://kaggle\.com/static/images/open-in-kaggle\.svg\)\]"
    rf"\(https://kaggle\.com/kernels/welcome\?src=https://github\.com/{_OWNER_NAME}/blob/main/notebooks/[^\s)]+\))?")


def colab_prefix(repository_url: str) -> str:
    """``https://colab.research.google.com/github/OWNER/NAME/blob/main/notebooks/`` of a GitHub URL."""
    owner_name = repository_url.rstrip("/").removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_name}/blob/main/notebooks/"


def kaggle_prefix(repository_url: str) -> str:
    """``https://kaggle.com/kernels/welcome?src=https://github.com/OWNER/NAME/blob/main/notebooks/``: Kaggle's
    import of a notebook from its GitHub page."""
    return f"https://kaggle.com/kernels/welcome?src={repository_url.rstrip('/')}/blob/main/notebooks/"


def badges(repository_url: str, file_name: str) -> str:
    """The "Open In Colab" and "Open In Kaggle" badges of ``notebooks/<file_name>``, side by side."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_prefix(repository_url)}{file_name}) "
            f"[![Open In Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)]"
            f"({kaggle_prefix(repository_url)}{file_name})")


def synced_text(text: str, repository_url: str, install: str) -> str:
    """``text`` with every install line and badge pair pointing at ``repository_url``."""
    text = _INSTALL.sub(lambda _: f"!{install}", text)
    return _BADGES.sub(lambda m: badges(repository_url, m["path"].removeprefix("notebooks/")), text)


def install_cell(install: str) -> str:
    """The source of every notebook's install cell (:data:`INSTALL_CELL` around ``install``)."""
    return INSTALL_CELL.replace("{install}", install)


def sync(root: Path = REPO, check: bool = False) -> list[Path]:
    """Rewrite (or with ``check`` only list) the notebooks and the README that are out of date: a notebook's
    install cell (the code cell that runs the install command) becomes :func:`install_cell` whole."""
    from convlora_lite import REPOSITORY_URL, install_command

    stale = []
    for path in [*sorted((root / "notebooks").glob("*.ipynb")), root / "README.md"]:
        text = path.read_text()
        if path.suffix == ".ipynb":
            notebook = json.loads(text)
            for cell in notebook["cells"]:
                source = "".join(cell["source"])
                if cell["cell_type"] == "code" and _INSTALL.search(source):
                    source = install_cell(install_command())
                cell["source"] = synced_text(source, REPOSITORY_URL, install_command()).splitlines(keepends=True)
            new = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
        else:
            new = synced_text(text, REPOSITORY_URL, install_command())
        if new != text:
            stale.append(path)
            if not check:
                path.write_text(new)
    return stale


def sync_command(sync_files, description: str, argv: list[str] | None = None) -> int:
    """The command line of a sync script: ``sync_files(check=...)`` rewrites (or with ``--check`` only lists)
    the files that are out of date; exit 1 when ``--check`` finds any. Shared with ``sync_notebook_cells.py``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="only list the files that are out of date")
    args = parser.parse_args(argv)
    stale = sync_files(check=args.check)
    for path in stale:
        print(("out of date: " if args.check else "rewrote: ") + str(path.relative_to(REPO)))
    return 1 if args.check and stale else 0


def main(argv: list[str] | None = None) -> int:
    return sync_command(sync, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
