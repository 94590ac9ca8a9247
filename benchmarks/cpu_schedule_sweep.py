"""One run of the ``cpu`` preset with another schedule, for choosing that preset's epochs and lr:
trains DATASET x METHOD at EPOCHS and LR (seed 42686693, everything else the preset's) and prints one
line: the wall time, the best validation value of the task's selection metric, the best epoch and
the test metrics.

    python benchmarks/cpu_schedule_sweep.py synth_polyp lora 4 2e-3 --root outputs/data --output-dir /tmp/schedule

The grid and its reading are in ``benchmarks/cpu_schedule_cpu.md``.
"""
import argparse
import time

from convlora_lite.training import TrainConfig, fit
from convlora_lite.training.rundir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("method")
    parser.add_argument("epochs", type=int)
    parser.add_argument("lr", type=float)
    parser.add_argument("--root", default="data")
    parser.add_argument("--output-dir", default="/tmp/schedule")
    args = parser.parse_args()
    output = f"{args.output_dir}/{args.dataset}_{args.method}_{args.epochs}_{args.lr}"
    config = TrainConfig.resolve(args.dataset, args.method, "cpu", data_root=args.root, output_dir=output,
                                 epochs=args.epochs, lr=args.lr)
    start = time.perf_counter()
    metrics = RunDir(fit(config)).read_metrics()
    seconds = time.perf_counter() - start
    metric = metrics["select_metric"]
    test = next(iter(metrics["test"].values()))
    print(f"{args.dataset} {args.method} epochs {args.epochs} lr {args.lr:g}: {seconds:.1f} s, val {metric} "
          f"{metrics['val'][metric]:.4f} (best epoch {metrics['best_epoch']}), test "
          + ", ".join(f"{k} {v:.3f}" for k, v in test.items() if isinstance(v, float)))


if __name__ == "__main__":
    main()
