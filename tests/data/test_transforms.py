"""The official input recipe, checked against direct PIL / numpy computations."""
import numpy as np
import pytest
import torch
from PIL import Image

from convlora_lite.data.transforms import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegmentationTransform,
    binary_labels,
    class_labels,
    denormalize_image,
    normalize_image,
    to_rgb,
)
from convlora_lite.errors import DataError


def _random_rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _reference_image(pixels, size):
    """Bicubic PIL resize, /255, ImageNet normalisation, CHW -- written out by hand."""
    resized = np.asarray(Image.fromarray(pixels).resize((size, size), Image.BICUBIC), np.float32) / 255.0
    normalised = (resized - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return torch.from_numpy(normalised.transpose(2, 0, 1))


# --------------------------------------------------------------------------- RGB conversion
def test_grayscale_becomes_rgb_with_equal_channels():
    gray = np.random.default_rng(1).integers(0, 256, (5, 7), dtype=np.uint8)
    rgb = np.asarray(to_rgb(Image.fromarray(gray, mode="L")))
    assert rgb.shape == (5, 7, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], gray)


def test_rgba_drops_alpha_and_keeps_the_stored_colour():
    rgba = np.random.default_rng(2).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: compositing on black would give zeros
    rgb = np.asarray(to_rgb(Image.fromarray(rgba, mode="RGBA")))
    np.testing.assert_array_equal(rgb, rgba[..., :3])


def test_sixteen_bit_grayscale_is_rescaled_not_clipped():
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I")
    rgb = np.asarray(to_rgb(image))
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 100, 255])


def test_palette_image_becomes_its_colours():
    image = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="P")
    image.putpalette([10, 20, 30, 200, 100, 50])
    np.testing.assert_array_equal(np.asarray(to_rgb(image)), [[[10, 20, 30], [200, 100, 50]]])


# --------------------------------------------------------------------------- mask decoding
@pytest.mark.parametrize("foreground", [255, 1, True, 200])
def test_binary_labels_accept_common_encodings(foreground):
    mask = np.zeros((4, 4), dtype=type(foreground) if foreground is True else np.uint8)
    mask[1:3, 1:3] = foreground
    expected = np.zeros((4, 4), np.uint8)
    expected[1:3, 1:3] = 1
    np.testing.assert_array_equal(binary_labels(mask), expected)


def test_binary_labels_threshold_at_half_scale_and_use_the_brightest_channel():
    gray = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(binary_labels(gray), [[0, 0, 1, 1]])
    red = np.zeros((1, 2, 3), np.uint8)
    red[0, 1, 0] = 255  # a pure-red foreground pixel
    np.testing.assert_array_equal(binary_labels(red), [[0, 1]])
    np.testing.assert_array_equal(binary_labels(np.zeros((3, 3), np.uint8)), np.zeros((3, 3)))


def test_binary_labels_refuse_a_class_index_mask():
    with pytest.raises(DataError, match="masks/x.png.*does not look like a binary mask"):
        binary_labels(np.array([[0, 1, 2, 3]], np.uint8), source="masks/x.png")


def test_class_labels_read_palette_indices_and_keep_ignore():
    labels = np.array([[0, 3, 11], [255, 5, 0]], dtype=np.uint8)
    image = Image.fromarray(labels, mode="P")
    image.putpalette(list(range(256)) * 3)  # colours that differ from the indices
    out = class_labels(image, num_classes=12)
    np.testing.assert_array_equal(out, labels)
    rgb_equal = np.repeat(labels[..., None], 3, axis=2)
    np.testing.assert_array_equal(class_labels(rgb_equal, num_classes=12), labels)


def test_class_labels_reject_values_outside_the_classes():
    with pytest.raises(DataError, match=r"m\.png holds values \[12, 40\].*0\.\.11"):
        class_labels(np.array([[0, 12, 40, 255]], np.uint8), num_classes=12, source="m.png")


def test_class_labels_reject_colour_coded_masks():
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    with pytest.raises(DataError, match="colour-coded"):
        class_labels(colour, num_classes=12)


# --------------------------------------------------------------------------- the transform
def test_eval_transform_matches_pil_bicubic_and_nearest_square_resize():
    pixels = _random_rgb(30, 50)  # not square: the aspect ratio is not kept
    labels = (np.random.default_rng(3).random((30, 50)) > 0.5).astype(np.uint8)
    image_t, mask_t = SegmentationTransform(16, train=False)(Image.fromarray(pixels), labels)
    assert image_t.shape == (3, 16, 16) and image_t.dtype == torch.float32
    torch.testing.assert_close(image_t, _reference_image(pixels, 16), rtol=0, atol=1e-5)
    expected_mask = np.asarray(Image.fromarray(labels).resize((16, 16), Image.NEAREST))
    assert mask_t.dtype == torch.float32 and mask_t.shape == (16, 16)
    np.testing.assert_array_equal(mask_t.numpy(), expected_mask.astype(np.float32))


def test_normalisation_values():
    value = np.array([51, 128, 204], np.uint8)
    pixels = np.broadcast_to(value, (8, 8, 3)).copy()
    image_t, _ = SegmentationTransform(8, train=False)(Image.fromarray(pixels), np.zeros((8, 8), np.uint8))
    for channel in range(3):
        expected = (value[channel] / 255.0 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        torch.testing.assert_close(image_t[channel], torch.full((8, 8), expected, dtype=torch.float32))
    torch.testing.assert_close(denormalize_image(image_t), torch.from_numpy(pixels).permute(2, 0, 1) / 255.0)
    torch.testing.assert_close(normalize_image(pixels), image_t)


def test_multiclass_mask_is_long_with_ignore_kept():
    labels = np.array([[0, 7], [255, 11]], np.uint8)
    _, mask_t = SegmentationTransform(4, train=False, task="multiclass")(
        Image.fromarray(_random_rgb(2, 2)), labels)
    assert mask_t.dtype == torch.int64
    np.testing.assert_array_equal(mask_t.numpy(), np.kron(labels, np.ones((2, 2), np.uint8)))
    assert (mask_t == IGNORE_INDEX).sum() == 4


def test_train_flip_mirrors_image_and_mask_together():
    pixels = _random_rgb(12, 12, seed=4)
    labels = np.zeros((12, 12), np.uint8)
    labels[:, :3] = 1  # foreground on the left only
    image = Image.fromarray(pixels)
    plain_image, plain_mask = SegmentationTransform(12, train=False)(image, labels)
    flipped_image, flipped_mask = SegmentationTransform(12, train=True, flip_p=1.0)(image, labels)
    torch.testing.assert_close(flipped_image, plain_image.flip(-1))
    torch.testing.assert_close(flipped_mask, plain_mask.flip(-1))
    assert flipped_mask[:, -3:].all() and not flipped_mask[:, :-3].any()


def test_flips_are_random_but_repeatable_under_torch_seed():
    pixels = _random_rgb(6, 6, seed=5)
    labels = np.zeros((6, 6), np.uint8)
    labels[:, 0] = 1
    transform = SegmentationTransform(6, train=True)

    def flips():
        return [bool(transform(Image.fromarray(pixels), labels)[1][0, -1]) for _ in range(24)]

    torch.manual_seed(123)
    first = flips()
    torch.manual_seed(123)
    assert flips() == first
    assert 0 < sum(first) < 24  # both outcomes occur with p = 0.5


def test_eval_transform_never_flips():
    labels = np.zeros((6, 6), np.uint8)
    labels[:, 0] = 1
    transform = SegmentationTransform(6, train=False)
    assert all(transform(Image.fromarray(_random_rgb(6, 6)), labels)[1][0, 0] == 1 for _ in range(10))
