"""Linear probing: separable features give ~100 %, random labels give chance; the data and the MAE mapping."""
import pytest
import torch

from convlora_lite.analysis.linear_probe import (
    build_mae_vit_b_encoder,
    encoder_features,
    image_folder_tensors,
    linear_probe,
    mae_state_to_encoder,
    make_shape_classes,
)
from convlora_lite.errors import CheckpointError, DataError


def test_probe_separates_separable_classes():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g) * 3
    labels = torch.arange(400) % 4
    features = centres[labels] + 0.3 * torch.randn(400, 16, generator=g)
    result = linear_probe(features[:300], labels[:300], features[300:], labels[300:])
    assert result.test_accuracy == pytest.approx(1.0, abs=0.01)
    assert result.train_accuracy == pytest.approx(1.0, abs=0.01)
    assert result.chance == pytest.approx(0.25, abs=0.05)


def test_probe_on_random_labels_is_near_chance():
    g = torch.Generator().manual_seed(1)
    features = torch.randn(1000, 16, generator=g)
    labels = torch.randint(0, 4, (1000,), generator=g)
    result = linear_probe(features[:600], labels[:600], features[600:], labels[600:])
    assert abs(result.test_accuracy - 0.25) < 0.08
    assert result.train_accuracy > result.test_accuracy  # it fits noise it cannot generalise


def test_shape_classes_are_seeded_balanced_and_normalised():
    images, labels = make_shape_classes(2, num_classes=3, image_size=32, seed=5)
    again, _ = make_shape_classes(2, num_classes=3, image_size=32, seed=5)
    other, _ = make_shape_classes(2, num_classes=3, image_size=32, seed=6)
    assert images.shape == (6, 3, 32, 32) and labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert torch.equal(images, again) and not torch.equal(images, other)
    assert images.mean().abs() < 2 and images.min() < 0  # ImageNet-normalised, not [0, 1]


def test_features_are_mean_pooled_last_block_tokens():
    from convlora_lite.models.sam import build_sam
    encoder = build_sam("test_tiny").image_encoder
    images = torch.randn(3, 3, 64, 64)
    feats = encoder_features(encoder, images, batch_size=2)
    tokens = {}
    encoder.blocks[-1].register_forward_hook(lambda m, i, o: tokens.setdefault("x", o))
    encoder(images)
    assert feats.shape == (3, 32)
    assert torch.allclose(feats, tokens["x"].mean(dim=(1, 2)), atol=1e-5)


def test_image_folder(tmp_path):
    from PIL import Image
    for name in ("b_class", "a_class"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (20, 10), (i * 60, 0, 0)).save(tmp_path / name / f"{i}.png")
    images, labels, classes = image_folder_tensors(tmp_path, 16, max_per_class=2)
    assert classes == ["a_class", "b_class"] and labels.tolist() == [0, 0, 1, 1]
    assert images.shape == (4, 3, 16, 16)
    with pytest.raises(DataError, match="class folders"):
        image_folder_tensors(tmp_path / "a_class", 16)


def test_mae_state_maps_onto_a_plain_vit_and_missing_file_is_clear(tmp_path):
    dim, grid, patch = 16, 2, 8
    state = {"cls_token": torch.zeros(1, 1, dim), "pos_embed": torch.randn(1, 1 + grid * grid, dim),
             "patch_embed.proj.weight": torch.randn(dim, 3, patch, patch), "patch_embed.proj.bias": torch.randn(dim)}
    for i in range(2):
        p = f"blocks.{i}."
        state.update({p + "norm1.weight": torch.ones(dim), p + "norm1.bias": torch.zeros(dim),
                      p + "attn.qkv.weight": torch.randn(3 * dim, dim), p + "attn.qkv.bias": torch.zeros(3 * dim),
                      p + "attn.proj.weight": torch.randn(dim, dim), p + "attn.proj.bias": torch.zeros(dim),
                      p + "norm2.weight": torch.ones(dim), p + "norm2.bias": torch.zeros(dim),
                      p + "mlp.fc1.weight": torch.randn(4 * dim, dim), p + "mlp.fc1.bias": torch.zeros(4 * dim),
                      p + "mlp.fc2.weight": torch.randn(dim, 4 * dim), p + "mlp.fc2.bias": torch.zeros(dim)})
    torch.save({"model": state}, tmp_path / "mae.pth")
    encoder = build_mae_vit_b_encoder(tmp_path / "mae.pth")
    assert encoder.img_size == 16 and len(encoder.blocks) == 2
    assert torch.equal(encoder.blocks[1].mlp.lin2.weight, state["blocks.1.mlp.fc2.weight"])
    assert torch.equal(encoder.pos_embed[0, 1, 0], state["pos_embed"][0, 3])  # token (1, 0) = sequence index 1 + 2
    assert encoder_features(encoder, torch.randn(1, 3, 16, 16)).shape == (1, dim)
    with pytest.raises(CheckpointError, match="mae_pretrain_vit_base.pth"):
        build_mae_vit_b_encoder(tmp_path / "absent.pth")
    with pytest.raises(CheckpointError, match="timm/MAE"):
        mae_state_to_encoder({"x": torch.zeros(1)})


def test_split_is_stratified_disjoint_and_seeded():
    from convlora_lite.analysis.linear_probe import split_indices
    labels = torch.arange(30) % 3
    train, test = split_indices(labels, test_fraction=0.2, seed=1)
    assert len(set(train.tolist()) & set(test.tolist())) == 0 and len(train) + len(test) == 30
    assert torch.bincount(labels[test]).tolist() == [2, 2, 2]
    assert torch.equal(test, split_indices(labels, test_fraction=0.2, seed=1)[1])
