"""The device-busy time of a step: the union of intervals by hand, the profiler's reading on the CPU, the report."""
import time
from types import SimpleNamespace

import pytest
import torch
from torch.autograd import DeviceType

from convlora_lite.bench.busy_time import busy_seconds, profiled_busy_seconds
from convlora_lite.bench.step_benchmark import format_benchmark, run_benchmark


def _event(start_us, end_us, device=DeviceType.CUDA):
    return SimpleNamespace(device_type=device, time_range=SimpleNamespace(start=start_us, end=end_us))


def test_busy_time_counts_overlaps_once_and_only_the_device():
    events = [_event(0, 10), _event(5, 12), _event(20, 25), _event(21, 22), _event(0, 100, DeviceType.CPU)]
    assert busy_seconds(events, DeviceType.CUDA) == pytest.approx((12 + 5) / 1e6)  # [0, 12] and [20, 25]
    assert busy_seconds(events, DeviceType.CPU) == pytest.approx(100 / 1e6)
    assert busy_seconds([], DeviceType.CUDA) == 0.0


def test_profiled_busy_time_on_the_cpu_is_within_the_wall_time():
    a = torch.randn(256, 256)

    def step():
        for _ in range(20):
            a @ a

    start = time.perf_counter()
    busy = profiled_busy_seconds(step, repeats=3, device="cpu")
    wall = (time.perf_counter() - start) / 3
    assert 0 < busy <= wall


def test_the_cpu_report_has_no_gpu_busy_time_and_the_cuda_table_shows_it():
    report = run_benchmark("test_tiny", image_size=64, methods="lora,conv_lora", steps=1, warmup=0)
    assert all(m["gpu_busy_s"] is None and m["wall_to_busy"] is None for m in report["methods"])
    assert "gpu busy" not in format_benchmark(report)
    for m, busy in zip(report["methods"], (0.0389, 0.0430)):  # as a CUDA run fills them (H200 profile, 2026-12-04)
        m["gpu_busy_s"], m["wall_to_busy"] = busy, m["median_step_s"] / busy
    table = format_benchmark(report)
    assert "gpu busy (s)" in table and "wall/busy" in table and "0.0430" in table
    assert f"{report['methods'][1]['wall_to_busy']:.2f}" in table
