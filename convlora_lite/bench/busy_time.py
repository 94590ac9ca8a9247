"""How long the device is busy during a training step: the host-bound share of a GPU step (``convlora bench``).

A step's wall time is at least the time its kernels keep the GPU busy. When the host cannot dispatch the
kernels as fast as the GPU runs them, the GPU waits between kernels and the wall time grows beyond the
busy time: ``wall / busy`` says how host-bound a step is (1.0: the GPU never waits). The busy time is read
from PyTorch's profiler: the union of the time intervals of every kernel, copy and memset on the device
(overlapping intervals counted once), over a few profiled steps (``docs/performance.md``).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch.autograd import DeviceType


def busy_seconds(events: Iterable, device_type: DeviceType) -> float:
    """Seconds covered by the union of the ``[start, end]`` intervals (microseconds, ``event.time_range``) of the
    profiler ``events`` that ran on ``device_type``."""
    intervals = sorted((e.time_range.start, e.time_range.end) for e in events if e.device_type == device_type)
    busy, reach = 0.0, float("-inf")
    for start, end in intervals:
        if end > reach:
            busy += end - max(start, reach)
            reach = end
    return busy / 1e6


def profiled_busy_seconds(step: Callable[[], object], repeats: int, device: str) -> float:
    """The busy seconds per call of ``step`` on ``device`` ("cuda": the GPU's kernels; "cpu": the host's operators,
    what the same reading gives without a GPU), over ``repeats`` profiled calls."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        for _ in range(repeats):
            step()
        if cuda:
            torch.cuda.synchronize()
    return busy_seconds(prof.events(), DeviceType.CUDA if cuda else DeviceType.CPU) / repeats
