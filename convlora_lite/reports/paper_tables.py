"""The paper's published numbers, as data, and side-by-side tables with our runs.

Everything here is transcribed from Zhong, Tang, He, Fang, Yuan, "Convolution Meets LoRA:
Parameter Efficient Finetuning for Segment Anything Model", ICLR 2024 (arXiv 2401.17868)
(:data:`CITATION`): the LoRA and Conv-LoRA rows of its main results table (mean of 3 seeds,
SAM ViT-H, in %) and its parameter table (#Params in millions, Ratio in % of SAM ViT-H's
641.09 M parameters). These are the only typed-in numbers of the kit; our own numbers always
come from run directories (:func:`convlora_lite.reports.results_tables.collect_runs`).

* :func:`paper_results` -> the results rows as a DataFrame;
* :func:`paper_gains` -> the paper's gain of Conv-LoRA over LoRA on one task and metric;
* :func:`paper_param_rows` -> the parameter table as a DataFrame;
* :func:`compare_with_paper` -> our runs of a real dataset next to the paper's rows;
* :func:`recipe_comparison` -> the official recipe next to what a run config does.

Numbers measured on the synthetic analogs (``synth_<task>``) are NOT comparable with the
paper's: :func:`compare_with_paper` refuses them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from convlora_lite.data.registry import get_dataset_spec
from convlora_lite.errors import ConfigError
from convlora_lite.training.rundir import RunDir

CITATION = ("Zihan Zhong, Zhiqiang Tang, Tong He, Haoyang Fang, Chun Yuan. Convolution Meets LoRA: "
            "Parameter Efficient Finetuning for Segment Anything Model. ICLR 2024. arXiv:2401.17868.")

#: the backbone behind every published number.
PAPER_MODEL = "vit_h"

#: how each metric key is written in the paper's tables.
METRIC_LABELS = {"s_alpha": "S_alpha", "e_phi": "E_phi", "f_beta_w": "F^w_beta", "mae": "MAE", "iou": "IoU",
                 "dice": "Dice", "ber": "BER", "acc": "Acc", "miou": "mIoU"}


@dataclass(frozen=True)
class PaperResult:
    """One published cell pair: ``metric`` of LoRA and Conv-LoRA on one test set, in % (x100)."""

    dataset: str      # registry name of the real dataset ("polyp", ...)
    split: str        # its test split in the registry ("test_kvasir", "test", ...)
    test_set: str     # the name the paper prints ("Kvasir", "CVC-612", ...)
    metric: str       # metric key (convlora_lite.training.metrics), e.g. "s_alpha"
    lora: float
    conv_lora: float


def _rows(dataset: str, split: str, test_set: str, cells: dict) -> tuple:
    return tuple(PaperResult(dataset, split, test_set, metric, lora, conv) for metric, (lora, conv) in cells.items())


#: the paper's LoRA and Conv-LoRA rows (``docs/recipe.md``, "Paper results").
PAPER_RESULTS: tuple[PaperResult, ...] = (
    *_rows("polyp", "test_kvasir", "Kvasir", {"s_alpha": (91.2, 92.0), "e_phi": (93.8, 94.7)}),
    *_rows("polyp", "test_cvc", "CVC-612", {"s_alpha": (90.7, 91.3), "e_phi": (92.5, 94.0)}),
    *_rows("isic2017", "test", "ISIC 2017", {"iou": (76.6, 77.6), "dice": (84.9, 85.7)}),
    *_rows("camo", "test", "CAMO", {"s_alpha": (88.0, 88.3), "e_phi": (91.9, 92.4), "f_beta_w": (82.8, 84.0)}),
    *_rows("sbu", "test", "SBU", {"ber": (2.74, 2.54)}),
    *_rows("leaf", "test", "Leaf", {"iou": (73.7, 74.5), "dice": (83.6, 84.3)}),
    *_rows("road", "test", "Road", {"iou": (62.2, 62.6), "dice": (76.5, 76.8)}),
    *_rows("trans10k", "test", "Trans10K-v2", {"acc": (94.80, 95.07), "miou": (66.01, 67.09)}),
)

#: the paper's parameter table on SAM ViT-H: method -> (#Params in M, Ratio in %), as printed.
#: Ratio = #Params / (641.09 M + the parameters the method adds to SAM) (see convlora_lite.analysis.parameter_counts):
#: LST adds 7.98 M, so 11.49 / 649.07 = 1.77 %; for the other methods the added part is too small to
#: change the rounded ratio.
PAPER_PARAMS: dict[str, tuple[float, float]] = {
    "decoder_only": (3.51, 0.55), "bitfit": (3.96, 0.62), "adapter": (3.92, 0.61), "vpt": (4.00, 0.62),
    "lst": (11.49, 1.77), "sam_adapter": (3.98, 0.62), "ssf": (4.42, 0.69), "lora": (4.00, 0.62),
    "conv_lora": (4.02, 0.63),
}

#: SAM ViT-H's parameter count in the paper (the Ratio's denominator), in M.
PAPER_TOTAL_PARAMS_M = 641.09


def _real_name(dataset: str) -> str:
    """The registry name of a real dataset (a ``synth_`` analog maps to its real task)."""
    return get_dataset_spec(dataset).name.removeprefix("synth_")


def _labels(result: PaperResult) -> dict:
    """The identifying columns of a paper row: dataset, split, test set, metric, better."""
    from convlora_lite.training.metrics import METRIC_DIRECTIONS

    better = "higher" if METRIC_DIRECTIONS[result.metric] == "max" else "lower"
    return {"dataset": result.dataset, "split": result.split, "test set": result.test_set,
            "metric": METRIC_LABELS[result.metric], "better": better}


def paper_results(dataset: str | Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's LoRA and Conv-LoRA numbers (in %, as printed), one row per (test set, metric).

    ``dataset``: a registry name (``"polyp"``; a ``synth_`` analog gives its real task's rows),
    several names, or ``None`` for all. Columns: dataset, split, test set, metric (paper's label), better
    (``"higher"``/``"lower"``), LoRA, Conv-LoRA. ``attrs["citation"]`` holds :data:`CITATION`.
    Used in notebook 08."""
    names = [dataset] if isinstance(dataset, str) else dataset
    wanted = None if names is None else {_real_name(name) for name in names}
    rows = [{**_labels(r), "LoRA": r.lora, "Conv-LoRA": r.conv_lora}
            for r in PAPER_RESULTS if wanted is None or r.dataset in wanted]
    table = pd.DataFrame(rows)
    table.attrs["citation"] = CITATION
    return table


def paper_gains(dataset: str, split: str, metric: str) -> dict[str, float]:
    """The paper's gain of Conv-LoRA over LoRA on ``dataset``'s ``split`` and ``metric``, in points (x100), per test
    set as the paper names it: Conv-LoRA - LoRA, or LoRA - Conv-LoRA for a lower-is-better metric (BER), so that a
    gain is positive where Conv-LoRA is better. A ``synth_<task>`` analog maps to its real task, and its one test
    split to every test set of that task (``synth_polyp``: Kvasir and CVC-612). Empty where the paper has no cell."""
    from convlora_lite.training.metrics import METRIC_DIRECTIONS

    task = dataset.removeprefix("synth_")
    cells = [r for r in PAPER_RESULTS if r.dataset == task and r.metric == metric]
    chosen = [r for r in cells if r.split == split] or (cells if task != dataset else [])
    sign = 1 if METRIC_DIRECTIONS.get(metric, "max") == "max" else -1
    return {r.test_set: sign * (r.conv_lora - r.lora) for r in chosen}


def paper_param_rows() -> pd.DataFrame:
    """The paper's parameter table (SAM ViT-H): columns method, #Params (M), Ratio (%)."""
    table = pd.DataFrame([{"method": m, "#Params (M)": p, "Ratio (%)": r} for m, (p, r) in PAPER_PARAMS.items()])
    table.attrs["citation"] = CITATION
    return table


def param_comparison(model_name: str = "vit_h") -> pd.DataFrame:
    """Our #Params / Ratio of every method on ``model_name`` next to the paper's (ViT-H) columns.
    Used in notebook 08."""
    from convlora_lite.analysis.parameter_counts import paper_param_table

    ours = pd.DataFrame(paper_param_table(model_name))
    table = ours.merge(paper_param_rows(), on="method")
    table["ours #Params (M)"] = (table["trainable"] / 1e6).round(2)
    table["ours Ratio (%)"] = (100 * table["ratio"]).round(2)
    table = table[["method", "trainable", "ours #Params (M)", "#Params (M)", "ours Ratio (%)", "Ratio (%)"]]
    table = table.rename(columns={"#Params (M)": "paper #Params (M)", "Ratio (%)": "paper Ratio (%)"})
    table.attrs["sam_total"] = int(ours["total"][0] - ours["added"][0])
    return table


def compare_with_paper(run_dirs) -> pd.DataFrame:
    """Our finished runs of one real dataset and method next to the paper's rows.

    ``run_dirs``: one run directory or several (the seeds of one dataset and method). Every
    value is in % (x100, as the paper prints; BER too). Columns: test set, metric, better,
    paper LoRA, paper Conv-LoRA, ours (the mean over seeds), ours std (NaN for one seed),
    seeds, ours - paper (the difference to the paper's row of the same method: LoRA for
    ``lora``, Conv-LoRA for ``conv_lora`` and any other method). ``attrs`` hold ``dataset``,
    ``method``, ``model`` (ours; the paper's is ViT-H), ``paper_row`` (the row the difference
    is taken to) and ``citation``.

    Raises :class:`ConfigError` for runs on a synthetic analog (their numbers are not
    comparable; show :func:`paper_results` for context instead) and for a mix of datasets or
    methods.
    """

    from convlora_lite.reports.results_tables import collect_runs

    paths = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    runs = collect_runs(paths)
    datasets, methods = sorted(set(runs["dataset"])), sorted(set(runs["method"]))
    if len(datasets) != 1 or len(methods) != 1:
        raise ConfigError(f"compare_with_paper takes the runs of one dataset and one method; got datasets "
                          f"{datasets} and methods {methods}. Call it once per (dataset, method).")
    dataset, method = datasets[0], methods[0]
    if get_dataset_spec(dataset).synthetic:
        raise ConfigError(f"{dataset} is a synthetic analog: its numbers are NOT comparable with the paper's. "
                          f"Show paper_results({dataset!r}) for context, or train on the real dataset "
                          "(preset colab or paper) to compare.")
    models = sorted({RunDir(d).read_config_dict()["model"] for d in runs["run_dir"]})
    ours = runs.groupby(["split", "metric"])["value"].agg(["mean", "std", "count"]) * [100, 100, 1]
    paper_row = "LoRA" if method == "lora" else "Conv-LoRA"
    rows = []
    for cell in (r for r in PAPER_RESULTS if r.dataset == dataset):
        key = (cell.split, cell.metric)
        mean, std, count = ours.loc[key] if key in ours.index else (float("nan"), float("nan"), 0)
        labels = _labels(cell)
        rows.append({"test set": labels["test set"], "metric": labels["metric"], "better": labels["better"],
                     "paper LoRA": cell.lora, "paper Conv-LoRA": cell.conv_lora, "ours": mean, "ours std": std,
                     "seeds": int(count),
                     "ours - paper": mean - (cell.lora if paper_row == "LoRA" else cell.conv_lora)})
    table = pd.DataFrame(rows)
    table.attrs.update(dataset=dataset, method=method, model=", ".join(models), paper_row=paper_row, citation=CITATION)
    return table


def recipe_comparison(config) -> pd.DataFrame:
    """The official recipe of ``config.dataset`` next to what ``config`` (a resolved
    :class:`~convlora_lite.training.TrainConfig`) runs on this machine: one row per setting, columns
    ``official`` and ``this run`` (precision ``auto`` shown as what it resolves to here). The official
    column is the paper's setting (ViT-H, 1024 px, batch 1 x accumulation 4, fp16) with the registry's
    per-task loss, selection, epochs and lr."""
    from convlora_lite.training.devices import resolve_device, resolve_precision

    spec = get_dataset_spec(config.dataset)
    settings = {
        "dataset": (spec.name.removeprefix("synth_"), config.dataset),
        "model": (PAPER_MODEL, config.model),
        "image size": (1024, config.image_size),
        "epochs": (spec.epochs, config.epochs),
        "lr": (spec.lr, config.lr),
        "batch x accumulation": ("1 x 4", f"{config.batch_size} x {config.grad_accum}"),
        "precision": ("fp16", resolve_precision(config.precision, resolve_device(config.device))),
        "loss": (spec.loss, spec.loss),
        "selection": (f"{spec.select_metric} ({spec.select_mode})",) * 2,
        "max train batches / epoch": ("all", config.max_train_batches or "all"),
        "max eval batches": ("all", config.max_eval_batches or "all"),
    }
    return pd.DataFrame({"official": {k: str(v[0]) for k, v in settings.items()},
                         "this run": {k: str(v[1]) for k, v in settings.items()}})
