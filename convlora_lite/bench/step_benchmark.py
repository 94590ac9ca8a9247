"""Step-time and peak-memory benchmark of PEFT methods on prompt-free SAM (``convlora bench``).

Every method is measured in ONE process on the same model (random weights, the same seed, so
the frozen weights are identical), the same input, and the trainer's own step
(:meth:`convlora_lite.training.trainer.Trainer.step`):

    forward (PromptFreeSAM, binary) -> structure loss + auxiliary loss -> backward
    -> gradient clipping (1.0) -> AdamW step (-> zero the gradients)

under the run's precision (``auto``: fp16 autocast with a gradient scaler on CUDA, fp32 elsewhere).
After warm-up, the methods are interleaved within each repetition (their order rotates from one
repetition to the next) so that machine noise hits them alike; each method's step time is the
median over repetitions, and its ratio to the first method is reported both as the ratio of
medians and as the median of the per-repetition ratios; the ratio of the fastest steps is given too (noise only
adds time, so on a busy machine the minimum is the steadiest estimate). The process CPU time of
each step (all threads) is reported as well (on CUDA it is only the host's share of the work).

Memory, after the timing, in one extra step per method:

* ``saved_activations_mib``: bytes of the tensors autograd saves for the backward pass (storages
  counted once, parameters and buffers excluded); exact and device-independent.
* ``peak_memory_mib``: the resident state of that method's model (parameters, buffers,
  optimizer state) plus the peak increase during the step: on CUDA from
  ``torch.cuda.max_memory_allocated``; on CPU, the increase of the process RSS sampled every
  millisecond (after returning freed heap memory to the OS), which is approximate.

A method spec is a PEFT method name with optional ``:key=value`` options, e.g.
``conv_lora:implementation=official``.
"""
from __future__ import annotations

import ctypes
import gc
import os
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from convlora_lite.bench.busy_time import profiled_busy_seconds
from convlora_lite.errors import ConfigError

_MIB = 2 ** 20
#: Profiled steps per method for the GPU-busy time (CUDA only).
BUSY_STEPS = 3


@dataclass(frozen=True)
class MethodSpec:
    """``label`` as given on the command line; ``method`` and its ``options`` for ``apply_peft``."""

    label: str
    method: str
    options: dict = field(default_factory=dict)


def parse_method_specs(text: str | Sequence[str]) -> list[MethodSpec]:
    """``"lora,conv_lora:implementation=official:top_k=2"`` -> method specs.

    Option values are read as JSON when they parse (numbers, ``true``, ``null``), else as strings.
    """
    from convlora_lite.peft import METHOD_NAMES
    from convlora_lite.peft.base import parse_options

    labels = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if not labels:
        raise ConfigError("No method given; pass e.g. --methods lora,conv_lora.")
    specs = []
    for label in labels:
        method, *pairs = label.split(":")
        if method not in METHOD_NAMES:
            raise ConfigError(f"Unknown method {method!r} in {label!r}. Choose from: {', '.join(METHOD_NAMES)}.")
        specs.append(MethodSpec(label, method, parse_options(pairs, label)))
    if len({s.label for s in specs}) != len(specs):
        raise ConfigError(f"A method is listed twice in {text!r}; list each once.")
    return specs


@dataclass
class MethodResult:
    """One method's measurements (times in seconds, memory in MiB)."""

    label: str
    trainable_params: Optional[int] = None
    step_times_s: list = field(default_factory=list)
    median_step_s: Optional[float] = None
    min_step_s: Optional[float] = None
    time_ratio: Optional[float] = None
    paired_time_ratio: Optional[float] = None
    min_time_ratio: Optional[float] = None
    cpu_times_s: list = field(default_factory=list)
    median_cpu_s: Optional[float] = None
    cpu_time_ratio: Optional[float] = None
    saved_activations_mib: Optional[float] = None
    peak_memory_mib: Optional[float] = None
    memory_ratio: Optional[float] = None
    gpu_busy_s: Optional[float] = None
    wall_to_busy: Optional[float] = None


class _Entry:
    """A method under test: the :class:`~convlora_lite.training.trainer.Trainer` that steps it."""

    def __init__(self, spec: MethodSpec, trainer):
        self.spec, self.trainer = spec, trainer
        self.model, self.optimizer = trainer.model, trainer.optimizer
        self.times: list[float] = []
        self.cpu_times: list[float] = []


def step_trainer(config, seed: int = 0):
    """A :class:`~convlora_lite.training.trainer.Trainer` of ``config`` (random weights seeded by ``seed``) handed
    a one-item placeholder dataset, ready for :meth:`~convlora_lite.training.trainer.Trainer.step`: what the
    benchmark and the GPU check time is the trainer's own step (precision, loss scaler, AdamW, clipping)."""
    from convlora_lite.training import Trainer, build_model
    from convlora_lite.training.run_data import config_spec

    torch.manual_seed(seed)
    model = build_model(config).train()
    size = config.image_size
    placeholder = [{"image": torch.zeros(3, size, size), "mask": torch.zeros(size, size), "name": "placeholder"}]
    return Trainer(config, config_spec(config)).setup(model, {"train": placeholder, "val": placeholder})


def bench_config(spec: MethodSpec, model_name: str, image_size: int, device: str, precision: str, batch_size: int,
                 **options):
    """The run config a benchmark steps: the binary structure-loss task of the official polyp recipe, random
    weights, one optimizer step per batch, ``options`` (``compile``, ``attention``, ...) on top; nothing is read
    from or written to disk."""
    from convlora_lite.training import TrainConfig

    return TrainConfig.resolve("synth_polyp", spec.method, "smoke", model=model_name, image_size=image_size,
                               checkpoint=None, device=device, precision=precision, batch_size=batch_size,
                               grad_accum=1, lr=1e-4, method_options=spec.options,
                               output_dir=str(Path(tempfile.gettempdir()) / "convlora_bench_never_written"), **options)


def bench_batch(batch_size: int, image_size: int, seed: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The benchmarks' input: random images (B, 3, S, S) and binary masks (B, S, S), seeded by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device)
    masks = (torch.rand(batch_size, image_size, image_size, generator=generator) > 0.5).float().to(device)
    return images, masks


def _build_entry(spec: MethodSpec, model_name: str, image_size: int, device: str, seed: int, precision: str,
                 batch_size: int, compile: Optional[str] = None, attention: str = "meta") -> _Entry:
    config = bench_config(spec, model_name, image_size, device, precision, batch_size, compile=compile,
                          attention=attention)
    return _Entry(spec, step_trainer(config, seed))


def train_step(entry: _Entry, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """One step of the trainer (:meth:`~convlora_lite.training.trainer.Trainer.step`) on ``images`` (B, 3, S, S)
    and binary ``masks`` (B, S, S); returns the task loss (0-dim, detached)."""
    task_loss, _ = entry.trainer.step({"image": images, "mask": masks})
    return task_loss


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _resident_bytes(entry: _Entry) -> int:
    """Parameters, buffers and optimizer state of one method's model."""
    tensors = list(entry.model.parameters()) + list(entry.model.buffers())
    tensors += [v for state in entry.optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    return sum(t.numel() * t.element_size() for t in tensors)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _release_freed_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RssSampler:
    """Samples the process RSS every ``interval_s`` in a thread; ``peak`` is the largest seen."""

    def __init__(self, interval_s: float = 1e-3):
        self.interval_s, self.peak = interval_s, _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _measure_memory(entry: _Entry, images, masks, device: str) -> tuple[float, float]:
    """(saved activations MiB, peak memory MiB) of one training step."""
    own = {p.untyped_storage().data_ptr() for p in list(entry.model.parameters()) + list(entry.model.buffers())}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    _release_freed_heap()
    if device == "cuda":
        _sync(device)
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            train_step(entry, images, masks)
        _sync(device)
        increase = torch.cuda.max_memory_allocated() - before
    else:
        before = _rss_bytes()
        with RssSampler() as sampler, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            train_step(entry, images, masks)
        increase = sampler.peak - before
    return sum(saved.values()) / _MIB, (_resident_bytes(entry) + max(increase, 0)) / _MIB


def run_benchmark(model: str = "vit_b", image_size: int = 256, methods="lora,conv_lora", steps: int = 5,
                  batch_size: int = 1, device: str = "cpu", warmup: int = 1, precision: str = "auto",
                  compile: Optional[str] = None, attention: str = "meta", seed: int = 0,
                  threads: Optional[int] = None, log=None) -> dict:
    """Measure each method's training step; see the module docstring.

    Args:
        model: a model name of :data:`convlora_lite.models.sam.MODEL_CONFIGS` (random weights).
        image_size: input side in pixels (a multiple of the patch size).
        methods: method specs, comma-separated or a list (the first is the reference).
        steps: timed repetitions per method (each after ``warmup`` untimed ones).
        batch_size: images per step.
        device: ``cpu``, ``cuda``, ``mps`` or ``auto``.
        precision: ``auto`` (fp16 on CUDA as in the official recipe, else fp32), ``fp32``,
            ``fp16`` or ``bf16``.
        compile: a ``torch.compile`` mode for the step (:mod:`convlora_lite.training.compile`), None: eager.
            Compiled, the warm-up has at least 2 steps (the eager one and the compiling one).
        attention: the encoder's attention, ``meta`` or ``sdpa`` (:mod:`convlora_lite.models.sdpa_attention`).
        seed: seed of the random weights and input.
        threads: ``torch.set_num_threads`` for the run (``None``: leave it as it is).
        log: ``log(str)`` for progress lines (``None``: silent).

    Returns:
        A JSON-ready dict: the settings (with ``torch``, ``threads``, ``memory_measure``) and
        ``methods``, a list of :class:`MethodResult` dicts in the order given.
    """
    from convlora_lite.models.sam import get_config, sized_config
    from convlora_lite.training.compile import CompiledModel
    from convlora_lite.training.devices import resolve_device, resolve_precision

    specs = parse_method_specs(methods)
    if steps < 1 or warmup < 0 or batch_size < 1 or (threads is not None and threads < 1):
        raise ConfigError(f"steps={steps}, warmup={warmup}, batch_size={batch_size}, threads={threads}: need "
                          "steps >= 1, warmup >= 0, batch_size >= 1 and threads >= 1.")
    sized_config(get_config(model), image_size)  # validates the name and the size early
    device = resolve_device(device)
    precision = resolve_precision(precision, device, model)
    say = log or (lambda message: None)
    warmup = max(warmup, 2) if compile else warmup
    if threads is not None:
        torch.set_num_threads(threads)

    results = {s.label: MethodResult(s.label) for s in specs}
    entries = []
    for spec in specs:
        say(f"building {model} at {image_size} px with {spec.label}")
        entry = _build_entry(spec, model, image_size, device, seed, precision, batch_size, compile, attention)
        results[spec.label].trainable_params = sum(p.numel() for p in entry.model.parameters() if p.requires_grad)
        entries.append(entry)

    images, masks = bench_batch(batch_size, image_size, seed, device)
    for rep in range(warmup + steps):
        shift = rep % max(len(entries), 1)
        for entry in entries[shift:] + entries[:shift]:
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            train_step(entry, images, masks)
            _sync(device)
            if rep >= warmup:
                entry.times.append(time.perf_counter() - start)
                entry.cpu_times.append(time.process_time() - start_cpu)
        say(f"repetition {rep + 1}/{warmup + steps}{' (warm-up)' if rep < warmup else ''} done")

    for entry in entries:
        result = results[entry.spec.label]
        result.step_times_s = entry.times
        result.median_step_s = statistics.median(entry.times)
        result.min_step_s = min(entry.times)
        result.cpu_times_s = entry.cpu_times
        result.median_cpu_s = statistics.median(entry.cpu_times)
        result.saved_activations_mib, result.peak_memory_mib = _measure_memory(entry, images, masks, device)
        if device == "cuda":
            result.gpu_busy_s = profiled_busy_seconds(lambda: train_step(entry, images, masks), BUSY_STEPS, device)
            result.wall_to_busy = result.median_step_s / result.gpu_busy_s
    reference = entries[0]
    ref = results[reference.spec.label]
    for entry in entries:
        result = results[entry.spec.label]
        result.time_ratio = result.median_step_s / ref.median_step_s
        result.paired_time_ratio = statistics.median(t / r for t, r in zip(entry.times, reference.times))
        result.min_time_ratio = result.min_step_s / ref.min_step_s
        result.cpu_time_ratio = result.median_cpu_s / ref.median_cpu_s
        result.memory_ratio = result.peak_memory_mib / ref.peak_memory_mib

    compiled = compile if all(isinstance(e.trainer.forward, CompiledModel) for e in entries) else None
    memory = ("torch.cuda.max_memory_allocated increase during the step" if device == "cuda"
              else "process RSS increase during the step, sampled every 1 ms")
    return {
        "model": model, "image_size": image_size, "batch_size": batch_size, "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else _cpu_name(),
        "precision": precision, "compile": compiled, "attention": attention, "steps": steps, "warmup": warmup,
        "seed": seed,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "step": "PromptFreeSAM (binary) forward, structure loss + aux loss, backward, clip 1.0, AdamW",
        "memory_measure": f"peak_memory_mib = parameters + buffers + optimizer state + {memory}",
        "reference": specs[0].label,
        "methods": [asdict(results[s.label]) for s in specs],
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU ({os.cpu_count()} cores)"


def format_benchmark(report: dict) -> str:
    """A plain-text table of :func:`run_benchmark`'s report (on CUDA with the GPU-busy time and wall / busy)."""
    busy = any(m.get("gpu_busy_s") is not None for m in report["methods"])
    compiled = f", compiled ({report['compile']})" if report.get("compile") else ""
    compiled += ", sdpa attention" if report.get("attention") == "sdpa" else ""
    lines = [f"{report['model']} at {report['image_size']} px, batch {report['batch_size']}, {report['device']} "
             f"({report['device_name']}), {report['precision']}{compiled}, torch {report['torch']}, "
             f"{report['threads']} threads, median of {report['steps']} interleaved steps after {report['warmup']} "
             "warm-up",
             f"{'method':<36} {'trainable':>10} {'step (s)':>9} {'ratio':>6} {'paired':>7} {'min (s)':>8} "
             f"{'min ratio':>9} {'cpu (s)':>8} {'cpu ratio':>9} {'saved act (MiB)':>16} {'peak (MiB)':>11} "
             f"{'mem ratio':>9}" + (f" {'gpu busy (s)':>12} {'wall/busy':>9}" if busy else "")]
    for m in report["methods"]:
        lines.append(f"{m['label']:<36} {m['trainable_params']:>10,} {m['median_step_s']:>9.3f} "
                     f"{m['time_ratio']:>6.3f} "
                     f"{m['paired_time_ratio']:>7.3f} {m['min_step_s']:>8.3f} {m['min_time_ratio']:>9.3f} "
                     f"{m['median_cpu_s']:>8.3f} {m['cpu_time_ratio']:>9.3f} "
                     f"{m['saved_activations_mib']:>16.1f} {m['peak_memory_mib']:>11.1f} "
                     f"{m['memory_ratio']:>9.3f}"
                     + (f" {m['gpu_busy_s']:>12.4f} {m['wall_to_busy']:>9.2f}" if busy else ""))
    lines.append(f"ratios are to {report['reference']}; {report['memory_measure']}")
    if busy:
        lines.append(f"gpu busy: the union of the GPU's kernel intervals per step (profiler, {BUSY_STEPS} steps); "
                     "wall/busy above 1 is time the GPU waits for the host")
    return "\n".join(lines)
