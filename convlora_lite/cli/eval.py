"""``convlora eval``: score a finished run's best checkpoint on one split of its dataset."""
from __future__ import annotations

import json

from convlora_lite.training import DEVICES, evaluate


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="score a run's best checkpoint on a split",
        description="Rebuild the model of a run directory (config.json + checkpoint/best.safetensors) and "
                    "score it with the dataset's metrics, in the run's own precision (fp16/bf16 autocast where it "
                    "trained so; docs/precision.md), as its trainer scored it.")
    parser.add_argument("--run-dir", required=True, help="a run directory written by `convlora train`")
    parser.add_argument("--split", default="test", help="split name (default test; polyp: test_kvasir, test_cvc)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.set_defaults(func=run)


def run(args) -> int:
    metrics = evaluate(args.run_dir, args.split, device=args.device)
    if args.json:
        print(json.dumps({"run_dir": args.run_dir, "split": args.split, "metrics": metrics}, indent=2))
    else:
        for key, value in metrics.items():
            if isinstance(value, dict):
                print(f"{key}: " + ", ".join(f"{k} {v:.4f}" for k, v in value.items()))
            else:
                print(f"{key}: {value:.4f}")
    return 0
