"""Writing an example folder of your own kind from a synthetic analog: :func:`write_own_data`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from convlora_lite.data.own.layout import CLASSES_FILE, SHAPES, SPLITS
from convlora_lite.errors import ConfigError


# ----------------------------------------------------------------------------------- writing an example
def write_own_data(target, analog: str = "synth_polyp", *, shape: str = "folder", n_images: int = 24,
                   image_size: int = 128, seed: int = 0, segmentation: str = "rle") -> Path:
    """Write a small dataset of your own kind from a synthetic analog (:mod:`convlora_lite.data.synthetic`)
    in one of the :data:`SHAPES`, and return what ``--data-dir`` takes:

    * ``"folder"``: ``target/images/*.png`` + ``target/masks/*.png`` (+ ``classes.txt`` for a
      multi-class analog such as ``synth_trans10k``) -> ``target``;
    * ``"split_folders"``: ``target/{train,val,test}/`` of that shape -> ``target``;
    * ``"csv"``: the folder shape plus ``target/data.csv`` (``image``, ``mask``) -> the CSV;
    * ``"coco"``: ``target/images/`` plus ``target/annotations.json``, one annotation per class
      present in each image -> the JSON. ``segmentation="rle"``: compressed RLE (``pycocotools.mask.encode``);
      ``"polygon"``: polygons, as annotation tools export them, exact: one rectangle per horizontal
      run of the class's pixels (tools trace outlines instead, which cannot draw a mask with holes exactly).

    About a tenth of the images go to val and to test (the folder, CSV and COCO shapes leave the
    split to training). An existing ``target`` is replaced.
    Used in notebook 11."""
    import shutil
    import tempfile

    from convlora_lite.data.datasets import build_dataset
    from convlora_lite.data.registry import get_dataset_spec
    from convlora_lite.data.synthetic import generate_synthetic

    if shape not in SHAPES:
        raise ConfigError(f"shape={shape!r}; choose one of {', '.join(SHAPES)}.")
    if segmentation not in ("rle", "polygon"):
        raise ConfigError(f"segmentation={segmentation!r}; choose 'rle' or 'polygon'.")
    spec = get_dataset_spec(analog if analog.startswith("synth_") else f"synth_{analog}")
    target = Path(target)
    n_val = max(1, n_images // 10)
    written = []  # (image file, mask file)
    with tempfile.TemporaryDirectory() as tmp:
        generate_synthetic(spec.name, tmp, image_size=image_size, n_train=max(1, n_images - 2 * n_val),
                           n_val=n_val, n_test=n_val, seed=seed)
        if target.exists():
            shutil.rmtree(target)
        for split in SPLITS:
            dataset = build_dataset(spec, split, tmp, image_size=image_size, train=False)
            folder = target / split if shape == "split_folders" else target
            (folder / "images").mkdir(parents=True, exist_ok=True)
            (folder / "masks").mkdir(parents=True, exist_ok=True)
            for image_path, mask_path in dataset.pairs:
                stem = f"{split}_{image_path.stem.removeprefix(split + '_')}" if shape == "split_folders" \
                    else f"image_{len(written):04d}"  # one pool: training makes the split
                image_file = folder / "images" / f"{stem}{image_path.suffix}"
                shutil.copyfile(image_path, image_file)
                shutil.copyfile(mask_path, folder / "masks" / f"{stem}.png")
                written.append((image_file, folder / "masks" / f"{stem}.png"))
    if spec.task == "multiclass" and shape != "coco":
        (target / CLASSES_FILE).write_text("\n".join(spec.classes) + "\n")
    if shape == "csv":
        lines = ["image,mask"] + [f"{i.relative_to(target).as_posix()},{m.relative_to(target).as_posix()}"
                                  for i, m in written]
        (target / "data.csv").write_text("\n".join(lines) + "\n")
        return target / "data.csv"
    if shape == "coco":
        return _write_coco(target, written, spec, segmentation)
    return target


def _run_polygons(pixels: np.ndarray) -> list:
    """Polygons drawing exactly ``pixels`` (a boolean mask) under ``pycocotools``: one rectangle
    ``[x0, y, x1, y, x1, y + 1, x0, y + 1]`` per horizontal run of pixels ``x0 .. x1 - 1`` of row ``y``
    (pixel (x, y) is the unit square from (x, y) to (x + 1, y + 1), and pycocotools' rasteriser fills
    the pixels whose squares an axis-aligned polygon with integer corners covers)."""
    polygons = []
    for y, row in enumerate(np.asarray(pixels, dtype=bool)):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
        polygons += [[int(x0), y, int(x1), y, int(x1), y + 1, int(x0), y + 1]
                     for x0, x1 in zip(edges[::2], edges[1::2])]
    return polygons


def _write_coco(target: Path, written: list, spec, segmentation: str = "rle") -> Path:
    import shutil

    from pycocotools import mask as mask_utils

    names = spec.classes[1:] if spec.task == "multiclass" else ("object",)
    images, annotations = [], []
    for image_id, (image_file, mask_file) in enumerate(written, start=1):
        values = np.asarray(Image.open(mask_file))
        labels = (values > 127).astype(np.uint8) if spec.task == "binary" else values
        images.append({"id": image_id, "file_name": image_file.name, "width": int(labels.shape[1]),
                       "height": int(labels.shape[0])})
        for class_id in range(1, len(names) + 1):
            pixels = labels == class_id
            if not pixels.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(pixels.astype(np.uint8)))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": class_id, "iscrowd": 0,
                "segmentation": _run_polygons(pixels) if segmentation == "polygon"
                else {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            })
    shutil.rmtree(target / "masks")
    categories = [{"id": i, "name": name} for i, name in enumerate(names, start=1)]
    path = target / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def example_image(dataset: str, root, path, size: tuple[int, int] = (413, 297)) -> Path:
    """Write the first test image of the registry dataset ``dataset`` (under ``root``) to ``path`` at another
    size (width, height; not square, not the model's), as a stand-in for a photo of your own. Used in notebook 00."""
    from convlora_lite.data.datasets import build_dataset
    from convlora_lite.data.registry import get_dataset_spec

    spec = get_dataset_spec(dataset)
    image, _ = build_dataset(spec, spec.test_splits[0], root, 64, train=False).load_pair(0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    picture.convert("RGB").resize(size, Image.BICUBIC).save(path)
    return path
