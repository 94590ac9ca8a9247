"""Finding your own data on disk: the four shapes (:func:`detect_shape`), the class names
(``classes.txt``) and :func:`scan`, which lists the images, their masks and every structural problem.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from convlora_lite.data.datasets import IMAGE_SUFFIXES
from convlora_lite.errors import DataError

SPLITS = ("train", "val", "test")
#: the seeded split made when the data gives none.
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
CLASSES_FILE = "classes.txt"
SHAPES = ("folder", "split_folders", "csv", "coco")


@dataclass
class Sample:
    """One image of the data: its file, its mask file (None for COCO), the key that names it in a
    split record (its path relative to the data), the split the data gives it (or None), its
    COCO image id and the COCO JSON that lists it."""

    image: Path
    mask: Optional[Path]
    key: str
    split: Optional[str] = None
    coco_id: Optional[int] = None
    coco_file: Optional[Path] = None


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
    """``folder``, ``split_folders``, ``csv`` or ``coco`` for ``path``; DataError for anything else.
    Used in notebook 11."""
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


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def segmentation_problem(segmentation, height=None, width=None) -> Optional[str]:
    """What is wrong with one COCO ``segmentation`` (None when nothing is) for an image of ``height`` x
    ``width`` (None: unknown). Accepted: polygons, a list of ``[x1, y1, x2, y2, ...]`` (at least three
    points each; one object may have several), and RLE ``{"size": [height, width], "counts": ...}``,
    compressed (a string) or uncompressed (a list of run lengths summing to height * width, as
    written for ``iscrowd: 1``)."""
    if isinstance(segmentation, list):
        if not segmentation:
            return "its segmentation is an empty list: draw the object's outline, or delete the annotation"
        if all(_is_number(v) for v in segmentation):
            return ("its segmentation is a flat list of numbers, but COCO polygons are a list of polygons: "
                    "wrap it in another list, [[x1, y1, x2, y2, ...]]")
        for i, polygon in enumerate(segmentation, start=1):
            if not isinstance(polygon, list) or not all(_is_number(v) for v in polygon):
                return f"polygon {i} of its segmentation is not a list of numbers [x1, y1, x2, y2, ...]"
            if len(polygon) % 2:
                return (f"polygon {i} of its segmentation has an odd number of coordinates ({len(polygon)}); "
                        "give x, y pairs")
            if len(polygon) < 6:
                return (f"polygon {i} of its segmentation has {len(polygon) // 2} point(s); a polygon needs at "
                        "least 3: fix it, or drop it")
        return None
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size)):
            return f"its RLE segmentation has 'size' {size!r}; it needs [height, width]"
        if height is not None and width is not None and size != [height, width]:
            return (f"its RLE segmentation has size [height, width] = {size}, but the image is {width}x{height}: "
                    "encode the mask at the image's size")
        if isinstance(counts, str):
            return None
        if not (isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
                                                 for c in counts)):
            return ("its RLE segmentation's 'counts' is neither a compressed string nor a list of run lengths "
                    "(non-negative integers)")
        if sum(counts) != size[0] * size[1]:
            return (f"the run lengths of its uncompressed RLE sum to {sum(counts)}, not height * width = "
                    f"{size[0] * size[1]}")
        return None
    if segmentation is None:
        return ("it has no segmentation (a bounding box alone draws no mask): add the object's polygon or RLE, "
                "or delete the annotation")
    return (f"its segmentation is a {type(segmentation).__name__}; COCO segmentations are polygons "
            "[[x1, y1, x2, y2, ...], ...] or RLE {\"size\": [height, width], \"counts\": ...}")


def annotation_problem(annotation: dict, image: Optional[dict], categories, json_path) -> Optional[str]:
    """The problem of one COCO annotation (its segmentation for ``image``, the COCO entry of its image,
    and its category among ``categories``, the category ids, if any), naming the file and the annotation;
    None when it is fine."""
    image = image or {}
    problem = segmentation_problem(annotation.get("segmentation"), image.get("height"), image.get("width"))
    if problem is None and categories and annotation.get("category_id") not in categories:
        problem = (f"its category_id {annotation.get('category_id')!r} is not among the categories "
                   f"{sorted(categories)}: add the category, or fix the id")
    if problem is None:
        return None
    where = f" (image {image['file_name']})" if "file_name" in image else ""
    return f"{json_path}: annotation {annotation.get('id')!r}{where}: {problem}"


def _index_problems(data: dict, json_path: Path) -> list[str]:
    """What would break pycocotools' index: images without an id or file name, annotations without an
    id or image id, categories without an id or name, and ids used twice (pycocotools would keep one of
    them and draw it in place of the other)."""
    problems = []
    for what, entries, keys in (("image", data["images"], ("id", "file_name")),
                                ("annotation", data["annotations"], ("id", "image_id")),
                                ("category", data["categories"], ("id", "name"))):
        seen = set()
        for n, entry in enumerate(entries):
            missing = [key for key in keys if not isinstance(entry, dict) or key not in entry]
            if missing:
                problems.append(f"{json_path}: {what} #{n} (counting from 0) has no {' or '.join(missing)}; "
                                f"give every {what} {' and '.join(keys)}")
            elif entry["id"] in seen:
                problems.append(f"{json_path}: {what} #{n} (counting from 0) has the id {entry['id']!r} of an "
                                f"earlier {what}; give every {what} its own id")
            else:
                seen.add(entry["id"])
    return problems


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
        broken = _index_problems(data, json_path)
        if broken:
            problems += broken
            continue
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
        for annotation in data["annotations"]:
            problem = annotation_problem(annotation, coco.imgs.get(annotation["image_id"]), coco.cats, json_path)
            if problem:
                problems.append(problem)
        for image in sorted(data["images"], key=lambda i: i["id"]):
            file = _coco_image(json_path, image["file_name"])
            if not file.is_file():
                problems.append(f"{json_path}: image {image['file_name']} does not exist (looked beside the JSON "
                                "and in images/)")
            samples.append(Sample(file, None, f"{split or ''}:{image['file_name']}" if split else image["file_name"],
                                  split, int(image["id"]), json_path))
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
    """The samples of ``data_dir`` and every structural problem (no file is decoded here). Used in notebook 11."""
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


def own_data_path(source, unpack_into) -> Path:
    """The data a user points at: a folder, CSV or COCO file as it is, or a ``.zip`` unpacked once into
    ``unpack_into/<zip name>`` (its single top folder when everything is inside one, as zips made by
    "compress folder" are). Used in notebook 11."""
    import shutil

    source = Path(source)
    if source.suffix.lower() != ".zip":
        return source
    if not source.is_file():
        raise DataError(f"{source} does not exist; give the path of your zip file.")
    folder = Path(unpack_into) / source.stem
    if not folder.exists():
        shutil.unpack_archive(source, folder)
    inner = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(("__MACOSX", "."))]
    return inner[0] if len(inner) == 1 and not (folder / "images").is_dir() else folder
