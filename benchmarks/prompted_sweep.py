"""Prompted fine-tuning (``--prompt box|point``) on the synthetic analogs, with its zero-shot baseline.

Trains every (seed, dataset, method) in that order (so an interrupted sweep has every cell at one
seed before it has any at three), resumably, in ``OUTPUT_DIR/<dataset>/<method>/seed<S>`` (the
layout of ``convlora reproduce``), and after each run rewrites ``--csv``: one row per run, test
split and metric, with the fine-tuned value and the zero-shot promptable SAM's value on the same
prompts. ``--table CSV...`` prints the markdown tables (mean ± sample std over seeds, x100) of
finished CSVs instead of training; with ``--root`` the box tables also get the model-free floor of
a box prompt: the filled evaluation box itself as the predicted mask.

    OMP_NUM_THREADS=1 python benchmarks/prompted_sweep.py --prompt box \\
        --datasets synth_polyp,synth_leaf --methods decoder_only,lora,conv_lora --seeds 3 \\
        --root outputs/data --output-dir outputs/runs/prompted_box \\
        --csv benchmarks/results/prompted_box_micro_sam_cpu.csv
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from convlora_lite.data.registry import get_dataset_spec
from convlora_lite.training import TrainConfig, fit
from convlora_lite.training.rundir import RunDir
from convlora_lite.training.sweep import seeds_for


def rows_of(run_dir: Path) -> list[dict]:
    """The CSV rows of one finished prompted run (the dataset's table metrics)."""
    metrics = RunDir(run_dir).read_metrics()
    spec = get_dataset_spec(metrics["dataset"])
    rows = []
    for split, values in metrics["test"].items():
        for metric in spec.metrics:
            rows.append(dict(dataset=metrics["dataset"], method=metrics["method"], seed=metrics["seed"],
                             prompt=metrics["prompt"], split=split, metric=metric, value=values[metric],
                             zero_shot=metrics["zero_shot"][split][metric], best_epoch=metrics["best_epoch"],
                             run_dir=str(run_dir)))
    return rows


def box_fill_scores(dataset: str, root, image_size: int = 256) -> dict:
    """The metrics of the filled evaluation boxes as the predicted masks on the test split (no model)."""
    from convlora_lite.data.datasets import build_dataset
    from convlora_lite.models.prompts import eval_prompts
    from convlora_lite.training.metrics import BinarySegMetrics

    data, metrics = build_dataset(dataset, "test", root, image_size, train=False), BinarySegMetrics()
    yy, xx = torch.meshgrid(torch.arange(image_size) + 0.5, torch.arange(image_size) + 0.5, indexing="ij")
    for i in range(len(data)):
        item = data[i]
        x0, y0, x1, y1 = eval_prompts(item["mask"][None], [item["name"]], "box").boxes[0].tolist()
        filled = ((xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)).float()
        metrics.update(filled[None] * item["mask"].any(), item["mask"][None])
    return metrics.compute()


def table(frame: pd.DataFrame, root=None) -> str:
    """Markdown: per (prompt, dataset), methods x metrics as mean ± std x100, the zero-shot row and,
    for boxes with ``root``, the filled-box row."""
    out = []
    for (prompt, dataset), part in frame.groupby(["prompt", "dataset"], sort=False):
        metrics = [m for m in get_dataset_spec(dataset).metrics if m in set(part["metric"])]
        lines = [f"#### {dataset}, prompt={prompt}", "",
                 "| method | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
        if prompt == "box" and root is not None:
            fill = box_fill_scores(dataset, root)
            cells = [f"{100 * fill[m]:.1f}" for m in metrics]
            lines.append(f"| the filled box itself (no model) | - | {' | '.join(cells)} |")
        zero = part.groupby("metric")["zero_shot"].mean()  # the same prompts and model in every run
        cells = [f"{100 * zero.loc[m]:.1f}" for m in metrics]
        lines.append(f"| zero-shot SAM, same prompts | - | {' | '.join(cells)} |")
        for method, rows in part.groupby("method", sort=False):
            stats = rows.groupby("metric")["value"].agg(["mean", "std", "count"])
            n = int(stats["count"].iloc[0])
            cells = [f"{100 * stats.loc[m, 'mean']:.1f}" + (f" ± {100 * stats.loc[m, 'std']:.1f}" if n > 1 else "")
                     for m in metrics]
            lines.append(f"| {method} | {n} | {' | '.join(cells)} |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", choices=("box", "point"))
    parser.add_argument("--datasets", default="synth_polyp,synth_leaf")
    parser.add_argument("--methods", default="decoder_only,lora,conv_lora")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--root", default="data")
    parser.add_argument("--output-dir", default="runs/prompted")
    parser.add_argument("--csv", help="the per-run CSV (rewritten after each run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", nargs="+", metavar="CSV", help="print the tables of these CSVs and exit")
    args = parser.parse_args(argv)
    if args.table:
        frame = pd.concat([pd.read_csv(path) for path in args.table], ignore_index=True)
        print(table(frame, args.root if args.root != "data" or Path("data").exists() else None))
        return 0
    if not args.prompt or not args.csv:
        parser.error("--prompt and --csv are needed to train")
    torch.set_num_threads(args.threads)
    root, rows = Path(args.output_dir), []
    for seed in seeds_for(args.preset, args.seeds):
        for dataset in args.datasets.split(","):
            for method in args.methods.split(","):
                run_dir = root / dataset / method / f"seed{seed}"
                print(f"{args.prompt} {dataset} {method} seed {seed} -> {run_dir}", flush=True)
                fit(TrainConfig.resolve(dataset, method, args.preset, seed=seed, resume=True, prompt=args.prompt,
                                        output_dir=str(run_dir), data_root=args.root))
                rows += rows_of(run_dir)
                Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
                pd.DataFrame(rows).drop(columns="run_dir").to_csv(args.csv, index=False)
    print(table(pd.DataFrame(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
