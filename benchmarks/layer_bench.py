"""One adapted ``qkv`` layer, forward + backward: LoRA vs Conv-LoRA (fast) vs Conv-LoRA (official loop).

Complements ``convlora bench`` (the whole training step) by isolating the layer the methods change,
on the input shapes SAM gives it: the windowed blocks' (B x windows, 14, 14, C) and the global
blocks' (B, g, g, C); the two MoE computations are also timed alone (ratios are to the LoRA
layer, so "MoE only" reads as the fraction a LoRA layer's cost they add). Timings are interleaved,
and both the median and the minimum are printed (on a shared machine noise only adds time, so the
minimum is the steadiest estimate).

    python benchmarks/layer_bench.py --model vit_b --image-size 256 --reps 30 --threads 1 [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
from torch import nn

from convlora_lite.models.sam import get_config, sized_config
from convlora_lite.peft.conv_lora import ConvLoRALinear
from convlora_lite.peft.conv_lora_official import OfficialConvLoRALinear
from convlora_lite.peft.lora import LoRALinear

LAYERS = {"lora": LoRALinear, "conv_lora": ConvLoRALinear, "conv_lora_official": OfficialConvLoRALinear}


def block_inputs(model: str, image_size: int, batch: int) -> dict[str, tuple[int, ...]]:
    """The qkv input shapes of a windowed and of a global block."""
    cfg = sized_config(get_config(model), image_size)
    grid, window = cfg.grid_size, cfg.window_size
    windows = math.ceil(grid / window) ** 2
    return {"windowed": (batch * windows, window, window, cfg.embed_dim), "global": (batch, grid, grid, cfg.embed_dim)}


def _timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_layers(shape: tuple[int, ...], reps: int, device: str) -> dict[str, dict]:
    """Forward + backward of each layer on ``shape``, and of the two MoE computations alone on
    the (B', r, H, W) bottleneck map (what differs between the fast and the official layer)."""
    dim = shape[-1]
    base = nn.Linear(dim, 3 * dim, device=device)
    layers = {name: cls(base).to(device).train() for name, cls in LAYERS.items()}
    x = torch.randn(*shape, device=device, requires_grad=True)
    h = torch.randn(shape[0], 3, *shape[1:3], device=device, requires_grad=True)

    def layer_step(layer):
        y = layer(x)
        aux = layer.aux_loss.sum() if getattr(layer, "aux_loss", None) is not None else 0
        (y.float().square().mean() + aux).backward()

    def moe_step(moe):
        delta, routing = moe(h)
        (delta.float().square().mean() + routing.aux_loss.sum()).backward()

    steps = {name: (lambda layer=layer: layer_step(layer)) for name, layer in layers.items()}
    steps["conv_lora MoE only"] = lambda: moe_step(layers["conv_lora"].moe)
    steps["conv_lora_official MoE only"] = lambda: moe_step(layers["conv_lora_official"].moe)
    times = {name: [] for name in steps}
    for rep in range(reps + 2):
        for name, step in steps.items():
            elapsed = _timed(step, device)
            if rep >= 2:
                times[name].append(elapsed)
    ref_med, ref_min = statistics.median(times["lora"]), min(times["lora"])
    return {name: {"median_ms": 1e3 * statistics.median(t), "min_ms": 1e3 * min(t),
                   "median_ratio": statistics.median(t) / ref_med, "min_ratio": min(t) / ref_min}
            for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report = {"model": args.model, "image_size": args.image_size, "batch_size": args.batch_size, "device": args.device,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "reps": args.reps, "blocks": {}}
    for kind, shape in block_inputs(args.model, args.image_size, args.batch_size).items():
        report["blocks"][kind] = {"input": list(shape), "layers": time_layers(shape, args.reps, args.device)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.model} at {args.image_size} px, batch {args.batch_size}, {args.device}, torch {torch.__version__}, "
          f"{report['threads']} threads, {args.reps} interleaved repetitions")
    for kind, block in report["blocks"].items():
        print(f"{kind} block, qkv input {tuple(block['input'])}")
        for name, r in block["layers"].items():
            print(f"  {name:<28} median {r['median_ms']:8.2f} ms ({r['median_ratio']:.3f})   "
                  f"min {r['min_ms']:8.2f} ms ({r['min_ratio']:.3f})")


if __name__ == "__main__":
    main()
