"""``convlora predict``: masks for new images from a finished run (or its export), written to a folder."""
from __future__ import annotations

import sys

from convlora_lite.training import DEVICES


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="write a mask for each image (files, folders, globs) with a trained model",
        description="Segment images with a run's best weights (a run directory or a `convlora export` file). "
                    "Writes OUT/masks/<stem>.png at each image's own size (binary 0/255; multi-class an index "
                    "PNG with a palette) and OUT/predictions.csv (foreground fraction; scores with --masks). "
                    "Unreadable inputs are skipped and listed (exit 1).")
    parser.add_argument("--run-dir", required=True, help="a run directory, an export .safetensors file, a Hub "
                                                         "folder (convlora export --format hub, convlora hub pull) "
                                                         "or an ONNX file (--format onnx; run by onnxruntime)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("--output-dir", required=True, help="where the masks and predictions.csv go")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write probability maps (binary PNG x255; multi-class .npy class scores)")
    parser.add_argument("--overlays", action="store_true", help="also write each mask drawn over its image")
    parser.add_argument("--masks", help="folder of ground-truth masks (same stems): score each image")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default 4)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--checkpoint", help="an export's SAM base weights, when not where training found them "
                                             "(checked against the sha256 the export records)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from convlora_lite.inference import Segmenter, predict_files

    segmenter = Segmenter.from_run(args.run_dir, device=args.device, batch_size=args.batch_size,
                                   checkpoint=args.checkpoint)
    report = predict_files(segmenter, args.inputs, args.output_dir, probabilities=args.probabilities,
                           overlays=args.overlays, masks_dir=args.masks, overwrite=args.overwrite)
    print(f"{len(report.written)} mask(s) written to {report.output_dir / 'masks'}"
          + (f"; table {report.csv}" if report.csv else ""))
    scored = [row for row in report.rows if segmenter.spec.select_metric in row]
    if scored:
        metric = segmenter.spec.select_metric
        mean = sum(row[metric] for row in scored) / len(scored)
        print(f"mean {metric} over {len(scored)} scored image(s): {mean:.4f}")
    if report.failed:
        print(f"{len(report.failed)} input(s) skipped:", file=sys.stderr)
        for line in report.failed:
            print(f"  - {line}", file=sys.stderr)
        return 1
    return 0
