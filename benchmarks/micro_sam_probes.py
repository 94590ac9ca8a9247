"""Where the bundled micro SAM's zero-shot box mIoU is stuck: three probes that start from it.

* ``continue --train decoder``: more training with the image encoder frozen (prompt encoder and
  mask decoder only). If the decoder were what limits the score, this would raise it.
* ``continue --train all``: more training of the whole model (the compute the hour did not have).
* ``overfit``: training on a fixed set of 16 generated scenes, scored on those same scenes. It
  tells whether the architecture can draw good masks at all (capacity), as opposed to not yet
  having learned to generalise.

``--box-noise-max`` changes the cap of the training boxes' jitter (the pretraining's 20 px, SAM's
cap in its 1024 px frame) for the probe, e.g. 5 px: SAM's cap scaled to 256 px.

Each uses the pretraining script's own loss (:func:`image_loss`), optimiser, learning-rate
schedule (warm-up 20 steps, cosine to 0) and zero-shot protocol (:func:`evaluate_zero_shot`).
``continue`` trains on scenes the bundled run never saw (corpus seed 0 from index 2600 * 8) and
scores the usual 100 held-out scenes; ``overfit`` uses corpus seed 555, scenes 0-15. Recorded
results: ``benchmarks/micro_sam_recipes_cpu.md``.

    python benchmarks/micro_sam_probes.py continue --train decoder --steps 600 --lr 3e-4
    python benchmarks/micro_sam_probes.py continue --train all --steps 400 --lr 3e-4
    python benchmarks/micro_sam_probes.py overfit --steps 400 --lr 3e-4   # recorded: stopped after step 200
    python benchmarks/micro_sam_probes.py continue --train all --steps 400 --lr 3e-4 --box-noise-max 5
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from functools import partial

import numpy as np
import torch

from convlora_lite.models.sam import build_sam
from convlora_lite.pretrain import sam_pretrain
from convlora_lite.pretrain.common import learning_rate, make_optimizer, optimizer_step, to_model_input
from convlora_lite.pretrain.corpus import generate_scene
from convlora_lite.pretrain.sam_pretrain import SamPretrainConfig, evaluate_zero_shot, image_loss

WARMUP_STEPS, EVAL_EVERY = 20, 100
BUNDLED_SCENES = 2600 * 8  # the bundled run used corpus seed 0, scenes 0 .. 2600 * 8 - 1
OVERFIT_SEED, OVERFIT_SCENES = 555, 16


def batch_indices(probe: str, step: int, batch_size: int) -> tuple[int, list[int]]:
    """(corpus seed, scene indices) of the batch at ``step``: fresh scenes, or the fixed set in turn."""
    if probe == "overfit":
        first = step * batch_size % OVERFIT_SCENES
        return OVERFIT_SEED, [first + j for j in range(batch_size)]
    return 0, [BUNDLED_SCENES + step * batch_size + j for j in range(batch_size)]


def score(sam, probe: str) -> dict:
    """The zero-shot protocol on the held-out scenes (``continue``) or on the training set (``overfit``)."""
    if probe == "overfit":
        return evaluate_zero_shot(sam, OVERFIT_SEED, OVERFIT_SCENES)
    cfg = SamPretrainConfig()
    return evaluate_zero_shot(sam, cfg.eval_seed, cfg.eval_images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("probe", choices=("continue", "overfit"))
    parser.add_argument("--train", choices=("decoder", "all"), default="all", help="what is trained")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--box-noise-max", type=float, default=20.0, help="cap of the box jitter, px (default 20)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # image_loss draws its boxes with the module's jitter_box; the probe rebinds it with another cap
    sam_pretrain.jitter_box = partial(sam_pretrain.jitter_box, max_px=args.box_noise_max)
    cfg = replace(SamPretrainConfig(), lr=args.lr, steps=args.steps, warmup_steps=WARMUP_STEPS)
    sam = build_sam("micro_sam")
    train_encoder = args.train == "all"
    sam.image_encoder.requires_grad_(train_encoder)
    optimizer = make_optimizer(sam, args.lr, cfg.weight_decay)
    print("step 0", score(sam, args.probe), flush=True)
    start = time.perf_counter()
    for step in range(args.steps):
        seed, indices = batch_indices(args.probe, step, cfg.batch_size)
        scenes = [generate_scene(seed, i, 256) for i in indices]
        rng = np.random.default_rng([0, 7, step])
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, WARMUP_STEPS, args.lr)
        sam.train()
        with torch.set_grad_enabled(train_encoder):
            embeddings = sam.image_encoder(to_model_input([s.image for s in scenes]))
        losses = [image_loss(sam, embeddings[b:b + 1], s.masks, rng, cfg) for b, s in enumerate(scenes)]
        num_prompts = sum(2 * min(cfg.instances_per_image, len(s.masks)) for s in scenes)
        loss = torch.stack(losses).sum() / num_prompts
        optimizer_step(sam, optimizer, loss, cfg.grad_clip)
        if (step + 1) % EVAL_EVERY == 0 or step + 1 == args.steps:
            print(f"step {step + 1} loss {loss.item():.4f} {time.perf_counter() - start:.0f}s",
                  score(sam, args.probe), flush=True)


if __name__ == "__main__":
    main()
