"""The paper's numbers typed in the notebooks' markdown are the project's table of paper results
(``reports.paper_tables.PAPER_RESULTS``, ``analysis.linear_probe.PAPER_LINEAR_PROBE``): a typo or a
drift on either side fails here."""
import json
import re
from pathlib import Path

import pytest

from convlora_lite.analysis.linear_probe import PAPER_LINEAR_PROBE
from convlora_lite.reports.paper_tables import PAPER_RESULTS

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
#: the "Against the paper" cells of each domain notebook, in order, and the dataset each is about.
AGAINST_THE_PAPER = {"03": ["polyp", "isic2017"], "04": ["camo", "sbu"], "05": ["leaf"], "06": ["road"],
                     "07": ["trans10k"]}
NUMBER = re.compile(r"(?<![\w.])([+-]?\d+\.\d+)")


def _markdown(number: str) -> list[str]:
    [path] = NOTEBOOKS.glob(f"{number}_*.ipynb")
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown"]


def _typed(text: str) -> tuple[list[float], list[float]]:
    """(values, signed gains) typed in a cell, in reading order."""
    found = NUMBER.findall(text)
    return [float(v) for v in found if v[0] not in "+-"], [float(v) for v in found if v[0] in "+-"]


@pytest.mark.parametrize("number", sorted(AGAINST_THE_PAPER))
def test_against_the_paper_cells_type_the_paper_s_rows(number):
    cells = [text for text in _markdown(number) if text.startswith("### Against the paper")]
    assert len(cells) == len(AGAINST_THE_PAPER[number])
    for text, dataset in zip(cells, AGAINST_THE_PAPER[number]):
        rows = [row for row in PAPER_RESULTS if row.dataset == dataset]
        values, gains = _typed(text)
        # each cell writes Conv-LoRA's numbers first, then LoRA's, in the table's order
        assert values == [row.conv_lora for row in rows] + [row.lora for row in rows], (number, dataset)
        differences = {round(row.conv_lora - row.lora, 2) for row in rows}
        assert all(gain in differences for gain in gains), (number, dataset, gains)


def test_the_linear_probe_numbers_of_notebook_01_are_the_paper_s():
    expected = {round(100 * v, 1) for v in PAPER_LINEAR_PROBE.values()}
    typed = {value for text in _markdown("01") for value in _typed(text)[0]}
    assert typed == expected, typed  # both are typed, and no other decimal number is
