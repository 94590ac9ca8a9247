"""A fork changes REPOSITORY_URL once; the script carries it into the notebooks and the README: the install cell
(one text, :data:`INSTALL_CELL`, which installs on Colab and Kaggle only) and the Colab and Kaggle badges."""
import json
import shutil
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from sync_repository_links import install_cell, sync

import convlora_lite

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_FILES = sorted((REPO / "notebooks").glob("*.ipynb"))


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
    assert install == install_cell(f'pip install -q "convlora_lite[notebooks] @ {fork}"')
    assert "https://colab.research.google.com/github/someone/my_fork/blob/main/notebooks/03_medical.ipynb" in title
    kaggle = "https://kaggle.com/kernels/welcome?src=https://github.com/someone/my_fork/blob/main/notebooks/"
    assert f"{kaggle}03_medical.ipynb" in title
    readme = (tmp_path / "README.md").read_text()
    assert "convlora-lite/convlora_lite/blob/main/notebooks" not in readme
    colab = "https://colab.research.google.com/github/someone/my_fork/blob/main/notebooks/"
    assert readme.count(colab) == len(NOTEBOOK_FILES)
    assert readme.count(kaggle) == len(NOTEBOOK_FILES) and f"{kaggle}11_your_own_data.ipynb)" in readme


def test_a_colab_only_notebook_gets_the_kaggle_badge_and_the_install_cell(tmp_path):
    """The form before Kaggle: a Colab badge alone, a Colab-only install cell. The script adds the Kaggle badge
    beside the Colab one and replaces the whole cell."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    current = (REPO / "notebooks" / "05_agriculture.ipynb").read_text()
    notebook = json.loads(current)
    title = "".join(notebook["cells"][0]["source"])
    notebook["cells"][0]["source"] = title[:title.index(" [![Open In Kaggle]")].splitlines(keepends=True)
    notebook["cells"][1]["source"] = ['import sys\n', 'if "google.colab" in sys.modules:  # on Colab only\n',
                                      '    !pip install -q "convlora_lite[notebooks] @ git+https://x/y@v0.0.1"']
    path = tmp_path / "notebooks" / "05_agriculture.ipynb"
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    assert sync(tmp_path) == [path]
    assert path.read_text() == current


def test_the_install_cell_installs_on_colab_and_kaggle_only_and_says_what_to_do_when_pip_fails(tmp_path):
    """The cell in a real kernel, with `!true`/`!false` in place of pip: it runs nowhere but on Colab (the
    google.colab module) and Kaggle ($KAGGLE_KERNEL_RUN_TYPE), and a failed pip stops the notebook saying why."""
    def cell(source):
        return nbformat.v4.new_code_cell(source)

    nb = nbformat.v4.new_notebook(cells=[
        cell('import os, sys\nos.environ.pop("KAGGLE_KERNEL_RUN_TYPE", None)\nsys.modules.pop("google.colab", None)'),
        cell(install_cell("false")),  # locally: nothing runs
        cell('os.environ["KAGGLE_KERNEL_RUN_TYPE"] = "Interactive"'),
        cell(install_cell("echo installed on kaggle")),
        cell(install_cell("false")),  # Kaggle with Internet off: pip fails
        cell('import types\ndel os.environ["KAGGLE_KERNEL_RUN_TYPE"]\n'
             'sys.modules["google.colab"] = types.ModuleType("google.colab")'),
        cell(install_cell("echo installed on colab")),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=120, allow_errors=True, resources={"metadata": {"path": str(tmp_path)}},
                   extra_arguments=["--IPKernelApp.log_level=CRITICAL"]).execute()

    def said(index):
        return "".join(o.get("text", "") + o.get("evalue", "") for o in nb.cells[index].outputs)

    assert said(1) == "" and said(3).strip() == "installed on kaggle" and said(6).strip() == "installed on colab"
    (error,) = [o for o in nb.cells[4].outputs if o["output_type"] == "error"]
    assert error["ename"] == "RuntimeError" and "switch Internet on" in error["evalue"]
    assert not any(o["output_type"] == "error" for i, c in enumerate(nb.cells) if i != 4 for o in c.outputs)
