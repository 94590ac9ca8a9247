"""The main job executes notebooks with papermill, keeps going past a failure and indexes figures."""
import copy
import json
import os

import nbformat
import pytest
from run_notebooks import (
    WIDGET_STATE,
    drop_stateless_widgets,
    notebook_paths,
    results_sections,
    run_notebooks,
    start_order,
    widget_metadata_problem,
)

from convlora_lite.training.rundir import RunDir


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("PRESET = 'cpu'\nDATA_ROOT = None\nOUTPUT_DIR = None\nCHECKPOINT = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, str(path))


def test_runs_every_notebook_and_indexes_figures(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "00_plot.ipynb",
              "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
              "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0]); plt.title(PRESET); plt.show()")
    _notebook(folder / "01_fails.ipynb", "raise RuntimeError('on purpose')")
    _notebook(folder / "02_after.ipynb", "assert PRESET == 'smoke', PRESET")
    (folder / "README_not_numbered.ipynb").write_text("{}")
    assert [p.name for p in notebook_paths(folder)] == ["00_plot.ipynb", "01_fails.ipynb", "02_after.ipynb"]

    out = tmp_path / "outputs"
    results = run_notebooks(out, preset="smoke", folder=folder, timeout=120, log=lambda *_: None)

    assert [r["ok"] for r in results] == [True, False, True]  # the failure did not stop 02
    assert "on purpose" in results[1]["error"]
    (figure,) = results[0]["figures"]
    assert figure.read_bytes().startswith(b"\x89PNG")
    index = (out / "index.md").read_text()
    assert "| [01_fails.ipynb](notebooks/01_fails.ipynb) | FAILED" in index
    assert f"![{figure.stem}](figures/{figure.name})" in index
    assert (out / "notebooks" / "02_after.ipynb").exists()


def test_index_tables_every_finished_run_of_each_sweep(tmp_path, fake_run):
    def run(dataset, method, seed, s_alpha):
        fake_run(RunDir.of(tmp_path / "runs" / "sweep_cpu", dataset, method, seed).path, dataset, method, seed,
                 {"test": {"s_alpha": s_alpha, "e_phi": 0.5, "iou": 0.5, "dice": 0.5}})

    run("synth_polyp", "lora", 1, 0.40)
    run("synth_polyp", "lora", 2, 0.50)
    run("synth_leaf", "conv_lora", 1, 0.25)
    (tmp_path / "runs" / "sweep_smoke").mkdir()  # no finished run: no section
    text = "\n".join(results_sections(tmp_path))
    assert text.count("## Results: ") == 1 and "runs/sweep_cpu" in text
    assert text.index("### synth_leaf") < text.index("### synth_polyp")
    polyp = text[text.index("### synth_polyp"):]
    assert "| lora | 50.0 ± 0.0 | 45.0 ± 7.1 |" in polyp  # e_phi, s_alpha: x100, mean ± sample std of 2 seeds
    assert "| conv_lora |" not in polyp


def test_a_figure_without_a_picture_and_output_debris_fail_the_notebook(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    # a bare Figure displayed with the inline backend off: IPython shows only its text repr
    _notebook(folder / "00_text_figure.ipynb",
              "import matplotlib\nmatplotlib.use('agg')\nfrom matplotlib.figure import Figure\n"
              "fig = Figure(figsize=(2, 2)); fig.subplots().plot([0, 1])\ndisplay(fig)")
    # one noisy cell among 14 quiet ones: 7 outputs there, 21 in all (an average of 1.4 per cell)
    quiet = ["import sys\nfor i in range(30):\n    print(i); sys.stdout.flush()"] + ["x = 1"] * 12
    _notebook(folder / "01_debris.ipynb", *quiet, "for i in range(7):\n    display(i)")
    _notebook(folder / "02_warning.ipynb", "import warnings\nwarnings.warn('on purpose')")
    _notebook(folder / "03_inline.ipynb",  # what Session does: %matplotlib inline registers the PNG formatter
              "get_ipython().run_line_magic('matplotlib', 'inline')\n"
              "from matplotlib.figure import Figure\nfig = Figure(figsize=(2, 2)); fig.subplots().plot([0, 1])\n"
              "display(fig)", *quiet)
    results = run_notebooks(tmp_path / "out", preset="smoke", folder=folder, timeout=120, log=lambda *_: None)
    assert [r["ok"] for r in results] == [False, False, False, True], [r["error"] for r in results]
    assert "shows '<Figure size 200x200 with 1 Axes>' but no image" in results[0]["error"]
    # counted in the executed notebook: the parameters cell, papermill's injected cell, 13 quiet ones, the noisy one
    assert "code cell 16 stores 7 outputs (more than 6)" in results[1]["error"]
    assert "code cell 3 " not in results[1]["error"]  # 30 prints in a row are one block
    assert "code cell 3 wrote to stderr:" in results[2]["error"] and "on purpose" in results[2]["error"]
    assert len(results[3]["figures"]) == 1


def test_parameters_reach_the_notebooks_that_declare_them_and_memory_peaks_are_recorded(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "00_knob.ipynb", "assert EPOCHS == 1 and CHECKPOINT == '/x.pth', (EPOCHS, CHECKPOINT)")
    path = folder / "00_knob.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[0].source += "\nEPOCHS = None"
    nbformat.write(nb, str(path))
    # 01 declares no EPOCHS: it gets none; 200 MB held for a second shows in its peak
    _notebook(folder / "01_memory.ipynb", "assert 'EPOCHS' not in globals()\n"
              "import time\nblock = bytearray(200 * 10**6)\nfor i in range(0, len(block), 4096):\n    block[i] = 1\n"
              "time.sleep(1.0)")
    results = run_notebooks(tmp_path / "out", preset="smoke", folder=folder, timeout=120, log=lambda *_: None,
                            parameters={"EPOCHS": 1, "CHECKPOINT": "/x.pth"})
    assert [r["ok"] for r in results] == [True, True], [r["error"] for r in results]
    assert results[1]["peak_gb"] > 0.2 and results[1]["peak_gb"] > results[0]["peak_gb"]
    assert "| host peak (GB) |" in (tmp_path / "out" / "index.md").read_text()


def test_jobs_run_notebooks_side_by_side_with_their_share_of_threads(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    for name in ("00_a", "01_b", "02_c"):  # each records when it ran and how many threads its kernel got
        _notebook(folder / f"{name}.ipynb",
                  "import os, time, json\nstart = time.time()\ntime.sleep(2.0)\n"
                  f"open({str(stamps / name)!r}, 'w').write(json.dumps([start, time.time(), "
                  "os.environ.get('OMP_NUM_THREADS')]))")
    said = []
    results = run_notebooks(tmp_path / "out", preset="smoke", folder=folder, timeout=120, log=said.append, jobs=2)
    assert [r["name"] for r in results] == ["00_a.ipynb", "01_b.ipynb", "02_c.ipynb"]  # reading order
    assert all(r["ok"] for r in results), [r["error"] for r in results]
    runs = {name: json.loads((stamps / name).read_text()) for name in ("00_a", "01_b", "02_c")}
    (a_start, a_end, threads), (b_start, b_end, _), _ = runs.values()
    assert b_start < a_end and a_start < b_end  # 00 and 01 ran at the same time
    assert threads == str(max(1, (os.cpu_count() or 1) // 2))
    assert "2 at a time" in said[0] and len(said) == 4  # the start, then one line per notebook
    assert "2 notebooks at a time" in (tmp_path / "out" / "index.md").read_text()


def _widget_notebook(widgets: dict | None) -> dict:
    """A notebook whose one output is a widget view, with ``widgets`` as its ``metadata.widgets``."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("slider")
    view = {"model_id": "m1", "version_major": 2, "version_minor": 0}
    cell.outputs = [nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": view,
                                                                  "text/plain": "IntSlider(value=0)"})]
    nb.cells = [cell]
    if widgets is not None:
        nb.metadata["widgets"] = widgets
    return nb


#: as Colab saves a notebook: the widget models straight under the mimetype, with no "state" key around them
COLAB_WIDGETS = {WIDGET_STATE: {"m1": {"model_module": "@jupyter-widgets/controls", "model_name": "IntSliderModel",
                                       "state": {"value": 0}}}}


@pytest.mark.parametrize("widgets", [COLAB_WIDGETS, {WIDGET_STATE: {}}, {}])
def test_widget_metadata_without_its_state_is_found_and_dropped(widgets):
    """What GitHub refuses ("the 'state' key is missing from 'metadata.widgets'"): nbconvert's HTML export, which
    GitHub renders with, fails on it; the runner's repair drops it and the notebook renders."""
    from nbconvert import HTMLExporter

    nb = _widget_notebook(copy.deepcopy(widgets))
    assert "has no 'state'" in widget_metadata_problem(nb)
    nbformat.validate(nb)  # nbformat's schema lets it through
    with pytest.raises(KeyError):
        HTMLExporter().from_notebook_node(nb)
    assert drop_stateless_widgets(nb) and "widgets" not in nb.metadata
    assert widget_metadata_problem(nb) is None and not drop_stateless_widgets(nb)
    HTMLExporter().from_notebook_node(nb)


def test_widget_metadata_with_its_state_is_kept():
    widgets = {WIDGET_STATE: {"state": COLAB_WIDGETS[WIDGET_STATE], "version_major": 2, "version_minor": 0}}
    for nb in (_widget_notebook(widgets), _widget_notebook(None)):
        assert widget_metadata_problem(nb) is None and not drop_stateless_widgets(nb)
    assert _widget_notebook(widgets).metadata["widgets"] == widgets


def test_executed_notebooks_carry_no_widget_metadata_github_refuses(tmp_path):
    """A widget that ran: papermill saves its state. A notebook saved on Colab with widget metadata but no state:
    the executed copy (what the main job uploads) drops it."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "00_widget.ipynb", "import ipywidgets\ndisplay(ipywidgets.IntSlider(value=3))")
    _notebook(folder / "01_from_colab.ipynb", "x = 1")
    saved = nbformat.read(str(folder / "01_from_colab.ipynb"), as_version=4)
    saved.metadata["widgets"] = copy.deepcopy(COLAB_WIDGETS)
    nbformat.write(saved, str(folder / "01_from_colab.ipynb"))

    results = run_notebooks(tmp_path / "out", preset="smoke", folder=folder, timeout=120, log=lambda *_: None)
    assert all(r["ok"] for r in results), [r["error"] for r in results]
    ran, from_colab = (nbformat.read(str(tmp_path / "out" / "notebooks" / name), as_version=4)
                       for name in ("00_widget.ipynb", "01_from_colab.ipynb"))
    states = ran.metadata["widgets"][WIDGET_STATE]["state"]
    assert any(m["model_name"] == "IntSliderModel" and m["state"]["value"] == 3 for m in states.values())
    assert "widgets" not in from_colab.metadata
    for nb in (ran, from_colab):
        assert widget_metadata_problem(nb) is None
        nbformat.validate(nb)


def test_several_jobs_start_the_longest_notebook_first_and_the_readers_of_its_runs_last():
    paths = notebook_paths()
    order = [p.name[:2] for p in start_order(paths)]
    assert order[0] == "07" and order[-2:] == ["13", "12"] and sorted(order) == sorted(p.name[:2] for p in paths)
    assert order[1:-2] == [n for n in sorted(order) if n not in ("07", "12", "13")]
    few = [p for p in paths if p.name[:2] in ("00", "12")]
    assert start_order(few) == few  # names that are not there are skipped
