"""How long a run takes: FLOPs of a training step, counted by PyTorch, and a time per run.

:func:`step_flops` builds the model on the ``meta`` device (shapes only, no memory, no weights)
and counts one training step with :class:`torch.utils.flop_counter.FlopCounterMode`: the forward
pass of prompt-free SAM with the PEFT method, the structure loss and the backward pass (with
activation checkpointing, the encoder blocks' forward is counted a second time, as it is
recomputed). Matrix products and convolutions are counted (2 FLOPs per multiply-add); element-wise
work is not, which is small next to them in a ViT.

:func:`run_estimate` turns that into seconds for one run of a :class:`TrainConfig` on a dataset of
``n_train`` training and ``n_val`` validation images, at an assumed sustained throughput (FLOP/s),
plus the validation pass of every epoch and the final test pass. The assumption is everything: it
is a planning number, not a measurement (``benchmarks/colab_budget.md`` says which one is used and
why). ``python -m convlora_lite.bench.compute_budget`` prints the tables of that file.

A step is also bounded by the host (``docs/performance.md``): the GPU cannot finish before the host has
dispatched the step's operators. A batch therefore costs ``max(FLOPs / throughput, operators x host time per
operator)``, with the operators counted by ``convlora bench --count-ops`` (:data:`VIT_B_OPERATORS`) and the host
time per operator measured on a GPU machine (:data:`HOST_S_PER_OPERATOR`); :attr:`RunEstimate.host_bound_share`
says how much of the training time that floor adds.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from functools import lru_cache

import torch

#: The usual split sizes (``docs/data.md``): train, val, test (None: not published there; the
#: estimate then assumes a validation set of 10 % of the training set, and the leaf set's train
#: size is taken as the cap of the ``colab`` preset, its cost at most).
USUAL_SPLIT_SIZES = {
    "polyp": (1450, None, 162),
    "isic2017": (2000, 150, 600),
    "camo": (1000, None, 250),
    "sbu": (4089, None, 638),
    "leaf": (None, None, None),
    "road": (1108, 14, 49),
    "trans10k": (5000, 1000, 4428),
}

#: The throughput assumed for a Colab T4 in fp16 (FLOP/s sustained by a PyTorch AMP training step):
#: about 18 % of the T4's 65 TFLOP/s fp16 tensor-core peak (see benchmarks/colab_budget.md).
T4_FP16_FLOPS = 12e12
#: the T4's fp16 tensor-core peak (dense), of which :data:`T4_FP16_FLOPS` is the share assumed sustained.
T4_FP16_PEAK_FLOPS = 65e12
#: the T4's fp32 peak (no tensor cores in fp32), and the throughput assumed in fp32: the same share of it as
#: :data:`T4_FP16_FLOPS` of the fp16 peak. SAM 2.1 trains in fp32 on a T4, which has no bf16
#: (``docs/precision.md``, "SAM 2.1").
T4_FP32_PEAK_FLOPS = 8.1e12
T4_FP32_FLOPS = T4_FP32_PEAK_FLOPS * T4_FP16_FLOPS / T4_FP16_PEAK_FLOPS


#: Host time per dispatched aten operator of a step on a GPU machine: measured on the H200's host (2026-12-04,
#: ViT-B 1024 px fp16, batch 1: host-bound steps of 71 ms with LoRA and 120 ms with Conv-LoRA for about 4,000 and
#: 7,600 operators, 16-18 us each; ``docs/performance.md``), rounded up to 20 us for a slower host such as Colab's.
HOST_S_PER_OPERATOR = 20e-6

#: aten operators of one ViT-B training step and of its forward pass, by (method, activation checkpointing), counted
#: by ``convlora bench --count-ops`` (``benchmarks/results/op_count_vit_b_*.json``); they do not depend on the input
#: size. Other backbones: scaled by their depth (the encoder blocks dispatch nearly all of them).
VIT_B_OPERATORS = {("lora", False): (3997, 1891), ("conv_lora", False): (5150, 2378),
                   ("lora", True): (5611, 1879), ("conv_lora", True): (7400, 2366)}


def host_seconds(model: str, method: str, activation_checkpointing: bool) -> tuple[float, float]:
    """``(training step, forward)`` seconds the host needs to dispatch one step of ``method`` on ``model``
    (:data:`VIT_B_OPERATORS` x :data:`HOST_S_PER_OPERATOR`); methods not counted there take LoRA's count."""
    from convlora_lite.models.configs import get_config

    step, forward = VIT_B_OPERATORS.get((method, activation_checkpointing),
                                        VIT_B_OPERATORS[("lora", activation_checkpointing)])
    scale = get_config(model).depth / 12 * HOST_S_PER_OPERATOR
    return step * scale, forward * scale


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one image: ``forward`` (an evaluation step) and ``train`` (a training step:
    forward, backward and any recomputation)."""

    model: str
    image_size: int
    method: str
    activation_checkpointing: bool
    forward: float
    train: float


@lru_cache(maxsize=None)
def step_flops(model: str = "vit_b", image_size: int = 1024, method: str = "conv_lora",
               activation_checkpointing: bool = False, num_classes: int = 1, attention: str = "meta") -> StepFlops:
    """Count one image's forward and training step of ``method`` on ``model`` at ``image_size`` with the encoder's
    ``attention`` (``meta`` or ``sdpa``, whose global blocks compute a wider dot product) (batch 1, meta device:
    seconds on a CPU even for ViT-H)."""
    from torch.utils.flop_counter import FlopCounterMode

    from convlora_lite.models.activation_checkpointing import enable_activation_checkpointing
    from convlora_lite.models.sam import build_sam
    from convlora_lite.models.sdpa_attention import enable_sdpa_attention
    from convlora_lite.models.segmenter_sam2 import segmenter_for
    from convlora_lite.peft import apply_peft
    from convlora_lite.training.losses import structure_loss

    sam = build_sam(model, checkpoint=None, image_size=image_size, device="meta")
    with torch.device("meta"):
        net = segmenter_for(sam, num_classes=num_classes)
        apply_peft(net, method)
        if attention == "sdpa":
            enable_sdpa_attention(net.image_encoder)
        if activation_checkpointing:
            enable_activation_checkpointing(net.image_encoder)
    # the passes run outside the meta default device: the small constants a layer builds for itself (Conv-LoRA's
    # resize matrices, 64 x 64) are then made on the CPU at once, not through meta decompositions (10x slower)
    net.train()
    images = torch.randn(1, 3, image_size, image_size, device="meta")
    masks = torch.zeros(1, 1, image_size, image_size, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(images)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        out = net(images)
        logits = out.logits if out.logits is not None else out.mask_logits
        loss = structure_loss(logits[:, :1], masks) + out.aux_loss + 0 * out.class_logits.sum() \
            if out.logits is None else structure_loss(logits, masks) + out.aux_loss
        loss.backward()
    train = counter.get_total_flops()
    return StepFlops(model, image_size, method, activation_checkpointing, float(forward), float(train))


@dataclass(frozen=True)
class RunEstimate:
    """The size and the estimated duration of one run."""

    train_images: int
    batches_per_epoch: int
    epochs: int
    optimizer_steps: int
    train_s: float
    eval_s: float
    #: the share of ``train_s`` the host sets: 0 when every batch is bound by the GPU's arithmetic.
    host_bound_share: float = 0.0

    @property
    def total_s(self) -> float:
        return self.train_s + self.eval_s


def run_size(n_train: int, batch_size: int, grad_accum: int, epochs: int, max_train_batches=None,
             num_processes: int = 1) -> tuple[int, int]:
    """``(batches per epoch, optimizer steps)`` of a run, as the trainer counts them."""
    batches = math.ceil(math.ceil(n_train / num_processes) / batch_size)
    if max_train_batches is not None:
        batches = min(batches, max_train_batches)
    return batches, epochs * math.ceil(batches / grad_accum)


def eval_batches(config, n_val: int, n_test: int) -> int:
    """The forward batches a run of ``config`` scores: the validation split every epoch (at most
    ``max_eval_batches``), then the ``n_test`` test images once."""
    per_epoch = math.ceil(min(n_val, (config.max_eval_batches or n_val) * config.batch_size) / config.batch_size)
    return per_epoch * config.epochs + math.ceil(n_test / config.batch_size)


def run_estimate(config, n_train: int, n_val: int, n_test: int = 0, flops_per_s: float = T4_FP16_FLOPS,
                 flops: StepFlops | None = None) -> RunEstimate:
    """Estimated seconds of one run of ``config`` (a resolved ``TrainConfig``): every training batch costs the
    larger of its FLOPs at ``flops_per_s`` and the host's dispatch time (:func:`host_seconds`), plus validation
    every epoch and the test pass (forward passes, the same way). Data loading, start-up and downloads are not
    counted."""
    flops = flops or step_flops(config.model, config.image_size, config.method, config.activation_checkpointing,
                                config.num_classes, config.attention)
    batches, steps = run_size(n_train, config.batch_size, config.grad_accum, config.epochs, config.max_train_batches)
    host_train, host_forward = host_seconds(config.model, config.method, config.activation_checkpointing)
    device_train = config.batch_size * flops.train / flops_per_s
    train_s = batches * config.epochs * max(device_train, host_train)
    eval_s = eval_batches(config, n_val, n_test) * max(config.batch_size * flops.forward / flops_per_s, host_forward)
    return RunEstimate(min(n_train, batches * config.batch_size), batches, config.epochs, steps, train_s, eval_s,
                       host_bound_share=max(0.0, 1 - device_train / host_train))


def dataset_sizes(name: str, cap: int | None = None) -> tuple[int, int, int]:
    """``(train, val, test)`` of :data:`USUAL_SPLIT_SIZES` with the stated fill-ins."""
    train, val, test = USUAL_SPLIT_SIZES[name]
    train = train if train is not None else (cap or 1000)
    val = val if val is not None else round(0.1 * train)
    test = test if test is not None else round(0.1 * train)
    return train, val, test


def budget_markdown(flops_per_s: float = T4_FP16_FLOPS, methods=("lora", "conv_lora")) -> str:
    """The tables of ``benchmarks/colab_budget.md``: FLOPs per step and time per run."""
    from convlora_lite.training.config import TrainConfig

    lines = ["| model | px | method | act. ckpt | attention | forward (TFLOP/image) | training step (TFLOP/image) |",
             "|---|---|---|---|---|---|---|"]
    for model, size, ckpt, attention in (("vit_b", 512, True, "meta"), ("vit_b", 512, False, "meta"),
                                         ("vit_b", 512, False, "sdpa"), ("vit_b", 1024, False, "meta"),
                                         ("vit_b", 1024, False, "sdpa"), ("vit_h", 1024, False, "meta"),
                                         ("vit_h", 1024, False, "sdpa")):
        for method in methods:
            f = step_flops(model, size, method, ckpt, attention=attention)
            lines.append(f"| {model} | {size} | {method} | {'yes' if ckpt else 'no'} | {attention} "
                         f"| {f.forward / 1e12:.3f} | {f.train / 1e12:.3f} |")
    lines += ["", f"Time per run (Conv-LoRA) at {flops_per_s / 1e12:.0f} TFLOP/s sustained, each batch at least the "
              f"host's dispatch time ({HOST_S_PER_OPERATOR * 1e6:.0f} us per operator):", "",
              "| dataset | train images | preset | px | batches/epoch x epochs | optimizer steps | training (min) "
              "| host-bound share | eval (min) | run (min) |", "|---|---|---|---|---|---|---|---|---|---|"]
    from convlora_lite.data.registry import get_dataset_spec

    for preset, label in (("colab", "colab"), ("colab", "colab at 1024 px, official epochs"), ("paper", "paper")):
        for name in USUAL_SPLIT_SIZES:
            overrides = {}
            if label != preset:  # what the colab preset was before: ViT-B at 1024 px, every batch, official epochs
                overrides = dict(image_size=1024, epochs=get_dataset_spec(name).epochs, max_train_batches=None)
            cfg = TrainConfig.resolve(name, "conv_lora", preset, **overrides)
            train, val, test = dataset_sizes(name, cfg.max_train_batches)
            est = run_estimate(cfg, train, val, test, flops_per_s)
            shown = f"{train:,}" if USUAL_SPLIT_SIZES[name][0] is not None else f"({train:,}, assumed)"
            lines.append(f"| {name} | {shown} | {label} | {cfg.image_size} | {est.batches_per_epoch} x {est.epochs} "
                         f"| {est.optimizer_steps:,} | {est.train_s / 60:.1f} | {est.host_bound_share:.0%} "
                         f"| {est.eval_s / 60:.1f} "
                         f"| {est.total_s / 60:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convlora_lite.bench.compute_budget",
                                     description="FLOPs per training step and estimated time per run.")
    parser.add_argument("--tflops", type=float, default=T4_FP16_FLOPS / 1e12,
                        help="assumed sustained throughput in TFLOP/s (default: the T4 fp16 assumption)")
    args = parser.parse_args(argv)
    print(budget_markdown(args.tflops * 1e12), end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
