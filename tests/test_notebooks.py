"""Every notebook follows the conventions (notebook brief): header cells in order, Colab and Kaggle badges
naming its own file, an install cell that runs on Colab and Kaggle only, one `parameters` cell with environment
defaults, offline statement, papermill reads every parameter, python3 kernel, valid nbformat, no outputs and no
widget metadata GitHub cannot show. The checker is shown to catch each broken rule on a bad notebook."""
import copy
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from papermill.translators import PythonTranslator

from convlora_lite import REPOSITORY_URL, install_command

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from run_notebooks import WIDGET_STATE, widget_metadata_problem  # noqa: E402

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
REQUIRED_PARAMETERS = ("PRESET", "DATA_ROOT", "CHECKPOINT", "OUTPUT_DIR")
#: the same budget knobs in every notebook (None: the preset's), passed to convlora_lite.notebook.Session
BUDGET_KNOBS = ("SEEDS", "EPOCHS", "IMAGE_SIZE", "MAX_TRAIN_BATCHES")


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def notebook_problems(nb: dict, file_name: str) -> list[str]:
    """Every convention ``nb`` (parsed .ipynb JSON) breaks, as readable sentences."""
    problems = []
    cells = nb.get("cells", [])
    if nb.get("nbformat") != 4:
        problems.append("not nbformat 4")
    try:
        nbformat.validate(nbformat.from_dict(copy.deepcopy(nb)))
    except nbformat.ValidationError as err:
        problems.append(f"not a valid notebook (nbformat's schema): {str(err).splitlines()[0]}")
    widgets = widget_metadata_problem(nb)
    if widgets:
        problems.append(widgets)
    if nb.get("metadata", {}).get("kernelspec", {}).get("name") != "python3":
        problems.append("kernelspec name is not python3")
    if len(cells) < 4:
        return problems + ["fewer than the 4 header cells"]
    title, install, params, mode = cells[:4]
    number = file_name[:2]
    text = _source(title)
    if title["cell_type"] != "markdown" or not re.match(rf"# {number} · \S", text):
        problems.append(f"cell 1 is not a markdown title '# {number} · Title'")
    if "What you will learn" not in text:
        problems.append("cell 1 lacks 'What you will learn'")
    owner_name = REPOSITORY_URL.removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{owner_name}/blob/main/notebooks/{file_name})"
    if "colab-badge.svg" not in text or badge not in text:
        problems.append("cell 1 lacks a Colab badge that names this notebook's file")
    kaggle = f"https://kaggle.com/kernels/welcome?src={REPOSITORY_URL}/blob/main/notebooks/{file_name})"
    if "open-in-kaggle.svg" not in text or kaggle not in text:
        problems.append("cell 1 lacks a Kaggle badge that names this notebook's file")
    on_colab_or_kaggle = 'if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:'
    if install["cell_type"] != "code" or on_colab_or_kaggle not in _source(install) \
            or "pip install" not in _source(install):
        problems.append("cell 2 is not the install cell that runs on Colab and Kaggle only")
    elif f"!{install_command()}" not in _source(install):
        problems.append(f"cell 2 does not run `{install_command()}` (convlora_lite.install_command(): this "
                        "version, from REPOSITORY_URL)")
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if tagged != [2]:
        problems.append(f"exactly one cell, the third, must be tagged parameters (tagged: {tagged})")
    p = _source(params)
    if params["cell_type"] != "code" or 'os.environ.get("CONVLORA_PRESET", "cpu")' not in p:
        problems.append("the parameters cell does not take PRESET from $CONVLORA_PRESET with default 'cpu'")
    for name in REQUIRED_PARAMETERS:
        if not re.search(rf"^{name} = os\.environ\.get\(\"CONVLORA_{name}\"", p, re.M):
            problems.append(f"the parameters cell does not take {name} from the environment")
    for knob in BUDGET_KNOBS:
        if not re.search(rf"^{knob} = ", p, re.M):
            problems.append(f"the parameters cell lacks the budget knob {knob}")
    unparsed = set(re.findall(r"^(\w+) = ", p, re.M)) - {
        q.name for q in PythonTranslator.inspect(nbformat.from_dict({**params, "source": p}))}
    if unparsed:
        problems.append(f"papermill cannot read the parameter(s) {sorted(unparsed)} "
                        "(a second '=' on the line, e.g. in the comment)")
    statement = _source(mode).lower()
    if mode["cell_type"] != "markdown" or not all(w in statement
                                                  for w in ("offline", "micro_sam", "synth", "paper scale")):
        problems.append("cell 4 is not the markdown statement of the offline mode and what changes at paper scale")
    session = "".join(_source(c) for c in cells[4:6] if c["cell_type"] == "code")
    if "nb.Session(PRESET, DATA_ROOT, CHECKPOINT, OUTPUT_DIR" not in session:
        problems.append("the session (which prints the mode) is not made right after the statement")
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            problems.append(f"cell {i + 1} has outputs or an execution count")
    ids = [cell.get("id") for cell in cells]
    if nb.get("nbformat_minor", 0) >= 5 and (None in ids or len(set(ids)) < len(ids)):
        problems.append("a cell has no id or shares another's (nbformat 4.5 wants unique ids; a missing one makes "
                        "nbformat warn on every run)")
    return problems


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_conventions(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name)
    assert notebook_problems(json.loads(path.read_text()), path.name) == []


def _good_notebook() -> dict:
    file_name = "05_example.ipynb"
    ids = iter(range(100))

    def code(s, **meta):
        return {"cell_type": "code", "id": f"c{next(ids)}", "metadata": meta, "source": s, "outputs": [],
                "execution_count": None}

    def md(s):
        return {"cell_type": "markdown", "id": f"c{next(ids)}", "metadata": {}, "source": s}

    kernel = {"name": "python3", "display_name": "Python 3"}
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": kernel}, "cells": [
        md("# 05 · Example\n\n**What you will learn**\n\n- x\n\n[![Open In Colab](https://colab.research.google.com/"
           f"assets/colab-badge.svg)](https://colab.research.google.com/github/convlora-lite/convlora_lite/blob/main/notebooks/{file_name})"
           " [![Open In Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)](https://kaggle.com/kernels/"
           f"welcome?src=https://github.com/convlora-lite/convlora_lite/blob/main/notebooks/{file_name})"),
        code(f'import os\nimport sys\nif "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:\n'
             f'    !{install_command()}'),
        code("import os\n" + "\n".join(f'{n} = os.environ.get("CONVLORA_{n}", "{"cpu" if n == "PRESET" else "x"}")'
                                       for n in REQUIRED_PARAMETERS)
             + "\nSEEDS = 0\nEPOCHS = None\nIMAGE_SIZE = None\nMAX_TRAIN_BATCHES = None", tags=["parameters"]),
        md("Offline: micro_sam on synth_<task> analogs; at paper scale real data."),
        code('from convlora_lite import notebook as nb\n'
             'session = nb.Session(PRESET, DATA_ROOT, CHECKPOINT, OUTPUT_DIR)'),
    ]}


BREAKAGES = {
    "wrong badge file": lambda nb: nb["cells"][0].update(
        source=nb["cells"][0]["source"].replace("05_example", "06_other")),
    "no what you will learn": lambda nb: nb["cells"][0].update(
        source=nb["cells"][0]["source"].replace("What you will learn", "")),
    "no kaggle badge": lambda nb: nb["cells"][0].update(
        source=nb["cells"][0]["source"].split(" [![Open In Kaggle]")[0]),
    "install not colab-only": lambda nb: nb["cells"][1].update(source="!pip install -q convlora_lite"),
    "install colab-only, not on kaggle": lambda nb: nb["cells"][1].update(source=nb["cells"][1]["source"].replace(
        ' or "KAGGLE_KERNEL_RUN_TYPE" in os.environ', "")),
    "install unpinned": lambda nb: nb["cells"][1].update(source=nb["cells"][1]["source"].replace("@v", "@main#")),
    "parameters untagged": lambda nb: nb["cells"][2].update(metadata={}),
    "two parameters cells": lambda nb: nb["cells"][4]["metadata"].update(tags=["parameters"]),
    "preset default smoke": lambda nb: nb["cells"][2].update(
        source=nb["cells"][2]["source"].replace('"cpu"', '"smoke"')),
    "hard-coded data root": lambda nb: nb["cells"][2].update(source=nb["cells"][2]["source"].replace(
        'DATA_ROOT = os.environ.get("CONVLORA_DATA_ROOT", "x")', 'DATA_ROOT = "data"')),
    "kernel": lambda nb: nb["metadata"]["kernelspec"].update(name="python2"),
    "outputs kept": lambda nb: nb["cells"][4].update(outputs=[{"output_type": "stream", "text": "x"}],
                                                     execution_count=3),
    "no offline statement": lambda nb: nb["cells"][3].update(source="Let us start."),
    "mode not printed": lambda nb: nb["cells"][4].update(source="x = 1"),
    "parameter papermill cannot read": lambda nb: nb["cells"][2].update(
        source=nb["cells"][2]["source"] + "\nN_IMAGES = 4  # 4 = shown"),
    "no budget knob": lambda nb: nb["cells"][2].update(source=nb["cells"][2]["source"].replace("EPOCHS = None", "")),
    "title without number": lambda nb: nb["cells"][0].update(source=nb["cells"][0]["source"].replace("# 05 · ", "# ")),
    "invalid nbformat": lambda nb: nb["cells"][3].update(outputs=[]),  # a markdown cell has no outputs
    "cell without an id": lambda nb: nb["cells"][3].pop("id"),
    "two cells with one id": lambda nb: nb["cells"][3].update(id=nb["cells"][2]["id"]),
    # as Colab saves widgets: GitHub shows "Invalid Notebook: the 'state' key is missing from 'metadata.widgets'"
    "widget metadata without state": lambda nb: nb["metadata"].update(
        widgets={WIDGET_STATE: {"m1": {"model_name": "IntSliderModel", "state": {"value": 0}}}}),
}


def test_the_checker_accepts_a_good_notebook():
    assert notebook_problems(_good_notebook(), "05_example.ipynb") == []


@pytest.mark.filterwarnings("ignore:Cell is missing an id field", "ignore:Non-unique cell id")  # what is tested
@pytest.mark.parametrize("breakage", BREAKAGES)
def test_the_checker_fails_a_notebook_that_breaks_a_rule(breakage):
    nb = copy.deepcopy(_good_notebook())
    BREAKAGES[breakage](nb)
    assert notebook_problems(nb, "05_example.ipynb") != []
