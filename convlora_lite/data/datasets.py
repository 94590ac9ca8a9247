"""Segmentation datasets: one class per on-disk layout, and :func:`build_dataset`.

Every dataset is a list of (image file, mask file) pairs, read lazily (and, when asked, kept in
memory once decoded: :meth:`PairedSegmentationDataset.keep_in_memory`). An item is
``dict(image=float32 (3, S, S) ImageNet-normalised, mask=..., name=str)`` where ``mask`` is
float32 (S, S) in {0, 1} for a binary task or int64 (S, S) of class ids (255 = ignore) for a
multi-class task; ``name`` is the image file's stem. See :mod:`.transforms` for the recipe.

Layouts:

* :class:`CsvSegmentationDataset` -- the official AutoGluon zips: a CSV with ``image`` and
  ``label`` columns, paths relative to the CSV's folder (a leading unnamed index column, as
  written by ``DataFrame.to_csv``, is ignored). Also fits a user's own CSV.
* :class:`Trans10KDataset` -- Trans10K-v2: ``{split}/images/N.jpg`` with
  ``{split}/masks_12/N_mask.png``. The masks are index PNGs whose pixel value is the class id:
  Trans2Seg (``xieenze/Trans2Seg``, ``segmentron/data/dataloader/transparent11.py``) pairs
  ``basename + '_mask.png'`` in ``masks_12`` and reads it with ``Image.open(...).convert("P")``
  followed by ``np.array(mask).astype('int32')`` as the label map, 12 classes. We read the
  indices the same way (palette or grayscale); a colour-coded RGB mask raises DataError.
* :class:`FolderSegmentationDataset` -- a user's own data: ``images/`` and ``masks/`` folders
  matched by file stem (the mask may also be named ``<stem>_mask``), binary or multi-class.

Errors are :class:`~convlora_lite.errors.DataError` with the file and what to do. Each item is
checked when read (missing or unreadable file, image/mask size mismatch, mask values outside the
declared classes); :meth:`PairedSegmentationDataset.check_files` checks up front, cheaply, that
every listed file exists (``build_dataset`` calls it by default).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from convlora_lite.data.registry import DatasetSpec, get_dataset_spec
from convlora_lite.data.transforms import SegmentationTransform, binary_labels, class_labels, to_rgb
from convlora_lite.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _open_image(path: Path, what: str, origin: str) -> Image.Image:
    """Open and fully decode ``path``; DataError when it is missing or unreadable."""
    if not path.is_file():
        raise DataError(
            f"{what} {path} does not exist (listed in {origin}). Re-download or regenerate the "
            "dataset, or fix the listing so it names an existing file."
        )
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(
            f"cannot read {what} {path} (listed in {origin}): {error}. The file is truncated or "
            "not an image; delete it and re-download or regenerate the dataset."
        ) from None
    return image


class PairedSegmentationDataset(torch.utils.data.Dataset):
    """Image/mask file pairs, decoded and transformed when an item is read.

    Args:
        pairs: (image path, mask path) for each sample.
        task: ``"binary"`` or ``"multiclass"``.
        num_classes: classes including background (2 for binary).
        image_size: side S of the square output.
        train: training mode (random horizontal flip).
        origin: what lists the pairs (a CSV path, a folder), quoted in error messages.

    :meth:`keep_in_memory` lets later epochs skip the decoding.
    """

    def __init__(self, pairs, *, task: str, num_classes: int, image_size: int, train: bool,
                 origin: str):
        self.pairs = [(Path(image), Path(mask)) for image, mask in pairs]
        self.task = task
        self.num_classes = int(num_classes)
        self.origin = origin
        self.transform = SegmentationTransform(image_size, train=train, task=task)
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._cache_left = 0
        if not self.pairs:
            raise DataError(f"{origin} lists no samples; check that it is the right file or folder.")

    def __len__(self) -> int:
        return len(self.pairs)

    def check_files(self) -> None:
        """DataError listing the first missing files, if any listed file does not exist."""
        missing = [path for pair in self.pairs for path in pair if not path.is_file()]
        if missing:
            shown = "\n  ".join(str(path) for path in missing[:5])
            raise DataError(
                f"{len(missing)} file(s) listed in {self.origin} do not exist, e.g.\n  {shown}\n"
                "Re-download or regenerate the dataset (`convlora data download NAME` / "
                "`convlora data synth NAME`), or fix the listing."
            )

    def load_pair(self, index: int) -> tuple[Image.Image, np.ndarray]:
        """Sample ``index`` before resizing: (RGB PIL image, uint8 (H, W) label map)."""
        image_path, mask_path = self.pairs[index]
        image = _open_image(image_path, "image", self.origin)
        mask = _open_image(mask_path, "mask", self.origin)
        if image.size != mask.size:
            raise DataError(
                f"image {image_path} is {image.size[0]}x{image.size[1]} but its mask {mask_path} is "
                f"{mask.size[0]}x{mask.size[1]}; a mask must have its image's size. Fix or remove "
                "the pair."
            )
        if self.task == "binary":
            labels = binary_labels(mask, source=f"mask {mask_path}")
        else:
            labels = class_labels(mask, self.num_classes, source=f"mask {mask_path}")
        return to_rgb(image), labels

    def keep_in_memory(self, max_bytes: int) -> "PairedSegmentationDataset":
        """Keep up to ``max_bytes`` of decoded, resized samples in memory once read (before the
        training flip, so what an item returns does not change). It pays in the process that reads
        the items (a ``DataLoader`` with ``num_workers=0``); each worker process would fill a copy
        of its own. Returns the dataset."""
        self._cache_left = int(max_bytes) - self.kept_bytes
        return self

    @property
    def kept_bytes(self) -> int:
        """Bytes of decoded samples kept in memory so far."""
        return sum(t.numel() * t.element_size() for item in self._cache.values() for t in item)

    def prepared(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``index`` decoded, resized and normalised (``SegmentationTransform.prepare``),
        from memory when it was kept there (see :meth:`keep_in_memory`)."""
        if index in self._cache:
            return self._cache[index]
        prepared = self.transform.prepare(*self.load_pair(index))
        size = sum(t.numel() * t.element_size() for t in prepared)
        if size <= self._cache_left:
            self._cache[index] = prepared
            self._cache_left -= size
        return prepared

    def __getitem__(self, index: int) -> dict:
        image_t, mask_t = self.transform.augment(*self.prepared(index))
        return {"image": image_t, "mask": mask_t, "name": self.pairs[index][0].stem}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} samples from {self.origin}, task={self.task!r}, "
                f"num_classes={self.num_classes}, {self.transform!r})")


def read_pairs_csv(csv_path: Path, base_dir: Path | None = None) -> list[tuple[Path, Path]]:
    """(image, mask) paths from a CSV with ``image`` and ``label`` columns, resolved against
    ``base_dir`` (default: the CSV's folder). A leading unnamed index column is ignored."""
    csv_path = Path(csv_path)
    base_dir = csv_path.parent if base_dir is None else Path(base_dir)
    if not csv_path.is_file():
        raise DataError(
            f"{csv_path} does not exist. Download or generate the dataset first, or pass the "
            "root folder that holds it."
        )
    try:
        frame = pd.read_csv(csv_path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{csv_path} is empty; re-download or regenerate the dataset.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"cannot parse {csv_path} as CSV ({error}); re-download it.") from None
    frame = frame.loc[:, [not str(column).startswith("Unnamed:") for column in frame.columns]]
    if not {"image", "label"} <= set(frame.columns):
        raise DataError(
            f"{csv_path} needs columns 'image' and 'label' (paths relative to {base_dir}); "
            f"it has {list(frame.columns)}."
        )
    if frame.empty:
        raise DataError(f"{csv_path} has a header but no rows; re-download or regenerate it.")
    incomplete = frame[["image", "label"]].isna().any(axis=1)
    if incomplete.any():
        row = int(np.flatnonzero(incomplete.to_numpy())[0])
        raise DataError(f"{csv_path} row {row} has an empty 'image' or 'label' cell; fix or remove it.")
    return [(base_dir / str(image), base_dir / str(label))
            for image, label in zip(frame["image"], frame["label"])]


class CsvSegmentationDataset(PairedSegmentationDataset):
    """Pairs listed in a CSV (the official zips' layout, or a user's own CSV).

    Args:
        csv_path: the CSV file; its ``image``/``label`` paths are relative to ``base_dir``
            (default: the CSV's folder) unless absolute.
    """

    def __init__(self, csv_path, *, task: str = "binary", num_classes: int = 2,
                 image_size: int = 1024, train: bool = False, base_dir=None):
        super().__init__(read_pairs_csv(Path(csv_path), base_dir), task=task,
                         num_classes=num_classes, image_size=image_size, train=train,
                         origin=str(csv_path))


def _images_in(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(path for path in folder.iterdir()
                  if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def _require_folder(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise DataError(f"{what} folder {folder} does not exist; check the root path and layout.")


class Trans10KDataset(PairedSegmentationDataset):
    """Trans10K-v2 split folder: ``images/N.jpg`` paired with ``masks_12/N_mask.png``.

    Args:
        split_dir: ``{root}/trans10k/{train,validation,test}``.
        num_classes: 12 (11 object classes + background).
    """

    def __init__(self, split_dir, *, num_classes: int = 12, image_size: int = 1024,
                 train: bool = False):
        split_dir = Path(split_dir)
        image_dir, mask_dir = split_dir / "images", split_dir / "masks_12"
        _require_folder(image_dir, "Trans10K image")
        _require_folder(mask_dir, "Trans10K mask")
        pairs = [(image, mask_dir / f"{image.stem}_mask.png") for image in _images_in(image_dir)]
        super().__init__(pairs, task="multiclass", num_classes=num_classes, image_size=image_size,
                         train=train, origin=str(split_dir))


class FolderSegmentationDataset(PairedSegmentationDataset):
    """A user's own data: ``{folder}/images/*`` matched by stem with ``{folder}/masks/*``.

    The mask of ``images/abc.jpg`` is ``masks/abc.<any image suffix>`` or ``masks/abc_mask.<...>``.
    Binary masks: 0/255 or 0/1. Multi-class masks: index PNGs, 255 = ignore.
    """

    def __init__(self, folder, *, task: str = "binary", num_classes: int = 2,
                 image_size: int = 1024, train: bool = False, image_dir: str = "images",
                 mask_dir: str = "masks"):
        folder = Path(folder)
        images, masks = folder / image_dir, folder / mask_dir
        _require_folder(images, "image")
        _require_folder(masks, "mask")
        mask_by_stem = {}
        for mask in _images_in(masks):
            mask_by_stem[mask.stem] = mask
            mask_by_stem.setdefault(mask.stem.removesuffix("_mask"), mask)
        image_files = _images_in(images)
        unmatched = [image.name for image in image_files if image.stem not in mask_by_stem]
        if unmatched:
            raise DataError(
                f"{len(unmatched)} image(s) in {images} have no mask in {masks} (same stem, or "
                f"stem + '_mask'), e.g. {unmatched[:5]}; add the masks or move those images out."
            )
        pairs = [(image, mask_by_stem[image.stem]) for image in image_files]
        super().__init__(pairs, task=task, num_classes=num_classes, image_size=image_size,
                         train=train, origin=str(folder))


def _missing_data_hint(spec: DatasetSpec, root) -> str:
    command = "synth" if spec.synthetic else "download"
    return f"run `convlora data {command} {spec.name} --root {root}` first"


def build_dataset(spec: str | DatasetSpec, split: str, root, image_size: int, train: bool,
                  check_files: bool = True, cache_bytes: int = 0) -> PairedSegmentationDataset:
    """The ``split`` of the registered dataset ``spec`` under ``root``.

    Args:
        spec: a registry name (``"polyp"``, ``"synth_camo"``, ...) or a DatasetSpec; layouts
            ``"csv"``, ``"trans10k"`` and ``"folder"`` (``splits`` maps to folders holding
            ``images/`` and ``masks/``) are supported.
        split: one of the spec's splits (``"train"``, ``"val"``, a test split); an unknown one
            raises ConfigError listing them.
        root: the data root (``{root}/{folder}/...``).
        image_size: side S of the square output.
        train: training mode (random horizontal flip); use False for val/test.
        check_files: check up front that every listed file exists.
        cache_bytes: see :meth:`PairedSegmentationDataset.keep_in_memory` (0: decode every read).

    Used in notebooks 02 and 10."""
    if isinstance(spec, str):
        spec = get_dataset_spec(spec)
    path = spec.split_path(root, split)
    if not path.exists():
        raise DataError(f"{spec.title}: {path} does not exist; {_missing_data_hint(spec, root)}.")
    common = dict(num_classes=spec.num_classes, image_size=image_size, train=train)
    if spec.layout == "csv":
        dataset = CsvSegmentationDataset(path, task=spec.task, **common)
    elif spec.layout == "trans10k":
        dataset = Trans10KDataset(path, **common)
    elif spec.layout == "folder":
        dataset = FolderSegmentationDataset(path, task=spec.task, **common)
    else:
        raise ConfigError(f"dataset {spec.name!r} has an unknown layout {spec.layout!r}; "
                        "use 'csv', 'trans10k' or 'folder'.")
    if check_files:
        dataset.check_files()
    return dataset.keep_in_memory(cache_bytes)


def build_splits(spec: DatasetSpec, root, image_size: int,
                 cache_bytes: int = 0) -> dict[str, PairedSegmentationDataset]:
    """``{"train", "val", *spec.test_splits}`` -> the dataset of that split (training mode for
    ``train`` only), each keeping up to ``cache_bytes`` of decoded samples in memory."""
    return {split: build_dataset(spec, split, root, image_size, train=(split == "train"), cache_bytes=cache_bytes)
            for split in spec.all_splits}
