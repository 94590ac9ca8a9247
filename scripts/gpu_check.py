"""The GPU check (``benchmarks/gpu_check.sh``): everything a GPU should confirm, in one go.

``python scripts/gpu_check.py --output-dir benchmarks/results`` (what ``benchmarks/gpu_check.sh`` runs)
runs, on the first CUDA GPU, within about 10 minutes (random weights throughout, no download):

0. **cuda**: the GPU is visible to torch (its name, memory, compute capability, bf16 support) and
   computes a matrix product;
1. **bench**: Conv-LoRA (fast and the official per-expert loop) vs LoRA, step time and peak memory
   (:func:`~convlora_lite.bench.step_benchmark.run_benchmark`) on ViT-B and ViT-H at 1024 px,
   in fp16 and in bf16;
2. **colab step**: the ``colab`` preset's training step (ViT-B at its image size, its attention and
   checkpointing settings, fp16 with a gradient scaler) with its peak GPU memory, against the 15 GiB target
   (a T4 has 16 GB), and the process's host-memory peak;
3. **training**: two short runs of :func:`~convlora_lite.training.fit` on generated 1024 px data
   (``synth_polyp``), one in fp16 with the gradient scaler and one in bf16: the training loss must
   go down and no loss or metric may be NaN.

``--quick`` fits a borrowed GPU's first minutes (under 3 minutes on one GPU): the cuda part, the
bench on ViT-B at 1024 px in fp16 only, the colab step and both training runs (fp16 and bf16).

It writes ``gpu_check_<device>_<UTC time>.json`` (every number, the command, the machine; after each
part, so a run cut short keeps what it measured) and a
``.md`` summary into ``--output-dir`` and exits 1 when a check fails (a part that runs out of
memory is recorded as a failure and the others still run).

Without a GPU it says so and runs every part on the tiny random model ``test_tiny`` at 64 px on
the CPU, fp32 standing in for fp16 (which needs CUDA), so that a CPU test can check the whole
script; those numbers mean nothing.

``--colab-stand-in`` runs only the colab step, on the CPU at the preset's true model and image size, in bf16
standing in for a T4's fp16: its host-memory peak is the record (``benchmarks/results/
gpu_check_cpu_colab_stand_in_*.json``) that the colab notebooks' memory test reads.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import shlex
import statistics
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import torch

#: the colab preset's peak-memory target (a T4 has 16 GB, of which about 15 GiB are usable).
COLAB_PEAK_TARGET_GIB = 15.0
BENCH_METHODS = "lora,conv_lora,conv_lora:implementation=official"
_GIB = 2 ** 30


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def plan(gpu: bool, quick: bool = False) -> dict:
    """What each part runs: the real sizes on a GPU, test_tiny on the CPU; ``quick``: ViT-B and one
    precision in the bench (the tiny model and its precisions are the same on the CPU)."""
    if gpu:
        return dict(device="cuda", bench_models=("vit_b",) if quick else ("vit_b", "vit_h"), bench_size=1024,
                    precisions=("fp16",) if quick else ("fp16", "bf16"), bench_steps=5, bench_warmup=2,
                    colab_model=None, colab_size=None, colab_precision="fp16", train_model="vit_b", train_size=1024,
                    train_precisions=("fp16", "bf16"))
    return dict(device="cpu", bench_models=("test_tiny",), bench_size=64, precisions=("fp32",) if quick else
                ("fp32", "bf16"), bench_steps=2, bench_warmup=1, colab_model="test_tiny", colab_size=64,
                colab_precision="fp32", train_model="test_tiny", train_size=64, train_precisions=("fp32", "bf16"))


def part_names(steps: dict) -> list[str]:
    """The names of the parts a :func:`plan` runs, in order (the report's keys)."""
    names = ["cuda"] if steps["device"] == "cuda" else []
    names += [f"bench {model} {steps['bench_size']} px {precision}" for model in steps["bench_models"]
              for precision in steps["precisions"]]
    names.append(f"colab step {steps['colab_precision']}")
    names += [f"training {steps['train_model']} {steps['train_size']} px {precision}"
              for precision in steps["train_precisions"]]
    return names


def cuda_part() -> dict:
    """The GPU as torch sees it, and one matrix product on it checked against the CPU's."""
    props = torch.cuda.get_device_properties(0)
    a = torch.randn(256, 256)
    on_gpu = (a.cuda() @ a.cuda()).cpu()
    return {"ok": bool(torch.allclose(on_gpu, a @ a, atol=1e-2, rtol=1e-3)), "name": props.name,
            "total_memory_gib": round(props.total_memory / _GIB, 1), "capability": f"{props.major}.{props.minor}",
            "device_count": torch.cuda.device_count(), "bf16_supported": torch.cuda.is_bf16_supported(),
            "cuda": torch.version.cuda}


def _run_part(results: dict, name: str, function, *args, log=print, **kwargs) -> None:
    """Run one part; its result, or the error that stopped it (a failure), goes into ``results``."""
    log(f"[gpu_check] {name} ...")
    start = time.perf_counter()
    try:
        value = function(*args, **kwargs)
        results[name] = {"ok": bool(value.pop("ok", True)), **value}
    except Exception as err:  # out of memory included: record it and go on with the other parts
        results[name] = {"ok": False, "error": f"{type(err).__name__}: {str(err)[:500]}",
                         "traceback": traceback.format_exc(limit=3)}
    results[name]["seconds"] = round(time.perf_counter() - start, 1)
    log(f"[gpu_check] {name}: {'ok' if results[name]['ok'] else 'FAILED'} ({results[name]['seconds']} s)")
    _free()


def bench_part(model: str, image_size: int, precision: str, device: str, steps: int, warmup: int) -> dict:
    from convlora_lite.bench.step_benchmark import run_benchmark

    report = run_benchmark(model=model, image_size=image_size, methods=BENCH_METHODS, steps=steps, warmup=warmup,
                           device=device, precision=precision)
    rows = {m["label"]: {k: m[k] for k in ("median_step_s", "time_ratio", "peak_memory_mib", "memory_ratio",
                                           "trainable_params")} for m in report["methods"]}
    finite = all(math.isfinite(v["median_step_s"]) for v in rows.values())
    return {"ok": finite, "methods": rows, "report": report}


def colab_step_part(device: str, precision: str, model: str | None, image_size: int | None, steps: int = 5,
                    warmup: int = 2) -> dict:
    """The colab preset's training step (its model, size, attention, checkpointing, precision), random weights: the
    trainer's own step (:meth:`~convlora_lite.training.trainer.Trainer.step`), one optimizer step per batch."""
    from convlora_lite.bench.step_benchmark import RssSampler, step_trainer
    from convlora_lite.training import TrainConfig

    overrides = {k: v for k, v in dict(model=model, image_size=image_size).items() if v is not None}
    with RssSampler(interval_s=0.05) as host, tempfile.TemporaryDirectory(prefix="gpu_check_colab_") as unused:
        cfg = TrainConfig.resolve("polyp", "conv_lora", "colab", checkpoint=None, precision=precision, device=device,
                                  output_dir=unused, **overrides)  # the step writes no run file
        trainer = step_trainer(cfg)
        size = cfg.image_size
        batch = {"image": torch.randn(cfg.batch_size, 3, size, size),
                 "mask": (torch.rand(cfg.batch_size, size, size) > 0.5).float()}
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times, losses = [], []
        for i in range(warmup + steps):
            start = time.perf_counter()
            losses.append(trainer.step(batch)[0].item())
            if i >= warmup:
                times.append(time.perf_counter() - start)
    result = {"model": cfg.model, "image_size": size, "precision": precision, "batch_size": cfg.batch_size,
              "activation_checkpointing": cfg.activation_checkpointing, "attention": cfg.attention,
              "median_step_s": statistics.median(times), "step_times_s": times, "losses": losses,
              "host_peak_gib": round(host.peak / _GIB, 3), "peak_allocated_gib": None, "peak_reserved_gib": None,
              "target_gib": COLAB_PEAK_TARGET_GIB}
    ok = all(math.isfinite(v) for v in losses)
    if device == "cuda":
        result["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / _GIB, 3)
        result["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / _GIB, 3)
        ok = ok and result["peak_reserved_gib"] <= COLAB_PEAK_TARGET_GIB
    else:
        result["note"] = "GPU memory is measured on CUDA only"
    return {"ok": ok, **result}


def recorded_colab_stand_in(folder: Path = Path(__file__).resolve().parents[1] / "benchmarks/results") -> dict:
    """The latest ``--colab-stand-in`` record in ``folder``: its meta and its colab step part."""
    *_, latest = sorted(Path(folder).glob("gpu_check_cpu_colab_stand_in_*.json"))
    record = json.loads(latest.read_text())
    return {"meta": record["meta"], **record["parts"]["colab step bf16"]}


def training_part(device: str, precision: str, model: str, image_size: int, workdir: Path) -> dict:
    """A short fit on generated data: the loss must go down, nothing may be NaN; fp16 must use the scaler."""
    from convlora_lite.data import generate_synthetic
    from convlora_lite.training import TrainConfig, fit
    from convlora_lite.training.rundir import RunDir

    root = workdir / f"data_{image_size}"
    if not (root / "synth_polyp").exists():
        generate_synthetic("synth_polyp", root, image_size=image_size, n_train=8, n_val=2, n_test=2, seed=0)
    cfg = TrainConfig.resolve("synth_polyp", "conv_lora", "smoke", model=model, checkpoint=None,
                              image_size=image_size, precision=precision, device=device, epochs=5, batch_size=2,
                              grad_accum=1, lr=1e-3, max_train_batches=None, max_eval_batches=1,
                              output_dir=str(workdir / f"run_{precision}"), data_root=str(root))
    run = RunDir(fit(cfg))
    scaler = run.load_state()["scaler"]  # the fp16 loss scaler's state, None without one
    history = run.read_metrics()
    rows = run.read_history().to_dict("records")
    losses = [row["train_loss"] for row in rows]
    numbers = losses + [v for row in rows for k, v in row.items() if k.startswith("val_") and isinstance(v, float)]
    no_nan = all(math.isfinite(v) for v in numbers)
    down = losses[-1] < losses[0]
    uses_scaler = scaler is not None
    result = {"model": model, "image_size": image_size, "precision": precision, "epochs": cfg.epochs,
              "train_losses": losses, "loss_goes_down": down, "no_nan": no_nan, "gradient_scaler": uses_scaler,
              "final_scale": float(scaler["scale"]) if uses_scaler else None, "test": history["test"]}
    ok = down and no_nan and (uses_scaler if precision == "fp16" else True)
    return {"ok": ok, **result}


def _summary(results: dict) -> str:
    meta = results["meta"]
    lines = [f"# GPU check, {meta['time_utc']}", "", f"Device: {meta['device_name']} ({meta['device']}); "
             f"torch {meta['torch']}; {meta['mode']}.", "", "Command:", "", "```", meta["command"], "```", ""]
    lines += ["| part | ok | result |", "|---|---|---|"]
    for name, part in results["parts"].items():
        if "error" in part:
            shown = part["error"]
        elif name == "cuda":
            shown = (f"{part['name']}, {part['total_memory_gib']} GiB, compute capability {part['capability']}, "
                     f"bf16 {part['bf16_supported']}, CUDA {part['cuda']}")
        elif "methods" in part:
            shown = "; ".join(f"{label}: {m['median_step_s']:.3f} s ({m['time_ratio']:.3f}x), "
                              f"{m['peak_memory_mib']:.0f} MiB ({m['memory_ratio']:.3f}x)"
                              for label, m in part["methods"].items())
        elif "host_peak_gib" in part:
            gpu = (f", GPU peak {part['peak_reserved_gib']} GiB reserved / {part['peak_allocated_gib']} GiB allocated "
                   f"(target <= {part['target_gib']} GiB)" if part["peak_reserved_gib"] is not None else "")
            shown = (f"{part['model']} at {part['image_size']} px, {part['precision']}: {part['median_step_s']:.3f} s "
                     f"per step, host peak {part['host_peak_gib']} GiB{gpu}")
        else:
            shown = (f"{part['model']} at {part['image_size']} px, {part['precision']}: train loss "
                     + " -> ".join(f"{v:.4f}" for v in part["train_losses"])
                     + f"; scaler {part['gradient_scaler']}; no NaN {part['no_nan']}")
        lines.append(f"| {name} | {'yes' if part['ok'] else '**no**'} | {shown} ({part['seconds']} s) |")
    return "\n".join(lines) + "\n"


def run_gpu_check(output_dir="benchmarks/results", force_cpu: bool = False, quick: bool = False,
                  colab_stand_in: bool = False, command: str | None = None, log=print) -> tuple[dict, Path]:
    """Run every part (``quick``: the short plan; ``colab_stand_in``: only the colab step, on the CPU at its
    true size in bf16); returns ``(results, path of the JSON written)``."""
    gpu = torch.cuda.is_available() and not force_cpu and not colab_stand_in
    steps = plan(gpu, quick)
    if colab_stand_in:
        steps = dict(steps, bench_models=(), colab_model=None, colab_size=None, colab_precision="bf16",
                     train_precisions=())
        name = "CPU"
        log("[gpu_check] The colab step on the CPU at the preset's model and image size, bf16 standing in for a "
            "T4's fp16: its host-memory peak is what it is for.")
    elif gpu:
        name = torch.cuda.get_device_name()
        log(f"[gpu_check] GPU: {name}, {torch.cuda.get_device_properties(0).total_memory / _GIB:.1f} GiB")
    else:
        name = "CPU"
        log("[gpu_check] No GPU found (torch.cuda.is_available() is False): running every part on the tiny "
            "model test_tiny at 64 px on the CPU (fp32 stands in for fp16). These numbers mean nothing; "
            "run this on a GPU for the real check.")
    stamp = datetime.now(timezone.utc)
    results = {"meta": {"time_utc": stamp.strftime("%Y-%m-%d %H:%M UTC"), "device": steps["device"],
                        "device_name": name,
                        "torch": torch.__version__, "cuda": torch.version.cuda, "gpu": gpu,
                        "quick": quick, "parts_planned": part_names(steps),
                        "mode": "colab step on the CPU at its true size, bf16 standing in for fp16" if colab_stand_in
                        else ("quick " if quick else "") + ("GPU check" if gpu else
                                                            "dry run on the CPU (no GPU): test_tiny, fp32 for fp16"),
                        "command": command or shlex.join([sys.executable, "scripts/gpu_check.py",
                                                          *sys.argv[1:]])},
               "parts": {}}
    parts = results["parts"]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")[:40] if gpu else "cpu_dry_run"
    slug = "cpu_colab_stand_in" if colab_stand_in else slug + ("_quick" if quick else "")
    path = out / f"gpu_check_{slug}_{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"

    def _part(*args, **kwargs):  # each part's result is written at once: a timeout keeps what was measured
        _run_part(*args, **kwargs)
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")

    if gpu:
        _part(parts, "cuda", cuda_part, log=log)
    for model in steps["bench_models"]:
        for precision in steps["precisions"]:
            _part(parts, f"bench {model} {steps['bench_size']} px {precision}", bench_part, model,
                  steps["bench_size"], precision, steps["device"], steps["bench_steps"], steps["bench_warmup"], log=log)
    _part(parts, f"colab step {steps['colab_precision']}", colab_step_part, steps["device"],
          steps["colab_precision"], steps["colab_model"], steps["colab_size"], log=log)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for precision in steps["train_precisions"]:
            _part(parts, f"training {steps['train_model']} {steps['train_size']} px {precision}", training_part,
                  steps["device"], precision, steps["train_model"], steps["train_size"], Path(tmp), log=log)
    results["ok"] = all(part["ok"] for part in parts.values())
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    path.with_suffix(".md").write_text(_summary(results))
    log(_summary(results))
    log(f"[gpu_check] {'all checks passed' if results['ok'] else 'SOME CHECKS FAILED'}; written {path} and "
        f"{path.with_suffix('.md').name}")
    return results, path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/gpu_check.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", default="benchmarks/results", help="where the JSON and .md go")
    parser.add_argument("--cpu", action="store_true", help="the dry run on the CPU even when a GPU is there")
    parser.add_argument("--quick", action="store_true",
                        help="under 3 minutes on one GPU: cuda, ViT-B fp16 bench, colab step, fp16 and bf16 training")
    parser.add_argument("--colab-stand-in", action="store_true",
                        help="only the colab step, on the CPU at the preset's model and size in bf16: its host peak")
    args = parser.parse_args(argv)
    results, _ = run_gpu_check(args.output_dir, force_cpu=args.cpu, quick=args.quick,
                               colab_stand_in=args.colab_stand_in)
    return 0 if results["ok"] else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
