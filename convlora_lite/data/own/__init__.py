"""Your own data: a folder, a CSV or a COCO file turned into a spec, a split and datasets.

``--data-dir PATH`` (``TrainConfig(data_dir=...)``) accepts four shapes, found by :func:`detect_shape`:

* ``folder``: ``PATH/images/*`` matched by file stem with ``PATH/masks/*`` (the mask may also be
  named ``<stem>_mask``);
* ``split_folders``: ``PATH/train``, ``PATH/val`` (and optionally ``PATH/test``), each of the
  ``folder`` shape;
* ``csv``: a CSV file with an ``image`` column and a ``mask`` (or ``label``) column, paths relative
  to the CSV's folder; an optional ``split`` column (train/val/test) gives the split;
* ``coco``: a COCO instances JSON (``images``, ``annotations``, ``categories``); its masks are
  drawn with ``pycocotools`` (``COCO.annToMask``) from polygon segmentations (``[[x1, y1, x2, y2,
  ...], ...]``, as annotation tools export them) or RLE ones (compressed, or uncompressed for
  crowds): binary = any object, multi-class = one class per category (class id = 1 + the category's
  rank by id, background 0); a malformed annotation is a problem naming the file and its id
  (:func:`~convlora_lite.data.own.layout.segmentation_problem`). Image files are looked up
  next to the JSON, then in ``images/`` beside it or beside its folder. A folder holding
  ``train.json`` and ``val.json`` (and optionally ``test.json``) gives the split.

Masks: binary 0/255, 0/1 or JPEG-compressed (thresholded at half scale); multi-class index masks
(value = class id, :data:`~convlora_lite.data.registry.IGNORE_INDEX` = ignore). Class names come
from ``classes.txt`` (one name per line, line ``i`` = value ``i``; more than two lines = multi-class)
or from the COCO categories. The recipe defaults by task (:data:`TASK_DEFAULTS`): binary trains the
structure loss and selects on IoU (IoU, Dice, S_alpha, E_phi reported), multi-class trains the set
loss and selects on mIoU; ``loss`` and ``select_metric`` override them.

When the data gives no split, :func:`make_split` draws a seeded 80/10/10 one. Training records the
split (and the spec) in the run directory, and reads that record back
(:func:`convlora_lite.training.run_data.own_datasets`), so ``eval`` and ``--resume`` see the same images.
"""
from __future__ import annotations

from convlora_lite.data.own.datasets import CocoSegmentationDataset, build_own_splits, raise_problems
from convlora_lite.data.own.example import example_image, write_own_data
from convlora_lite.data.own.layout import (
    CLASSES_FILE,
    SHAPES,
    SPLIT_FRACTIONS,
    SPLITS,
    Sample,
    Scan,
    detect_shape,
    own_data_path,
    read_classes,
    scan,
)
from convlora_lite.data.own.spec import TASK_DEFAULTS, OwnDataSpec, make_split, own_spec, split_keys
from convlora_lite.data.own.verify import verify_own_data

__all__ = [
    "CLASSES_FILE",
    "SHAPES",
    "SPLIT_FRACTIONS",
    "SPLITS",
    "Sample",
    "Scan",
    "detect_shape",
    "read_classes",
    "scan",
    "TASK_DEFAULTS",
    "OwnDataSpec",
    "make_split",
    "own_spec",
    "split_keys",
    "CocoSegmentationDataset",
    "build_own_splits",
    "raise_problems",
    "verify_own_data",
    "write_own_data",
    "example_image",
    "own_data_path",
]
