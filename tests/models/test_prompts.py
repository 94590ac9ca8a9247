"""Prompts sampled from masks and PromptedSAM: where the prompts fall, their seeding, the outputs
against segment_anything's own decoder, the best-of-3 loss and what receives gradients."""
import numpy as np
import pytest
import torch

from convlora_lite.errors import ConfigError, DataError
from convlora_lite.models.promptable import decode
from convlora_lite.models.prompts import (
    EVAL_PROMPT_SEED,
    batch_prompts,
    eval_prompts,
    mask_box,
    sam_box_noise_cap,
    train_prompts,
)
from convlora_lite.models.sam import build_sam
from convlora_lite.models.segmenter import PromptedSAM
from convlora_lite.peft import apply_peft
from convlora_lite.training.losses import best_of_masks, structure_loss

S = 64  # test_tiny's input size


def blobs(n=6, size=S, seed=0):
    """``n`` (size, size) float masks, each of one or two random rectangles; mask 0 is empty."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.float32)
    for i in range(1, n):
        for _ in range(1 + i % 2):
            x, y = rng.integers(0, size - 12, 2)
            w, h = rng.integers(3, 12, 2)
            masks[i, y:y + h, x:x + w] = 1
    return torch.from_numpy(masks)


def names(n):
    return [f"img{i}" for i in range(n)]


def test_points_fall_inside_the_mask_and_boxes_cover_it():
    masks = blobs(12)
    for epoch in range(20):
        points = train_prompts(masks, names(12), "point", seed=3, epoch=epoch)
        boxes = train_prompts(masks, names(12), "box", seed=3, epoch=epoch)
        assert points.points.shape == (12, 1, 2) and points.labels.tolist() == [[1.0]] * 12
        assert boxes.boxes.shape == (12, 4) and points.present.tolist() == [False] + [True] * 11
        for i in range(1, 12):
            x, y = points.points[i, 0].floor().long().tolist()
            assert masks[i, y, x] == 1
            tight = mask_box(masks[i].numpy() > 0.5)
            ys, xs = np.nonzero(masks[i].numpy())
            assert tight[0] <= xs.min() and xs.max() < tight[2] and tight[1] <= ys.min() and ys.max() < tight[3]
            moved = np.abs(boxes.boxes[i].numpy() - tight)
            assert moved.max() <= sam_box_noise_cap(S) + 1e-5  # SAM's 20 px at 1024 px = 1.25 px here
            assert (boxes.boxes[i] >= 0).all() and (boxes.boxes[i] <= S).all()


def test_eval_prompts_are_seeded_per_image_not_per_batch():
    masks = blobs(6)
    full = eval_prompts(masks, names(6), "point")
    again = eval_prompts(masks, names(6), "point")
    assert torch.equal(full.points, again.points)
    order = [4, 1, 5]  # another batch, another order: the same prompt for each image
    part = eval_prompts(masks[order], [f"img{i}" for i in order], "point")
    assert torch.equal(part.points, full.points[order])
    boxes = eval_prompts(masks, names(6), "box")
    assert torch.equal(boxes.boxes, batch_prompts(masks, names(6), "box", (EVAL_PROMPT_SEED,)).boxes)
    assert not torch.equal(train_prompts(masks, names(6), "box", 0, 0).boxes[1:], boxes.boxes[1:])
    assert not torch.equal(train_prompts(masks, names(6), "box", 0, 1).boxes[1:],
                           train_prompts(masks, names(6), "box", 0, 0).boxes[1:])


def test_bad_prompt_kinds_are_config_errors():
    with pytest.raises(ConfigError, match="choose one of none, box, point"):
        batch_prompts(blobs(2), names(2), "scribble", (0,))
    with pytest.raises(ConfigError, match="takes no prompts"):
        batch_prompts(blobs(2), names(2), "none", (0,))
    with pytest.raises(ConfigError, match="PromptFreeSAM"):
        PromptedSAM(build_sam("test_tiny"), "none")


def _images(n):
    return torch.randn(n, 3, S, S)


@pytest.mark.parametrize("prompt", ["box", "point"])
def test_outputs_match_segment_anythings_decoder(prompt):
    model = PromptedSAM(build_sam("test_tiny"), prompt).eval()
    images, masks = _images(4), blobs(4)
    prompts = eval_prompts(masks, names(4), prompt)
    with torch.no_grad():
        out = model(images, prompts)
        embeddings = model.image_encoder(images)
    assert out.logits.shape == (4, 1, S, S)
    m = 3 if prompt == "point" else 1
    assert out.iou_predictions.shape == (4, m)
    assert (out.multimask_logits is None) == (prompt == "box")
    with torch.no_grad():  # images 1-3 have objects: SAM's own prompt encoder + decoder, one image at a time
        for b in range(1, 4):
            points = None if prompt == "box" else (prompts.points[b:b + 1], prompts.labels[b:b + 1])
            boxes = prompts.boxes[b:b + 1] if prompt == "box" else None
            logits, iou = decode(model, embeddings[b:b + 1], points=points, boxes=boxes, multimask=m > 1)
            torch.testing.assert_close(out.iou_predictions[b:b + 1], iou)
            expected = logits[:, iou.argmax(1)[0]] if m > 1 else logits[:, 0]
            torch.testing.assert_close(out.logits[b:b + 1, 0], expected)
            if m > 1:
                torch.testing.assert_close(out.multimask_logits[b:b + 1], logits)


def test_an_empty_mask_gets_the_padding_tokens_only():
    model = PromptedSAM(build_sam("test_tiny"), "box")
    prompts = eval_prompts(blobs(3), names(3), "box")
    sparse, _ = model.encode_prompts(prompts, 3)
    pad = model.prompt_encoder.not_a_point_embed.weight[0]
    assert torch.equal(sparse[0], pad.expand_as(sparse[0])) and not torch.equal(sparse[1], pad.expand_as(sparse[1]))
    with pytest.raises(ConfigError, match="takes box prompts, got point"):
        model(_images(3), eval_prompts(blobs(3), names(3), "point"))
    with pytest.raises(ConfigError, match="takes box prompts, got none"):
        model.predict(_images(3))
    with pytest.raises(DataError, match="3 prompts for 2 images"):
        model(_images(2), prompts)


def test_best_of_masks_takes_each_images_smallest_loss():
    logits, masks = torch.randn(3, 3, S, S), blobs(3)
    per = torch.tensor([[structure_loss(logits[b:b + 1, m:m + 1], masks[b:b + 1, None]).item() for m in range(3)]
                        for b in range(3)])
    assert best_of_masks(structure_loss, logits, masks).item() == pytest.approx(per.min(1).values.mean().item())


@pytest.mark.parametrize("method,prompt", [("lora", "point"), ("conv_lora", "box")])
def test_gradients_reach_the_decoder_and_adapters_not_the_prompt_encoder(method, prompt):
    model = apply_peft(PromptedSAM(build_sam("test_tiny"), prompt), method)
    assert not any(p.requires_grad for p in model.prompt_encoder.parameters())
    assert not any(p.requires_grad for p in model.mask_decoder.iou_prediction_head.parameters())
    masks = blobs(3)
    out = model(_images(3), train_prompts(masks, names(3), prompt, 0, 0))
    loss = (best_of_masks(structure_loss, out.multimask_logits, masks) if prompt == "point"
            else structure_loss(out.logits, masks[:, None]))
    (loss + out.aux_loss).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    adapters = [n for n in grads if n.startswith("image_encoder.")]
    assert adapters and all(grads[n] is not None for n in adapters if "lora_B" in n or "lora_b" in n.lower())
    assert any(grads[n] is not None and grads[n].abs().sum() > 0 for n in adapters)
    assert grads["mask_decoder.output_upscaling.0.weight"].abs().sum() > 0
    assert all(p.grad is None for p in model.prompt_encoder.parameters())
    if prompt == "point":  # the multimask tokens 1-3 are the ones trained by a point
        assert grads["mask_decoder.mask_tokens.weight"][1:].abs().sum() > 0
