"""Pretrain the ``micro_mae`` encoder by masked image modelling on the micro_sam corpus.

Same image encoder sizes as ``micro_sam`` (so features compare), same generated images (corpus
seed and indices), 75 % of patches masked; see :mod:`convlora_lite.models.mae` for the model and why it
masks SimMIM-style. Only the encoder (with its neck) is exported.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from convlora_lite.data.transforms import to_model_input
from convlora_lite.errors import ConfigError
from convlora_lite.models.mae import MaskedImageModel, random_patch_mask
from convlora_lite.models.sam import get_config, sam_from_config
from convlora_lite.pretrain.common import (
    environment_record,
    learning_rate,
    make_optimizer,
    optimizer_step,
    run_steps,
    save_fp16_safetensors,
    write_card,
)
from convlora_lite.pretrain.corpus import DESCRIPTION, generate_scene


@dataclass(frozen=True)
class MaePretrainConfig:
    """Everything that decides the weights (recorded in the card and in the resume state)."""

    model: str = "micro_sam"
    steps: int = 300
    batch_size: int = 16
    mask_ratio: float = 0.75
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    grad_clip: float = 1.0
    seed: int = 0
    eval_seed: int = 1_000_003
    eval_images: int = 64


def build_model(cfg: MaePretrainConfig) -> MaskedImageModel:
    torch.manual_seed(cfg.seed)
    return MaskedImageModel(sam_from_config(get_config(cfg.model)).image_encoder)


def scenes_input(seed: int, start: int, count: int, size: int) -> torch.Tensor:
    """(count, 3, S, S) normalised images of the scenes ``start .. start + count - 1``."""
    return to_model_input([generate_scene(seed, start + i, size).image for i in range(count)])


@torch.no_grad()
def evaluate_reconstruction(model: MaskedImageModel, seed: int, num_images: int, mask_ratio: float) -> dict:
    """Masked-patch loss on held-out scenes (per-patch normalised pixels: predicting 0 scores 1.0)."""
    model.eval()
    size = model.encoder.img_size
    images = scenes_input(seed, 0, num_images, size)
    grid = size // model.patch
    mask = random_patch_mask(np.random.default_rng([seed, 2]), num_images, grid, mask_ratio)
    losses = [model(images[i:i + 8], mask[i:i + 8]).item() for i in range(0, num_images, 8)]
    return {"masked_patch_mse": round(float(np.mean(losses)), 4), "zero_prediction_mse": 1.0,
            "num_images": num_images, "corpus_seed": seed}


def train_step(model: MaskedImageModel, optimizer: torch.optim.Optimizer, cfg: MaePretrainConfig, step: int) -> float:
    size = model.encoder.img_size
    images = scenes_input(cfg.seed, step * cfg.batch_size, cfg.batch_size, size)
    mask = random_patch_mask(np.random.default_rng([cfg.seed, 2, step]), cfg.batch_size, size // model.patch,
                             cfg.mask_ratio)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(step, cfg.steps, cfg.warmup_steps, cfg.lr)
    model.train()
    loss = model(images, mask)
    optimizer_step(model, optimizer, loss, cfg.grad_clip)
    return loss.item()


def pretrain_mae(cfg: MaePretrainConfig, out_path, work_dir, command: str, threads: int, resume: bool = False,
                 checkpoint_every_s: float = 180.0, log=print) -> dict:
    """Train, export the encoder (fp16 safetensors of ``ImageEncoderViT.state_dict()``) to
    ``out_path``, evaluate the exported weights and write the card (``.json``). Returns the card."""
    if cfg.eval_seed == cfg.seed:
        raise ConfigError("--eval-seed must differ from --seed: the held-out set must not be training data.")
    model = build_model(cfg)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    state = run_steps(model, optimizer, asdict(cfg), cfg.steps, lambda step: train_step(model, optimizer, cfg, step),
                      work_dir, resume, checkpoint_every_s, log)
    sha = save_fp16_safetensors(model.encoder.state_dict(), out_path)
    model.encoder.load_state_dict({k: v.float() for k, v in load_file(str(out_path)).items()})
    quality = evaluate_reconstruction(model, cfg.eval_seed, cfg.eval_images, cfg.mask_ratio)
    log(f"held-out reconstruction: {quality}")
    card = {
        "name": "micro_mae", "model_config": cfg.model, "command": command, "config": asdict(cfg),
        "objective": "masked image modelling, SimMIM-style input masking (learned mask token on the full grid, "
                     "because windowed attention needs every grid cell) with MAE's per-patch normalised pixel "
                     "target; loss on masked patches only; 1x1-conv head on the neck output (not exported)",
        "data": DESCRIPTION + f" Training scenes: corpus seed {cfg.seed}, indices 0..{cfg.steps * cfg.batch_size - 1}"
                " (the same generator and seed as micro_sam, so these images are among its training scenes).",
        "held_out": quality,
        "weights": {"file": Path(out_path).name, "sha256": sha, "dtype": "float16 (loading casts to float32)",
                    "keys": "segment_anything ImageEncoderViT.state_dict() (micro_sam sizes, neck included)",
                    "parameters": sum(p.numel() for p in model.encoder.parameters())},
        "train_wall_time_s": round(state.elapsed_s, 1), "resumed": state.resumed,
        "environment": environment_record(threads),
    }
    write_card(Path(out_path).with_suffix(".json"), card)
    return card
