"""The datasets of your own data: :class:`CocoSegmentationDataset` for COCO files, and
:func:`build_own_splits` for a recorded split (a run records its split in its directory:
:func:`convlora_lite.training.run_data.own_datasets`).
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
from PIL import Image

from convlora_lite.data.datasets import PairedSegmentationDataset, _open_image
from convlora_lite.data.own.layout import Sample, Scan, annotation_problem, scan
from convlora_lite.data.own.spec import OwnDataSpec
from convlora_lite.data.registry import IGNORE_INDEX
from convlora_lite.data.transforms import to_rgb
from convlora_lite.errors import DataError


# ----------------------------------------------------------------------------------- the datasets
class CocoSegmentationDataset(PairedSegmentationDataset):
    """Images of a COCO instances file, their masks drawn with ``pycocotools`` (``annToMask``) from
    each annotation's polygons (``[[x1, y1, x2, y2, ...], ...]``, several for one object drawn as their
    union) or RLE (compressed, or uncompressed ``counts`` as written for crowds); a malformed annotation
    is a DataError naming the file and the annotation (:func:`~convlora_lite.data.own.layout.segmentation_problem`).

    Binary: foreground = any object. Multi-class: class id = 1 + the category's rank by id,
    larger objects painted first so smaller ones stay visible; crowd regions are ignored (255) in
    multi-class masks and foreground in binary ones (a binary mask has no ignore value).
    """

    def __init__(self, samples, coco, *, task: str, num_classes: int, image_size: int, train: bool, origin: str):
        self.samples = list(samples)
        self.coco = coco
        super().__init__([(s.image, s.image) for s in self.samples], task=task, num_classes=num_classes,
                         image_size=image_size, train=train, origin=origin)

    def labels(self, sample: Sample, height: int, width: int) -> np.ndarray:
        coco = self.coco[sample.split] if sample.split in self.coco else next(iter(self.coco.values()))
        ranks = {cat_id: i + 1 for i, cat_id in enumerate(sorted(coco.cats))}
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[sample.coco_id]))
        labels = np.zeros((height, width), dtype=np.uint8)
        source = sample.coco_file or self.origin
        for ann in sorted(annotations, key=lambda a: -float(a.get("area", 0))):
            info = coco.imgs[sample.coco_id]
            if (info.get("height"), info.get("width")) != (height, width):
                raise DataError(f"{sample.image} is {width}x{height} but {source} says "
                                f"{info.get('width')}x{info.get('height')}; fix the COCO file.")
            problem = annotation_problem(ann, info, coco.cats, source)
            if problem:
                raise DataError(problem)
            try:
                with warnings.catch_warnings():  # pycocotools' decode warns about numpy 2's copy keyword
                    warnings.simplefilter("ignore", DeprecationWarning)
                    pixels = coco.annToMask(ann).astype(bool)
            except Exception as error:  # pycocotools raises bare Exceptions, ValueErrors, TypeErrors
                raise DataError(f"{source}: annotation {ann.get('id')!r} (image {info.get('file_name')}): "
                                f"pycocotools cannot draw its segmentation ({type(error).__name__}: {error}); "
                                "fix it, or delete the annotation") from error
            if pixels.shape != (height, width):
                raise DataError(f"{source}: annotation {ann.get('id')!r} (image {info.get('file_name')}): its "
                                f"segmentation draws a {pixels.shape[1]}x{pixels.shape[0]} mask on a {width}x{height} "
                                "image; fix it, or delete the annotation")
            if ann.get("iscrowd"):
                labels[pixels] = IGNORE_INDEX if self.task == "multiclass" else 1
            else:
                labels[pixels] = 1 if self.task == "binary" else ranks[ann["category_id"]]
        return labels

    def load_pair(self, index: int):
        sample = self.samples[index]
        image = _open_image(sample.image, "image", self.origin)
        return to_rgb(image), self.labels(sample, image.size[1], image.size[0])

    def mask_image(self, index: int) -> Image.Image:
        """The mask of item ``index`` as a PIL image of label values (for verify)."""
        image, labels = self.load_pair(index)
        return Image.fromarray(labels * (255 if self.task == "binary" else 1))


def raise_problems(found: Scan, source) -> None:
    if found.problems:
        shown = "\n  - ".join(found.problems[:20])
        more = f"\n  ... and {len(found.problems) - 20} more" if len(found.problems) > 20 else ""
        raise DataError(f"{source} cannot be used:\n  - {shown}{more}\n"
                        f"`convlora data verify --data-dir {source}` lists every problem.")


def build_own_splits(spec: OwnDataSpec, keys: dict, image_size: int, found: Optional[Scan] = None) -> dict:
    """split -> dataset for the recorded ``keys`` (split -> sample keys); training mode for train."""
    found = found if found is not None else scan(spec.source)
    raise_problems(found, spec.source)
    by_key = {s.key: s for s in found.samples}
    missing = sorted(k for split_keys_ in keys.values() for k in split_keys_ if k not in by_key)
    if missing:
        raise DataError(f"{len(missing)} image(s) of the recorded split are no longer in {spec.source}, e.g. "
                        f"{missing[:5]}; restore them, or train a new run.")
    datasets = {}
    for split, names in keys.items():
        samples = [by_key[k] for k in names]
        if not samples:
            raise DataError(f"the {split} split of {spec.source} holds no images; add some, or drop the split "
                            "to let training split the data.")
        common = dict(task=spec.task, num_classes=spec.num_classes, image_size=image_size, train=split == "train",
                      origin=f"{spec.source} ({split})")
        if spec.shape == "coco":
            with_annotations = [s for s in samples
                                if found.coco[s.split if s.split in found.coco else None].getAnnIds(imgIds=[s.coco_id])]
            if not with_annotations:
                raise DataError(f"{spec.source}: no annotations for the {split} split ({len(samples)} images, none "
                                "annotated); annotate some of them, or give another split.")
            datasets[split] = CocoSegmentationDataset(samples, found.coco, **common)
        else:
            datasets[split] = PairedSegmentationDataset([(s.image, s.mask) for s in samples], **common)
    return datasets
