"""The generated pretraining corpus: many textured, overlapping objects per image.

Every scene is a pure function of ``(seed, index)``: nothing is stored, and the same pair always
gives the same pixels and masks. A scene is a textured background with 4 to 14 objects painted
back to front (so later objects occlude earlier ones). Shapes: ellipses, convex polygons, stars,
rings, Fourier blobs and thin bars; textures: noisy flat colour, stripes, checkerboards, linear
gradients and smooth two-colour noise; sizes from a few pixels to most of the image. Each
object's *visible* mask (what survives occlusion) is its instance mask, so the masks of one scene
are disjoint.

The corpus is deliberately generic (geometry and texture, no semantics) and differs from the
``synth_<task>`` analogs in ``data/synthetic.py`` (polyps, lesions, camouflage, shadows, leaf
spots, roads, transparent objects), so fine-tuning on those is a real transfer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from convlora_lite.data.textures import TEXTURES, make_texture

SHAPES = ("ellipse", "polygon", "star", "ring", "blob", "bar")

DESCRIPTION = (
    "Procedural scenes (convlora_lite.pretrain.corpus, numpy + scipy.ndimage), one per (seed, index): "
    "a textured background and 4-14 objects painted back to front (occlusion); shapes "
    f"{', '.join(SHAPES)}; textures {', '.join(TEXTURES)}; object radius 2-45 % of the image side "
    "(log-uniform); instance masks are the visible parts (disjoint), at least min_area pixels. "
    "No semantics, unlike the synth_<task> analogs."
)


@dataclass
class Scene:
    """One generated image and its instances.

    Attributes:
        image: float32 (S, S, 3) RGB in [0, 1].
        masks: bool (N, S, S) visible instance masks, disjoint, each with >= ``min_area`` pixels.
    """

    image: np.ndarray
    masks: np.ndarray


def make_shape(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float,
               radius: float) -> np.ndarray:
    """A random shape centred at (cy, cx) with size ``radius`` on the grids ``yy``, ``xx``; bool mask."""
    kind = SHAPES[rng.integers(len(SHAPES))]
    theta = rng.uniform(0, 2 * np.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    if kind == "ellipse":
        a, b = radius, radius * rng.uniform(0.3, 1.0)
        return (u / a) ** 2 + (v / b) ** 2 <= 1
    if kind == "ring":
        a, b = radius, radius * rng.uniform(0.5, 1.0)
        r = (u / a) ** 2 + (v / b) ** 2
        return (r <= 1) & (r >= rng.uniform(0.25, 0.6))
    if kind == "bar":
        width = rng.uniform(1.0, max(1.5, radius * 0.15))
        return (np.abs(u) <= radius) & (np.abs(v) <= width)
    if kind == "polygon":  # convex: intersection of the half-planes of the sorted vertices' edges
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=rng.integers(3, 9)))
        inside = np.ones_like(u, dtype=bool)
        verts = np.stack([np.cos(angles), np.sin(angles)], 1) * radius
        for i in range(len(verts)):
            (x0, y0), (x1, y1) = verts[i], verts[(i + 1) % len(verts)]
            inside &= (x1 - x0) * (v - y0) - (y1 - y0) * (u - x0) >= 0
        return inside
    phi = np.arctan2(v, u)
    dist = np.hypot(u, v)
    if kind == "star":
        points = rng.integers(4, 9)
        inner = rng.uniform(0.35, 0.7)
        profile = inner + (1 - inner) * np.abs(np.cos(phi * points / 2)) ** rng.uniform(1, 4)
        return dist <= radius * profile
    # blob: radius modulated by a few random Fourier harmonics
    profile = np.ones_like(phi)
    for k in range(2, 6):
        profile += rng.uniform(0, 0.25 / k * 2) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    return dist <= radius * profile / profile.max()


def generate_scene(seed: int, index: int, size: int = 256, min_area: int | None = None) -> Scene:
    """The scene number ``index`` of the corpus with seed ``seed`` at ``size`` x ``size`` pixels.

    ``min_area`` (default ``size**2 // 1024``, i.e. 64 px at 256) drops instances whose visible
    part is smaller; a scene always keeps at least one instance.
    """
    rng = np.random.default_rng([seed, index])
    min_area = max(4, size * size // 1024) if min_area is None else min_area
    image = make_texture(rng, size, size)
    owner = np.full((size, size), -1, np.int32)
    count = int(rng.integers(4, 15))
    for obj in range(count):
        radius = float(np.exp(rng.uniform(np.log(0.02 * size), np.log(0.45 * size))))
        cy, cx = rng.uniform(-0.1 * size, 1.1 * size, size=2)
        reach = radius * 1.05 + 2
        y0, y1 = int(max(0, np.floor(cy - reach))), int(min(size, np.ceil(cy + reach)))
        x0, x1 = int(max(0, np.floor(cx - reach))), int(min(size, np.ceil(cx + reach)))
        if y1 - y0 < 2 or x1 - x0 < 2:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        shape = make_shape(rng, yy, xx, cy, cx, radius)
        texture = make_texture(rng, y1 - y0, x1 - x0)
        image[y0:y1, x0:x1][shape] = texture[shape]
        owner[y0:y1, x0:x1][shape] = obj
    if rng.random() < 0.3:  # a mild global blur now and then (camera softness)
        image = ndimage.gaussian_filter(image, sigma=(0.7, 0.7, 0))
    ids, areas = np.unique(owner[owner >= 0], return_counts=True)
    keep = ids[areas >= min_area]
    if keep.size == 0:  # degenerate scene: the largest visible object (or the whole background) is the instance
        keep = ids[np.argmax(areas)][None] if ids.size else np.array([-1])
    masks = owner[None] == keep[:, None, None]
    return Scene(image=image.astype(np.float32), masks=masks)
