"""The cells the domain notebooks 03-07 share come from one source (scripts/domain_cells), kept in sync."""
import json
import shutil
from pathlib import Path

import pytest
from sync_notebook_cells import DOMAIN_NOTEBOOKS, META_KEY, SHARED, sync

REPO = Path(__file__).resolve().parents[2]


def test_the_domain_notebooks_are_in_sync_and_share_every_cell():
    assert sync(REPO, check=True) == []
    for name in DOMAIN_NOTEBOOKS:
        cells = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())["cells"]
        assert set(SHARED) <= {cell["metadata"].get(META_KEY) for cell in cells}, name


@pytest.fixture
def copy(tmp_path):
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    shutil.copytree(REPO / "scripts" / "domain_cells", tmp_path / "scripts" / "domain_cells")
    return tmp_path


def test_an_edit_of_the_source_reaches_all_five_notebooks(copy):
    source = copy / "scripts" / "domain_cells" / "training.md"
    source.write_text(source.read_text() + "\nOne more sentence for every domain notebook.\n")
    assert len(sync(copy, check=True)) == len(DOMAIN_NOTEBOOKS)
    assert len(sync(copy)) == len(DOMAIN_NOTEBOOKS) and sync(copy, check=True) == []
    for name in DOMAIN_NOTEBOOKS:
        cells = json.loads((copy / "notebooks" / f"{name}.ipynb").read_text())["cells"]
        training = [cell for cell in cells if cell["metadata"].get(META_KEY) == "training"]
        assert "".join(training[0]["source"]).endswith("One more sentence for every domain notebook.")


def test_a_notebook_that_drifted_or_lost_a_shared_cell_is_out_of_date(copy):
    path = copy / "notebooks" / "05_agriculture.ipynb"
    notebook = json.loads(path.read_text())
    [recipe] = [cell for cell in notebook["cells"] if cell["metadata"].get(META_KEY) == "recipe"]
    recipe["source"] = ["### The recipe\n", "\n", "edited by hand"]
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    assert sync(copy, check=True) == [path]
    assert sync(copy) == [path] and sync(copy, check=True) == []
    notebook = json.loads(path.read_text())
    del notebook["cells"][[c["metadata"].get(META_KEY) for c in notebook["cells"]].index("exercises")]
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    assert sync(copy, check=True) == [path]  # a shared cell missing is reported, never invented
