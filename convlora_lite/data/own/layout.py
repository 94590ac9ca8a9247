"""Your own data: a folder, a CSV or a COCO file turned into a spec, a split and datasets.

``--data-dir PATH`` (``TrainConfig(data_dir=...)``) accepts four shapes, found by :func:`detect_shape`:

* ``folder``: ``PATH/images/*`` matched by file stem with ``PATH/masks/*`` (the mask may also be
  named ``<stem>_mask``);
* ``split_folders``: ``PATH/train``, ``PATH/val`` (and optionally ``PATH/test``), each of the
  ``folder`` shape;
* ``csv``: a CSV file with an ``image`` column and a ``mask`` (or ``label``) column, paths relative
  to the CSV's folder; an optional ``split`` column (train/val/test) gives the split;
* ``coco``: a COCO instances JSON (``images``, ``annotations``, ``categories``); its masks are
  drawn with ``pycocotools`` (``COCO.annToMask``): binary = any object, multi-class = one class per
  category (class id = 1 + the category's rank by id, background 0). Image files are looked up
  next to the JSON, then in ``images/`` beside it or beside its folder. A folder holding
  ``train.json`` and ``val.json`` (and optionally ``test.json``) gives the split.

Masks: binary 0/255, 0/1 or JPEG-compressed (thresholded at half scale); multi-class index masks
(value = class id, :data:`~convlora_lite.data.registry.IGNORE_INDEX` = ignore). Class names come
from ``classes.txt`` (one name per line, line ``i`` = value ``i``; more than two lines = multi-class)
or from the COCO categories. The recipe defaults by task (:data:`TASK_DEFAULTS`): binary trains the
structure loss and selects on IoU (IoU, Dice, S_alpha, E_phi reported), multi-class trains the set
loss and selects on mIoU; ``loss`` and ``select_metric`` override them.

When the data gives no split, :func:`make_split` draws a seeded 80/10/10 one. Training records the
split (and the spec) in the run directory (:meth:`~convlora_lite.training.rundir.RunDir.write_split`),
and :func:`own_datasets` reads that record back, so ``eval`` and ``--resume`` see the same images.
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from PIL import Image

from convlora_lite.data.datasets import IMAGE_SUFFIXES, PairedSegmentationDataset, _open_image
from convlora_lite.data.registry import BINARY_CLASSES, IGNORE_INDEX
from convlora_lite.data.transforms import to_rgb
from convlora_lite.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
#: the seeded split made when the data gives none.
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
CLASSES_FILE = "classes.txt"
SHAPES = ("folder", "split_folders", "csv", "coco")

#: task -> (loss, select_metric, metrics) of the default recipe.
TASK_DEFAULTS = {
    "binary": ("structure", "iou", ("iou", "dice", "s_alpha", "e_phi")),
    "multiclass": ("set", "miou", ("acc", "miou", "iou_per_class")),
}


@dataclass(frozen=True)
class OwnDataSpec:
    """The spec of a user's dataset: what :class:`~convlora_lite.data.registry.DatasetSpec` says
    of a registry task that the trainer, the metrics and the tables read."""

    name: str
    source: str
    shape: str
    task: str
    classes: tuple
    loss: str
    select_metric: str
    select_mode: str
    metrics: tuple
    test_splits: tuple = ("test",)
    epochs: int = 20
    lr: float = 1e-4
    domain: str = "own"
    synthetic: bool = False

    @property
    def title(self) -> str:
        return f"your data at {self.source}"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def all_splits(self) -> tuple:
        return ("train", "val", *self.test_splits)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> "OwnDataSpec":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass
class Sample:
    """One image of the data: its file, its mask file (None for COCO), the key that names it in a
    split record (its path relative to the data), the split the data gives it (or None) and its
    COCO image id."""

    image: Path
    mask: Optional[Path]
    key: str
    split: Optional[str] = None
    coco_id: Optional[int] = None


@dataclass
class Scan:
    """What :func:`scan` found: the shape, the samples, the class names, the COCO index (per
    split file) and every structural problem."""

    shape: str
    samples: list = field(default_factory=list)
    classes: Optional[tuple] = None
    coco: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)


# ----------------------------------------------------------------------------------- finding the data
def detect_shape(path) -> str:
    """``folder``, ``split_folders``, ``csv`` or ``coco`` for ``path``; DataError for anything else."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"--data-dir {path} does not exist; pass a folder with images/ and masks/, a folder "
                        "with train/ val/ test/, a CSV file or a COCO JSON file.")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        if path.suffix.lower() == ".json":
            return "coco"
        raise DataError(f"--data-dir {path} is a file but neither a .csv nor a COCO .json.")
    if (path / "images").is_dir() or (path / "masks").is_dir():
        return "folder"
    if (path / "train").is_dir():
        return "split_folders"
    if (path / "train.json").is_file():
        return "coco"
    raise DataError(f"{path} holds no images/ folder, no train/ folder and no train.json: it is not a dataset "
                    "folder. Put the images in images/ and the masks (same file stems) in masks/.")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_classes(folder: Path) -> Optional[tuple]:
    """The class names of ``folder/classes.txt`` (blank lines skipped), or None without one."""
    path = Path(folder) / CLASSES_FILE
    if not path.is_file():
        return None
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if len(names) < 2:
        raise DataError(f"{path} names {len(names)} class(es); list at least two (background first), one per line.")
    return names


def _scan_folder(folder: Path, root: Path, split: Optional[str], problems: list) -> list[Sample]:
    images_dir, masks_dir = folder / "images", folder / "masks"
    where = f"{split}: " if split else ""
    for needed in (images_dir, masks_dir):
        if not needed.is_dir():
            problems.append(f"{where}{needed} does not exist (a dataset folder holds images/ and masks/)")
    if not (images_dir.is_dir() and masks_dir.is_dir()):
        return []
    images, masks = _image_files(images_dir), _image_files(masks_dir)
    if not images:
        problems.append(f"{where}{images_dir} holds no images (suffixes {', '.join(IMAGE_SUFFIXES)})")
    by_stem: dict[str, list[Path]] = {}
    for image in images:
        by_stem.setdefault(image.stem, []).append(image)
    for stem, files in by_stem.items():
        if len(files) > 1:
            problems.append(f"{where}duplicated stem {stem!r}: {', '.join(f.name for f in files)} (rename one)")
    mask_of: dict[str, Path] = {}
    unmatched_masks = []
    for mask in masks:
        stem = mask.stem if mask.stem in by_stem else mask.stem.removesuffix("_mask")
        if stem not in by_stem:
            unmatched_masks.append(mask.name)
        elif stem in mask_of:
            problems.append(f"{where}image stem {stem!r} has two masks: {mask_of[stem].name}, {mask.name}")
        else:
            mask_of[stem] = mask
    if unmatched_masks:
        problems.append(f"{where}{len(unmatched_masks)} mask(s) in {masks_dir} match no image (same stem, or "
                        f"stem + '_mask'): {unmatched_masks[:10]}")
    no_mask = [files[0].name for stem, files in by_stem.items() if stem not in mask_of]
    if no_mask:
        problems.append(f"{where}{len(no_mask)} image(s) in {images_dir} have no mask in {masks_dir}: {no_mask[:10]}")
    return [Sample(files[0], mask_of[stem], str(files[0].relative_to(root)), split)
            for stem, files in sorted(by_stem.items()) if stem in mask_of]


def _scan_csv(path: Path, problems: list) -> list[Sample]:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        problems.append(f"cannot read {path} as CSV: {error}")
        return []
    frame = frame.loc[:, [not str(c).startswith("Unnamed:") for c in frame.columns]]
    mask_column = "mask" if "mask" in frame.columns else "label"
    if "image" not in frame.columns or mask_column not in frame.columns:
        problems.append(f"{path} needs an 'image' and a 'mask' (or 'label') column; it has {list(frame.columns)}")
        return []
    if frame.empty:
        problems.append(f"{path} lists no images")
    samples, seen = [], {}
    for row, record in enumerate(frame.to_dict("records")):
        image, mask = record["image"], record[mask_column]
        if pd.isna(image) or pd.isna(mask):
            problems.append(f"{path} row {row}: empty 'image' or '{mask_column}' cell")
            continue
        split = record.get("split")
        split = None if split is None or pd.isna(split) else str(split).strip()
        if split is not None and split not in SPLITS:
            problems.append(f"{path} row {row}: split {split!r} is not one of {', '.join(SPLITS)}")
            continue
        image_path, mask_path = path.parent / str(image), path.parent / str(mask)
        if str(image) in seen:
            problems.append(f"{path}: image {image} is listed twice (rows {seen[str(image)]} and {row})")
            continue
        seen[str(image)] = row
        samples.append(Sample(image_path, mask_path, str(image), split))
    stems: dict[str, list[str]] = {}
    for sample in samples:
        stems.setdefault(sample.image.stem, []).append(sample.key)
    for stem, keys in stems.items():
        if len(keys) > 1:
            problems.append(f"{path}: duplicated stem {stem!r}: {keys[:5]} (their predictions would collide)")
    for sample in samples:
        for what, file in (("image", sample.image), ("mask", sample.mask)):
            if not file.is_file():
                problems.append(f"{path}: {what} {file} does not exist")
    return samples


def _coco_files(path: Path) -> dict:
    """split (None = not given) -> COCO JSON path."""
    if path.is_file():
        return {None: path}
    return {split: path / f"{split}.json" for split in SPLITS if (path / f"{split}.json").is_file()}


def _coco_image(json_path: Path, file_name: str) -> Path:
    for folder in (json_path.parent, json_path.parent / "images", json_path.parent.parent / "images"):
        if (folder / file_name).is_file():
            return folder / file_name
    return json_path.parent / file_name


def _scan_coco(path: Path, problems: list) -> tuple[list, dict, Optional[tuple]]:
    from pycocotools.coco import COCO

    samples, index, categories = [], {}, None
    for split, json_path in _coco_files(path).items():
        try:
            data = json.loads(json_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            problems.append(f"cannot read {json_path} as JSON: {error}")
            continue
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            problems.append(f"{json_path} is not a COCO instances file (it needs 'images', 'annotations', "
                            "'categories')")
            continue
        data.setdefault("categories", [])
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
            coco = COCO()
            coco.dataset = data
            coco.createIndex()
        index[split] = coco
        names = tuple(c["name"] for c in sorted(data["categories"], key=lambda c: c["id"]))
        if categories is None:
            categories = names
        elif names != categories:
            problems.append(f"{json_path} has other categories ({list(names)}) than the other split files "
                            f"({list(categories)})")
        if not data["annotations"]:
            problems.append(f"{json_path} has no annotations{f' for the {split} split' if split else ''}")
        if not data["images"]:
            problems.append(f"{json_path} lists no images")
        for image in sorted(data["images"], key=lambda i: i["id"]):
            file = _coco_image(json_path, image["file_name"])
            if not file.is_file():
                problems.append(f"{json_path}: image {image['file_name']} does not exist (looked beside the JSON "
                                "and in images/)")
            samples.append(Sample(file, None, f"{split or ''}:{image['file_name']}" if split else image["file_name"],
                                  split, int(image["id"])))
    if not index and not problems:
        problems.append(f"{path} holds no COCO JSON file")
    stems: dict[tuple, list[str]] = {}
    for sample in samples:
        stems.setdefault((sample.split, sample.image.stem), []).append(sample.key)
    for (split, stem), keys in stems.items():
        if len(keys) > 1:
            problems.append(f"duplicated stem {stem!r}: {keys[:5]}")
    return samples, index, categories


def scan(data_dir) -> Scan:
    """The samples of ``data_dir`` and every structural problem (no file is decoded here)."""
    path = Path(data_dir).expanduser().resolve()
    shape = detect_shape(path)
    result = Scan(shape)
    if shape == "folder":
        result.samples = _scan_folder(path, path, None, result.problems)
        result.classes = read_classes(path)
    elif shape == "split_folders":
        for split in SPLITS:
            if (path / split).is_dir():
                result.samples += _scan_folder(path / split, path, split, result.problems)
            elif split != "test":
                result.problems.append(f"{path / split} does not exist (a split folder needs train/ and val/)")
        result.classes = read_classes(path)
    elif shape == "csv":
        result.samples = _scan_csv(path, result.problems)
        result.classes = read_classes(path.parent)
    else:
        result.samples, result.coco, categories = _scan_coco(path, result.problems)
        if categories:
            result.classes = ("background", *categories)
    if not result.samples and not any("no images" in p for p in result.problems):
        result.problems.append(f"{path} holds no images with masks")
    return result


# ----------------------------------------------------------------------------------- the spec
def own_spec(data_dir, *, task: Optional[str] = None, loss: Optional[str] = None,
             select_metric: Optional[str] = None, name: Optional[str] = None,
             found: Optional[Scan] = None) -> OwnDataSpec:
    """The spec of the data at ``data_dir``: its task (``task``, else multi-class when it declares more
    than two classes), class names and the task's default recipe with ``loss``/``select_metric`` applied."""
    found = found if found is not None else scan(data_dir)
    path = Path(data_dir).expanduser().resolve()
    classes = found.classes
    if task is None:
        task = "multiclass" if classes is not None and len(classes) > 2 else "binary"
    if task not in TASK_DEFAULTS:
        raise ConfigError(f"task={task!r}; choose 'binary' or 'multiclass'.")
    if task == "binary":
        classes = classes if classes is not None and len(classes) == 2 else BINARY_CLASSES
    elif classes is None or len(classes) < 2:
        raise DataError(f"{path}: a multi-class dataset needs its class names: a {CLASSES_FILE} (one per line, "
                        "background first) or the COCO categories.")
    default_loss, default_select, metrics = TASK_DEFAULTS[task]
    spec = OwnDataSpec(
        name=name or f"own_{(path.stem if path.is_file() else path.name) or 'data'}", source=str(path),
        shape=found.shape, task=task, classes=tuple(classes), loss=loss or default_loss,
        select_metric=select_metric or default_select, select_mode="max", metrics=metrics,
        test_splits=("test",) if _has_test(found) else (),
    )
    return with_recipe(spec, loss, select_metric)


def _has_test(found: Scan) -> bool:
    splits = {s.split for s in found.samples}
    return None in splits or "test" in splits or not found.samples


def with_recipe(spec, loss: Optional[str] = None, select_metric: Optional[str] = None):
    """``spec`` (own or registry) with another loss or selection metric, both checked."""
    from dataclasses import replace

    from convlora_lite.training.losses import LOSSES
    from convlora_lite.training.metrics import METRIC_DIRECTIONS

    if loss is not None:
        if loss not in LOSSES:
            raise ConfigError(f"loss={loss!r}; choose one of {', '.join(sorted(LOSSES))}.")
        if (loss == "set") != (spec.task == "multiclass"):
            raise ConfigError(f"loss {loss!r} does not fit a {spec.task} task; "
                              f"{'use set' if spec.task == 'multiclass' else 'use structure or balanced_bce'}.")
        spec = replace(spec, loss=loss)
    if select_metric is not None:
        allowed = ("acc", "miou") if spec.task == "multiclass" else tuple(
            k for k in METRIC_DIRECTIONS if k not in ("acc", "miou"))
        if select_metric not in allowed:
            raise ConfigError(f"select_metric={select_metric!r} is not a {spec.task} metric; choose one of "
                              f"{', '.join(allowed)}.")
        spec = replace(spec, select_metric=select_metric, select_mode=METRIC_DIRECTIONS[select_metric])
    return spec


def config_spec(config):
    """The spec a run of ``config`` trains and scores with: its own data's (``config.data_dir``)
    or the registry's entry, with the config's ``loss``/``select_metric`` applied."""
    from convlora_lite.data.registry import get_dataset_spec

    if getattr(config, "data_dir", None):
        return own_spec(config.data_dir, task=config.task, loss=config.loss, select_metric=config.select_metric,
                        name=config.dataset)
    return with_recipe(get_dataset_spec(config.dataset), getattr(config, "loss", None),
                       getattr(config, "select_metric", None))


def run_spec(run_dir):
    """The spec of a finished run, without its data: the recorded own-data spec, or the registry's."""
    from convlora_lite.data.registry import get_dataset_spec
    from convlora_lite.training.rundir import RunDir

    run = RunDir(run_dir)
    if run.split.exists():
        return OwnDataSpec.from_dict(run.read_split()["spec"])
    config = run.read_json(run.config)
    return with_recipe(get_dataset_spec(config["dataset"]), config.get("loss"), config.get("select_metric"))


# ----------------------------------------------------------------------------------- the split
def make_split(keys, seed: int, fractions=SPLIT_FRACTIONS) -> dict:
    """``{"train", "val", "test"} -> sorted keys``: a seeded permutation cut 80/10/10 (at least one
    image in val and test); DataError with fewer than three images."""
    keys = sorted(keys)
    if len(keys) < 3:
        raise DataError(f"only {len(keys)} image(s): too few for a train/val/test split (at least 3; "
                        "a few dozen to learn anything).")
    order = np.random.default_rng(seed).permutation(len(keys))
    n_val = max(1, round(len(keys) * fractions[1]))
    n_test = max(1, round(len(keys) * fractions[2]))
    cuts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return {split: sorted(keys[i] for i in cuts[split]) for split in SPLITS}


def split_keys(found: Scan, seed: int) -> dict:
    """split -> keys: the data's own split when it gives one, else :func:`make_split`."""
    given = {s.split for s in found.samples}
    if given == {None}:
        return make_split([s.key for s in found.samples], seed)
    if None in given:
        raise DataError("some rows have a split and some do not; give every row a split, or none.")
    return {split: sorted(s.key for s in found.samples if s.split == split) for split in SPLITS
            if any(s.split == split for s in found.samples)}


# ----------------------------------------------------------------------------------- the datasets
class CocoSegmentationDataset(PairedSegmentationDataset):
    """Images of a COCO instances file, their masks drawn with ``pycocotools`` (``annToMask``).

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
        for ann in sorted(annotations, key=lambda a: -float(a.get("area", 0))):
            info = coco.imgs[sample.coco_id]
            if (info.get("height"), info.get("width")) != (height, width):
                raise DataError(f"{sample.image} is {width}x{height} but {self.origin} says "
                                f"{info.get('width')}x{info.get('height')}; fix the COCO file.")
            with warnings.catch_warnings():  # pycocotools' decode warns about numpy 2's copy keyword
                warnings.simplefilter("ignore", DeprecationWarning)
                pixels = coco.annToMask(ann).astype(bool)
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


def own_datasets(spec: OwnDataSpec, config, run=None) -> dict:
    """The datasets of a run on own data: the split recorded in ``run`` (a
    :class:`~convlora_lite.training.rundir.RunDir`) when it has one, else a new one (the data's own,
    or seeded by ``config.seed``), recorded there."""
    found = scan(spec.source)
    raise_problems(found, spec.source)
    if run is not None and run.split.exists():
        keys = run.read_split()["splits"]
    else:
        keys = split_keys(found, config.seed)
        if run is not None:
            run.write_split({"data_dir": spec.source, "shape": spec.shape, "seed": config.seed,
                             "fractions": list(SPLIT_FRACTIONS) if {s.split for s in found.samples} == {None} else None,
                             "spec": spec.to_dict(), "splits": keys})
    return build_own_splits(spec, keys, config.image_size, found)


# ----------------------------------------------------------------------------------- verify
def verify_own_data(data_dir, *, task: Optional[str] = None, seed: int = 0, progress: bool = False):
    """Every problem of the data at ``data_dir``: structure (unmatched stems, duplicated stems,
    missing files, too few images for the split) and each file (unreadable, size mismatch, mask
    values outside the declared classes, empty masks). Returns a
    :class:`~convlora_lite.data.verify.VerifyReport`."""
    from tqdm.auto import tqdm

    from convlora_lite.data.verify import VerifyReport, _decode, _mask_value_problems

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
    for sample in tqdm(found.samples, desc="verify", disable=not progress):
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


# ----------------------------------------------------------------------------------- writing an example
def write_own_data(target, analog: str = "synth_polyp", *, shape: str = "folder", n_images: int = 24,
                   image_size: int = 128, seed: int = 0) -> Path:
    """Write a small dataset of your own kind from a synthetic analog (:mod:`convlora_lite.data.synthetic`)
    in one of the :data:`SHAPES`, and return what ``--data-dir`` takes:

    * ``"folder"``: ``target/images/*.png`` + ``target/masks/*.png`` (+ ``classes.txt`` for a
      multi-class analog such as ``synth_trans10k``) -> ``target``;
    * ``"split_folders"``: ``target/{train,val,test}/`` of that shape -> ``target``;
    * ``"csv"``: the folder shape plus ``target/data.csv`` (``image``, ``mask``) -> the CSV;
    * ``"coco"``: ``target/images/`` plus ``target/annotations.json``, one RLE annotation per
      class present in each image (drawn with ``pycocotools.mask.encode``) -> the JSON.

    About a tenth of the images go to val and to test (the folder, CSV and COCO shapes leave the
    split to training). An existing ``target`` is replaced.
    """
    import shutil
    import tempfile

    from convlora_lite.data.datasets import build_dataset
    from convlora_lite.data.registry import get_dataset_spec
    from convlora_lite.data.synthetic import generate_synthetic

    if shape not in SHAPES:
        raise ConfigError(f"shape={shape!r}; choose one of {', '.join(SHAPES)}.")
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
        return _write_coco(target, written, spec)
    return target


def _write_coco(target: Path, written: list, spec) -> Path:
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
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            })
    shutil.rmtree(target / "masks")
    categories = [{"id": i, "name": name} for i, name in enumerate(names, start=1)]
    path = target / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path
