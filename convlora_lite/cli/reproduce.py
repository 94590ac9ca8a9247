"""``convlora reproduce``: a whole grid of runs, resumable, ending in the results table. ``--config FILE.yaml``
reads the grid's settings from an experiment file (:mod:`convlora_lite.training.experiment_file`); a flag given as
well wins."""
from __future__ import annotations

#: the methods of a grid that names none: the paper's two and the decoder-only floor.
DEFAULT_METHODS = ("decoder_only", "lora", "conv_lora")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def register(subparsers) -> None:
    from convlora_lite.cli.reproduce_plan import add_plan_arguments
    from convlora_lite.cli.train import add_config_argument, add_log_argument, add_step_arguments
    from convlora_lite.models.prompts import PROMPTS
    from convlora_lite.training.presets import DEFAULT_PRESET, PRESET_NAMES
    from convlora_lite.training.sweep import DEFAULT_SWEEP_DIR

    parser = subparsers.add_parser("reproduce", help="train datasets x methods x seeds and write the table")
    add_config_argument(parser, "configs/paper_grid.yaml")
    parser.add_argument("--preset", choices=PRESET_NAMES, help=f"settings bundle (default {DEFAULT_PRESET})")
    parser.add_argument("--datasets", type=_names, help="comma-separated, e.g. synth_polyp,synth_camo")
    parser.add_argument("--methods", type=_names, help=f"comma-separated (default {','.join(DEFAULT_METHODS)})")
    parser.add_argument("--seeds", type=int, help="how many seeds (the preset's seed and the next ones; default: "
                                                      "the preset's number, 3 on paper, else 1)")
    parser.add_argument("--output-dir", help=f"where the runs and results.md go (default {DEFAULT_SWEEP_DIR})")
    parser.add_argument("--model", help="SAM backbone for every run (default: the preset's; SAM 2.1: "
                                        "sam2.1_hiera_tiny, _small, _base_plus, _large)")
    parser.add_argument("--image-size", type=int, help="input side in pixels for every run (default: the preset's, "
                                                      "or the model's own)")
    parser.add_argument("--epochs", type=int, help="override the preset/recipe epochs")
    parser.add_argument("--lr", type=float, help="override the preset/recipe learning rate")
    parser.add_argument("--max-train-batches", type=int, help="cap the training batches per epoch (quick sweeps)")
    parser.add_argument("--max-eval-batches", type=int, help="cap the validation and test batches (quick sweeps)")
    parser.add_argument("--root", help="dataset root folder (default ./data)")
    parser.add_argument("--device", help="auto, cuda, mps or cpu")
    add_step_arguments(parser)
    add_log_argument(parser)
    parser.add_argument("--shard", help="K/N: train only worker K's part of the grid (0 <= K < N; every N-th run "
                                        "from K), for N workers sharing --output-dir")
    parser.add_argument("--method-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the PEFT method(s), e.g. num_experts=4 (repeatable; checked for every "
                             "method of the grid before anything is trained or downloaded)")
    parser.add_argument("--prompt", choices=PROMPTS,
                        help="beyond the paper: train and score every run with box or point prompts "
                             "(default none, prompt-free); see `convlora train --help`")
    add_plan_arguments(parser)
    parser.set_defaults(func=run)


def grid_settings(args) -> tuple[dict, dict]:
    """``(grid, overrides)`` of the command line and its ``--config`` file (flags over the file): ``grid`` holds
    ``preset``, ``datasets``, ``methods``, ``seeds``, ``output_dir`` and ``shard`` with their defaults filled in,
    ``overrides`` the TrainConfig fields every run of the grid gets."""
    from convlora_lite.errors import ConfigError
    from convlora_lite.peft.base import parse_options
    from convlora_lite.training.experiment_file import merged, read_experiment_file
    from convlora_lite.training.presets import DEFAULT_PRESET
    from convlora_lite.training.sweep import DEFAULT_SWEEP_DIR

    flags = dict(preset=args.preset, datasets=args.datasets, methods=args.methods, seeds=args.seeds,
                 output_dir=args.output_dir, shard=args.shard,
                 model=args.model, image_size=args.image_size, epochs=args.epochs, lr=args.lr, data_root=args.root,
                 device=args.device, compile=args.compile, attention=args.attention,
                 max_train_batches=args.max_train_batches, max_eval_batches=args.max_eval_batches,
                 prompt=args.prompt, method_options=parse_options(args.method_option) or None,
                 log_with=args.log_with)
    overrides = merged(read_experiment_file(args.config, grid=True) if args.config else {}, flags)
    grid = {key: overrides.pop(key, None) for key in ("preset", "datasets", "methods", "seeds", "output_dir", "shard")}
    if not grid["datasets"]:
        raise ConfigError("give --datasets a,b (or `datasets:` in the --config file).")
    grid.update(preset=grid["preset"] or DEFAULT_PRESET, methods=grid["methods"] or list(DEFAULT_METHODS),
                output_dir=grid["output_dir"] or DEFAULT_SWEEP_DIR)
    return grid, overrides


def run(args) -> int:
    from convlora_lite.cli.reproduce_plan import plan, planned
    from convlora_lite.plots.figures import save_loss_curve
    from convlora_lite.reports.results_tables import write_results
    from convlora_lite.training.sweep import reproduce

    grid, overrides = grid_settings(args)
    if planned(args):  # --dry-run, --emit-slurm: nothing is trained
        return plan(args, grid, overrides)
    runs = reproduce(grid["preset"], grid["datasets"], grid["methods"], grid["seeds"], grid["output_dir"],
                     shard=grid["shard"], on_finish=save_loss_curve, **overrides)
    if runs is not None:
        path = write_results(grid["output_dir"], runs)
        print(path.read_text())
        print(f"Table written to {path}")
    return 0
