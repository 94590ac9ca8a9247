"""Keep the cells the domain notebooks share (03-07) identical: one source, ``scripts/domain_cells/``.

The domain notebooks are one lesson told five times (medical, natural images, agriculture, remote sensing,
multi-class): their parameters cell, the session cell, "which mode is this?", the zero-shot, recipe,
training and takeaways frames and the exercises are the same text, while the domain prose stays
hand-written in each. A shared cell carries ``"convlora_shared": "<name>"`` in its metadata, and its
source is ``scripts/domain_cells/<name>.md`` (a markdown cell) or ``<name>.code`` (a code cell)::

    python scripts/sync_notebook_cells.py            # rewrite the shared cells of notebooks/*.ipynb
    python scripts/sync_notebook_cells.py --check    # exit 1 and list the notebooks that are out of date

(The install cell and the Colab and Kaggle badges are kept in sync by ``scripts/sync_repository_links.py``.)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from sync_repository_links import sync_command

REPO = Path(__file__).resolve().parents[1]
#: the notebooks that share the cells, and the cells every one of them has.
DOMAIN_NOTEBOOKS = ("03_medical", "04_natural_images", "05_agriculture", "06_remote_sensing", "07_multiclass")
SHARED = ("parameters", "session", "which_mode", "zero_shot", "recipe", "training", "takeaways", "show_takeaways",
          "exercises")
META_KEY = "convlora_shared"


def shared_source(name: str, root: Path = REPO) -> tuple[str, str]:
    """``(cell type, source)`` of the shared cell ``name``."""
    folder = root / "scripts" / "domain_cells"
    for suffix, kind in ((".md", "markdown"), (".code", "code")):
        path = folder / f"{name}{suffix}"
        if path.exists():
            return kind, path.read_text().removesuffix("\n")
    raise FileNotFoundError(f"no shared cell {name!r} in {folder}")


def sync(root: Path = REPO, check: bool = False) -> list[Path]:
    """Rewrite (or with ``check`` only list) the notebooks whose shared cells differ from their source, or
    that lack one of :data:`SHARED`."""
    stale = []
    for name in DOMAIN_NOTEBOOKS:
        path = root / "notebooks" / f"{name}.ipynb"
        text = path.read_text()
        notebook = json.loads(text)
        found = set()
        for cell in notebook["cells"]:
            key = cell.get("metadata", {}).get(META_KEY)
            if key is None:
                continue
            kind, source = shared_source(key, root)
            if cell["cell_type"] != kind:
                raise ValueError(f"{path.name}: the cell marked {key!r} is {cell['cell_type']}, its source {kind}")
            cell["source"] = source.splitlines(keepends=True)
            found.add(key)
        new = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
        if new != text or set(SHARED) - found:
            stale.append(path)
            if not check and new != text:
                path.write_text(new)
    return stale


def main(argv: list[str] | None = None) -> int:
    return sync_command(sync, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
