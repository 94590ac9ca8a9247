"""The one namespace the notebooks import (d2l style): a session made from the parameters cell
(:class:`Session`, ``session.py``) and the per-task steps of the domain notebooks (:class:`Task`,
``task.py``), next to the library functions the notebooks call. It presents; the library decides and
computes.

::

    from convlora_lite import notebook as nb

    session = nb.Session(PRESET, DATA_ROOT, CHECKPOINT, OUTPUT_DIR, methods=METHODS, seeds=SEEDS)
    polyp = session.task("polyp")          # synth_polyp offline; downloaded once at paper scale
    polyp.show_data(); polyp.show_recipe()
    polyp.train(); polyp.show_curves(); polyp.show_results()
    polyp.show_predictions(N_IMAGES); polyp.show_paper()

Every notebook that trains (00 and 03 to 10) shares one sweep folder per preset
(:func:`convlora_lite.training.sweep.sweep_dir`): a finished run is read back, an interrupted one resumes,
so each run is trained once however many notebooks show it. What a preset runs on (offline, the analogs'
size and folder) is the preset's (:class:`~convlora_lite.training.presets.Preset`). The ``show_*`` methods
display their tables and figures (IPython's ``display``) and return nothing.
"""
from convlora_lite.analysis.expert_routing import plot_scale_maps, record_routing
from convlora_lite.analysis.parameter_counts import paper_param_table
from convlora_lite.analysis.predictions import predict_run, predict_runs
from convlora_lite.bench.grid_cost import colab_plan_reading
from convlora_lite.data.own import example_image
from convlora_lite.notebook.backbones import show_hiera, show_parameters
from convlora_lite.notebook.session import Session
from convlora_lite.notebook.task import Task
from convlora_lite.plots.comparisons import disagreement_map, metric_bars, params_vs_score
from convlora_lite.plots.diagrams import conv_lora_diagram, sam_diagram
from convlora_lite.plots.figures import display_image, error_map, overlay, plot_history, prediction_grid, preview_figure
from convlora_lite.plots.widgets import draw_experts, expert_explorer, own_image, prediction_explorer, routing_explorer
from convlora_lite.reports.paper_tables import paper_results, param_comparison
from convlora_lite.reports.readings import routing_reading
from convlora_lite.reports.results_tables import collect_runs, results_table
from convlora_lite.training.presets import sam2_backbone
from convlora_lite.training.rundir import RunDir

#: what a notebook finds in this namespace besides :class:`Session` (the library's own functions).
__all__ = ["Session", "Task", "RunDir", "collect_runs", "display_image", "draw_experts", "error_map", "metric_bars",
           "overlay", "param_comparison", "paper_results", "plot_history", "plot_scale_maps", "predict_run",
           "predict_runs", "prediction_grid", "preview_figure", "record_routing", "results_table", "routing_reading",
           "prediction_explorer", "routing_explorer", "expert_explorer", "sam_diagram", "conv_lora_diagram",
           "own_image", "example_image", "paper_param_table", "params_vs_score", "disagreement_map", "show_hiera",
           "show_parameters", "sam2_backbone", "colab_plan_reading"]
