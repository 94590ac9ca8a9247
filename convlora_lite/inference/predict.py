"""Masks for a set of image files, written to a folder: what ``convlora predict`` does.

:func:`predict_files` expands the inputs (files, folders, glob patterns), segments them in batches
with a :class:`~convlora_lite.inference.segmenter.Segmenter` and writes, under ``output_dir``:

* ``masks/<stem>.png``: one mask per image at the image's own size; binary 0/255 grayscale,
  multi-class an index PNG (pixel = class id) with a palette;
* ``probabilities/<stem>.png`` (binary, probability x 255) or ``probabilities/<stem>.npy``
  (multi-class, float16 ``(K, H, W)`` class scores), with ``probabilities=True``;
* ``overlays/<stem>.png``: the mask drawn over the image, with ``overlays=True``;
* ``predictions.csv``: per image its file, mask, size and predicted foreground fraction (pixels
  not background) and, given ``masks_dir`` (ground truth ``<stem>.*`` or ``<stem>_mask.*``), its
  scores with the task's metrics.

Every file is written atomically. Existing outputs are not replaced unless ``overwrite``. An
input that cannot be read (or that shares its stem with an earlier one) is reported and skipped;
the others are still written.
"""
from __future__ import annotations

import csv
import glob
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from convlora_lite.data.datasets import IMAGE_SUFFIXES
from convlora_lite.errors import DataError, UserError
from convlora_lite.io import atomic_write

_BASE_PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                 (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128)]


def palette(num_classes: int) -> list[int]:
    """A flat 256-entry RGB palette: class 0 black, then distinct colours (seeded beyond 12), 255 white."""
    colours = list(_BASE_PALETTE)
    rng = np.random.default_rng(0)
    while len(colours) < 256:
        colours.append(tuple(int(v) for v in rng.integers(40, 256, 3)))
    colours[255] = (255, 255, 255)
    return [v for colour in colours for v in colour]


def expand_inputs(inputs: Sequence[str]) -> tuple[list[Path], list[str]]:
    """(image files, problems): each input a file, a folder (its image files) or a glob pattern."""
    files, problems = [], []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append(f"{item}: a folder with no images")
            files += found
        elif path.is_file():
            files.append(path)
        elif any(c in item for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not found:
                problems.append(f"{item}: the pattern matches no file")
            files += found
        else:
            problems.append(f"{item}: no such file or folder")
    return files, problems


def _save_png(path: Path, image: Image.Image) -> None:
    def write(tmp: Path) -> None:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        tmp.write_bytes(buffer.getvalue())
    atomic_write(path, write)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


def _ground_truth(masks_dir: Path, stem: str) -> Optional[Path]:
    for name in (stem, f"{stem}_mask"):
        for suffix in IMAGE_SUFFIXES:
            if (masks_dir / f"{name}{suffix}").is_file():
                return masks_dir / f"{name}{suffix}"
    return None


def tinted_mask(image: Image.Image, mask: np.ndarray, binary: bool, num_classes: int) -> Image.Image:
    """``mask`` over ``image``: foreground (or each class) tinted at half opacity."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    colours = np.asarray(palette(num_classes), dtype=np.float32).reshape(256, 3)
    tint = colours[np.where(mask > 0, 1, 0)] if binary else colours[mask]
    alpha = (mask > 0)[..., None] * 0.5
    return Image.fromarray(np.clip(rgb * (1 - alpha) + tint * alpha, 0, 255).astype(np.uint8))


@dataclass
class PredictReport:
    """What :func:`predict_files` did: written image files, skipped inputs with why, the CSV."""

    output_dir: Path
    written: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    csv: Optional[Path] = None
    rows: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _score(segmenter, probabilities: np.ndarray, mask: np.ndarray, truth_path: Path) -> dict:
    import torch

    from convlora_lite.data.transforms import binary_labels, class_labels
    from convlora_lite.training.metrics import task_metrics

    truth_image = Image.open(truth_path)
    if truth_image.size != (mask.shape[1], mask.shape[0]):
        raise DataError(f"ground truth {truth_path} is {truth_image.size[0]}x{truth_image.size[1]}, the image is "
                        f"{mask.shape[1]}x{mask.shape[0]}")
    metrics = task_metrics(segmenter.spec, segmenter.config.num_classes)
    if segmenter.is_binary:
        truth = binary_labels(truth_image, str(truth_path))
        metrics.update(torch.from_numpy(probabilities[None]), torch.from_numpy(truth[None].astype(np.float32)))
    else:
        truth = class_labels(truth_image, segmenter.config.num_classes, str(truth_path))
        metrics.update(torch.from_numpy(mask[None].astype(np.int64)), torch.from_numpy(truth[None].astype(np.int64)))
    return {k: float(v) for k, v in metrics.compute().items() if isinstance(v, (int, float))}


def predict_files(segmenter, inputs: Sequence[str], output_dir, *, probabilities: bool = False,
                  overlays: bool = False, masks_dir=None, overwrite: bool = False,
                  progress: bool = True) -> PredictReport:
    """Segment ``inputs`` and write the results under ``output_dir`` (see the module docstring).

    Raises UserError (before writing anything) when no input names an image file, or when an
    output exists and ``overwrite`` is False; returns a report whose ``failed`` lists the skipped
    inputs.
    Used in notebook 11."""
    from convlora_lite.progress import progress_bar

    out = Path(output_dir)
    report = PredictReport(out)
    files, report.failed = expand_inputs(inputs)
    seen: dict[str, Path] = {}
    unique = []
    for file in files:
        if file.stem in seen:
            report.failed.append(f"{file}: same stem as {seen[file.stem]} (its mask would overwrite that one)")
        else:
            seen[file.stem] = file
            unique.append(file)
    if not unique:
        raise UserError("no image to segment: " + ("; ".join(report.failed) or "no inputs given"))
    binary = segmenter.is_binary
    prob_suffix = ".png" if binary else ".npy"

    def targets(file: Path) -> list[Path]:
        paths = [out / "masks" / f"{file.stem}.png"]
        if probabilities:
            paths.append(out / "probabilities" / f"{file.stem}{prob_suffix}")
        if overlays:
            paths.append(out / "overlays" / f"{file.stem}.png")
        return paths

    existing = [p for file in unique for p in targets(file) if p.exists()]
    if (out / "predictions.csv").exists():
        existing.append(out / "predictions.csv")
    if existing and not overwrite:
        shown = ", ".join(str(p) for p in existing[:5])
        raise UserError(f"{len(existing)} output file(s) already exist, e.g. {shown}; pass --overwrite to replace "
                        "them, or choose another --output-dir.")
    masks_dir = Path(masks_dir) if masks_dir is not None else None
    if masks_dir is not None and not masks_dir.is_dir():
        raise UserError(f"--masks {masks_dir} is not a folder of ground-truth masks.")
    bar = progress_bar(total=len(unique), desc="predict", disable=not progress)
    for start in range(0, len(unique), segmenter.batch_size):
        batch = []
        for file in unique[start:start + segmenter.batch_size]:
            try:
                image = Image.open(file)
                image.load()
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
                report.failed.append(f"{file}: not a readable image ({error})")
                bar.update(1)
            else:
                batch.append((file, image))
        if not batch:
            continue
        scores = segmenter.probabilities_batch([image for _, image in batch])
        for (file, image), score in zip(batch, scores):
            mask = segmenter.mask_of(score)
            paths = targets(file)
            if binary:
                _save_png(paths[0], Image.fromarray(mask * 255))
            else:
                indexed = Image.fromarray(mask, mode="P")
                indexed.putpalette(palette(segmenter.config.num_classes))
                _save_png(paths[0], indexed)
            if probabilities:
                if binary:
                    _save_png(paths[1], Image.fromarray(np.clip(np.rint(score * 255), 0, 255).astype(np.uint8)))
                else:
                    atomic_write(paths[1], lambda tmp, s=score: _save_npy(tmp, s.astype(np.float16)))
            if overlays:
                _save_png(paths[-1], tinted_mask(image, mask, binary, segmenter.config.num_classes))
            row = {"image": str(file), "mask": str(paths[0]), "width": image.size[0], "height": image.size[1],
                   "foreground_fraction": float((mask > 0).mean())}
            if masks_dir is not None:
                truth = _ground_truth(masks_dir, file.stem)
                if truth is None:
                    row["ground_truth"] = ""
                else:
                    row["ground_truth"] = str(truth)
                    try:
                        row.update(_score(segmenter, score, mask, truth))
                    except (DataError, OSError) as error:
                        report.failed.append(f"{file}: cannot score against {truth}: {error}")
            report.rows.append(row)
            report.written.append(file)
            bar.update(1)
    bar.close()
    if report.rows:
        columns = list(dict.fromkeys(k for row in report.rows for k in row))

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows(report.rows)
        report.csv = out / "predictions.csv"
        atomic_write(report.csv, write)
    return report
