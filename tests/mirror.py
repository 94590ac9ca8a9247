"""A local stand-in for everything the paper-scale path downloads, in the official formats.

Used by ``tests/test_notebooks_colab.py`` (every notebook on the ``colab`` preset) and by the
download tests. It writes, into one folder that :func:`serve` publishes on 127.0.0.1:

* ``datasets/{zip}`` -- the six AutoGluon zips (``polyp.zip``, ``SBU-shadow.zip``, ...) in their
  layout, ``{folder}/{split csvs, images, masks}``, with the real files' quirks: a leading unnamed
  index column in every CSV, JPEG images of different sizes, JPEG-compressed masks for the polyp
  zip (Kvasir-SEG's masks are JPEGs: values near but not at 0 and 255), PNG masks elsewhere; and
  Trans10K-v2's archive as Google Drive serves it (``Trans10K_cls12.zip``: the split folders
  wrapped in ``Trans10K_cls12/``, JPEG images, palette ``masks_12/N_mask.png`` with class ids and
  255 = ignore).
* ``sam/sam_vit_b_01ec64.pth`` -- SAM ViT-B with random weights saved as Meta's file is (a plain
  state dict with the official key names, written by ``torch.save``). Its digest is not Meta's, so a test
  passes its path as the checkpoint rather than ``"auto"`` (which verifies Meta's sha256).
* ``mae/mae_pretrain_vit_base.pth`` -- MAE ViT-B in Meta's format (``{"model": timm names}``).
* on request (:func:`sam2_checkpoint`, not in :func:`write_mirror`) -- a SAM 2.1 checkpoint with random weights in
  Meta's format, ``{"model": state_dict}``, made by Meta's ``sam2`` package itself (its ``build_sam2``).
* ``imagenette2-160.tgz`` -- Imagenette's archive: ``imagenette2-160/{train,val}/{wnid}/*.JPEG``.
"""
from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from convlora_lite.data.imagenette import IMAGENETTE_CLASSES
from convlora_lite.data.install import TRANS10K_MIRROR_NAME
from convlora_lite.data.registry import DATASETS, get_dataset_spec

#: (width, height) of the generated photographs, cycled: the real sets mix sizes and aspect ratios.
PHOTO_SIZES = ((64, 48), (52, 60), (72, 56), (48, 48))


def _photo(i: int) -> tuple[Image.Image, np.ndarray]:
    """A photograph-like RGB image (a smooth background, one brighter ellipse) and the ellipse's
    boolean mask, at the ``i``-th of :data:`PHOTO_SIZES`."""
    width, height = PHOTO_SIZES[i % len(PHOTO_SIZES)]
    rng = np.random.default_rng(i)
    y, x = np.mgrid[:height, :width]
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    inside = ((y - cy) / (0.25 * height)) ** 2 + ((x - cx) / (0.2 * width)) ** 2 < 1
    base = np.stack([x / width, y / height, np.full_like(x / width, 0.3)], -1) * 120
    pixels = np.clip(base + inside[..., None] * 100 + rng.normal(0, 12, base.shape), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8)), inside


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def csv_dataset_zip(name: str, per_split: dict[str, int]) -> bytes:
    """The AutoGluon zip of the binary dataset ``name``: ``per_split`` pairs per split (default 2)."""
    spec = get_dataset_spec(name)
    jpeg_masks = name == "polyp"
    buffer, sample = io.BytesIO(), 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for split, csv_name in spec.splits.items():
            rows = []
            for i in range(per_split.get(split, 2)):
                image, inside = _photo(sample)
                sample += 1
                mask = Image.fromarray(inside.astype(np.uint8) * 255)
                image_path = f"images/{split}_{i}.jpg"
                mask_path = f"masks/{split}_{i}" + (".jpg" if jpeg_masks else ".png")
                zf.writestr(f"{spec.folder}/{image_path}", _jpeg(image))
                zf.writestr(f"{spec.folder}/{mask_path}", _jpeg(mask) if jpeg_masks else _png(mask))
                rows.append(f"{i},{image_path},{mask_path}")
            zf.writestr(f"{spec.folder}/{csv_name}", ",image,label\n" + "\n".join(rows) + "\n")
    return buffer.getvalue()


def trans10k_zip(per_split: dict[str, int]) -> bytes:
    """Trans10K-v2's Drive archive: ``Trans10K_cls12/{train,validation,test}/{images,masks_12}``."""
    spec = get_dataset_spec("trans10k")
    palette = [v for c in range(256) for v in (c * 20 % 256, c * 50 % 256, c * 90 % 256)]
    buffer, sample = io.BytesIO(), 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for split, folder in spec.splits.items():
            for i in range(per_split.get(split, 2)):
                image, inside = _photo(sample)
                labels = np.where(inside, 1 + sample % 11, 0).astype(np.uint8)
                labels[0, :] = 255  # an ignored border row, as the real masks have around objects
                sample += 1
                mask = Image.fromarray(labels, "P")
                mask.putpalette(palette)
                zf.writestr(f"Trans10K_cls12/{folder}/images/{i}.jpg", _jpeg(image))
                zf.writestr(f"Trans10K_cls12/{folder}/masks_12/{i}_mask.png", _png(mask))
    return buffer.getvalue()


def sam_state(model: str = "vit_b") -> dict[str, torch.Tensor]:
    """Random SAM weights under Meta's key names (the official modules' ``state_dict``)."""
    from convlora_lite.models.sam import build_sam

    torch.manual_seed(0)
    return build_sam(model, checkpoint=None).state_dict()


def sam2_checkpoint(name: str = "sam2.1_hiera_tiny") -> bytes:
    """The bytes of a ``sam2.1_hiera_*.pt`` file with random weights: ``torch.save({"model": state_dict})`` of the
    model Meta's ``build_sam2`` builds from the package's config (as Meta's released files are written)."""
    from sam2.build_sam import build_sam2

    from convlora_lite.models.configs import get_config

    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save({"model": build_sam2(get_config(name).config_file, None, device="cpu").state_dict()}, buffer)
    return buffer.getvalue()


def mae_vit_b_state(depth: int = 12, dim: int = 768, dtype=torch.float16) -> dict:
    """Random MAE weights in the official layout, ``{"model": timm ViT-B/16 names}``."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).to(dtype)

    def ones(n):
        return torch.ones(n, dtype=dtype)

    state = {"cls_token": rand(1, 1, dim), "pos_embed": rand(1, 197, dim),
             "patch_embed.proj.weight": rand(dim, 3, 16, 16), "patch_embed.proj.bias": rand(dim),
             "norm.weight": ones(dim), "norm.bias": rand(dim)}
    for i in range(depth):
        p = f"blocks.{i}."
        state.update({p + "norm1.weight": ones(dim), p + "norm1.bias": rand(dim),
                      p + "attn.qkv.weight": rand(3 * dim, dim), p + "attn.qkv.bias": rand(3 * dim),
                      p + "attn.proj.weight": rand(dim, dim), p + "attn.proj.bias": rand(dim),
                      p + "norm2.weight": ones(dim), p + "norm2.bias": rand(dim),
                      p + "mlp.fc1.weight": rand(4 * dim, dim), p + "mlp.fc1.bias": rand(4 * dim),
                      p + "mlp.fc2.weight": rand(dim, 4 * dim), p + "mlp.fc2.bias": rand(dim)})
    return {"model": state}


def imagenette_tgz(per_class: int = 2, drop: str | None = None) -> bytes:
    """Imagenette's archive (``imagenette2-160/{train,val}/{wnid}/*.JPEG`` and its CSV); ``drop``
    leaves one class out."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        for split in ("train", "val"):
            for c, wnid in enumerate(IMAGENETTE_CLASSES):
                if wnid == drop:
                    continue
                for i in range(per_class):
                    image = Image.new("RGB", (24 + i, 20), (c * 25, i * 80, 0))
                    add(f"imagenette2-160/{split}/{wnid}/ILSVRC2012_val_{c:03d}{i}.JPEG", _jpeg(image))
        add("imagenette2-160/noisy_imagenette.csv", b"path,noisy_labels_0\n")
    return buffer.getvalue()


def write_mirror(folder: Path, per_split: dict[str, int] | None = None, probe_per_class: int = 2) -> Path:
    """Write every file of the paper-scale path under ``folder`` (see the module docstring)."""
    per_split = per_split or {}
    (folder / "datasets").mkdir(parents=True, exist_ok=True)
    for name, spec in DATASETS.items():
        if spec.synthetic:
            continue
        if spec.layout == "trans10k":
            (folder / "datasets" / TRANS10K_MIRROR_NAME).write_bytes(trans10k_zip(per_split))
        else:
            (folder / "datasets" / spec.archive_name).write_bytes(csv_dataset_zip(name, per_split))
    (folder / "sam").mkdir(exist_ok=True)
    torch.save(sam_state("vit_b"), folder / "sam" / "sam_vit_b_01ec64.pth")
    (folder / "mae").mkdir(exist_ok=True)
    torch.save(mae_vit_b_state(dtype=torch.float32), folder / "mae" / "mae_pretrain_vit_base.pth")
    (folder / "imagenette2-160.tgz").write_bytes(imagenette_tgz(probe_per_class))
    return folder


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def serve(folder: Path):
    """Publish ``folder`` on 127.0.0.1 (Range requests not supported); yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
