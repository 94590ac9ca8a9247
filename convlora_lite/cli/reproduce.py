"""``convlora reproduce``: a whole grid of runs, resumable, ending in the results table."""
from __future__ import annotations


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def register(subparsers) -> None:
    from convlora_lite.cli.train import add_step_arguments
    from convlora_lite.models.prompts import PROMPTS
    from convlora_lite.training.presets import DEFAULT_PRESET, PRESET_NAMES
    from convlora_lite.training.sweep import DEFAULT_SWEEP_DIR

    parser = subparsers.add_parser("reproduce", help="train datasets x methods x seeds and write the table")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=PRESET_NAMES)
    parser.add_argument("--datasets", required=True, type=_names, help="comma-separated, e.g. synth_polyp,synth_camo")
    parser.add_argument("--methods", default="decoder_only,lora,conv_lora", type=_names, help="comma-separated")
    parser.add_argument("--seeds", type=int, help="how many seeds (the preset's seed and the next ones; default: "
                                                      "the preset's number, 3 on paper, else 1)")
    parser.add_argument("--output-dir", default=DEFAULT_SWEEP_DIR, help="where the runs and results.md go")
    parser.add_argument("--model", help="SAM backbone for every run (default: the preset's)")
    parser.add_argument("--image-size", type=int, help="input side in pixels for every run (default: the preset's, "
                                                      "or the model's own)")
    parser.add_argument("--epochs", type=int, help="override the preset/recipe epochs")
    parser.add_argument("--lr", type=float, help="override the preset/recipe learning rate")
    parser.add_argument("--max-train-batches", type=int, help="cap the training batches per epoch (quick sweeps)")
    parser.add_argument("--max-eval-batches", type=int, help="cap the validation and test batches (quick sweeps)")
    parser.add_argument("--root", help="dataset root folder (default ./data)")
    parser.add_argument("--device", help="auto, cuda, mps or cpu")
    add_step_arguments(parser)
    parser.add_argument("--shard", help="K/N: train only worker K's part of the grid (0 <= K < N; every N-th run "
                                        "from K), for N workers sharing --output-dir")
    parser.add_argument("--method-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the PEFT method(s), e.g. num_experts=4 (repeatable; checked for every "
                             "method of the grid before anything is trained or downloaded)")
    parser.add_argument("--prompt", choices=PROMPTS,
                        help="beyond the paper: train and score every run with box or point prompts "
                             "(default none, prompt-free); see `convlora train --help`")
    parser.set_defaults(func=run)


def run(args) -> int:
    from convlora_lite.peft.base import parse_options
    from convlora_lite.plots.figures import save_loss_curve
    from convlora_lite.reports.results_tables import write_results
    from convlora_lite.training.sweep import reproduce

    given = dict(model=args.model, image_size=args.image_size, epochs=args.epochs, lr=args.lr, data_root=args.root,
                 device=args.device, compile=args.compile, attention=args.attention,
                 max_train_batches=args.max_train_batches,
                 max_eval_batches=args.max_eval_batches,
                 prompt=args.prompt, method_options=parse_options(args.method_option) or None)
    overrides = {key: value for key, value in given.items() if value is not None}
    runs = reproduce(args.preset, args.datasets, args.methods, args.seeds, args.output_dir, shard=args.shard,
                     on_finish=save_loss_curve, **overrides)
    if runs is not None:
        path = write_results(args.output_dir, runs)
        print(path.read_text())
        print(f"Table written to {path}")
    return 0
