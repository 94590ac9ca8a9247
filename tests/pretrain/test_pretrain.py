"""The micro-model pretraining: corpus, SAM losses and prompts, the script end to end, the bundled asset."""
import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torchvision.ops import sigmoid_focal_loss as tv_focal

from convlora_lite.errors import CheckpointError
from convlora_lite.models.checkpoints import ASSETS_DIR
from convlora_lite.models.mae import build_micro_mae_encoder
from convlora_lite.models.sam import build_sam, get_config, sam_from_config
from convlora_lite.pretrain.__main__ import main
from convlora_lite.pretrain.common import learning_rate
from convlora_lite.pretrain.corpus import generate_scene
from convlora_lite.pretrain.sam_pretrain import (
    FOCAL_WEIGHT,
    centre_point,
    dice_loss,
    evaluate_zero_shot,
    jitter_box,
    loss_targets,
    mask_box,
    mask_iou,
    prompt_loss,
    sigmoid_focal_loss,
)

TINY = ["--model", "test_tiny", "--steps", "2", "--batch-size", "2", "--instances-per-image", "2",
        "--eval-images", "2", "--warmup-steps", "1", "--checkpoint-every", "0"]


def test_scene_is_a_function_of_seed_and_index():
    a, b, c = generate_scene(3, 7, 64), generate_scene(3, 7, 64), generate_scene(3, 8, 64)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.image, c.image)


def test_scene_masks_are_visible_disjoint_instances():
    for index in range(5):
        scene = generate_scene(0, index, 128)
        assert scene.image.shape == (128, 128, 3) and scene.image.dtype == np.float32
        assert 0.0 <= scene.image.min() and scene.image.max() <= 1.0
        assert scene.masks.dtype == bool and scene.masks.shape[1:] == (128, 128)
        assert scene.masks.sum(0).max() <= 1  # occlusion leaves disjoint visible parts
        assert scene.masks.sum((1, 2)).min() >= 128 * 128 // 1024


def test_focal_loss_matches_torchvision():
    logits, targets = torch.randn(3, 8, 8), (torch.rand(3, 8, 8) > 0.5).float()
    for alpha in (0.25, -1.0):  # -1: no class weighting
        expected = tv_focal(logits, targets, alpha=alpha, gamma=2.0, reduction="none").flatten(1).mean(1)
        torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=alpha), expected)


def test_dice_and_iou_by_hand():
    targets = torch.zeros(1, 4, 4)
    targets[0, :2] = 1  # 8 pixels
    logits = torch.full((1, 4, 4), -50.0)
    logits[0, 1:3] = 50.0  # predicts rows 1-2: intersection 4, union 12
    assert mask_iou(logits, targets).item() == pytest.approx(4 / 12)
    assert dice_loss(logits, targets).item() == pytest.approx(1 - (2 * 4 + 1) / (8 + 8 + 1), abs=1e-6)


def test_multimask_loss_counts_only_the_best_mask():
    targets = torch.zeros(1, 8, 8)
    targets[0, 2:6, 2:6] = 1
    perfect = targets * 100 - 50
    logits = torch.stack([-perfect, perfect, torch.zeros(1, 8, 8)], 1)  # (1, 3, 8, 8): wrong, right, unsure
    iou_pred = torch.tensor([[0.0, 1.0, 0.0]])
    expected_mask = FOCAL_WEIGHT * sigmoid_focal_loss(perfect, targets) + dice_loss(perfect, targets)
    true_iou = torch.tensor([0.0, 1.0, 0.0])  # the complement and the empty mask (logit 0 is not > 0) score 0
    expected = expected_mask + ((iou_pred[0] - true_iou) ** 2).mean()
    torch.testing.assert_close(prompt_loss(logits, iou_pred, targets), expected)


def test_box_jitter_stays_near_the_box_and_inside_the_image():
    rng = np.random.default_rng(0)
    box = np.array([5.0, 10.0, 200.0, 60.0], np.float32)
    for _ in range(200):
        out = jitter_box(rng, box, 256)
        assert (out >= 0).all() and (out <= 256).all() and out[2] > out[0] and out[3] > out[1]
        assert np.abs(out - box).max() <= 20 + 1e-4


def test_box_jitter_cap_is_reached_and_respected():
    rng = np.random.default_rng(1)
    box = np.array([40.0, 40.0, 200.0, 200.0], np.float32)  # side 160: N(0, 16 px) noise, often past the cap
    moves = np.stack([np.abs(jitter_box(rng, box, 256, max_px=5.0) - box) for _ in range(200)])
    assert moves.max() == pytest.approx(5.0)
    assert (moves == 5.0).mean() > 0.5  # |N(0, 16)| > 5 with probability 0.75


def test_box_and_centre_point_of_a_square():
    mask = np.zeros((32, 32), bool)
    mask[4:13, 20:29] = True
    assert mask_box(mask).tolist() == [20, 4, 29, 13]
    assert centre_point(mask).tolist() == [24.5, 8.5]


def test_low_resolution_targets_are_area_fractions():
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 0, 0] = True  # one pixel of the top-left 4x4 cell
    masks[1, 4:, :] = True  # the bottom half
    targets = loss_targets(masks, 2)
    torch.testing.assert_close(targets, torch.tensor([[[1 / 16, 0.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]]))
    assert torch.equal(loss_targets(masks, 8), torch.from_numpy(masks).float())  # full size: the masks as they are


def test_learning_rate_warms_up_then_decays_to_zero():
    assert learning_rate(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert learning_rate(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert learning_rate(100, 100, 10, 1.0) == pytest.approx(0.0)


def test_script_is_deterministic_resumable_and_writes_a_card(tmp_path):
    def run(seed, name, *extra):
        out = tmp_path / name / "micro_sam.safetensors"
        assert main(["micro_sam", *TINY, "--seed", str(seed), "--out", str(out),
                     "--work-dir", str(tmp_path / name / "work"), *extra]) == 0
        return out

    first, second, other = run(0, "a"), run(0, "b"), run(5, "c")
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    card = json.loads(first.with_suffix(".json").read_text())
    assert card["command"].startswith("python -m convlora_lite.pretrain micro_sam --model test_tiny")
    assert card["config"]["seed"] == 0 and card["config"]["steps"] == 2
    assert card["weights"]["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert 0.0 <= card["zero_shot"]["one_box_miou"] <= 1.0 and card["zero_shot"]["corpus_seed"] != 0
    assert card["environment"]["torch_threads"] == 1
    state = load_file(str(first))
    assert all(v.dtype == torch.float16 for v in state.values())
    sam_from_config(get_config("test_tiny")).load_state_dict({k: v.float() for k, v in state.items()})
    resumed = run(0, "a", "--resume")  # already finished: resuming re-exports the same weights
    assert resumed.read_bytes() == second.read_bytes()


def test_script_refuses_bad_resume_and_leaked_eval_seed(tmp_path, capsys):
    work = ["--out", str(tmp_path / "w.safetensors"), "--work-dir", str(tmp_path / "work")]
    assert main(["micro_sam", *TINY, "--resume", *work]) == 2
    assert "Nothing to resume" in capsys.readouterr().err
    assert main(["micro_sam", *TINY, "--seed", "4", "--eval-seed", "4", *work]) == 2
    assert "--eval-seed must differ" in capsys.readouterr().err


def test_script_options_loss_at_decoder_size_and_encoder_from_micro_mae(tmp_path, capsys):
    out = tmp_path / "low.safetensors"
    assert main(["micro_sam", *TINY, "--loss-at", "decoder", "--out", str(out),
                 "--work-dir", str(tmp_path / "low")]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["config"]["loss_at"] == "decoder" and "decoder-size masks" in card["objective"]
    assert load_file(str(out)).keys() == sam_from_config(get_config("test_tiny")).state_dict().keys()
    upsampled = tmp_path / "input.safetensors"
    assert main(["micro_sam", *TINY, "--loss-at", "input", "--out", str(upsampled),
                 "--work-dir", str(tmp_path / "input")]) == 0
    assert out.read_bytes() != upsampled.read_bytes()  # the option changes the training, not only the card
    assert "input-size masks" in json.loads(upsampled.with_suffix(".json").read_text())["objective"]
    assert main(["micro_sam", *TINY, "--loss-at", "pixels", "--work-dir", str(tmp_path / "bad")]) == 2
    assert "--loss-at must be one of input, decoder" in capsys.readouterr().err
    assert main(["micro_sam", *TINY, "--init-encoder", "micro_mae", "--work-dir", str(tmp_path / "bad")]) == 2
    assert "Use --model micro_sam or --init-encoder none" in capsys.readouterr().err
    assert main(["micro_sam", "--steps", "0", "--eval-images", "1",
                 "--init-encoder", str(tmp_path / "none.safetensors"), "--work-dir", str(tmp_path / "bad")]) == 2
    assert "No micro_mae weights" in capsys.readouterr().err

    started = tmp_path / "from_mae.safetensors"  # zero steps: the exported encoder is micro_mae's, bit for bit
    assert main(["micro_sam", "--steps", "0", "--eval-images", "1", "--init-encoder", "micro_mae",
                 "--out", str(started), "--work-dir", str(tmp_path / "mae")]) == 0
    exported = load_file(str(started))
    for name, value in build_micro_mae_encoder().state_dict().items():
        assert torch.equal(exported["image_encoder." + name].float(), value), name


@pytest.mark.parametrize("name", ["micro_sam", "micro_sam2"])
def test_bundled_micro_model_is_what_its_card_says(name):
    """The committed weights: the card's sha256, loadable offline by build_sam, and its zero-shot numbers
    recomputed from the weights on the held-out scenes."""
    weights = ASSETS_DIR / f"{name}.safetensors"
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["weights"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert card["name"] == card["model_config"] == name and card["command"].startswith(
        f"python -m convlora_lite.pretrain {name} ")
    sam = build_sam(name)
    assert sum(p.numel() for p in sam.parameters()) == card["weights"]["parameters"]
    quality = evaluate_zero_shot(sam, card["zero_shot"]["corpus_seed"], card["zero_shot"]["num_images"])
    assert quality["num_instances"] == card["zero_shot"]["num_instances"]
    assert quality["one_box_miou"] == pytest.approx(card["zero_shot"]["one_box_miou"], abs=2e-4)
    assert quality["one_point_miou"] == pytest.approx(card["zero_shot"]["one_point_miou"], abs=2e-4)
    fill = [m.sum() / np.prod(np.ptp(np.nonzero(m), axis=1) + 1)  # area over tight-box area, by numpy alone
            for i in range(card["zero_shot"]["num_images"])
            for m in generate_scene(card["zero_shot"]["corpus_seed"], i, 256).masks]
    assert card["zero_shot"]["box_fill_baseline_miou"] == pytest.approx(np.mean(fill), abs=1e-4)
    assert quality["box_fill_baseline_miou"] == card["zero_shot"]["box_fill_baseline_miou"]
    assert card["meets_box_target_0_75"] == (card["zero_shot"]["one_box_miou"] >= 0.75)


def test_micro_sam2_pretrains_through_the_same_script_and_loads_by_name(tmp_path):
    """Two steps of the SAM 2 run: Meta's SAM2Base trained with the same prompts and losses, exported in fp16 with
    its card, and built back by ``build_sam`` from the file (and refused as another model's checkpoint)."""
    out = tmp_path / "micro_sam2.safetensors"
    assert main(["micro_sam2", "--steps", "2", "--batch-size", "1", "--instances-per-image", "2", "--eval-images", "1",
                 "--warmup-steps", "1", "--checkpoint-every", "0", "--out", str(out),
                 "--work-dir", str(tmp_path / "work")]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["name"] == "micro_sam2" and card["weights"]["keys"] == "sam2 SAM2Base.state_dict()"
    assert "object-score head is not trained" in card["objective"]
    torch.manual_seed(0)  # the run's seed: the same initial weights
    untrained = build_sam("micro_sam2", checkpoint=None)
    assert card["weights"]["parameters"] == sum(p.numel() for p in untrained.parameters())
    state = build_sam("micro_sam2", checkpoint=out).state_dict()
    exported = {k: v.half().float() if v.is_floating_point() else v for k, v in untrained.state_dict().items()}
    changed = [k for k, v in exported.items() if not torch.equal(v, state[k])]
    assert any(k.startswith("image_encoder.trunk.") for k in changed)
    assert any(k.startswith("sam_mask_decoder.") for k in changed)
    assert not any(k.startswith("memory_attention.") for k in changed)  # video memory: unused on images
    with pytest.raises(CheckpointError, match="seems to be for micro_sam2"):
        build_sam("sam2.1_hiera_tiny", checkpoint=out)
