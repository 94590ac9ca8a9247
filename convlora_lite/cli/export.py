"""``convlora export``: a finished run's trainable tensors and resolved config in one file (or a Hub
folder around it), and for LoRA optionally a plain SAM checkpoint with the update merged in."""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write a run's model as one .safetensors file (and, for LoRA, a merged SAM checkpoint)",
        description="Write the best trainable tensors of a run with its resolved config and dataset spec (JSON in "
                    "the safetensors metadata); the SAM base weights are referenced by name and sha256, not "
                    "copied. `convlora predict --run-dir FILE` and Segmenter.from_run(FILE) take it in place of "
                    "the run directory. --merged-sam writes a Meta-format SAM state dict with a LoRA run's update "
                    "merged into qkv (Conv-LoRA cannot be merged: its experts are non-linear). --format hub "
                    "writes a folder for the Hugging Face Hub instead of the file: the file as model.safetensors, "
                    "config.json and a README.md model card with the run's test scores (`convlora hub push`). "
                    "--format onnx writes the prompt-free model (any method, Conv-LoRA included) as one ONNX graph "
                    "with the run's config in its metadata, for onnxruntime (`pip install 'convlora_lite[onnx]'`); "
                    "`convlora predict --run-dir FILE.onnx` runs it.")
    parser.add_argument("--run-dir", required=True, help="a finished run directory")
    parser.add_argument("--output", help="the export file, e.g. model.safetensors (--format hub: a folder; "
                                         "--format onnx: e.g. model.onnx)")
    parser.add_argument("--format", choices=("safetensors", "hub", "onnx"), default="safetensors",
                        help="safetensors: one file (default); hub: a folder in the Hugging Face Hub's model layout; "
                             "onnx: an ONNX graph of the whole model for onnxruntime")
    parser.add_argument("--merged-sam", metavar="OUT.pth", help="LoRA / decoder-only runs: also write a merged SAM "
                                                                "checkpoint that segment_anything loads")
    parser.set_defaults(func=run)


def run(args) -> int:
    from convlora_lite.errors import ConfigError
    from convlora_lite.inference import export_hub, export_merged_sam, export_onnx, export_run

    if args.format == "onnx" and not args.output:
        raise ConfigError("--format onnx writes the ONNX graph to --output FILE.onnx: give it.")
    if not args.output and not args.merged_sam:
        raise ConfigError("give --output FILE.safetensors (--format hub: --output FOLDER) and/or --merged-sam OUT.pth.")
    if args.merged_sam:  # first: a run that cannot be merged fails before anything is written
        print(f"merged SAM checkpoint: {export_merged_sam(args.run_dir, args.merged_sam)}")
    if args.output and args.format == "onnx":
        written = export_onnx(args.run_dir, args.output)
        print(f"ONNX model: {written.path}" + (f", its weights in {written.data} (keep the two together)"
                                               if written.data else "")
              + f"; onnxruntime's logits match PyTorch's to {written.max_difference:.1e}")
    elif args.output:
        write = export_hub if args.format == "hub" else export_run
        print(f"export: {write(args.run_dir, args.output)}")
    return 0
