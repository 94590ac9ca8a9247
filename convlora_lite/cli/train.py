"""``convlora train``: fine-tune SAM with a PEFT method on a dataset; one run directory per run.

Every option left out comes from the preset (see ``convlora_lite.training.presets``) or the dataset's
official recipe. A ``synth_`` dataset missing from ``--root`` is generated first; a real one must
be installed (``convlora data download NAME``, or ``convlora data install NAME ARCHIVE_OR_FOLDER``
for data fetched by hand). ``--config FILE.yaml`` reads the run's settings from an experiment file
(:mod:`convlora_lite.training.experiment_file`); a flag given as well wins. Multi-GPU: ``accelerate launch -m
convlora_lite train ...`` (or ``torchrun``).
"""
from __future__ import annotations

import os

from convlora_lite.errors import ConfigError
from convlora_lite.models.prompts import PROMPTS
from convlora_lite.models.sdpa_attention import ATTENTIONS
from convlora_lite.peft.base import parse_options
from convlora_lite.plots.figures import save_loss_curve
from convlora_lite.training import DEVICES, PRECISIONS, TrainConfig, fit
from convlora_lite.training.compile import COMPILE_MODES
from convlora_lite.training.config import TRACKERS
from convlora_lite.training.experiment_file import merged, read_experiment_file
from convlora_lite.training.presets import DEFAULT_PRESET, PRESET_NAMES
from convlora_lite.training.rundir import RunDir


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="fine-tune SAM with a PEFT method (writes a run directory)",
        description="Fine-tune SAM with a PEFT method on a dataset. Options not given come from the preset "
                    "and the dataset's official recipe; the resolved config is saved in <run dir>/config.json.")
    add_config_argument(parser, "configs/polyp_conv_lora.yaml")
    parser.add_argument("--dataset", help="registry name, e.g. polyp, camo, synth_polyp (or, with --data-dir, "
                                          "the run's label; default own_<folder name>)")
    parser.add_argument("--data-dir", help="your own data: a folder with images/ and masks/, a folder with train/ "
                                           "val/ [test/] of that shape, a CSV (image, mask [, split] columns) or a "
                                           "COCO instances JSON; without a split, a seeded 80/10/10 one is recorded "
                                           "in the run directory")
    parser.add_argument("--task", choices=("binary", "multiclass"),
                        help="own data: default multiclass when classes.txt / the COCO categories name > 2 classes")
    parser.add_argument("--loss", help="override the recipe's loss (structure, balanced_bce; set for multi-class)")
    parser.add_argument("--select-metric", help="override the metric that picks the best epoch (e.g. iou, dice, "
                                                "s_alpha, miou)")
    parser.add_argument("--method", help="PEFT method, e.g. conv_lora, lora, decoder_only")
    parser.add_argument("--preset", choices=PRESET_NAMES, help=f"settings bundle (default {DEFAULT_PRESET})")
    parser.add_argument("--model", help="SAM backbone: vit_b, vit_l, vit_h, micro_sam, test_tiny, or SAM 2.1's "
                                        "sam2.1_hiera_tiny, _small, _base_plus, _large (docs/sam2.md)")
    parser.add_argument("--checkpoint",
                        help="SAM weights: 'auto' (official/bundled, the default), a file (SAM 2.1: Meta's .pt), a "
                             "Hugging Face SAM folder (config.json + model.safetensors), or 'none' (random)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--output-dir", help="run directory (default runs/<dataset>/<method>/seed<S>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its last epoch")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--max-train-batches", type=int, help="cap the training batches per epoch")
    parser.add_argument("--image-size", type=int,
                        help="input side in pixels (default: the preset's, or the model's own)")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int, help="images per process and step")
    parser.add_argument("--grad-accum", type=int, help="batches per optimizer step")
    parser.add_argument("--precision", choices=PRECISIONS)
    parser.add_argument("--device", choices=DEVICES)
    add_step_arguments(parser)
    add_log_argument(parser)
    parser.add_argument("--num-workers", type=int, help="data loader worker processes")
    parser.add_argument("--root", help="dataset root folder (default ./data)")
    parser.add_argument("--method-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the PEFT method, e.g. num_experts=4 or gated=true (repeatable; an "
                             "unknown key is an error that lists the method's options)")
    parser.add_argument("--prompt", choices=PROMPTS,
                        help="beyond the paper: keep SAM promptable. none (default, prompt-free as the paper), "
                             "box (a jittered box per mask) or point (a point inside it, SAM's best-of-3 masks); "
                             "trained and scored with prompts sampled from the masks, the zero-shot promptable "
                             "SAM scored beside it (binary tasks only)")
    parser.set_defaults(func=run)


def add_config_argument(parser, example: str) -> None:
    """``--config FILE.yaml`` (``train``, ``reproduce``): settings from an experiment file, flags over them."""
    parser.add_argument("--config", metavar="FILE.yaml",
                        help=f"an experiment file: the settings as TrainConfig's fields (e.g. {example}); a flag "
                             "given as well overrides the file's value")


def add_log_argument(parser) -> None:
    """``--log-with NAME`` (``train``, ``reproduce``): trackers beside the TensorBoard files every run writes."""
    parser.add_argument("--log-with", action="append", choices=TRACKERS, metavar="NAME",
                        help=f"also log to an experiment tracker through Accelerate ({', '.join(TRACKERS)}; "
                             "repeatable; the package must be installed); TensorBoard files are always written to "
                             "<run dir>/tensorboard")


def add_step_arguments(parser) -> None:
    """``--compile [MODE]`` and ``--attention`` (``train``, ``reproduce``, ``bench``): how the training step is
    computed (the same arithmetic, ``docs/performance.md``)."""
    parser.add_argument("--compile", nargs="?", const="default", choices=COMPILE_MODES, metavar="MODE",
                        help="run the training step through torch.compile (MODE: default, reduce-overhead = CUDA "
                             "graphs, max-autotune; a message and eager training where the compiler is missing; "
                             "docs/performance.md)")
    parser.add_argument("--attention", choices=ATTENTIONS,
                        help="the encoder's attention: meta (default, Meta's code) or sdpa (scaled_dot_product_"
                             "attention with the relative positions in the dot product: no attention matrix kept "
                             "for the backward; docs/performance.md)")


def run(args) -> int:
    flags = {
        "dataset": args.dataset, "method": args.method, "preset": args.preset,
        "model": args.model, "seed": args.seed, "output_dir": args.output_dir, "epochs": args.epochs,
        "max_train_batches": args.max_train_batches,
        "image_size": args.image_size, "lr": args.lr, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
        "precision": args.precision, "device": args.device, "compile": args.compile, "attention": args.attention,
        "num_workers": args.num_workers, "data_root": args.root,
        "resume": args.resume or None, "checkpoint": args.checkpoint,
        "method_options": parse_options(args.method_option) or None, "prompt": args.prompt,
        "data_dir": args.data_dir, "task": args.task, "loss": args.loss, "select_metric": args.select_metric,
        "log_with": args.log_with,
    }
    given = merged(read_experiment_file(args.config) if args.config else {}, flags)  # a flag left out: the preset
    dataset, method, preset = given.pop("dataset", None), given.pop("method", None), given.pop("preset", None)
    if isinstance(given.get("checkpoint"), str) and given["checkpoint"].lower() == "none":
        given["checkpoint"] = None
    if not dataset and not given.get("data_dir"):
        raise ConfigError("give --dataset NAME (a registry dataset) or --data-dir PATH (your own data), on the "
                          "command line or in the --config file.")
    if not method:
        raise ConfigError("give --method NAME (e.g. conv_lora), on the command line or in the --config file.")
    config = TrainConfig.resolve(dataset, method, preset or DEFAULT_PRESET, **given)
    run_dir = fit(config, on_finish=save_loss_curve)
    if int(os.environ.get("RANK", "0")) == 0:
        metrics = RunDir(run_dir).read_metrics()
        print(f"Run directory: {run_dir}")
        print(f"Best epoch {metrics['best_epoch']} of {metrics['epochs_run']} "
              f"(val {metrics['select_metric']} {metrics['val'][metrics['select_metric']]:.4f})")
        for label, key in (("test", "test"), ("zero-shot", "zero_shot")):
            for split, values in metrics.get(key, {}).items():
                shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, (int, float)))
                print(f"{label} {split}: {shown}")
    return 0
