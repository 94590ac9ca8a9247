"""``convlora export``: a finished run's trainable tensors and resolved config in one file, and for
LoRA optionally a plain SAM checkpoint with the update merged in."""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write a run's model as one .safetensors file (and, for LoRA, a merged SAM checkpoint)",
        description="Write the best trainable tensors of a run with its resolved config and dataset spec (JSON in "
                    "the safetensors metadata); the SAM base weights are referenced by name and sha256, not "
                    "copied. `convlora predict --run-dir FILE` and Segmenter.from_run(FILE) take it in place of "
                    "the run directory. --merged-sam writes a Meta-format SAM state dict with a LoRA run's update "
                    "merged into qkv (Conv-LoRA cannot be merged: its experts are non-linear).")
    parser.add_argument("--run-dir", required=True, help="a finished run directory")
    parser.add_argument("--output", help="the export file, e.g. model.safetensors")
    parser.add_argument("--merged-sam", metavar="OUT.pth", help="LoRA / decoder-only runs: also write a merged SAM "
                                                                "checkpoint that segment_anything loads")
    parser.set_defaults(func=run)


def run(args) -> int:
    from convlora_lite.errors import ConfigError
    from convlora_lite.inference import export_merged_sam, export_run

    if not args.output and not args.merged_sam:
        raise ConfigError("give --output FILE.safetensors and/or --merged-sam OUT.pth.")
    if args.merged_sam:  # first: a run that cannot be merged fails before anything is written
        print(f"merged SAM checkpoint: {export_merged_sam(args.run_dir, args.merged_sam)}")
    if args.output:
        print(f"export: {export_run(args.run_dir, args.output)}")
    return 0
