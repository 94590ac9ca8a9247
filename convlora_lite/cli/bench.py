"""``convlora bench``: median training-step time and peak memory of PEFT methods, measured in one
process and interleaved (see :mod:`convlora_lite.bench.step_benchmark`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from convlora_lite.bench.op_count import format_count, run_count
from convlora_lite.bench.step_benchmark import format_benchmark, run_benchmark
from convlora_lite.cli.train import add_step_arguments
from convlora_lite.io import atomic_write
from convlora_lite.models.sam import MODEL_CONFIGS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="step time and peak memory per PEFT method (random weights, one process)",
        description="Time a full training step (forward, backward, optimizer step) of each method on the "
                    "same model and input, interleaving the methods; print the medians and the ratios to the "
                    "first method. A method may carry options: conv_lora:implementation=official.")
    parser.add_argument("--model", default="vit_b", choices=list(MODEL_CONFIGS), help="SAM backbone (default vit_b)")
    parser.add_argument("--image-size", type=int, default=256, help="input side in pixels (default 256)")
    parser.add_argument("--methods", default="lora,conv_lora",
                        help="comma-separated method specs, the first is the reference (default lora,conv_lora)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per method (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps per method (default 1)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per step (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                        help="auto (default): fp16 autocast on CUDA as in the official recipe (SAM 2.1: bf16 where "
                             "the GPU has it natively), else fp32")
    add_step_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and input (default 0)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--count-ops", action="store_true",
                        help="count the aten operators one training step dispatches (forward, backward, optimizer, "
                             "per block) instead of timing it: fp32 on the CPU, device-independent")
    parser.add_argument("--activation-checkpointing", action="store_true",
                        help="with --count-ops: checkpoint the encoder blocks (as the colab preset does)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.add_argument("--output", type=Path, help="also write the JSON report to this file")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.count_ops:
        report = run_count(model=args.model, image_size=args.image_size, methods=args.methods,
                           batch_size=args.batch_size, seed=args.seed,
                           activation_checkpointing=args.activation_checkpointing)
        return _report(args, report, format_count)
    report = run_benchmark(model=args.model, image_size=args.image_size, methods=args.methods, steps=args.steps,
                           batch_size=args.batch_size, device=args.device, warmup=args.warmup,
                           precision=args.precision, compile=args.compile, attention=args.attention or "meta",
                           seed=args.seed, threads=args.threads,
                           log=lambda message: print(message, file=sys.stderr, flush=True))
    return _report(args, report, format_benchmark)


def _report(args, report: dict, table) -> int:
    text = json.dumps(report, indent=2)
    if args.output is not None:
        atomic_write(args.output, lambda tmp: tmp.write_text(text + "\n"))
    print(text if args.json else table(report))
    return 0
