"""Random textures: noisy flat colour, stripes, checkerboards, linear gradients and smooth two-colour noise,
painted by the pretraining corpus (:mod:`convlora_lite.pretrain.corpus`) and the linear probe's
texture-only task (:mod:`convlora_lite.analysis.linear_probe`)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

TEXTURES = ("flat", "stripes", "checker", "gradient", "smooth_noise")


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=3).astype(np.float32)


def make_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random texture of shape (height, width, 3), float32 in [0, 1]."""
    kind = TEXTURES[rng.integers(len(TEXTURES))]
    c1, c2 = _random_colour(rng), _random_colour(rng)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    if kind == "flat":
        weight = np.zeros((height, width), np.float32)
    elif kind == "stripes":
        period = rng.uniform(3, 24)
        weight = (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    elif kind == "checker":
        cell = rng.uniform(3, 20)
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        weight = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    elif kind == "gradient":
        weight = (u - u.min()) / max(float(u.max() - u.min()), 1.0)
    else:  # smooth_noise
        noise = ndimage.gaussian_filter(rng.standard_normal((height, width)).astype(np.float32), rng.uniform(1.5, 6))
        weight = ((noise > 0).astype(np.float32) if rng.random() < 0.5
                  else 1 / (1 + np.exp(-noise / (noise.std() + 1e-6) * 2)))
    tex = c1 * (1 - weight[..., None]) + c2 * weight[..., None]
    tex += rng.normal(0, rng.uniform(0.0, 0.08), size=tex.shape).astype(np.float32)
    return np.clip(tex, 0.0, 1.0)
