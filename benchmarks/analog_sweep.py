"""Train analogs at the ``cpu`` preset, one run at a time, and append each run's test numbers to a CSV:
the runs behind ``benchmarks/analogs_cpu.md``.

    python benchmarks/analog_sweep.py synth_trans10k --methods lora conv_lora --seeds 42686693 42686694 \\
        --version v1 --root /tmp/analogs/data_v1 --output-dir /tmp/analogs/v1 \\
        --csv benchmarks/results/analogs_cpu.csv

One CSV row per run: version, dataset, method, seed, wall seconds, best epoch, the validation value of
the selection metric, the test metrics (binary: every scalar; multi-class: acc, mIoU and each class's
IoU as ``iou_<class>``). Everything but the dataset, method, seed, paths, ``--epochs`` and ``--query-jitter`` is
the ``cpu`` preset's.
"""
import argparse
import csv
import time
from pathlib import Path

from convlora_lite.training import TrainConfig, fit
from convlora_lite.training.rundir import RunDir


def run_row(version: str, dataset: str, method: str, seed: int, root: str, output_dir: str, **overrides) -> dict:
    """Train one run (``overrides``: TrainConfig fields over the preset's, e.g. ``epochs``) and return its CSV
    row (test metrics flattened to scalars)."""
    config = TrainConfig.resolve(dataset, method, "cpu", data_root=root, seed=seed,
                                 output_dir=f"{output_dir}/{dataset}_{method}_{seed}", **overrides)
    start = time.perf_counter()
    metrics = RunDir(fit(config)).read_metrics()
    row = {"version": version, "dataset": dataset, "method": method, "seed": seed,
           "seconds": round(time.perf_counter() - start, 1), "best_epoch": metrics["best_epoch"],
           f"val_{metrics['select_metric']}": round(metrics["val"][metrics["select_metric"]], 4)}
    for key, value in next(iter(metrics["test"].values())).items():
        if isinstance(value, dict):
            row.update({f"iou_{name}": round(v, 4) for name, v in value.items()})
        elif isinstance(value, float):
            row[key] = round(value, 4)
    return row


def append(path: Path, row: dict) -> None:
    """Append ``row`` to the CSV at ``path`` (header written when the file is new)."""
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--methods", nargs="+", default=["lora"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42686693])
    parser.add_argument("--version", required=True, help="label of the analog's drawing, e.g. v1")
    parser.add_argument("--root", required=True, help="data root of this version (generated on first use)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--csv", required=True, help="CSV file the rows are appended to")
    parser.add_argument("--epochs", type=int, help="epochs per run (default: the cpu preset's)")
    parser.add_argument("--query-jitter", type=float, help="multi-class head: noise on the mask tokens' copies "
                        "(default: the cpu preset's)")
    args = parser.parse_args()
    overrides = {key: value for key, value in (("epochs", args.epochs), ("query_jitter", args.query_jitter))
                 if value is not None}
    for method in args.methods:
        for seed in args.seeds:
            row = run_row(args.version, args.dataset, method, seed, args.root, args.output_dir, **overrides)
            append(Path(args.csv), row)
            print(", ".join(f"{k} {v}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
