"""The local-prior experiment's two tasks: deterministic, registered, and different only in what defines the object
(texture: the same colours inside and out, turned stripes; colour: the same stripes, shifted colours)."""
import numpy as np
import pytest
from scipy import ndimage

from convlora_lite.data.datasets import build_dataset
from convlora_lite.data.prior_scenes import BRIGHTNESS_SHIFT, HUE_SHIFT_DEG, hue_rotation, prior_scene
from convlora_lite.data.registry import get_dataset_spec
from convlora_lite.data.synthetic import generate_synthetic

SIZE = 256
DRAWS = range(6)


def _scene(kind, index):
    return prior_scene(np.random.default_rng([7, index]), SIZE, kind)


def _regions(mask):
    """Inside and outside, each eroded by 4 px so that the pixels cut by the edge do not count."""
    return ndimage.binary_erosion(mask, iterations=4), ndimage.binary_erosion(~mask, iterations=4)


def _histogram(image, region, bins=16):
    """Per-channel histograms (3, bins) of ``region``'s pixels, each summing to 1."""
    return np.stack([np.histogram(image[..., c][region], bins=bins, range=(0, 1))[0] / region.sum()
                     for c in range(3)])


def _orientation_deg(image, region):
    """Dominant gradient orientation (degrees, in [0, 180)) of ``region``: the main axis of the colour structure
    tensor (summed over the channels, which may differ where the channels' mean does not)."""
    gy, gx = np.gradient(ndimage.gaussian_filter(image, (1.0, 1.0, 0.0)), axis=(0, 1))
    jxx, jyy, jxy = (gx * gx)[region].sum(), (gy * gy)[region].sum(), (gx * gy)[region].sum()
    return np.rad2deg(0.5 * np.arctan2(2 * jxy, jxx - jyy)) % 180


def _angle_gap(a, b):
    gap = abs(a - b) % 180
    return min(gap, 180 - gap)


def test_same_generator_state_draws_the_same_picture():
    for kind in ("texture", "colour"):
        (image_a, mask_a), (image_b, mask_b) = _scene(kind, 3), _scene(kind, 3)
        assert np.array_equal(image_a, image_b) and np.array_equal(mask_a, mask_b)
        assert not np.array_equal(image_a, _scene(kind, 4)[0])
    with pytest.raises(ValueError, match="texture, colour"):
        prior_scene(np.random.default_rng(0), SIZE, "shape")


@pytest.mark.parametrize("index", DRAWS)
def test_texture_task_has_the_same_colours_inside_and_out_and_turned_stripes(index):
    image, mask = _scene("texture", index)
    inside, outside = _regions(mask)
    total_variation = 0.5 * np.abs(_histogram(image, inside) - _histogram(image, outside)).sum(axis=1)
    assert total_variation.max() < 0.06, total_variation
    assert np.abs(image[inside].mean(0) - image[outside].mean(0)).max() < 0.02
    assert _angle_gap(_orientation_deg(image, inside), _orientation_deg(image, outside)) > 80


@pytest.mark.parametrize("index", DRAWS)
def test_colour_task_has_the_same_stripes_inside_and_out_and_shifted_colours(index):
    image, mask = _scene("colour", index)
    inside, outside = _regions(mask)
    # equal stripes: each region's mean colour is the mean of its two colours, so the object's is the background's
    # turned about the grey axis and brightened
    expected = hue_rotation(HUE_SHIFT_DEG) @ image[outside].mean(0) + BRIGHTNESS_SHIFT
    assert image[inside].mean(0) == pytest.approx(expected, abs=0.01)
    # the turn keeps a colour's channel mean, so the brightness differs by the shift alone
    assert image[inside].mean() - image[outside].mean() == pytest.approx(BRIGHTNESS_SHIFT, abs=0.005)
    assert _angle_gap(_orientation_deg(image, inside), _orientation_deg(image, outside)) < 5


def test_object_is_one_blob_of_the_preregistered_size():
    for kind in ("texture", "colour"):
        for index in DRAWS:
            mask = _scene(kind, index)[1]
            assert ndimage.label(mask)[1] == 1
            equivalent_radius = np.sqrt(mask.sum() / np.pi) / SIZE
            assert 0.15 < equivalent_radius < 0.4, equivalent_radius


def test_hue_rotation_by_120_degrees_permutes_the_channels():
    assert np.allclose(np.array([1.0, 0.0, 0.0]) @ hue_rotation(120).T, [0.0, 1.0, 0.0], atol=1e-12)
    rotation = hue_rotation(40)
    assert np.allclose(rotation @ rotation.T, np.eye(3)) and np.allclose(rotation @ np.ones(3), np.ones(3))


def test_both_tasks_are_registered_binary_datasets_that_generate_and_load(tmp_path):
    for kind in ("texture", "colour"):
        spec = get_dataset_spec(f"synth_prior_{kind}")
        assert (spec.task, spec.layout, spec.synthetic, spec.select_metric) == ("binary", "csv", True, "iou")
        directory = generate_synthetic(spec.name, tmp_path / "a", image_size=64, n_train=3, n_val=1, n_test=2)
        again = generate_synthetic(spec.name, tmp_path / "b", image_size=64, n_train=3, n_val=1, n_test=2)
        for path in sorted(p for p in directory.rglob("*.png")):
            assert path.read_bytes() == (again / path.relative_to(directory)).read_bytes()
        dataset = build_dataset(spec, "test", tmp_path / "a", image_size=64, train=False)
        assert len(dataset) == 2 and dataset[0]["mask"].shape == (64, 64)
    texture = generate_synthetic("prior_texture", tmp_path / "c", image_size=64, n_train=1, n_val=1, n_test=1)
    colour = generate_synthetic("prior_colour", tmp_path / "c", image_size=64, n_train=1, n_val=1, n_test=1)
    assert (texture / "masks/train_0000.png").read_bytes() != (colour / "masks/train_0000.png").read_bytes()
