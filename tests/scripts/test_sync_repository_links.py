"""A fork changes REPOSITORY_URL once; the script carries it into the notebooks and the README."""
import json
import shutil
from pathlib import Path

from sync_repository_links import sync

import convlora_lite

REPO = Path(__file__).resolve().parents[2]


def test_the_repository_is_in_sync():
    assert sync(REPO, check=True) == []


def test_a_fork_s_url_reaches_every_install_cell_and_badge(tmp_path, monkeypatch):
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    monkeypatch.setattr(convlora_lite, "REPOSITORY_URL", "https://github.com/someone/my_fork")
    stale = sync(tmp_path, check=True)
    assert len(stale) == len(list((REPO / "notebooks").glob("*.ipynb"))) + 1
    assert sync(tmp_path) == stale and sync(tmp_path, check=True) == []
    notebook = json.loads((tmp_path / "notebooks" / "03_medical.ipynb").read_text())
    install, title = "".join(notebook["cells"][1]["source"]), "".join(notebook["cells"][0]["source"])
    fork = f"git+https://github.com/someone/my_fork@v{convlora_lite.__version__}"
    assert f'!pip install -q "convlora_lite[notebooks] @ {fork}"' in install
    assert "https://colab.research.google.com/github/someone/my_fork/blob/main/notebooks/03_medical.ipynb" in title
    readme = (tmp_path / "README.md").read_text()
    assert "convlora-lite/convlora_lite/blob/main/notebooks" not in readme
    assert readme.count("https://colab.research.google.com/github/someone/my_fork/blob/main/notebooks/") == 12
