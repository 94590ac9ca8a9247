"""Linear probing of frozen image encoders: how much semantics do their features hold?

The paper (sec. 1) measures it on ImageNet-1K with ViT-B: a linear classifier on frozen MAE
features reaches 67.7 % top-1, on frozen SAM features 54.2 %. This module holds the pieces:

* :func:`make_shape_classes`: an offline, seeded classification set: each class is a shape kind
  (disc, square, triangle, ring, cross, star) drawn at a random size, place and angle, with random
  textures on object and background (``data.textures.make_texture``), so the class is geometry
  and texture is a nuisance;
* :func:`image_folder_tensors`: an ImageNet-style folder (one sub-folder per class) as tensors;
* :func:`probe_images`: the real-image probe set: Imagenette (10 ImageNet classes, downloaded
  once) by default, a user's ImageNet folder as the option;
* :func:`encoder_features`: mean-pooled features of a SAM ``ImageEncoderViT``-like encoder;
* :func:`linear_probe`: multinomial logistic regression on standardised features (MAE probes
  with a BatchNorm without affine before the linear layer, i.e. standardisation), trained full
  batch with L-BFGS, deterministic;
* :func:`build_mae_vit_b_encoder`: Meta's MAE ViT-B weights (``mae_pretrain_vit_base.pth``,
  downloaded and checked with ``checkpoint="auto"``) in a ``segment_anything``
  ``ImageEncoderViT`` (global attention everywhere, absolute positions).

Differences from the paper's protocol, on purpose: features are the mean of the last block's
tokens (MAE's ``global_pool`` variant) for both encoders, not MAE's class token; the MAE class
token is dropped from the sequence (SAM has none) and the 224 px position table is used as is;
the classifier is fitted by L-BFGS on a subset instead of 90 epochs of LARS on all of ImageNet;
and by default the images are Imagenette's 10 classes (split into probe-train and probe-test
parts by :func:`split_indices`), not ImageNet-1K's 1000, so the accuracies are far higher than
the paper's 67.7 % / 54.2 % and only the ordering (MAE above SAM) is comparable.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from segment_anything.modeling import ImageEncoderViT
from torch import nn

from convlora_lite.data.textures import make_texture
from convlora_lite.data.transforms import to_model_input
from convlora_lite.errors import CheckpointError, ConfigError, DataError

SHAPE_CLASSES = ("disc", "square", "triangle", "ring", "cross", "star")

#: The paper's ImageNet-1K linear-probing top-1 accuracies (ViT-B, sec. 1), as fractions.
PAPER_LINEAR_PROBE = {"MAE ViT-B": 0.677, "SAM ViT-B": 0.542}


def shape_mask(kind: str, size: int, cy: float, cx: float, radius: float, angle: float) -> np.ndarray:
    """Bool (size, size) mask of a ``kind`` from :data:`SHAPE_CLASSES` centred at (cy, cx)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    dist, phi = np.hypot(u, v), np.arctan2(v, u)
    if kind == "disc":
        return dist <= radius
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= radius * 0.8
    if kind == "triangle":  # equilateral: inside the three half-planes
        normals = [(np.cos(a), np.sin(a)) for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3)]
        return np.all([u * nx + v * ny <= radius * 0.5 for nx, ny in normals], axis=0)
    if kind == "ring":
        return (dist <= radius) & (dist >= radius * 0.55)
    if kind == "cross":
        arm = radius * 0.3
        return ((np.abs(u) <= arm) | (np.abs(v) <= arm)) & (np.maximum(np.abs(u), np.abs(v)) <= radius)
    if kind == "star":
        return dist <= radius * (0.45 + 0.55 * np.abs(np.cos(phi * 5 / 2)) ** 2)
    raise ConfigError(f"Unknown shape {kind!r}; choose from {', '.join(SHAPE_CLASSES)}.")


def make_shape_classes(n_per_class: int, num_classes: int = 6, image_size: int = 256,
                       seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded classification set of textured shapes.

    Args:
        n_per_class: images per class.
        num_classes: the first ``num_classes`` of :data:`SHAPE_CLASSES` (2 to 6).
        image_size: side in pixels.
        seed: the same arguments always give the same images.

    Returns:
        ``(images (N, 3, S, S) ImageNet-normalised float, labels (N,) long)``, N = n_per_class *
        num_classes, classes interleaved (image i has label i % num_classes).

    Used in notebook 01."""
    if not 2 <= num_classes <= len(SHAPE_CLASSES) or n_per_class < 1:
        raise ConfigError(f"make_shape_classes needs 2 <= num_classes <= {len(SHAPE_CLASSES)} and n_per_class >= 1.")
    images, labels = [], []
    for i in range(n_per_class * num_classes):
        rng = np.random.default_rng([seed, i])
        label = i % num_classes
        radius = rng.uniform(0.18, 0.4) * image_size
        cy, cx = rng.uniform(radius, image_size - radius, size=2)
        mask = shape_mask(SHAPE_CLASSES[label], image_size, cy, cx, radius, rng.uniform(0, 2 * np.pi))
        image = make_texture(rng, image_size, image_size)
        image[mask] = make_texture(rng, image_size, image_size)[mask]
        images.append(image)
        labels.append(label)
    return to_model_input(images), torch.tensor(labels)


def image_folder_tensors(root, image_size: int, max_classes: int | None = None,
                         max_per_class: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """An ImageNet-style folder ``root/<class>/<image>`` as ``(images (N, 3, S, S)
    ImageNet-normalised, labels (N,), class names)``; images resized (bicubic) to S x S,
    classes and files in sorted order, the first ``max_classes`` / ``max_per_class`` kept."""
    from PIL import Image

    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise DataError(f"{root} holds no class folders. Point IMAGENET_DIR at a folder laid out as "
                        "<root>/<class name>/<image files> (e.g. ImageNet's val set sorted by class).")
    classes = classes[:max_classes]
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".JPEG"))
        for path in files[:max_per_class]:
            with Image.open(path) as img:
                rgb = img.convert("RGB").resize((image_size, image_size), Image.BICUBIC)
            images.append(np.asarray(rgb, dtype=np.float32) / 255.0)
            labels.append(label)
    return to_model_input(images), torch.tensor(labels), classes


def probe_images(image_size: int, imagenet_dir=None, split: str = "val", max_classes: int | None = None,
                 max_per_class: int | None = None, root=None,
                 url: str | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The real-image probe set: ``(images, labels, class names)`` as :func:`image_folder_tensors`.

    ``imagenet_dir`` (a user's ImageNet folder, ``<root>/<class>/<images>``) when given; else
    Imagenette's ``split`` (``"val"``: 3,925 images, or ``"train"``), downloaded once into ``root``
    (default the cache folder; ``url`` or ``$CONVLORA_IMAGENETTE_URL`` for a mirror, see
    :func:`convlora_lite.data.imagenette.imagenette`). Imagenette's wnid folders are named by
    their classes ("tench", "church", ...); other folder names are kept as they are.
    Used in notebook 01."""
    from convlora_lite.data.imagenette import IMAGENETTE_CLASSES, imagenette

    folder = Path(imagenet_dir).expanduser() if imagenet_dir else imagenette(root, url) / split
    images, labels, classes = image_folder_tensors(folder, image_size, max_classes, max_per_class)
    return images, labels, [IMAGENETTE_CLASSES.get(c, c) for c in classes]


@torch.no_grad()
def encoder_features(encoder: ImageEncoderViT, images: torch.Tensor, batch_size: int = 8,
                     device: str | torch.device = "cpu") -> torch.Tensor:
    """(N, C) features: the last block's tokens (B, h, w, C), before SAM's neck, averaged over
    the grid. ``images`` (N, 3, S, S) are fed in batches of ``batch_size`` (S must fit the
    encoder's position table). Used in notebook 01."""
    encoder = encoder.to(device).eval()
    pooled = []
    for start in range(0, images.shape[0], batch_size):
        x = encoder.patch_embed(images[start:start + batch_size].to(device))
        if encoder.pos_embed is not None:
            x = x + encoder.pos_embed
        for block in encoder.blocks:
            x = block(x)
        pooled.append(x.mean(dim=(1, 2)).float().cpu())
    return torch.cat(pooled)


def split_indices(labels: torch.Tensor, test_fraction: float = 1 / 3,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded stratified split: ``(train indices, test indices)``, ``test_fraction`` of every
    class (at least one image) in the test part. Used in notebook 01."""
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label in labels.unique():
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        n_test = max(1, int(round(test_fraction * members.numel())))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


@dataclass
class ProbeResult:
    """A fitted linear probe: accuracies in [0, 1] and the classifier (on standardised features)."""

    train_accuracy: float
    test_accuracy: float
    chance: float
    classifier: nn.Linear
    mean: torch.Tensor
    std: torch.Tensor

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C) features -> (N,) predicted labels."""
        return self.classifier((features - self.mean) / self.std).argmax(1)


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, weight_decay: float = 1e-3, max_iter: int = 200) -> ProbeResult:
    """Fit a linear classifier on frozen features and score it.

    Features are standardised with the training set's mean and std (MAE's BatchNorm without
    affine); the classifier minimises cross-entropy + ``weight_decay`` * ||W||^2 / 2 with full-batch
    L-BFGS (deterministic: no sampling). ``chance`` is the accuracy of always predicting the most
    frequent training label on the test set.
    Used in notebook 01."""
    if train_features.shape[0] != train_labels.shape[0] or test_features.shape[0] != test_labels.shape[0]:
        raise DataError("linear_probe: features and labels must have the same number of rows.")
    x = train_features.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    classifier = nn.Linear(x.shape[1], num_classes).double()
    nn.init.zeros_(classifier.weight)
    nn.init.zeros_(classifier.bias)
    optimizer = torch.optim.LBFGS(classifier.parameters(), lr=1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(classifier(x), train_labels) + weight_decay / 2 * classifier.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    result = ProbeResult(0.0, 0.0, 0.0, classifier.requires_grad_(False), mean, std)
    with torch.no_grad():
        result.train_accuracy = (result.predict(train_features.double()) == train_labels).double().mean().item()
        result.test_accuracy = (result.predict(test_features.double()) == test_labels).double().mean().item()
    majority = torch.bincount(train_labels, minlength=num_classes).argmax()
    result.chance = (test_labels == majority).double().mean().item()
    return result


def build_mae_vit_b_encoder(checkpoint="auto", cache_dir=None, base_url: str | None = None) -> ImageEncoderViT:
    """Meta's MAE ViT-B/16 encoder (``mae_pretrain_vit_base.pth``, timm key names) as a
    ``segment_anything`` ``ImageEncoderViT`` at 224 px: global attention in every block, no
    relative positions, the class token dropped (see the module docstring); the neck is unused.

    ``checkpoint="auto"`` downloads the official file once into the cache folder (size- and
    format-checked, see :func:`~convlora_lite.models.checkpoints.mae_checkpoint`; ``base_url`` or
    ``$CONVLORA_MAE_BASE_URL`` for a mirror); else a path to it (a :class:`CheckpointError` says
    where to get it when it is absent).
    Used in notebook 01."""
    from convlora_lite.models.checkpoints import MAE_VIT_B_URL, check_mae_state, load_mae_file, mae_checkpoint

    if isinstance(checkpoint, str) and checkpoint == "auto":
        path = mae_checkpoint(cache_dir, base_url)
    else:
        path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise CheckpointError(f"No MAE ViT-B weights at {path}. Pass MAE_CHECKPOINT='auto' to download them, or "
                              f"download mae_pretrain_vit_base.pth from {MAE_VIT_B_URL} (MAE's README) and pass "
                              "its path as MAE_CHECKPOINT.")
    state = load_mae_file(path)
    if checkpoint == "auto":
        state = check_mae_state(state, path)
    return mae_state_to_encoder(state.get("model", state))


def mae_state_to_encoder(state: dict) -> ImageEncoderViT:
    """A timm-style ViT state dict (``patch_embed.proj``, ``pos_embed`` (1, 1 + g*g, C),
    ``blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``) in an ``ImageEncoderViT``."""
    try:
        pos = state["pos_embed"]
        patch_weight = state["patch_embed.proj.weight"]
    except KeyError as err:
        raise CheckpointError(f"Not a timm/MAE ViT state dict (missing {err}); "
                              "pass mae_pretrain_vit_base.pth.") from err
    dim, patch = patch_weight.shape[0], patch_weight.shape[-1]
    grid = int(round((pos.shape[1] - 1) ** 0.5))
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    heads = max(1, dim // 64)
    encoder = ImageEncoderViT(img_size=grid * patch, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads,
                              qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=False,
                              window_size=0, global_attn_indexes=())
    mapped = {"patch_embed.proj.weight": patch_weight, "patch_embed.proj.bias": state["patch_embed.proj.bias"],
              "pos_embed": pos[:, 1:].reshape(1, grid, grid, dim)}
    renames = {"mlp.fc1": "mlp.lin1", "mlp.fc2": "mlp.lin2"}
    for key, value in state.items():
        if key.startswith("blocks."):
            for old, new in renames.items():
                key = key.replace(old, new)
            mapped[key] = value
    own = encoder.state_dict()
    mapped.update({k: v for k, v in own.items() if k.startswith("neck.")})
    try:
        encoder.load_state_dict({k: v.float() for k, v in mapped.items()}, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"The MAE weights do not fit a ViT of width {dim} and depth {depth}: "
                              f"{str(err)[:400]}") from err
    return encoder.eval()


def plot_probe_accuracies(results: dict[str, ProbeResult], paper: dict[str, float] | None = None,
                          title: str = "Linear probing of frozen encoder features"):
    """Bars of test accuracy per encoder (``name -> ProbeResult``), chance as a dashed line, and
    the paper's numbers (``name -> accuracy``) as hatched bars when given. Returns the figure. Used in notebook 01."""
    names = list(results)
    fig = Figure(figsize=(3.6 + 1.3 * (len(names) + len(paper or {})), 3.6))
    ax = fig.subplots()
    bars = ax.bar(names, [100 * results[n].test_accuracy for n in names], color="tab:blue",
                  label="measured here (test)")
    ax.bar_label(bars, fmt="%.1f")
    if paper:
        ref = ax.bar([f"{n}\n(paper, ImageNet)" for n in paper], [100 * v for v in paper.values()], color="white",
                     edgecolor="tab:gray", hatch="//", label="paper (ImageNet-1K top-1)")
        ax.bar_label(ref, fmt="%.1f")
    ax.axhline(100 * max(r.chance for r in results.values()), color="k", ls="--", lw=1, label="chance (majority class)")
    ax.set(title=title, ylabel="top-1 accuracy (%)", ylim=(0, 105), xlabel="encoder")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside the axes: it covers no bar
    fig.tight_layout()
    return fig
