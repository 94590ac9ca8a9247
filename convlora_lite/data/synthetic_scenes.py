"""The drawing of the synthetic analogs' scenes (numpy and ``scipy.ndimage`` only): one function per
task, ``draw(rng, size) -> (image, mask)``; what each one keeps from its real task is listed in
:mod:`convlora_lite.data.synthetic`. Same generator state -> the same picture."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


# ----------------------------------------------------------------------------- drawing helpers
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each float32 (size, size)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return yy, xx


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth value noise with about ``cells`` features per side, float32 (size, size), std 1."""
    coarse = rng.standard_normal((cells, cells))
    order = 3 if cells <= 8 else 1  # cubic where a grid would show; bilinear (4x cheaper) else
    field = ndimage.zoom(coarse, size / cells, order=order, grid_mode=True, mode="grid-wrap")
    field = field[:size, :size]
    return ((field - field.mean()) / (field.std() + 1e-8)).astype(np.float32)


def _fractal(rng: np.random.Generator, size: int, cells=(4, 8, 16, 32), falloff: float = 0.55):
    """Sum of noise octaves (coarse to fine, each ``falloff`` times weaker), std 1."""
    field = sum(falloff ** k * _noise(rng, size, c) for k, c in enumerate(cells))
    return (field - field.mean()) / (field.std() + 1e-8)


def _ridges(field: np.ndarray, width: float) -> np.ndarray:
    """Thin lines along the zero crossings of a smooth field, values in [0, 1]."""
    return np.exp(-(field / width) ** 2)


def _soft(field: np.ndarray, width: float) -> np.ndarray:
    """Smooth step of a signed field (> 0 inside) over about ``width`` pixels, in [0, 1]."""
    return 0.5 * (1.0 + np.tanh(field / (2.0 * max(width, 1e-3))))


def _blob(yy, xx, rng, cy, cx, radius, roughness, harmonics=6, aspect=1.0, angle=0.0):
    """Signed field (pixels, > 0 inside) of a star-shaped blob whose radius wobbles with angle."""
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) * aspect
    theta, dist = np.arctan2(v, u), np.hypot(u, v)
    orders = np.arange(2, harmonics + 2)
    amplitudes = roughness * rng.standard_normal(harmonics) / orders * 2.0
    phases = rng.uniform(0, 2 * np.pi, harmonics)
    wobble = sum(a * np.cos(k * theta + p) for a, k, p in zip(amplitudes, orders, phases))
    return radius * (1.0 + wobble) - dist


def _blend(base: np.ndarray, layer, alpha: np.ndarray) -> np.ndarray:
    """Alpha-composite ``layer`` (H, W, 3) or a colour (3,) over ``base`` with alpha (H, W)."""
    return base * (1.0 - alpha[..., None]) + np.asarray(layer) * alpha[..., None]


def _colour_field(base_colour, field: np.ndarray, amount) -> np.ndarray:
    """An (H, W, 3) image: ``base_colour`` modulated by ``field`` times ``amount`` per channel."""
    return np.asarray(base_colour, np.float32) + field[..., None] * np.asarray(amount, np.float32)


def _vignette(yy, xx, size, strength):
    """Radial darkening factor in (0, 1], 1 at the centre."""
    r = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    return 1.0 - strength * np.clip(r, 0, 1.5) ** 2


def _segment_distance(yy, xx, p, q) -> np.ndarray:
    """Distance of every pixel to the segment p-q (points as (y, x))."""
    (py, px), (qy, qx) = p, q
    dy, dx = qy - py, qx - px
    t = np.clip(((yy - py) * dy + (xx - px) * dx) / (dy * dy + dx * dx + 1e-8), 0.0, 1.0)
    return np.hypot(yy - (py + t * dy), xx - (px + t * dx))


def _polyline_distance(yy, xx, points) -> np.ndarray:
    return np.minimum.reduce([_segment_distance(yy, xx, p, q) for p, q in zip(points, points[1:])])


def _small_blobs(rng, size, centres, radii, roughness, margin=4.0):
    """Signed field of many small blobs (max over blobs); each is drawn only in a window of
    ``2 * radius + margin`` around its centre (the field elsewhere is ``-2 * size``)."""
    field = np.full((size, size), -2.0 * size, np.float32)
    for (cy, cx), radius in zip(centres, radii):
        reach = 2.0 * radius + margin
        top, bottom = int(max(cy - reach, 0)), int(min(cy + reach + 1, size))
        left, right = int(max(cx - reach, 0)), int(min(cx + reach + 1, size))
        if top >= bottom or left >= right:
            continue
        yy, xx = np.mgrid[top:bottom, left:right].astype(np.float32) + 0.5
        window = field[top:bottom, left:right]
        np.maximum(window, _blob(yy, xx, rng, cy, cx, radius, roughness), out=window)
    return field


# ----------------------------------------------------------------------------- binary tasks
def _polyp(rng, size):
    yy, xx = _grid(size)
    mucosa = np.array([0.78, 0.38, 0.32]) + rng.uniform(-0.06, 0.06, 3)
    image = _colour_field(mucosa, _fractal(rng, size), [0.06, 0.04, 0.04])
    vessels = _ridges(_noise(rng, size, 6), 0.05) * (0.5 + 0.5 * _soft(_noise(rng, size, 3), 1.0))
    image = _blend(image, mucosa * np.array([0.6, 0.35, 0.4]), 0.6 * vessels)
    mask = np.zeros((size, size), bool)
    for _ in range(1 + int(rng.random() < 0.2)):
        radius = size * rng.uniform(0.07, 0.22)
        cy, cx = rng.uniform(0.25 * size, 0.75 * size, 2)
        field = _blob(yy, xx, rng, cy, cx, radius, rng.uniform(0.04, 0.14), aspect=rng.uniform(0.8, 1.25),
                      angle=rng.uniform(0, np.pi))
        dome = np.sqrt(np.clip(field / radius, 0, 1))
        tissue = mucosa * rng.uniform([0.95, 0.8, 0.8], [1.15, 1.2, 1.15])
        interior = _colour_field(tissue, _fractal(rng, size, (8, 16, 32, 64)), [0.07, 0.06, 0.05])
        interior = interior * (0.85 + 0.3 * dome[..., None])
        image = _blend(image, interior, _soft(field, 1.5))
        mask |= field > 0
    count = rng.integers(3, 9)
    centres, radii = rng.uniform(0, size, (count, 2)), rng.uniform(0.004, 0.015, count) * size
    specks = _small_blobs(rng, size, centres, radii, 0.3)
    highlights = _soft(specks, 1.0)
    image = _blend(image, [1.0, 0.98, 0.95], highlights)
    image *= _vignette(yy, xx, size, rng.uniform(0.3, 0.6))[..., None]
    return image, mask


def _isic2017(rng, size):
    """Dermoscopy: a lesion from faint to dark, with a wide fuzzy border, variegated pigment (blotches,
    blue-grey veil, pale regression areas), hairs, sometimes ruler ticks and dark corners; mask ``field > 0``."""
    yy, xx = _grid(size)
    skin = np.array([0.86, 0.66, 0.56]) + rng.uniform(-0.08, 0.05, 3)
    image = _colour_field(skin, _fractal(rng, size), [0.05, 0.05, 0.05])
    image = _blend(image, skin * [0.93, 0.85, 0.85], 0.5 * _soft(_noise(rng, size, 6) - 0.5, 0.3))  # redness
    radius = size * rng.uniform(0.14, 0.34)
    cy, cx = size / 2 + rng.uniform(-0.15, 0.15, 2) * size
    field = _blob(yy, xx, rng, cy, cx, radius, rng.uniform(0.08, 0.2), harmonics=9,
                  aspect=rng.uniform(0.7, 1.4), angle=rng.uniform(0, np.pi))
    contrast = rng.uniform(0.45, 0.9)  # how far the pigment is from the skin
    pigment = skin + contrast * (np.array([0.45, 0.28, 0.2]) * rng.uniform(0.6, 1.2) - skin)
    lesion = _colour_field(pigment, _fractal(rng, size, (4, 8, 16)), contrast * np.array([0.12, 0.09, 0.07]))
    lesion = _blend(lesion, [0.45, 0.45, 0.55], 0.4 * contrast * _soft(_noise(rng, size, 5) - 1.0, 0.3))
    lesion = _blend(lesion, skin * 0.95, 0.5 * _soft(_noise(rng, size, 6) - 0.8, 0.3))  # regression
    border = rng.uniform(6, 16) * size / 256
    image = _blend(image, lesion, _soft(field + 0.3 * border * _noise(rng, size, 16), border))
    hairs = _ridges(_noise(rng, size, 4), 0.02) * _soft(_noise(rng, size, 3) + rng.uniform(-0.6, 0.6), 0.3)
    image = _blend(image, [0.2, 0.12, 0.08], rng.uniform(0.3, 0.9) * hairs)
    if rng.random() < 0.3:  # a ruler's ticks along one edge
        ticks = (np.abs((xx % (0.04 * size)) - 0.02 * size) < 0.004 * size) & (yy > 0.9 * size)
        image = _blend(image, [0.1, 0.1, 0.1], 0.8 * ticks.astype(np.float32))
    if rng.random() < 0.3:
        image *= np.clip(_soft(0.72 * size - np.hypot(yy - size / 2, xx - size / 2), 4), 0.05, 1)[..., None]
    return image, field > 0


def _two_tone_texture(rng, size, colours, cells):
    """A natural-looking texture: two colours mixed by a thresholded fractal."""
    weight = _soft(_fractal(rng, size, cells), 0.35)
    return _blend(np.broadcast_to(colours[0], (size, size, 3)), colours[1], weight)


def _camo(rng, size):
    yy, xx = _grid(size)
    colours = rng.uniform(0.2, 0.7, (2, 3)) * np.array([1.0, 0.95, 0.7])
    image = _two_tone_texture(rng, size, colours, (4, 8, 16, 32))
    image += 0.04 * _noise(rng, size, 64)[..., None]
    radius = size * rng.uniform(0.12, 0.28)
    cy, cx = rng.uniform(0.3 * size, 0.7 * size, 2)
    field = _blob(yy, xx, rng, cy, cx, radius, rng.uniform(0.1, 0.25), aspect=rng.uniform(0.5, 1.0),
                  angle=rng.uniform(0, np.pi))
    shift = rng.uniform(-0.05, 0.05, 3)
    body = _two_tone_texture(rng, size, colours + shift, (6, 12, 24, 48))
    body += 0.04 * _noise(rng, size, 64)[..., None]
    body *= (1.0 + 0.06 * np.clip((cy - yy) / radius, -1, 1))[..., None]
    image = _blend(image, body, _soft(field, 1.0))
    return image, field > 0


def _sbu(rng, size):
    yy, xx = _grid(size)
    ground = rng.uniform(0.45, 0.8, 3)
    image = _colour_field(ground, _fractal(rng, size), [0.08, 0.08, 0.08])
    image = _blend(image, ground * 0.8, 0.5 * _soft(_noise(rng, size, 24), 0.5))
    for _ in range(rng.integers(1, 4)):
        colour = rng.uniform(0.05, 0.25, 3) if rng.random() < 0.5 else rng.uniform(0.3, 0.9, 3)
        cy, cx = rng.uniform(0, size, 2)
        field = _blob(yy, xx, rng, cy, cx, size * rng.uniform(0.05, 0.14), 0.1, harmonics=4)
        image = _blend(image, colour, _soft(field, 1.0))
    shadow = np.full((size, size), -np.inf, np.float32)
    for _ in range(rng.integers(1, 3)):
        cy, cx = rng.uniform(0.15 * size, 0.85 * size, 2)
        shadow = np.maximum(shadow, _blob(yy, xx, rng, cy, cx, size * rng.uniform(0.12, 0.3),
                                          rng.uniform(0.05, 0.2), aspect=rng.uniform(1.5, 3.5),
                                          angle=rng.uniform(0, np.pi)))
    alpha = _soft(shadow, rng.uniform(1.5, 8) * size / 256)
    darkening = rng.uniform(0.35, 0.65) * np.array([1.0, 0.95, 0.82])
    image = image * (1.0 - alpha[..., None] * darkening)
    return image, alpha > 0.5


def _leaf(rng, size):
    yy, xx = _grid(size)
    image = _colour_field(rng.uniform(0.55, 0.9, 3), _noise(rng, size, 4), [0.03, 0.03, 0.03])
    angle = rng.uniform(0, np.pi)
    u = ((xx - size / 2) * np.cos(angle) + (yy - size / 2) * np.sin(angle)) / (0.46 * size)
    v = (-(xx - size / 2) * np.sin(angle) + (yy - size / 2) * np.cos(angle)) / (0.46 * size)
    half_width = rng.uniform(0.35, 0.5) * np.clip(1 - u ** 2, 0, None) ** 0.75
    leaf_field = (half_width - np.abs(v)) * 0.46 * size
    green = np.array([0.25, 0.55, 0.18]) * rng.uniform(0.8, 1.2, 3)
    leaf = _colour_field(green, _fractal(rng, size, (8, 16, 32)), [0.03, 0.05, 0.02])
    veins = np.maximum(_ridges(v, 0.012), _ridges(np.sin(np.pi * (5 * u - 4 * np.abs(v))), 0.12) * 0.6)
    leaf = _blend(leaf, green * 1.45, 0.7 * veins)
    leaf_alpha = _soft(leaf_field, 1.0)
    image = _blend(image, leaf, leaf_alpha)
    inside = np.argwhere(leaf_field > 0.04 * size)
    centres = inside[rng.integers(0, len(inside), rng.integers(3, 12))] + 0.5
    spots = _small_blobs(rng, size, centres, rng.uniform(0.015, 0.06, len(centres)) * size, 0.25,
                         margin=0.03 * size)
    halo = _soft(spots + 0.02 * size, 2.0) * leaf_alpha
    image = _blend(image, [0.75, 0.7, 0.2], 0.7 * halo)
    spot_colour = _colour_field([0.4, 0.25, 0.1], _noise(rng, size, 32), [0.06, 0.05, 0.03])
    image = _blend(image, spot_colour, _soft(spots, 1.0) * leaf_alpha)
    return image, (spots > 0) & (leaf_field > 0)


def _edge_point(rng, size, edge):
    """A random point on image border ``edge`` (0 top, 1 bottom, 2 left, 3 right), as (y, x)."""
    t = rng.uniform(0.1 * size, 0.9 * size)
    return np.array([(0.0, t), (size, t), (t, 0.0), (t, size)][edge])


def _road_network(rng, size) -> list:
    """Polylines ((y, x) point lists): 2-3 main roads from border to border, 2-5 branches off them."""
    roads = []
    for _ in range(rng.integers(2, 4)):
        start_edge, end_offset = rng.integers(0, 4), rng.integers(1, 4)
        start, end = _edge_point(rng, size, start_edge), _edge_point(rng, size, (start_edge + end_offset) % 4)
        bends = [start + (end - start) * t + rng.normal(0, 0.04 * size, 2) for t in (0.33, 0.66)]
        roads.append([tuple(start), *map(tuple, bends), tuple(end)])
    for _ in range(rng.integers(2, 6)):
        base = roads[rng.integers(0, len(roads))]
        k = rng.integers(0, len(base) - 1)
        start = np.array(base[k]) + (np.array(base[k + 1]) - np.array(base[k])) * rng.uniform(0.2, 0.8)
        end = start + rng.normal(0, 0.3 * size, 2)
        roads.append([tuple(start), tuple((start + end) / 2 + rng.normal(0, 0.03 * size, 2)), tuple(end)])
    return roads


def _road(rng, size):
    """Aerial view: soft-edged land cover, light asphalt roads 6-10 px wide at 256 px with darker verges,
    tree clumps hiding parts of them (still labelled road); mask: within half a width of a centre line."""
    yy, xx = _grid(size)
    earth = np.array([[0.35, 0.42, 0.25], [0.45, 0.4, 0.3], [0.3, 0.36, 0.28], [0.5, 0.48, 0.42]])
    land = earth * rng.uniform(0.8, 1.2, (4, 1))
    zones = 2 * (_noise(rng, size, 4) > 0) + (_noise(rng, size, 5) > 0.3)
    image = ndimage.gaussian_filter(land[zones], (2.0, 2.0, 0))
    image = image + 0.05 * _fractal(rng, size, (16, 32, 64))[..., None]
    distance = np.minimum.reduce([_polyline_distance(yy, xx, road) for road in _road_network(rng, size)])
    half_width = size * rng.uniform(0.012, 0.02)
    image = _blend(image, land.mean(0) * 0.7, 0.6 * _soft(half_width + 0.008 * size - distance, 0.7))
    asphalt = _colour_field(rng.uniform(0.55, 0.75) * np.ones(3), _noise(rng, size, 64), 0.03)
    image = _blend(image, asphalt, _soft(half_width - distance, 0.7))
    canopy = _soft(_fractal(rng, size, (16, 32)) - rng.uniform(1.3, 1.9), 0.15)
    image = _blend(image, np.array([0.12, 0.25, 0.1]) + 0.05 * _noise(rng, size, 64)[..., None], canopy)
    return image, distance < half_width


# ----------------------------------------------------------------------------- Trans10K analog
def _rect(yy, xx, top, left, height, width):  # bool (H, W) of an axis-aligned rectangle
    return (yy >= top) & (yy < top + height) & (xx >= left) & (xx < left + width)


#: class (1..11) -> (low, high) of its centre's (y, x) / side: windows high, doors on the floor, tableware low.
_TRANS_PLACES = {1: ((0.35, 0.55), (0.3, 0.7)), 2: ((0.55, 0.75), (0.2, 0.8)), 3: ((0.45, 0.6), (0.3, 0.7)),
                 4: ((0.22, 0.4), (0.25, 0.75)), 5: ((0.5, 0.5), (0.2, 0.8)), 6: ((0.5, 0.75), (0.2, 0.8)),
                 7: ((0.55, 0.8), (0.2, 0.8)), 8: ((0.5, 0.5), (0.5, 0.5)), 9: ((0.6, 0.8), (0.2, 0.8)),
                 10: ((0.5, 0.75), (0.15, 0.85)), 11: ((0.55, 0.75), (0.2, 0.8))}


def _trans_shape(cls: int, rng, yy, xx, size):
    """(object mask, opaque-detail mask inside it) of class ``cls`` (1..11), at a place typical of
    its class (:data:`_TRANS_PLACES`); masks bool (size, size)."""
    s = size
    cy, cx = (rng.uniform(*_TRANS_PLACES[cls][0]) * s, rng.uniform(*_TRANS_PLACES[cls][1]) * s)
    if cls == 1:  # shelf: horizontal glass planks between two posts
        w, h = rng.uniform(0.4, 0.6) * s, rng.uniform(0.3, 0.45) * s
        top, left = cy - h / 2, cx - w / 2
        planks = np.zeros_like(yy, bool)
        for k in range(4):
            planks |= _rect(yy, xx, top + k * h / 3 - 0.015 * s, left, 0.03 * s, w)
        posts = _rect(yy, xx, top, left, h, 0.02 * s) | _rect(yy, xx, top, left + w - 0.02 * s, h, 0.02 * s)
        return planks | posts, posts
    if cls == 2:  # jar: rounded body with an opaque lid
        a, b = rng.uniform(0.08, 0.12) * s, rng.uniform(0.1, 0.15) * s
        body = (np.abs(xx - cx) / a) ** 4 + (np.abs(yy - cy) / b) ** 4 < 1
        lid = _rect(yy, xx, cy - b - 0.04 * s, cx - 0.8 * a, 0.05 * s, 1.6 * a)
        return body | lid, lid
    if cls == 3:  # freezer: large glass door in a dark frame with a handle
        w, h = rng.uniform(0.35, 0.5) * s, rng.uniform(0.5, 0.7) * s
        outer = _rect(yy, xx, cy - h / 2, cx - w / 2, h, w)
        inner = _rect(yy, xx, cy - h / 2 + 0.04 * s, cx - w / 2 + 0.04 * s, h - 0.08 * s, w - 0.08 * s)
        handle = _rect(yy, xx, cy - 0.1 * s, cx + w / 2 - 0.035 * s, 0.2 * s, 0.015 * s)
        return outer, (outer & ~inner) | handle
    if cls == 4:  # window: glass panes with a white cross frame
        w, h = rng.uniform(0.3, 0.45) * s, rng.uniform(0.3, 0.45) * s
        outer = _rect(yy, xx, cy - h / 2, cx - w / 2, h, w)
        panes = _rect(yy, xx, cy - h / 2 + 0.02 * s, cx - w / 2 + 0.02 * s, h - 0.04 * s, w - 0.04 * s)
        frame = outer & ((np.abs(xx - cx) < 0.012 * s) | (np.abs(yy - cy) < 0.012 * s) | ~panes)
        return outer, frame
    if cls == 5:  # door: tall glass panel standing on the floor, with a handle
        w, h = rng.uniform(0.2, 0.3) * s, rng.uniform(0.6, 0.8) * s
        door = _rect(yy, xx, s - h, cx - w / 2, h, w)
        handle = _rect(yy, xx, s - h / 2, cx + w / 2 - 0.05 * s, 0.12 * s, 0.02 * s)
        return door, handle
    if cls == 6:  # eyeglass: two round lenses joined by a bridge, dark rims
        r, gap = rng.uniform(0.05, 0.08) * s, rng.uniform(0.02, 0.04) * s
        left_d = np.hypot(yy - cy, xx - (cx - r - gap / 2))
        right_d = np.hypot(yy - cy, xx - (cx + r + gap / 2))
        lenses = (left_d < r) | (right_d < r)
        rims = (np.abs(left_d - r) < 0.012 * s) | (np.abs(right_d - r) < 0.012 * s)
        bridge = _rect(yy, xx, cy - 0.3 * r, cx - gap / 2 - 0.01 * s, 0.015 * s, gap + 0.02 * s)
        return lenses | rims | bridge, rims | bridge
    if cls == 7:  # cup: tapered body with a ring handle
        h, w = rng.uniform(0.12, 0.2) * s, rng.uniform(0.12, 0.18) * s
        t = (yy - (cy - h / 2)) / h
        body = (t >= 0) & (t <= 1) & (np.abs(xx - cx) < w / 2 * (1 - 0.25 * t))
        ring = np.abs(np.hypot((yy - cy) / (0.3 * h), (xx - cx - w / 2) / (0.25 * w)) - 1) < 0.25
        return body | ring, np.zeros_like(body)
    if cls == 8:  # wall: a full-height glass wall along one side, thin vertical mullions
        w = rng.uniform(0.3, 0.45) * s
        left = 0.0 if rng.random() < 0.5 else s - w
        wall = _rect(yy, xx, 0, left, s, w)
        mullions = wall & (np.abs(((xx - left) % (w / 2)) - w / 4) > w / 4 - 0.01 * s)
        return wall, mullions
    if cls == 9:  # bowl: lower half of an ellipse with a rim line
        a, b = rng.uniform(0.1, 0.15) * s, rng.uniform(0.06, 0.1) * s
        inside = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 < 1
        bowl = inside & (yy >= cy - 0.01 * s)
        return bowl, bowl & (yy < cy + 0.01 * s)
    if cls == 10:  # bottle: narrow body, neck and an opaque coloured cap
        w, h = rng.uniform(0.06, 0.09) * s, rng.uniform(0.22, 0.32) * s
        body = _rect(yy, xx, cy - h / 2 + 0.08 * s, cx - w / 2, h - 0.08 * s, w)
        neck = _rect(yy, xx, cy - h / 2, cx - w / 5, 0.08 * s, 2 * w / 5)
        cap = _rect(yy, xx, cy - h / 2 - 0.025 * s, cx - w / 4, 0.03 * s, w / 2)
        return body | neck | cap, cap
    # 11, box: a front face and a slanted top face, with dark edges
    w, h, d = rng.uniform(0.15, 0.25) * s, rng.uniform(0.12, 0.2) * s, rng.uniform(0.04, 0.07) * s
    front = _rect(yy, xx, cy - h / 2, cx - w / 2, h, w)
    rel_y = (cy - h / 2) - yy
    top = (rel_y >= 0) & (rel_y < d) & (xx >= cx - w / 2 + rel_y) & (xx < cx + w / 2 + rel_y)
    edges = front & ~_rect(yy, xx, cy - h / 2 + 0.01 * s, cx - w / 2 + 0.01 * s, h - 0.02 * s, w - 0.02 * s)
    return front | top, edges


def _glass(rng, image, shape, size):
    """(glass (H, W, 3), outline (H, W) bool) of the object ``shape`` over ``image``: the background displaced,
    blurred and tinted (refraction), a reflection brightening to the top left, a specular streak, a bright rim."""
    yy, xx, offset = *_grid(size), rng.integers(3, 9, 2) * rng.choice([-1, 1], 2)
    refracted = ndimage.gaussian_filter(np.roll(image, tuple(offset), axis=(0, 1)), (2.5, 2.5, 0))
    tint = rng.uniform([0.55, 0.7, 0.7], [0.7, 0.85, 0.9])
    ys, xs = np.nonzero(shape)
    top, left, span = ys.min(), xs.min(), max(np.ptp(ys), np.ptp(xs), 1)
    reflection = np.clip(1.0 - ((yy - top) + (xx - left)) / (1.5 * span), 0, 1)
    glass = refracted * tint + rng.uniform(0.15, 0.3) * reflection[..., None]
    slope, phase = rng.uniform(0.6, 1.6), rng.uniform(0.15, 0.45) * span
    streak = _ridges((xx - left) + slope * (yy - top) - phase, 0.04 * span)
    glass = _blend(glass, [1.0, 1.0, 1.0], 0.5 * streak * shape)
    width = max(1, size // 64)
    inner = shape & ~ndimage.binary_erosion(shape, iterations=width)
    outer = ndimage.binary_dilation(shape, iterations=width) & ~shape
    glass = _blend(glass, [0.97, 0.98, 1.0], 0.75 * inner.astype(np.float32))
    return glass, outer


def trans10k_scene(rng, size, classes):
    """(image (S, S, 3) float in [0, 1], labels (S, S) uint8) of a room with the glass objects of
    ``classes`` (ids 1..11; 0 is background), large wall-like ones painted first."""
    yy, xx = _grid(size)
    wall_colour, floor_colour = rng.uniform(0.5, 0.9, 3), rng.uniform(0.3, 0.6, 3)
    horizon = rng.uniform(0.55, 0.8) * size
    room = np.broadcast_to(wall_colour, (size, size, 3))
    image = _blend(room, floor_colour, _soft(yy - horizon, 1.0))
    image += 0.05 * _fractal(rng, size)[..., None]
    for _ in range(rng.integers(2, 5)):  # posters and furniture that the glass refracts
        top, left = rng.uniform(0, size, 2)
        image = _blend(image, rng.uniform(0, 1, 3),
                       _rect(yy, xx, top, left, *(rng.uniform(0.05, 0.3, 2) * size)).astype(np.float32))
    labels = np.zeros((size, size), np.uint8)
    for cls in sorted(classes, key=lambda c: c not in (3, 4, 5, 8)):  # large, wall-like first
        shape, detail = _trans_shape(int(cls), rng, yy, xx, size)
        glass, outline = _glass(rng, image, shape, size)
        detail_colour = rng.uniform(0.0, 0.35, 3) + (0.6 if cls == 4 else 0.0)  # white window frames
        glass = _blend(glass, detail_colour, detail.astype(np.float32))
        image = np.where(shape[..., None], glass, _blend(image, [0.1, 0.1, 0.12], 0.6 * outline))
        labels[shape] = cls
    return image, labels


#: task -> ``draw(rng, size) -> (image (S, S, 3) float in [0, 1], mask (S, S) bool)``.
BINARY_SCENES = {"polyp": _polyp, "isic2017": _isic2017, "camo": _camo, "sbu": _sbu,
                      "leaf": _leaf, "road": _road}
