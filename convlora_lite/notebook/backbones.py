"""SAM 2 next to SAM in a notebook (13): Hiera's layout drawn and the parameter budget of every method on both
backbones. The models are built on the meta device (shapes only): nothing is downloaded. (What a ``colab`` run of
SAM 2.1 costs is :func:`~convlora_lite.bench.grid_cost.colab_plan_reading`.)"""
from __future__ import annotations

import pandas as pd

from convlora_lite.analysis.hiera_layout import hiera_layout, stage_summary
from convlora_lite.analysis.parameter_counts import paper_param_table
from convlora_lite.models.sam import build_sam
from convlora_lite.notebook.display import show
from convlora_lite.plots.diagrams import hiera_diagram
from convlora_lite.plots.figures import display_image
from convlora_lite.reports.readings import budget_reading


def show_hiera(session, task) -> None:
    """The Hiera of ``session.model`` at the session's input size: its stages (:func:`stage_summary`) and
    :func:`~convlora_lite.plots.diagrams.hiera_diagram` over the first image of ``task``'s first test split.
    Used in notebook 13."""
    size = session.image_size
    image = task.dataset(task.spec.test_splits[0])[0]["image"]
    layout = hiera_layout(build_sam(session.model, checkpoint=None, image_size=size, device="meta"), size)
    show(stage_summary(layout), hiera_diagram(layout, display_image(image), f"{session.model} at {size} px: the grid "
                                              "each stage's attention reads, its windows (blue) and an expert's 3x3 "
                                              "kernel at scale 1 (red) and 8 (yellow)"))


def show_parameters(model: str, other: str) -> None:
    """Every method's trainable parameters on ``model`` (a table, with the reason where a method does not apply),
    then Conv-LoRA's and LoRA's budget on ``model`` and on ``other`` in words
    (:func:`~convlora_lite.reports.readings.budget_reading`). Used in notebook 13."""
    table = pd.DataFrame(paper_param_table(model, "all")).set_index("method")
    for column in ("trainable", "added", "total"):
        table[column] = [f"{int(v):,}" if pd.notna(v) else "-" for v in table[column]]
    table["ratio"] = [f"{100 * v:.2f}" if pd.notna(v) else "-" for v in table["ratio"]]
    show(table.rename(columns={"ratio": "ratio (%)"}).fillna("-"))
    print("\n".join(budget_reading(name, method) for name in (model, other) for method in ("lora", "conv_lora")))
