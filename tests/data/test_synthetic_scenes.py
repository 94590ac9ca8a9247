"""The drawing of the road, skin-lesion and transparent-object analogs: deterministic per generator
state, roads thin and connected to the image border, lesions of varied contrast, glass objects at
their classes' places."""
import numpy as np
import pytest
from scipy import ndimage

from convlora_lite.data.synthetic_scenes import BINARY_SCENES, trans10k_scene

SIZE = 256


def _draws(task, count=8):
    return [BINARY_SCENES[task](np.random.default_rng([7, i]), SIZE) for i in range(count)]


@pytest.mark.parametrize("task", ["road", "isic2017"])
def test_same_generator_state_gives_the_same_picture(task):
    first, again = (BINARY_SCENES[task](np.random.default_rng(3), SIZE) for _ in range(2))
    other = BINARY_SCENES[task](np.random.default_rng(4), SIZE)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_trans10k_scene_is_deterministic():
    first, again = (trans10k_scene(np.random.default_rng(3), 128, [4, 7]) for _ in range(2))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])


def test_road_masks_are_thin_lines_connected_to_the_border():
    for _, mask in _draws("road"):
        assert 0.02 < mask.mean() < 0.2, mask.mean()
        # roads are at most 2 * 0.02 * 256 = 10.2 px wide: 6 erosions by a 3x3 square leave only junctions
        core = ndimage.binary_erosion(mask, np.ones((3, 3)), iterations=6)
        assert core.sum() < 0.03 * mask.sum(), core.sum() / mask.sum()
        # and 2 erosions leave most of them (no road is a hairline)
        assert ndimage.binary_erosion(mask, np.ones((3, 3)), iterations=2).sum() > 0.3 * mask.sum()
        labels, count = ndimage.label(mask, np.ones((3, 3)))
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        assert set(range(1, count + 1)) <= set(border.tolist())  # every piece belongs to a network reaching the edge


def test_isic_lesions_range_from_faint_to_dark():
    contrasts = []
    for image, mask in _draws("isic2017", 12):
        inside = ndimage.binary_erosion(mask, iterations=12)
        outside = ~ndimage.binary_dilation(mask, iterations=20)
        assert inside.any() and outside.any()
        contrasts.append(np.linalg.norm(image[inside].mean(0) - image[outside].mean(0)))
    assert min(contrasts) < 0.5 * max(contrasts), contrasts


def test_trans10k_windows_hang_above_doors_and_walls_span_the_height():
    centres = {4: [], 5: []}
    for seed in range(6):
        image, labels = trans10k_scene(np.random.default_rng(seed), SIZE, [4, 5, 8])
        assert image.shape == (SIZE, SIZE, 3) and labels.dtype == np.uint8
        for cls in centres:
            centres[cls].append(np.nonzero(labels == cls)[0].mean())
        wall_rows = np.nonzero((labels == 8).any(1))[0]
        assert len(wall_rows) == SIZE  # painted first and as tall as the image: every row keeps some of it
    assert max(centres[4]) < min(centres[5])
