"""Point the notebooks' Colab install cells and every "Open in Colab" badge at ``REPOSITORY_URL``.

The repository URL lives in ``convlora_lite.REPOSITORY_URL`` (and pyproject's ``[project.urls]``).
A notebook cannot import the package before it is installed, so its install cell and its badge
carry the URL as text; after a fork changes ``REPOSITORY_URL``, this rewrites them::

    python scripts/sync_repository_links.py            # rewrite notebooks/*.ipynb and README.md
    python scripts/sync_repository_links.py --check    # exit 1 and list the files that are out of date

The install cell becomes ``!{install_command()}`` (this version's tag), and each badge opens that
repository's ``main`` branch copy of the notebook on Colab.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_INSTALL = re.compile(r'!pip install -q "convlora_lite\[notebooks\] @ git\+[^"]*"')
_BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/main/notebooks/")


def colab_prefix(repository_url: str) -> str:
    """``https://colab.research.google.com/github/OWNER/NAME/blob/main/notebooks/`` of a GitHub URL."""
    owner_name = repository_url.rstrip("/").removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_name}/blob/main/notebooks/"


def synced_text(text: str, repository_url: str, install: str) -> str:
    """``text`` with every install line and badge prefix pointing at ``repository_url``."""
    return _BADGE.sub(colab_prefix(repository_url), _INSTALL.sub(lambda _: f"!{install}", text))


def sync(root: Path = REPO, check: bool = False) -> list[Path]:
    """Rewrite (or with ``check`` only list) the notebooks and the README that are out of date."""
    from convlora_lite import REPOSITORY_URL, install_command

    stale = []
    for path in [*sorted((root / "notebooks").glob("*.ipynb")), root / "README.md"]:
        text = path.read_text()
        if path.suffix == ".ipynb":
            notebook = json.loads(text)
            for cell in notebook["cells"]:
                source = "".join(cell["source"])
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
