"""Verifying your own data: :func:`verify_own_data` lists every structural and per-file problem."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from convlora_lite.data.own.datasets import CocoSegmentationDataset
from convlora_lite.data.own.layout import scan
from convlora_lite.data.own.spec import own_spec, split_keys
from convlora_lite.data.registry import IGNORE_INDEX
from convlora_lite.errors import DataError


# ----------------------------------------------------------------------------------- verify
def verify_own_data(data_dir, *, task: Optional[str] = None, seed: int = 0, progress: bool = False):
    """Every problem of the data at ``data_dir``: structure (unmatched stems, duplicated stems,
    missing files, too few images for the split, malformed COCO annotations: polygons of fewer than
    three points or an odd number of coordinates, RLE of the wrong size, segmentations of the wrong
    type) and each file (unreadable, size mismatch, mask values outside the declared classes, empty
    masks). Returns a :class:`~convlora_lite.data.verify.VerifyReport`. Used in notebook 11."""
    from convlora_lite.data.verify import VerifyReport, _decode, _mask_value_problems
    from convlora_lite.progress import progress_bar

    path = Path(data_dir).expanduser().resolve()
    report = VerifyReport(str(path), path, remedy="Fix or remove the files named above, then run "
                          f"`convlora data verify --data-dir {data_dir}` again.")
    try:
        found = scan(path)
        spec = own_spec(path, task=task, found=found)
    except DataError as error:
        report.problems.append(str(error))
        return report
    report.problems += found.problems
    try:
        keys = split_keys(found, seed)
    except DataError as error:
        report.problems.append(str(error))
        keys = {}
    report.counts = {split: len(names) for split, names in keys.items()}
    report.name = f"{spec.name} ({spec.shape}, {spec.task}, classes {', '.join(spec.classes)})"
    if spec.shape == "coco" and found.coco:
        by_key = {s.key: s for s in found.samples}
        for split, names in keys.items():
            samples = [by_key[k] for k in names]
            coco_of = [found.coco[s.split if s.split in found.coco else None] for s in samples]
            if samples and not any(c.getAnnIds(imgIds=[s.coco_id]) for c, s in zip(coco_of, samples)):
                report.problems.append(f"{split}: no annotations for the {split} split")
    for sample in progress_bar(found.samples, desc="verify", disable=not progress):
        if not sample.image.is_file():
            continue
        image, problem = _decode(sample.image)
        if problem:
            report.problems.append(problem)
            continue
        if sample.mask is None:  # COCO: the mask is drawn from the annotations
            dataset = CocoSegmentationDataset([sample], found.coco, task=spec.task, num_classes=spec.num_classes,
                                              image_size=32, train=False, origin=str(path))
            try:
                labels = dataset.labels(sample, image.size[1], image.size[0])
            except DataError as error:
                if str(error) not in report.problems:  # a malformed annotation is already listed by scan
                    report.problems.append(str(error))
                continue
            if not (labels[labels != IGNORE_INDEX] > 0).any():
                report.problems.append(f"empty mask: {sample.image} has no annotated object")
            continue
        if not sample.mask.is_file():
            continue
        mask, problem = _decode(sample.mask)
        if problem:
            report.problems.append(problem)
            continue
        if image.size != mask.size:
            report.problems.append(f"size mismatch: image {sample.image} is {image.size[0]}x{image.size[1]}, "
                                   f"mask {sample.mask} is {mask.size[0]}x{mask.size[1]}")
        value_problems, thresholded = _mask_value_problems(spec, mask, sample.mask)
        report.problems += value_problems
        report.thresholded += thresholded
        if not value_problems:
            values = np.asarray(mask.convert("L") if spec.task == "binary" else mask)
            empty = (values.max(initial=0) <= (127 if values.max(initial=0) > 1 else 0)) if spec.task == "binary" \
                else not ((values > 0) & (values != IGNORE_INDEX)).any()
            if empty:
                report.problems.append(f"empty mask: {sample.mask} has no foreground pixel")
    return report
