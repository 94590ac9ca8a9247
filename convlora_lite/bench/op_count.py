"""How many operators a training step dispatches (``convlora bench --count-ops``).

On a GPU, a step whose kernels are small is bound by the host: each operator costs the Python and
dispatcher overhead and a kernel launch (a few microseconds) whatever its size. The number of
operators a step dispatches is therefore what decides host-bound speed, and it does not depend on the
device: counted here on the CPU, it is what a GPU would launch (``docs/performance.md``).

Every aten operator that reaches the dispatcher from Python or from autograd is counted once (a
:class:`~torch.utils._python_dispatch.TorchDispatchMode` sees the top-level call, not the operators a
kernel calls inside itself), views and in-place updates included, in three phases of the trainer's
own step (:meth:`~convlora_lite.training.trainer.Trainer.step`):

* ``forward``: the model, the loss and the auxiliary loss (and the loss's initial gradient, which
  ``backward()`` makes before the graph runs);
* ``backward``: the autograd engine's work (every operator dispatched while a backward graph runs);
* ``optimizer``: gradient clipping, AdamW and zeroing the gradients (everything after the backward).

Also, for comparison with a profile: ``profiler_events``, the ``aten::`` events ``torch.profiler`` records
in one more step, which counts the operators an operator calls inside itself too (``aten::linear`` and its
``aten::addmm``; on the CPU the per-tensor loops inside the multi-tensor and fused optimizer kernels).

Per block: the operators of one windowed-attention encoder block and of one global-attention block,
forward (between the block's forward hooks) and backward (between its full backward hooks); the first
block is left out (nothing before it trains, so its backward computes no gradient for its input).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from convlora_lite.bench.step_benchmark import bench_batch, bench_config, parse_method_specs, step_trainer

PHASES = ("forward", "backward", "optimizer")


class OperatorCounter(TorchDispatchMode):
    """Counts the aten operators dispatched while active, by phase (see the module docstring) and,
    while :attr:`region` is set, by region too. ``counts[phase]`` and ``regions[region]`` are
    :class:`collections.Counter` of operator names."""

    def __init__(self):
        super().__init__()
        self.counts = {phase: Counter() for phase in PHASES}
        self.regions: dict[str, Counter] = {}
        self.region = None
        self._backward_seen = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if torch._C._current_graph_task_id() != -1:
            phase, self._backward_seen = "backward", True
        else:
            phase = "optimizer" if self._backward_seen else "forward"
        name = func.overloadpacket.__name__
        self.counts[phase][name] += 1
        if self.region is not None:
            self.regions.setdefault(self.region, Counter())[name] += 1
        return func(*args, **(kwargs or {}))


def _watch_block(counter: OperatorCounter, block: torch.nn.Module, label: str) -> list:
    """Hooks that set ``counter.region`` while ``block`` runs forward and backward."""

    def enter(name):
        def hook(*_):
            counter.region = name
        return hook

    def leave(*_):
        counter.region = None

    return [block.register_forward_pre_hook(enter(f"{label} forward")), block.register_forward_hook(leave),
            block.register_full_backward_pre_hook(enter(f"{label} backward")), block.register_full_backward_hook(leave)]


@dataclass
class OperatorCount:
    """One method's operators per training step: ``total``, ``by_phase`` (forward, backward, optimizer),
    ``per_block`` (``"windowed block forward"`` ...) and the ``top`` operators of the step."""

    label: str
    total: int = 0
    by_phase: dict = field(default_factory=dict)
    per_block: dict = field(default_factory=dict)
    top: list = field(default_factory=list)
    ratio: float = 1.0
    profiler_events: int = 0
    profiler_ratio: float = 1.0


def count_step(trainer, images: torch.Tensor, masks: torch.Tensor, label: str = "") -> OperatorCount:
    """Count the operators of one :meth:`~convlora_lite.training.trainer.Trainer.step` of ``trainer`` on ``images``
    (B, 3, S, S) and binary ``masks`` (B, S, S), after one uncounted step (caches filled, optimizer state made)."""
    batch = {"image": images, "mask": masks}
    trainer.step(batch)
    counter = OperatorCounter()
    blocks = trainer.model.image_encoder.blocks
    windowed = next((b for i, b in enumerate(blocks) if i > 0 and b.window_size > 0), None)
    global_ = next((b for i, b in enumerate(blocks) if i > 0 and b.window_size == 0), None)
    hooks = []
    for block, name in ((windowed, "windowed block"), (global_, "global block")):
        if block is not None:
            hooks += _watch_block(counter, block, name)
    try:
        with counter:
            trainer.step(batch)
    finally:
        for hook in hooks:
            hook.remove()
    every = sum(counter.counts.values(), Counter())
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.step(batch)
    return OperatorCount(label, total=sum(every.values()),
                         profiler_events=sum(1 for event in prof.events() if event.name.startswith("aten::")),
                         by_phase={phase: sum(c.values()) for phase, c in counter.counts.items()},
                         per_block={name: sum(c.values()) for name, c in counter.regions.items()},
                         top=every.most_common(12))


def run_count(model: str = "vit_b", image_size: int = 256, methods="lora,conv_lora", batch_size: int = 1,
              seed: int = 0, activation_checkpointing: bool = False) -> dict:
    """Count the operators of one fp32 CPU training step per method (the first is the reference), with the
    encoder blocks' activation checkpointing if asked (their forward is then dispatched twice).

    Returns a JSON-ready dict: the settings and ``methods``, one :class:`OperatorCount` dict each, in order."""
    specs = parse_method_specs(methods)
    images, masks = bench_batch(batch_size, image_size, seed)
    results = []
    for spec in specs:
        config = bench_config(spec, model, image_size, "cpu", "fp32", batch_size,
                              activation_checkpointing=activation_checkpointing)
        results.append(count_step(step_trainer(config, seed), images, masks, spec.label))
    for result in results:
        result.ratio = result.total / results[0].total
        result.profiler_ratio = result.profiler_events / results[0].profiler_events
    return {"model": model, "image_size": image_size, "batch_size": batch_size, "torch": torch.__version__,
            "activation_checkpointing": activation_checkpointing,
            "step": "PromptFreeSAM (binary) forward, structure loss + aux loss, backward, clip 1.0, AdamW",
            "counted": "aten operators at the dispatcher (TorchDispatchMode), views and in-place ops included",
            "reference": specs[0].label, "methods": [asdict(r) for r in results]}


def format_count(report: dict) -> str:
    """A plain-text table of :func:`run_count`'s report."""
    checkpointing = ", activation checkpointing" if report.get("activation_checkpointing") else ""
    lines = [f"{report['model']} at {report['image_size']} px, batch {report['batch_size']}{checkpointing}, "
             f"torch {report['torch']}: aten operators per training step",
             f"{'method':<36} {'total':>7} {'ratio':>6} {'forward':>8} {'backward':>9} {'optimizer':>10} "
             f"{'windowed blk f/b':>17} {'global blk f/b':>15} {'profiler':>9} {'ratio':>6}"]
    for m in report["methods"]:
        block = m["per_block"]
        windowed, global_ = (f"{block[f'{kind} forward']}/{block.get(f'{kind} backward', 0)}"
                             if f"{kind} forward" in block else "-" for kind in ("windowed block", "global block"))
        lines.append(f"{m['label']:<36} {m['total']:>7,} {m['ratio']:>6.3f} {m['by_phase']['forward']:>8,} "
                     f"{m['by_phase']['backward']:>9,} {m['by_phase']['optimizer']:>10,} {windowed:>17} {global_:>15} "
                     f"{m['profiler_events']:>9,} {m['profiler_ratio']:>6.3f}")
    lines.append(f"ratios are to {report['reference']}; profiler: the aten:: events of torch.profiler in one more "
                 "step (nested calls included)")
    return "\n".join(lines)
