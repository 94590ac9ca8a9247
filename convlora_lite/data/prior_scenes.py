"""The two controlled tasks of the local-prior experiment (``docs/experiments/local_prior.md``): one drawing
function, :func:`prior_scene`, with one switch, ``kind="texture"`` or ``kind="colour"`` (numpy only, the
blob and grid helpers of :mod:`convlora_lite.data.synthetic_scenes`).

Every image is a two-tone stripe pattern (a square wave of period 8-16 px, random per image, of two colours
drawn per image at a fixed distance :data:`STRIPE_CONTRAST` apart, in equal proportions) with one star-shaped
object (radius 20-35 % of the side, as the analogs' blobs) cut into it with a hard edge, and the same pixel
noise everywhere:

* ``texture``: the object's stripes are the *same two colours* at the same period, turned by 90 degrees. The
  per-pixel colour histograms inside and outside are the same (up to the stripes cut by the edge); only the
  local orientation differs.
* ``colour``: the object's stripes continue the background's (same orientation, period and phase); its two
  colours are the background's turned by :data:`HUE_SHIFT_DEG` about the grey axis and brightened by
  :data:`BRIGHTNESS_SHIFT`. Only colour differs.

The datasets ``synth_prior_texture`` and ``synth_prior_colour`` (:mod:`convlora_lite.data.synthetic`
writes them, seeded per (task, split, index) like every analog) are described in ``docs/data.md``.
Same generator state -> the same picture.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from convlora_lite.data.synthetic_scenes import _blob, _grid

PRIOR_KINDS = ("texture", "colour")
#: Euclidean RGB distance between an image's two stripe colours (values in [0, 1]).
STRIPE_CONTRAST = 0.4
#: the stripes' period in pixels at 256 px, drawn uniformly per image (scaled with the image side).
PERIOD_RANGE = (8.0, 16.0)
#: the object's mean radius as a fraction of the image side, drawn uniformly per image.
RADIUS_RANGE = (0.20, 0.35)
#: ``colour`` task: the object's colours are the background's turned by this angle about the grey axis ...
HUE_SHIFT_DEG = 20.0
#: ... and brightened by this much on every channel.
BRIGHTNESS_SHIFT = 0.04
#: standard deviation of the Gaussian pixel noise added everywhere (inside and outside alike).
PIXEL_NOISE = 0.03


def hue_rotation(degrees: float) -> np.ndarray:
    """The (3, 3) rotation of RGB space by ``degrees`` about the grey axis (1, 1, 1) / sqrt(3): it keeps a
    colour's mean (brightness) and its distance from grey (saturation) and turns its hue.
    Apply as ``colours @ hue_rotation(d).T`` for colours (..., 3)."""
    axis = np.ones(3) / np.sqrt(3.0)
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    angle = np.deg2rad(degrees)
    return np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * cross @ cross  # Rodrigues


def stripe_colours(rng: np.random.Generator) -> np.ndarray:
    """Two colours (2, 3) in [0.05, 0.85], :data:`STRIPE_CONTRAST` apart, symmetric about a random base colour."""
    base = rng.uniform(0.25, 0.65, 3)
    direction = rng.standard_normal(3)
    half = 0.5 * STRIPE_CONTRAST * direction / np.linalg.norm(direction)
    return np.stack([base + half, base - half])


def _stripes(yy: np.ndarray, xx: np.ndarray, angle: float, period: float, phase: float) -> np.ndarray:
    """Square wave (H, W) of 0/1 (equal halves) whose stripes run along ``angle`` (radians)."""
    across = -xx * np.sin(angle) + yy * np.cos(angle)
    return (np.mod(across / period + phase, 1.0) < 0.5).astype(np.float32)


def prior_scene(rng: np.random.Generator, size: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """One image of the ``kind`` task (:data:`PRIOR_KINDS`): (image (size, size, 3) float32 in [0, 1],
    mask (size, size) bool, True on the object)."""
    if kind not in PRIOR_KINDS:
        raise ValueError(f"kind={kind!r}; choose one of {', '.join(PRIOR_KINDS)}")
    yy, xx = _grid(size)
    colours = stripe_colours(rng)
    period = rng.uniform(*PERIOD_RANGE) * size / 256
    angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 1)
    radius = size * rng.uniform(*RADIUS_RANGE)
    cy, cx = size / 2 + rng.uniform(-0.1, 0.1, 2) * size
    mask = _blob(yy, xx, rng, cy, cx, radius, rng.uniform(0.05, 0.15)) > 0
    background = _stripes(yy, xx, angle, period, phase)
    if kind == "texture":
        inside, object_colours = _stripes(yy, xx, angle + np.pi / 2, period, phase), colours
    else:
        inside, object_colours = background, colours @ hue_rotation(HUE_SHIFT_DEG).T + BRIGHTNESS_SHIFT
    weight = np.where(mask, inside, background)[..., None]
    low = np.where(mask[..., None], object_colours[0], colours[0])
    high = np.where(mask[..., None], object_colours[1], colours[1])
    image = low * (1.0 - weight) + high * weight + rng.normal(0.0, PIXEL_NOISE, (size, size, 3))
    return np.clip(image, 0.0, 1.0).astype(np.float32), mask


#: task -> ``draw(rng, size) -> (image, mask)``, the form of ``synthetic_scenes.BINARY_SCENES``.
PRIOR_SCENES = {f"prior_{kind}": partial(prior_scene, kind=kind) for kind in PRIOR_KINDS}
