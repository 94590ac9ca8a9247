"""Masked image modelling on SAM's encoder, its pretraining script and the bundled micro_mae."""
import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from convlora_lite.errors import CheckpointError
from convlora_lite.models.mae import (
    MICRO_MAE_PATH,
    MaskedImageModel,
    build_micro_mae_encoder,
    patchify,
    random_patch_mask,
    unpatchify,
)
from convlora_lite.models.sam import get_config, sam_from_config
from convlora_lite.pretrain.__main__ import main


def tiny_model():
    return MaskedImageModel(sam_from_config(get_config("test_tiny")).image_encoder)


def test_patchify_round_trip_and_layout():
    images = torch.randn(2, 3, 16, 24)
    patches = patchify(images, 8)
    assert patches.shape == (2, 2, 3, 8 * 8 * 3)
    torch.testing.assert_close(unpatchify(patches, 8), images)
    # patch (1, 2) pixel (row 3, col 5) channel 1 sits at index (3 * 8 + 5) * 3 + 1
    assert patches[1, 1, 2, (3 * 8 + 5) * 3 + 1] == images[1, 1, 8 + 3, 16 + 5]


def test_random_patch_mask_masks_exactly_the_ratio():
    mask = random_patch_mask(np.random.default_rng(0), 4, 16, 0.75)
    assert mask.shape == (4, 16, 16) and mask.dtype == torch.bool
    assert mask.flatten(1).sum(1).tolist() == [192] * 4
    assert torch.equal(mask, random_patch_mask(np.random.default_rng(0), 4, 16, 0.75))


def test_masked_patches_are_hidden_from_the_encoder():
    model = tiny_model().eval()
    images = torch.randn(1, 3, 64, 64)
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 2, 3] = True  # the patch at rows 16-23, cols 24-31
    changed = images.clone()
    changed[..., 16:24, 24:32] = torch.randn(3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.predict(images, mask), model.predict(changed, mask))
        changed[..., 0, 0] += 1.0  # a visible patch: the prediction must change
        assert not torch.allclose(model.predict(images, mask), model.predict(changed, mask))


def test_loss_is_the_mean_error_over_masked_patches_of_normalised_pixels():
    model = tiny_model()
    images = torch.randn(2, 3, 64, 64)
    mask = random_patch_mask(np.random.default_rng(1), 2, 8, 0.75)
    target = MaskedImageModel.target(images, 8)
    torch.testing.assert_close(target.mean(-1), torch.zeros(2, 8, 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(target.var(-1), torch.ones(2, 8, 8), atol=1e-4, rtol=0)
    loss = model(images, mask)
    by_hand = ((model.predict(images, mask) - target) ** 2).mean(-1)[mask].mean()
    torch.testing.assert_close(loss, by_hand)
    loss.backward()
    assert model.mask_token.grad.abs().sum() > 0 and model.encoder.neck[0].weight.grad.abs().sum() > 0


def test_mae_script_is_deterministic(tmp_path):
    def run(name):
        out = tmp_path / name / "micro_mae.safetensors"
        assert main(["micro_mae", "--model", "test_tiny", "--steps", "2", "--batch-size", "2", "--eval-images", "2",
                     "--warmup-steps", "1", "--out", str(out), "--work-dir", str(tmp_path / name / "work")]) == 0
        return out

    first, second = run("a"), run("b")
    assert first.read_bytes() == second.read_bytes()
    card = json.loads(first.with_suffix(".json").read_text())
    assert card["weights"]["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert set(load_file(str(first))) == set(sam_from_config(get_config("test_tiny")).image_encoder.state_dict())
    assert card["held_out"]["masked_patch_mse"] > 0


def test_build_micro_mae_encoder_loads_the_bundled_weights():
    encoder = build_micro_mae_encoder()
    stored = load_file(str(MICRO_MAE_PATH))
    name = "blocks.0.attn.qkv.weight"
    torch.testing.assert_close(encoder.state_dict()[name], stored[name].float())
    assert encoder(torch.zeros(1, 3, 256, 256)).shape == (1, 128, 16, 16)
    card = json.loads(MICRO_MAE_PATH.with_suffix(".json").read_text())
    assert card["weights"]["sha256"] == hashlib.sha256(MICRO_MAE_PATH.read_bytes()).hexdigest()


def test_build_micro_mae_encoder_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="No micro_mae weights"):
        build_micro_mae_encoder(tmp_path / "missing.safetensors")
    wrong = tmp_path / "wrong.safetensors"
    save_file({"not_a_key": torch.zeros(2)}, str(wrong))
    with pytest.raises(CheckpointError, match="does not fit"):
        build_micro_mae_encoder(wrong)
