"""Pretrain a small SAM the way SAM was trained: promptable, class-agnostic masks.

Per image the encoder runs once; several instances are sampled and each is decoded twice from
that embedding: from a point prompt (one positive point, or with probability ``two_point_prob``
a positive and a negative point) and from its box (jittered by N(0, 10 % of the side), at most
20 px, as SAM). One-point prompts use the multimask output (3 masks) and only the best mask
gets the mask loss (SAM's rule for ambiguous prompts); other prompts use the single-mask output.
Loss: 20 * focal + 1 * dice (SAM's ratio) plus the MSE between the predicted and the true IoU of
every output mask. By default (``loss_at="decoder"``, what the bundled weights used) the mask
terms are computed at the decoder's own resolution (64x64 for micro_sam) against area-averaged
targets, which costs less per step than ``loss_at="input"`` (the masks upsampled to the input
size, as SAM; measured in ``benchmarks/micro_sam_recipes_cpu.md``). ``init_encoder`` (off by default)
starts the image encoder from micro_mae's weights, as SAM started from an MAE-pretrained ViT. The
recipes tried, and what each gave, are in ``benchmarks/micro_sam_recipes_cpu.md``.

Differences from SAM's recipe, so that it fits a CPU: no iterative point sampling from the error
region, no mask prompts, no text/SA-1B data; a generated corpus (:mod:`.corpus`) instead.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convlora_lite.data.transforms import to_model_input
from convlora_lite.errors import ConfigError
from convlora_lite.models.mae import build_micro_mae_encoder
from convlora_lite.models.promptable import decode, encode, input_size, is_sam2
from convlora_lite.models.prompts import centre_point, jitter_box, mask_box, random_point
from convlora_lite.models.sam import build_sam, get_config
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

FOCAL_WEIGHT, DICE_WEIGHT = 20.0, 1.0
#: ``loss_at`` -> the side of the masks the loss sees, from the model's config.
LOSS_SIZES = {"input": lambda cfg: cfg.image_size, "decoder": lambda cfg: 4 * cfg.grid_size}
#: what the micro SAM 2 card adds to the objective: SAM 2's object-score head has nothing to learn from prompts
#: that always hold an object (SAM 2 trains it on video frames where the object is absent).
SAM2_OBJECTIVE_NOTE = ("; SAM 2's object-score head is not trained (every prompt here has an object), and "
                       "its high-resolution features enter the decoder as in SAM2ImagePredictor")


@dataclass(frozen=True)
class SamPretrainConfig:
    """Everything that decides the weights (recorded in the card and in the resume state)."""

    model: str = "micro_sam"
    steps: int = 2600  # the bundled weights (their card has the full command)
    batch_size: int = 8
    instances_per_image: int = 8
    two_point_prob: float = 0.25
    focal_alpha: float = 0.25
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_steps: int = 50
    grad_clip: float = 1.0
    loss_at: str = "decoder"  # the masks the loss sees: "input" (upsampled) or "decoder" (4x the token grid)
    init_encoder: str = "none"  # or "micro_mae" (the bundled encoder) or a path to micro_mae-style weights
    seed: int = 0
    eval_seed: int = 1_000_003
    eval_images: int = 100


@dataclass(frozen=True)
class Sam2PretrainConfig(SamPretrainConfig):
    """:class:`SamPretrainConfig` for ``micro_sam2`` (SAM 2's Hiera at micro_sam's size; the bundled weights' card
    has the full command)."""

    model: str = "micro_sam2"
    steps: int = 2000


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (Lin et al., 2017) averaged over pixels: logits, targets (N, H, W) -> (N,).

    ``alpha`` weights the positives (1 - alpha the negatives); ``alpha < 0`` turns the weighting off
    (torchvision's convention)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(1).mean(1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft dice loss 1 - (2|p t| + 1) / (|p| + |t| + 1): logits, targets (N, H, W) -> (N,)."""
    prob = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    return 1 - (2 * (prob * targets).sum(1) + 1) / (prob.sum(1) + targets.sum(1) + 1)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of the masks ``logits > 0`` with binary ``targets`` (N, H, W) -> (N,); empty vs empty = 1."""
    pred = logits > 0
    gt = targets > 0.5
    inter = (pred & gt).flatten(1).sum(1).float()
    union = (pred | gt).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def prompt_loss(logits: torch.Tensor, iou_pred: torch.Tensor, targets: torch.Tensor,
                focal_alpha: float = 0.25) -> torch.Tensor:
    """SAM's loss for N prompts: logits (N, M, S, S), iou_pred (N, M), targets (N, S, S) -> (N,).

    With M > 1 only the mask with the lowest focal + dice loss counts (SAM's multimask rule); the
    IoU head is trained with MSE on every output mask."""
    n, m = logits.shape[:2]
    tgt = targets[:, None].expand(-1, m, -1, -1).reshape(n * m, *targets.shape[1:])
    flat = logits.reshape(n * m, *logits.shape[2:])
    mask_term = (FOCAL_WEIGHT * sigmoid_focal_loss(flat, tgt, alpha=focal_alpha)
                 + DICE_WEIGHT * dice_loss(flat, tgt)).view(n, m)
    with torch.no_grad():
        true_iou = mask_iou(flat, tgt).view(n, m)
    iou_term = F.mse_loss(iou_pred, true_iou, reduction="none").mean(1)
    return mask_term.min(1).values + iou_term


def image_loss(sam: nn.Module, features, masks: np.ndarray, rng: np.random.Generator,
               cfg: SamPretrainConfig) -> torch.Tensor:
    """Sum of :func:`prompt_loss` over the sampled instances of one image (each: a point prompt and a box);
    ``features``: the image's, from :func:`~convlora_lite.models.promptable.encode`."""
    size = masks.shape[-1]
    chosen = rng.choice(len(masks), size=min(cfg.instances_per_image, len(masks)), replace=False)
    one_point, two_point, boxes = [], [], []
    for i in chosen:
        mask = masks[i]
        positive = random_point(rng, mask)
        outside = ~mask
        if rng.random() < cfg.two_point_prob and outside.any():
            two_point.append((i, np.stack([positive, random_point(rng, outside)])))
        else:
            one_point.append((i, positive[None]))
        boxes.append((i, jitter_box(rng, mask_box(mask), size)))
    loss_size = LOSS_SIZES[cfg.loss_at](get_config(cfg.model))
    targets = loss_targets(masks, loss_size)
    total = torch.zeros(())
    for group, labels, multimask in ((one_point, [1.0], True), (two_point, [1.0, 0.0], False)):
        if group:
            coords = torch.from_numpy(np.stack([p for _, p in group]))
            label_t = torch.tensor([labels] * len(group))
            logits, iou = decode(sam, features, points=(coords, label_t), multimask=multimask, size=loss_size)
            total = total + prompt_loss(logits, iou, targets[[i for i, _ in group]], cfg.focal_alpha).sum()
    logits, iou = decode(sam, features, boxes=torch.from_numpy(np.stack([b for _, b in boxes])), size=loss_size)
    return total + prompt_loss(logits, iou, targets[[i for i, _ in boxes]], cfg.focal_alpha).sum()


def loss_targets(masks: np.ndarray, size: int) -> torch.Tensor:
    """Bool (N, S, S) masks -> float (N, size, size) targets: the fraction of each cell inside the mask
    (area averaging, so thin and small objects keep a soft target when ``size < S``)."""
    targets = torch.from_numpy(masks).float()
    if targets.shape[-1] != size:
        targets = F.adaptive_avg_pool2d(targets[:, None], size)[:, 0]
    return targets


@torch.no_grad()
def evaluate_zero_shot(sam: nn.Module, seed: int, num_images: int) -> dict:
    """Mean IoU over every instance of ``num_images`` generated scenes of corpus seed ``seed``.

    One point: the pixel farthest from the mask border, multimask output, the mask with the
    highest predicted IoU (SAM's automatic choice). One box: the tight box, single-mask output.
    ``box_fill_baseline_miou`` is what needs no model at all: the filled tight box as the mask
    (its IoU is the mask's area over the box's), the floor a box-prompted model must clear."""
    sam.eval()
    size = input_size(sam)
    point_ious, box_ious, fill_ious = [], [], []
    for index in range(num_images):
        scene = generate_scene(seed, index, size)
        features = encode(sam, to_model_input([scene.image]))[0]
        targets = torch.from_numpy(scene.masks).float()
        coords = torch.from_numpy(np.stack([centre_point(m) for m in scene.masks]))[:, None]
        logits, iou = decode(sam, features, points=(coords, torch.ones(len(coords), 1)), multimask=True)
        best = logits[torch.arange(len(logits)), iou.argmax(1)]
        point_ious.append(mask_iou(best, targets))
        boxes = np.stack([mask_box(m) for m in scene.masks])
        logits, _ = decode(sam, features, boxes=torch.from_numpy(boxes))
        box_ious.append(mask_iou(logits[:, 0], targets))
        box_areas = torch.from_numpy((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        fill_ious.append(targets.flatten(1).sum(1) / box_areas)
    point, box, fill = torch.cat(point_ious), torch.cat(box_ious), torch.cat(fill_ious)
    return {"one_point_miou": round(point.mean().item(), 4), "one_box_miou": round(box.mean().item(), 4),
            "box_fill_baseline_miou": round(fill.mean().item(), 4),
            "num_images": num_images, "num_instances": len(box), "corpus_seed": seed}


def init_encoder_from_mae(sam: nn.Module, cfg: SamPretrainConfig) -> None:
    """Copy micro_mae-style encoder weights (``cfg.init_encoder``: "micro_mae" for the bundled file,
    or a path) into ``sam.image_encoder``; a clear error when the sizes do not fit ``cfg.model``."""
    if cfg.model != "micro_sam":
        raise ConfigError(f"--init-encoder loads micro_mae weights, which have micro_sam's sizes; "
                          f"--model {cfg.model} does not. Use --model micro_sam or --init-encoder none.")
    encoder = build_micro_mae_encoder(None if cfg.init_encoder == "micro_mae" else cfg.init_encoder)
    sam.image_encoder.load_state_dict(encoder.state_dict())


def train_step(sam: nn.Module, optimizer: torch.optim.Optimizer, cfg: SamPretrainConfig, step: int) -> float:
    """One optimiser step on the batch of scenes ``step * batch_size ...``; returns the mean prompt loss."""
    size = input_size(sam)
    scenes = [generate_scene(cfg.seed, step * cfg.batch_size + j, size) for j in range(cfg.batch_size)]
    rng = np.random.default_rng([cfg.seed, 1, step])
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(step, cfg.steps, cfg.warmup_steps, cfg.lr)
    sam.train()
    features = encode(sam, to_model_input([s.image for s in scenes]))
    losses = [image_loss(sam, f, s.masks, rng, cfg) for f, s in zip(features, scenes)]
    num_prompts = sum(2 * min(cfg.instances_per_image, len(s.masks)) for s in scenes)
    loss = torch.stack(losses).sum() / num_prompts
    optimizer_step(sam, optimizer, loss, cfg.grad_clip)
    return loss.item()


def pretrain_sam(cfg: SamPretrainConfig, out_path, work_dir, command: str, threads: int, resume: bool = False,
                 checkpoint_every_s: float = 180.0, log=print) -> dict:
    """Train, export ``out_path`` (fp16 safetensors of ``Sam.state_dict()``), evaluate the exported
    weights zero-shot and write the card next to it (``.json``). Returns the card."""
    if cfg.eval_seed == cfg.seed:
        raise ConfigError("--eval-seed must differ from --seed: the held-out set must not be training data.")
    if cfg.loss_at not in LOSS_SIZES:
        raise ConfigError(f"--loss-at must be one of {', '.join(LOSS_SIZES)}, not {cfg.loss_at!r}.")
    torch.manual_seed(cfg.seed)
    sam = build_sam(cfg.model, checkpoint=None)
    if cfg.init_encoder != "none":
        init_encoder_from_mae(sam, cfg)
    optimizer = make_optimizer(sam, cfg.lr, cfg.weight_decay)
    state = run_steps(sam, optimizer, asdict(cfg), cfg.steps, lambda step: train_step(sam, optimizer, cfg, step),
                      work_dir, resume, checkpoint_every_s, log)
    sha = save_fp16_safetensors(sam.state_dict(), out_path)
    exported = build_sam(cfg.model, checkpoint=out_path)
    quality = evaluate_zero_shot(exported, cfg.eval_seed, cfg.eval_images)
    log(f"zero-shot: {quality}")
    card = {
        "name": cfg.model, "model_config": cfg.model, "command": command, "config": asdict(cfg),
        "objective": "SAM promptable segmentation: point (1 or 2) and box prompts, multimask best-of-3 for one "
                     f"point, 20 * focal + 1 * dice (on the {cfg.loss_at}-size masks) + IoU-prediction MSE"
                     + (SAM2_OBJECTIVE_NOTE if is_sam2(sam) else ""),
        "data": DESCRIPTION + f" Training scenes: corpus seed {cfg.seed}, indices 0..{cfg.steps * cfg.batch_size - 1}.",
        "zero_shot": quality,
        "zero_shot_protocol": "held-out scenes (another corpus seed), every instance; one point = pixel farthest "
                              "from the border, mask with the highest predicted IoU; one box = tight box; IoU at "
                              "logit 0 at 256 px; evaluated on the exported fp16 weights cast to fp32; "
                              "box_fill_baseline_miou = the filled tight box as the mask, no model",
        "meets_box_target_0_75": quality["one_box_miou"] >= 0.75,
        "weights": {"file": Path(out_path).name, "sha256": sha,
                    "dtype": "float16 (loading casts to float32)",
                    "keys": "sam2 SAM2Base.state_dict()" if is_sam2(sam) else "segment_anything Sam.state_dict()",
                    "parameters": sum(p.numel() for p in sam.parameters())},
        "train_wall_time_s": round(state.elapsed_s, 1), "resumed": state.resumed,
        "environment": environment_record(threads),
    }
    write_card(Path(out_path).with_suffix(".json"), card)
    return card
