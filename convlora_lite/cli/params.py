"""``convlora params``: the paper's #Params / Ratio table for a SAM backbone, computed on the meta
device (no weights are downloaded or allocated)."""
from __future__ import annotations

import json

from convlora_lite.analysis.parameter_counts import format_param_table, paper_param_table
from convlora_lite.models.sam import MODEL_CONFIGS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "params", help="trainable parameters and ratio per PEFT method (the paper's table)",
        description="For each method: trainable parameters, the full SAM parameter count and their ratio (SAM 2.1 "
                    "too: --model sam2.1_hiera_tiny; a method that does not apply to Hiera says so).")
    parser.add_argument("--model", default="vit_h", choices=list(MODEL_CONFIGS), help="SAM backbone (default vit_h)")
    parser.add_argument("--method", default="all",
                        help="'all' (default) or a comma-separated list, e.g. lora,conv_lora")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.set_defaults(func=run)


def run(args) -> int:
    rows = paper_param_table(args.model, args.method)
    print(json.dumps({"model": args.model, "rows": rows}, indent=2) if args.json
          else format_param_table(rows, args.model))
    return 0
