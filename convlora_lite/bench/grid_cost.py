"""What a grid of runs costs before it is trained: each run's estimated time on a device profile and the totals in
GPU-hours (``convlora reproduce --dry-run``; the time limit of ``--emit-slurm``'s array tasks).

Each profile says where its numbers come from:

* ``t4`` (the default): the project's FLOP budget, :func:`~convlora_lite.bench.compute_budget.run_estimate`: the
  FLOPs of a step counted on the meta device at the assumed 12 TFLOP/s sustained, every batch at least the host's
  dispatch time (``benchmarks/colab_budget.md``); SAM 2.1's runs, fp32 on a T4, at the same share of its fp32 peak
  (:data:`~convlora_lite.bench.compute_budget.T4_FP32_FLOPS`, 1.5 TFLOP/s).
* ``h200``: the training steps measured on one H200 (:data:`H200_STEP_S`: the median step of ViT-B and ViT-H at
  1024 px, LoRA and Conv-LoRA, fp16 and bf16), one measured step per batch. They were measured before Conv-LoRA's
  step dispatched half its operators (``docs/performance.md``), so its Conv-LoRA times are conservative.
* any other GPU by its dense fp16 tensor peak (``gpu_tflops``, e.g. 312 for an A100): the FLOP budget at the share
  of that peak the T4 assumption takes of the T4's (12 of 65 TFLOP/s), each batch at least the host's dispatch time
  (:data:`~convlora_lite.bench.compute_budget.HOST_S_PER_OPERATOR` per counted operator); each run states the share
  of its training time the host sets.

The split sizes are the usual ones (``docs/data.md``; :func:`~convlora_lite.bench.compute_budget.dataset_sizes`), or
the sizes ``convlora reproduce`` generates an analog at. Only shapes are built (the meta device): pricing the paper's
ViT-H grid takes seconds and no memory, and nothing is read from or written to the data root or the output folder.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from convlora_lite.bench.compute_budget import (
    HOST_S_PER_OPERATOR,
    T4_FP16_FLOPS,
    T4_FP16_PEAK_FLOPS,
    T4_FP32_FLOPS,
    RunEstimate,
    dataset_sizes,
    eval_batches,
    host_seconds,
    run_estimate,
    run_size,
    step_flops,
)
from convlora_lite.data.registry import get_dataset_spec
from convlora_lite.data.synthetic import generate_synthetic
from convlora_lite.errors import ConfigError
from convlora_lite.models.configs import get_config
from convlora_lite.progress import format_duration

#: the named profiles of ``--device-profile``; another GPU is priced by ``--gpu-tflops``.
PROFILE_NAMES = ("t4", "h200")
#: where :data:`H200_STEP_S` comes from.
H200_SOURCE = ("benchmarks/results/gpu_check_nvidia_h200_20261204T1454Z.json (2026-12-04, commit 4d76857, "
               "before Conv-LoRA's operator cut)")
#: median seconds of one training step on one NVIDIA H200 (prompt-free SAM at 1024 px, batch 1: forward, structure
#: + auxiliary loss, backward, clipping, AdamW; median of 5 steps after 2 warm-ups; random weights, Meta's attention,
#: no activation checkpointing), by (model, method as the GPU check labels it, precision): :data:`H200_SOURCE`.
H200_STEP_S = {
    ("vit_b", "lora", "fp16"): 0.070939, ("vit_b", "conv_lora", "fp16"): 0.120125,
    ("vit_b", "conv_lora:implementation=official", "fp16"): 0.185681,
    ("vit_b", "lora", "bf16"): 0.066278, ("vit_b", "conv_lora", "bf16"): 0.111049,
    ("vit_b", "conv_lora:implementation=official", "bf16"): 0.186635,
    ("vit_h", "lora", "fp16"): 0.147536, ("vit_h", "conv_lora", "fp16"): 0.285914,
    ("vit_h", "conv_lora:implementation=official", "fp16"): 0.427091,
    ("vit_h", "lora", "bf16"): 0.149833, ("vit_h", "conv_lora", "bf16"): 0.288386,
    ("vit_h", "conv_lora:implementation=official", "bf16"): 0.426852,
}
#: the largest peak memory (MiB) of those steps, by (model, precision): what a 1024 px step needs on any GPU.
H200_PEAK_MIB = {("vit_b", "fp16"): 8235, ("vit_b", "bf16"): 8619, ("vit_h", "fp16"): 18902, ("vit_h", "bf16"): 19407}
#: the sizes an analog is generated at when a run needs it (``generate_synthetic``'s defaults).
_ANALOG_SIZES = {name: p.default for name, p in inspect.signature(generate_synthetic).parameters.items()
                 if name in ("n_train", "n_val", "n_test")}


@dataclass(frozen=True)
class DeviceProfile:
    """A device to price runs on: ``flops_per_s`` (sustained) for the FLOP budget, or ``None`` for the H200's
    measured steps; ``memory_gib`` (usable), where known, to warn of a step that cannot fit."""

    name: str
    description: str
    flops_per_s: Optional[float] = None
    memory_gib: Optional[float] = None


def device_profile(name: Optional[str] = None, gpu_tflops: Optional[float] = None) -> DeviceProfile:
    """The profile ``name`` (:data:`PROFILE_NAMES`, default ``t4``), or the GPU of dense fp16 peak ``gpu_tflops``."""
    if gpu_tflops is not None:
        if name is not None:
            raise ConfigError(f"--device-profile {name} and --gpu-tflops {gpu_tflops:g} name two devices; give one.")
        if not gpu_tflops > 0:
            raise ConfigError(f"--gpu-tflops {gpu_tflops:g}: give the GPU's dense fp16 tensor peak in TFLOP/s, "
                              "e.g. 312 for an A100, 989 for an H100 SXM.")
        share = T4_FP16_FLOPS / T4_FP16_PEAK_FLOPS
        sustained = gpu_tflops * 1e12 * share
        return DeviceProfile(f"{gpu_tflops:g} TFLOP/s GPU", (
            f"the FLOP budget: counted FLOPs at {sustained / 1e12:.1f} TFLOP/s sustained ({gpu_tflops:g} TFLOP/s fp16 "
            f"peak x {share:.3f}, the share of a T4's peak the T4 assumption takes), each batch at least the host's "
            f"dispatch time ({HOST_S_PER_OPERATOR * 1e6:.0f} us per operator: the H200 host's, rounded up)"), sustained)
    name = name or "t4"
    if name == "t4":
        return DeviceProfile("t4", (
            f"the FLOP budget of benchmarks/colab_budget.md: counted FLOPs at {T4_FP16_FLOPS / 1e12:.0f} TFLOP/s "
            f"sustained (an assumption: {T4_FP16_FLOPS / T4_FP16_PEAK_FLOPS:.0%} of a T4's fp16 peak), each batch "
            f"at least the host's dispatch time ({HOST_S_PER_OPERATOR * 1e6:.0f} us per operator)"), T4_FP16_FLOPS,
            memory_gib=15.0)
    if name == "h200":
        return DeviceProfile("h200", (
            f"training steps measured on one NVIDIA H200, {H200_SOURCE}: Conv-LoRA's step has dispatched fewer "
            "operators since, so its estimates are conservative; every batch is charged a whole measured step "
            "(optimizer included) times the batch size; evaluation the step times the forward pass's share of "
            "its FLOPs or of its operators, the larger"), memory_gib=139.0)
    raise ConfigError(f"--device-profile {name!r}: choose one of {', '.join(PROFILE_NAMES)}, or give --gpu-tflops "
                      "for another GPU.")


@dataclass(frozen=True)
class RunCost:
    """One run of a grid and its estimate: ``index`` its place in the grid (dataset, method, seed order, the order
    shards are dealt from), ``basis`` where its numbers come from, ``measured`` whether from a measured step (whose
    time holds the host's share) rather than the FLOP budget."""

    index: int
    config: Any
    estimate: RunEstimate
    basis: str
    measured: bool

    @property
    def seconds(self) -> float:
        """The run's estimated seconds: training and evaluation."""
        return self.estimate.total_s


def split_sizes(config) -> tuple[int, int, int]:
    """``(train, val, test)`` images a run of ``config`` is priced on: the usual sizes of a real dataset, the
    generated sizes of a ``synth_`` analog."""
    spec = get_dataset_spec(config.dataset)
    if spec.synthetic:
        return _ANALOG_SIZES["n_train"], _ANALOG_SIZES["n_val"], _ANALOG_SIZES["n_test"]
    return dataset_sizes(spec.name, config.max_train_batches)


def _flops(config):
    """The counted FLOPs of one image's step of ``config`` (cached by :func:`step_flops`)."""
    return step_flops(config.model, config.image_size, config.method, config.activation_checkpointing,
                      config.num_classes, config.attention)


def h200_step(config) -> tuple[float, str]:
    """``(seconds, what was measured)`` of one batch-1 training step of ``config`` on the H200 (:data:`H200_STEP_S`);
    a method not measured takes LoRA's step, and says so. A :class:`ConfigError` for a setting never measured."""
    precision = "fp16" if config.precision == "auto" else config.precision
    unmeasured = [text for bad, text in (
        (config.model not in ("vit_b", "vit_h"), f"model {config.model}"),
        (config.image_size != 1024, f"{config.image_size} px"), (precision == "fp32", "fp32"),
        (config.attention != "meta", f"attention {config.attention}"),
        (config.activation_checkpointing, "activation checkpointing")) if bad]
    if unmeasured:
        raise ConfigError(f"--device-profile h200 has training steps measured for vit_b and vit_h at 1024 px in "
                          "fp16/bf16 (Meta's attention, no activation checkpointing); "
                          f"{config.dataset}/{config.method} has {', '.join(unmeasured)}. Price it with "
                          "--device-profile t4 or --gpu-tflops (the FLOP budget), or measure it on the GPU: "
                          "`convlora bench --device cuda ...`.")
    label = config.method
    if config.method == "conv_lora" and config.method_options.get("implementation") == "official":
        label = "conv_lora:implementation=official"
    if (config.model, label, precision) in H200_STEP_S:
        step = H200_STEP_S[config.model, label, precision]
        return step, f"H200 median step {step * 1e3:.0f} ms ({config.model}, 1024 px, {precision}, {label})"
    step = H200_STEP_S[config.model, "lora", precision]
    return step, (f"H200 median step {step * 1e3:.0f} ms of LoRA ({config.model}, 1024 px, {precision}): "
                  f"{config.method} not measured, LoRA's step assumed")


def _measured_estimate(config, n_train: int, n_val: int, n_test: int) -> tuple[RunEstimate, str]:
    """A run on the H200: one measured step per batch (times the batch size), evaluation the step scaled to a forward
    pass (the larger of its share of the step's FLOPs and of its operators)."""
    step, basis = h200_step(config)
    flops = _flops(config)
    host_train, host_forward = host_seconds(config.model, config.method, config.activation_checkpointing)
    forward_share = max(flops.forward / flops.train, host_forward / host_train)
    batches, steps = run_size(n_train, config.batch_size, config.grad_accum, config.epochs, config.max_train_batches)
    per_batch = step * config.batch_size
    estimate = RunEstimate(min(n_train, batches * config.batch_size), batches, config.epochs, steps,
                           train_s=batches * config.epochs * per_batch,
                           eval_s=eval_batches(config, n_val, n_test) * per_batch * forward_share)
    return estimate, basis


def run_cost(config, profile: DeviceProfile, index: int = 0) -> RunCost:
    """The estimated cost of one run of ``config`` (a resolved ``TrainConfig``) on ``profile``."""
    n_train, n_val, n_test = split_sizes(config)
    if profile.flops_per_s is None:
        estimate, basis = _measured_estimate(config, n_train, n_val, n_test)
        return RunCost(index, config, estimate, basis, measured=True)
    flops = _flops(config)
    host_train, _ = host_seconds(config.model, config.method, config.activation_checkpointing)
    flops_per_s, fp32 = profile.flops_per_s, ""
    if profile.name == "t4" and get_config(config.model).backbone == "hiera":
        flops_per_s, fp32 = T4_FP32_FLOPS, " (fp32: SAM 2.1 has no bf16 on a T4)"
    basis = (f"{flops.train / 1e12:.2f} TFLOP per training image ({config.model}, {config.image_size} px, "
             f"{config.method}) at {flops_per_s / 1e12:.1f} TFLOP/s{fp32}; host floor {host_train * 1e3:.0f} ms "
             "per batch")
    return RunCost(index, config, run_estimate(config, n_train, n_val, n_test, flops_per_s, flops), basis,
                   measured=False)


def grid_cost(configs: list, profile: DeviceProfile) -> list[RunCost]:
    """:func:`run_cost` of every config of a grid, in the grid's order."""
    return [run_cost(config, profile, i) for i, config in enumerate(configs)]


def shard_seconds(costs: list[RunCost], shards: int) -> list[float]:
    """The estimated seconds of each of ``shards`` workers (worker ``k`` trains runs ``k, k + shards, ...``)."""
    return [sum(cost.seconds for cost in costs[k::shards]) for k in range(shards)]


def memory_notes(costs: list[RunCost], profile: DeviceProfile) -> list[str]:
    """Warnings for steps measured to need more memory than ``profile`` has."""
    notes = set()
    for cost in costs:
        c = cost.config
        precision = "fp16" if c.precision == "auto" else c.precision
        peak = H200_PEAK_MIB.get((c.model, precision))
        if (profile.memory_gib and peak and c.image_size == 1024 and c.attention == "meta"
                and not c.activation_checkpointing and peak * c.batch_size / 1024 > profile.memory_gib):
            notes.add(f"a {c.model} step at 1024 px ({precision}, batch {c.batch_size}) needed "
                      f"{peak * c.batch_size / 1024:.1f} GiB on the H200, more than the {profile.memory_gib:.0f} GiB "
                      f"of a {profile.name}: add --attention sdpa (half the activations) or use a larger GPU.")
    return sorted(notes)


def _hours(seconds: float) -> str:
    """``seconds`` as hours with two decimals, as every table of the dry run shows them."""
    return f"{seconds / 3600:,.2f}"


def _totals(costs: list[RunCost], key: str) -> list[str]:
    """A table of runs and GPU-hours per value of the config field ``key``, in the grid's order."""
    names = list(dict.fromkeys(getattr(c.config, key) for c in costs))
    lines = [f"| {key} | runs | GPU-hours |", "|---|---|---|"]
    for name in names:
        mine = [c for c in costs if getattr(c.config, key) == name]
        lines.append(f"| {name} | {len(mine)} | {_hours(sum(c.seconds for c in mine))} |")
    return lines


def cost_markdown(costs: list[RunCost], profile: DeviceProfile, grid_runs: Optional[int] = None) -> str:
    """The dry run's report of ``costs`` (a grid's, or one shard's part of a grid of ``grid_runs``): every run,
    the totals per dataset and per method, the total in GPU-hours, where each estimate comes from."""
    bases = list(dict.fromkeys(c.basis for c in costs))
    letters = {basis: chr(ord("a") + i) if i < 26 else str(i) for i, basis in enumerate(bases)}
    lines = ["| # | dataset | method | seed | model | px | batches x epochs | training (h) | eval (h) | run (h) "
             "| host-bound | basis |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in costs:
        e, cfg = c.estimate, c.config
        host = "in the step" if c.measured else f"{e.host_bound_share:.0%}"
        lines.append(f"| {c.index} | {cfg.dataset} | {cfg.method} | {cfg.seed} | {cfg.model} | {cfg.image_size} "
                     f"| {e.batches_per_epoch:,} x {e.epochs} | {_hours(e.train_s)} | {_hours(e.eval_s)} "
                     f"| {_hours(e.total_s)} | {host} | {letters[c.basis]} |")
    total = sum(c.seconds for c in costs)
    part = f" (one shard's part of the grid's {grid_runs})" if grid_runs not in (None, len(costs)) else ""
    days = f", {total / 86400:.1f} days" if total > 2 * 86400 else ""
    runs = f"{len(costs)} run{'' if len(costs) == 1 else 's'}"
    lines += ["", *_totals(costs, "dataset"), "", *_totals(costs, "method"), "",
              f"Total: {runs}{part}, {_hours(total)} GPU-hours on {profile.name} "
              f"({format_duration(total)} on one GPU{days}).",
              "", f"Device profile {profile.name}: {profile.description}.", "", "Basis of each estimate:"]
    lines += [f"- {letters[b]}: {b}" for b in bases]
    lines += ["", "Not counted: data loading, downloads (SAM checkpoints, datasets), model building and start-up."]
    lines += [f"Warning: {note}" for note in memory_notes(costs, profile)]
    return "\n".join(lines) + "\n"


def paper_scale_plan(datasets: Sequence[str], methods: Sequence[str] = ("decoder_only", "lora", "conv_lora"),
                     seeds: int = 3, profiles: Sequence[str] = ("t4", "h200")) -> dict:
    """The paper-scale grid of ``datasets`` x ``methods`` x ``seeds`` (notebook 12: what would answer its question on
    real data): ``command`` (``convlora reproduce`` on the ``paper`` preset), ``runs`` and ``hours`` (profile ->
    estimated GPU-hours by :func:`grid_cost`; the command's ``--dry-run`` prints the detail). Builds shapes only:
    nothing is downloaded or trained. Used in notebook 12."""
    from convlora_lite.training.sweep import grid_configs

    configs = grid_configs("paper", list(datasets), list(methods), seeds)
    hours = {name: sum(cost.seconds for cost in grid_cost(configs, device_profile(name))) / 3600 for name in profiles}
    command = (f"convlora reproduce --preset paper --datasets {','.join(datasets)} --methods {','.join(methods)} "
               f"--seeds {seeds} --output-dir runs/paper")
    return dict(command=command, runs=len(configs), hours=hours)


def colab_plan(task: str, model: str, methods: Sequence[str]) -> dict:
    """One ``colab`` run per method of ``task`` (a real dataset) on ``model``, priced on the ``t4`` profile
    (notebook 13: SAM 2.1 Hiera-S in a free Colab session): ``minutes`` (method -> estimated minutes of one run),
    ``total_minutes``, ``basis`` (method -> where its numbers come from), ``config`` (the first run's
    ``TrainConfig``: the preset's size and schedule) and ``command`` (the same runs with ``convlora reproduce``,
    whose ``--dry-run`` prints the detail). Shapes only: nothing is downloaded or trained."""
    from convlora_lite.training.sweep import grid_configs

    costs = grid_cost(grid_configs("colab", [task], list(methods), 1, model=model), device_profile("t4"))
    minutes = {cost.config.method: cost.seconds / 60 for cost in costs}
    command = (f"convlora reproduce --preset colab --model {model} --datasets {task} --methods {','.join(methods)} "
               "--seeds 1 --output-dir runs/colab_sam2")
    return dict(minutes=minutes, total_minutes=sum(minutes.values()), command=command, config=costs[0].config,
                basis={cost.config.method: cost.basis for cost in costs})


def colab_plan_reading(task: str, model: str, methods: Sequence[str], session_minutes: float = 60) -> str:
    """:func:`colab_plan` in words: each method's estimated minutes for one ``colab`` run of ``task`` on ``model``,
    the total against ``session_minutes`` (the hour a notebook is sized to on a free Colab T4,
    ``benchmarks/colab_budget.md``), the assumption it rests on and the command. Used in notebook 13."""
    plan = colab_plan(task, model, methods)
    config = plan["config"]
    batches = f" of at most {config.max_train_batches} batches" if config.max_train_batches else ""
    each = ", ".join(f"{method} {minutes:.0f} min" for method, minutes in plan["minutes"].items())
    fits = "fits" if plan["total_minutes"] <= session_minutes else "does not fit"
    return (f"One colab run per method of {task} on {model} ({config.image_size} px, {config.epochs} epochs{batches}, "
            f"one seed), "
            f"estimated on a free Colab T4: {each}; {plan['total_minutes']:.0f} min in all, which {fits} the "
            f"{session_minutes:.0f} minutes a notebook is sized to. The estimate is the project's FLOP budget, not a "
            f"measurement: {plan['basis'][methods[-1]]}. Data loading, downloads and start-up are not counted. "
            f"The same runs from a terminal: {plan['command']} (add --dry-run to see the estimate per run).")
