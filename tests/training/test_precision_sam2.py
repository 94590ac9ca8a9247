"""``--precision auto`` for SAM 2.1 (``docs/precision.md``, "SAM 2.1"): bf16 where the GPU computes bf16 natively
(SAM 2 was trained in bf16), fp32 on a GPU without it (a T4), on a CPU and on MPS; SAM's ViTs keep fp16 on CUDA."""
from types import SimpleNamespace

import pytest
import torch

from convlora_lite.training import TrainConfig, devices
from convlora_lite.training.devices import inference_precision, native_bf16, resolve_precision
from convlora_lite.training.trainer import Trainer

TINY = "sam2.1_hiera_tiny"


def _config(tmp_path=None, **overrides) -> TrainConfig:
    return TrainConfig.resolve("synth_polyp", "conv_lora", "smoke", model=TINY, image_size=64,
                               output_dir=str(tmp_path or "run"), **overrides)


@pytest.mark.parametrize("gpu, capability, expected", [("T4", (7, 5), "fp32"), ("V100", (7, 0), "fp32"),
                                                       ("A100", (8, 0), "bf16"), ("H100", (9, 0), "bf16")])
def test_auto_on_cuda_is_bf16_where_native_else_fp32(monkeypatch, gpu, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    cfg = _config()
    assert cfg.precision == "auto" and native_bf16("cuda") == (expected == "bf16")
    assert resolve_precision(cfg.precision, "cuda", cfg.model) == expected
    assert inference_precision(cfg.precision, "cuda", cfg.model) == expected  # eval scores as training did
    assert resolve_precision("auto", "cuda", "vit_b") == resolve_precision("auto", "cuda") == "fp16"  # SAM's
    assert resolve_precision("fp16", "cuda", cfg.model) == "fp16"  # asked for, not chosen


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_auto_is_fp32_off_cuda(device):
    assert resolve_precision("auto", device, TINY) == inference_precision("auto", device, TINY) == "fp32"


def test_the_trainer_resolves_auto_for_its_model(tmp_path, monkeypatch):
    seen = []
    real = devices.resolve_precision
    monkeypatch.setattr(devices, "resolve_precision", lambda *args: seen.append(args) or real(*args))
    spec = SimpleNamespace(name="synth_polyp", task="binary")
    assert Trainer(_config(tmp_path, precision="auto", device="cpu"), spec).precision == "fp32"
    assert seen == [("auto", "cpu", TINY)]
