"""``convlora reproduce --dry-run`` and ``--emit-slurm FILE``: what a grid costs before it is paid for
(:mod:`convlora_lite.bench.grid_cost`), and the SLURM job array that trains it (:mod:`convlora_lite.training.slurm`).
Neither trains, downloads or creates anything but the script and its log folder; ``reproduce`` adds these options
(:func:`add_plan_arguments`) and hands such a command line to :func:`plan`."""
from __future__ import annotations

import argparse
from pathlib import Path

from convlora_lite.errors import ConfigError

#: the options of a plan, by destination: none of them reaches the command an array task runs.
_DEVICE_OPTIONS = {"device_profile": "--device-profile", "gpu_tflops": "--gpu-tflops"}
_SLURM_OPTIONS = {"slurm_shards": "--slurm-shards", "slurm_partition": "--slurm-partition",
                  "slurm_gpus": "--slurm-gpus", "slurm_time": "--slurm-time", "slurm_mem": "--slurm-mem"}
_PLAN_DESTS = {"dry_run", "emit_slurm", "shard", "help", *_DEVICE_OPTIONS, *_SLURM_OPTIONS}


def add_plan_arguments(parser) -> None:
    """``--dry-run``, ``--emit-slurm FILE`` and their options, on ``reproduce``'s parser."""
    from convlora_lite.bench.grid_cost import PROFILE_NAMES
    from convlora_lite.training.slurm import MARGIN_TEXT

    group = parser.add_argument_group("cost and cluster", "price the grid or write its SLURM job array; nothing "
                                      "is trained, downloaded or created (but the script and its log folder)")
    group.add_argument("--dry-run", action="store_true",
                       help="print every run of the grid with its estimated time, the runs and GPU-hours per dataset "
                            "and per method, and the total on --device-profile")
    group.add_argument("--device-profile", choices=PROFILE_NAMES,
                       help="t4 (default; the FLOP budget, benchmarks/colab_budget.md) or h200 (step times measured "
                            "on an H200)")
    group.add_argument("--gpu-tflops", type=float, metavar="TFLOPS",
                       help="price on another GPU given its dense fp16 tensor peak, e.g. 312 for an A100 (the FLOP "
                            "budget at the share of the peak assumed for a T4)")
    group.add_argument("--emit-slurm", type=Path, metavar="FILE",
                       help="write an sbatch script: a job array whose task K trains --shard K/N, resumable, one log "
                            "per task in slurm-logs/ beside FILE")
    group.add_argument("--slurm-shards", type=int, metavar="N", help="array tasks (default: one per run)")
    group.add_argument("--slurm-partition", metavar="NAME", help="the partition (default: the cluster's)")
    group.add_argument("--slurm-gpus", metavar="[TYPE:]N",
                       help="GPUs per task (default 1); more run the task data parallel (torchrun), which multiplies "
                            "the effective batch")
    group.add_argument("--slurm-time", metavar="[D-]HH:MM:SS",
                       help=f"time limit per task (default: the largest shard's estimate on the device profile "
                            f"{MARGIN_TEXT})")
    group.add_argument("--slurm-mem", metavar="SIZE", help="host memory per task, e.g. 64G (default: the cluster's)")
    parser.set_defaults(reproduce_parser=parser)


def planned(args) -> bool:
    """Whether ``args`` asks for a plan (``--dry-run``, ``--emit-slurm``) instead of training; a plan's option given
    without it is a :class:`ConfigError`."""
    given = [flag for dest, flag in {**_DEVICE_OPTIONS, **_SLURM_OPTIONS}.items() if getattr(args, dest) is not None]
    slurm = [flag for flag in given if flag in _SLURM_OPTIONS.values()]
    if slurm and args.emit_slurm is None:
        raise ConfigError(f"{slurm[0]} is an option of --emit-slurm FILE: add it, or leave {slurm[0]} out.")
    if given and not args.dry_run and args.emit_slurm is None:
        raise ConfigError(f"{given[0]} prices the grid: add --dry-run (or --emit-slurm FILE), which train nothing.")
    return args.dry_run or args.emit_slurm is not None


def grid_arguments(args) -> list[str]:
    """``reproduce``'s options as given in ``args`` (those left at their default left out), less the plan's and
    ``--shard``: what every array task runs, each with its own ``--shard``."""
    argv = []
    for action in args.reproduce_parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest in _PLAN_DESTS or value is None or value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        if action.nargs == 0:
            argv.append(flag)
        elif isinstance(action, argparse._AppendAction):
            argv += [part for item in value for part in (flag, str(item))]
        else:
            argv += [flag, ",".join(value) if isinstance(value, list) else str(value)]
    return argv


def plan(args, grid: dict, overrides: dict) -> int:
    """Print the grid's cost (``--dry-run``) and/or write its sbatch script (``--emit-slurm``); ``grid`` and
    ``overrides`` as ``reproduce`` resolved them. Every run's config is checked first."""
    from convlora_lite.bench.grid_cost import cost_markdown, device_profile, grid_cost
    from convlora_lite.training.sweep import grid_configs, seeds_for, shard_of

    profile = device_profile(args.device_profile, args.gpu_tflops)
    configs = grid_configs(grid["preset"], grid["datasets"], grid["methods"], grid["seeds"], grid["output_dir"],
                           **overrides)
    if args.emit_slurm is not None and grid["shard"]:
        raise ConfigError("--emit-slurm deals the whole grid over its array tasks (--slurm-shards): leave out --shard "
                          "(or the --config file's shard).")
    costs = grid_cost(configs, profile)
    if args.dry_run:
        shard = f", shard {grid['shard']}" if grid["shard"] else ""
        print(f"Dry run (nothing is trained, downloaded or written): preset {grid['preset']}, "
              f"{len(grid['datasets'])} datasets x {len(grid['methods'])} methods x "
              f"{len(seeds_for(grid['preset'], grid['seeds']))} seeds = {len(configs)} runs into "
              f"{grid['output_dir']}{shard}.\n")
        print(cost_markdown(shard_of(costs, grid["shard"]), profile, len(configs)), end="")
    if args.emit_slurm is not None:
        _emit(args, configs, costs, profile)
    return 0


def _emit(args, configs: list, costs: list, profile) -> None:
    """Write the sbatch script of ``configs`` (the grid) with the time limit of its largest shard's ``costs``."""
    from convlora_lite.bench.grid_cost import shard_seconds
    from convlora_lite.training.slurm import MARGIN_TEXT, default_time_limit, parse_gpus, sbatch_script, write_script

    shards = args.slurm_shards if args.slurm_shards is not None else len(configs)
    if not 1 <= shards <= len(configs):
        raise ConfigError(f"--slurm-shards {shards}: give 1 to {len(configs)} (the grid's runs; more tasks would "
                          "have nothing to train).")
    gpus = args.slurm_gpus or "1"
    largest = max(shard_seconds(costs, shards))
    time = args.slurm_time or default_time_limit(largest)
    path = args.emit_slurm.resolve()
    log_dir = path.parent / "slurm-logs"
    chosen = "" if args.slurm_time else f" -> --time {time} ({MARGIN_TEXT})"
    comments = (f"Written by `convlora reproduce --emit-slurm`: {len(configs)} runs over {shards} array tasks; "
                f"task K trains runs K, K+{shards}, ... of the grid.",
                f"Largest task estimated at {largest / 3600:.2f} GPU-hours on {profile.name}{chosen}.",
                f"Submit: sbatch {path.name}. Resumable: a requeued or resubmitted task skips finished runs and "
                "resumes the interrupted one.",
                "Before submitting, where the network is: install the datasets (`convlora data download NAME`) and "
                "the SAM checkpoint (~/.cache/convlora_lite or $CONVLORA_CACHE); compute nodes are often offline.")
    script = sbatch_script(grid_arguments(args), shards, job_name=path.stem, log_dir=log_dir, workdir=Path.cwd(),
                           time=time, gpus=gpus, cpus=parse_gpus(gpus)[1] * (max(c.num_workers for c in configs) + 1),
                           partition=args.slurm_partition, mem=args.slurm_mem, comments=comments)
    write_script(path, script)
    log_dir.mkdir(parents=True, exist_ok=True)  # SLURM does not create it: a task without it fails unlogged
    print(f"Wrote {path}: {shards} array tasks for {len(configs)} runs, --time {time} each (largest task estimated "
          f"at {largest / 3600:.2f} h on {profile.name}); logs in {log_dir}. Submit with: sbatch {path}")
