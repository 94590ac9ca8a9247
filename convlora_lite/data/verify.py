"""Check a dataset on disk and list every problem found, not just the first.

:func:`check_layout` is the cheap part (every split listed, every listed file present); the
fetcher runs it on a freshly extracted archive. :func:`verify_dataset` adds the per-file checks:
each image and mask opens and decodes, a mask has its image's size, and mask values are in the
declared classes (binary: a mask that loading accepts, see below; multi-class: class ids or
255 = ignore). A binary mask with values other than {0, 255} or {0, 1} (JPEG masks, such as
Kvasir-SEG's, or anti-aliased edges) is not a problem when loading thresholds it cleanly at half
its full scale (:func:`~convlora_lite.data.transforms.binary_labels`); the report counts them in
``thresholded`` and says so.
The pairs come from :func:`~convlora_lite.data.datasets.build_dataset`, so the check reads the
same files as training does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from convlora_lite.data.datasets import build_dataset
from convlora_lite.data.registry import IGNORE_INDEX, DatasetSpec, get_dataset_spec
from convlora_lite.data.transforms import binary_labels
from convlora_lite.errors import DataError
from convlora_lite.progress import progress_bar

_BINARY_VALUE_SETS = ({0, 255}, {0, 1})


@dataclass
class VerifyReport:
    """What :func:`verify_dataset` found: pairs per split and every problem (empty when fine)."""

    name: str
    dataset_dir: Path
    counts: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    remedy: str = ""
    thresholded: int = 0  # binary masks that are not pure 0/255 or 0/1 but load cleanly

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"{self.name} at {self.dataset_dir}"]
        lines += [f"  {split:<12} {count:>6} pairs" for split, count in self.counts.items()]
        if self.thresholded:
            lines.append(f"Note: {self.thresholded} binary mask(s) hold values other than 0/255 (e.g. JPEG); "
                         "loading thresholds them at half their full scale.")
        if self.ok:
            lines.append("OK: no problems found.")
        else:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  - {problem}" for problem in self.problems]
            lines.append(self.remedy)
        return "\n".join(lines)


def list_pairs(spec: DatasetSpec, root, problems: list) -> dict:
    """split -> [(image path, mask path)] for every split of ``spec`` under ``root``.

    A split that cannot be listed (missing CSV or folder, bad columns, no samples) is left out and
    its reason appended to ``problems``.
    """
    pairs = {}
    for split in spec.all_splits:
        listing = spec.split_path(root, split)
        if not listing.exists():
            problems.append(f"{split}: {listing} does not exist")
            continue
        try:
            dataset = build_dataset(spec, split, root, image_size=64, train=False, check_files=False)
        except DataError as err:
            problems.append(f"{split}: {err}")
        else:
            pairs[split] = dataset.pairs
    return pairs


def check_layout(spec: DatasetSpec, root) -> tuple[dict, list]:
    """(pairs per split, problems): every split listed and every listed file present."""
    problems = []
    pairs = list_pairs(spec, root, problems)
    for split, split_pairs in pairs.items():
        problems += [f"{split}: missing file {path}"
                     for pair in split_pairs for path in pair if not path.is_file()]
    return pairs, problems


def verify_dataset(name: str, root="data", *, progress: bool = True) -> VerifyReport:
    """Check the dataset ``name`` under ``root`` file by file; a report with every problem."""
    spec = get_dataset_spec(name)
    command = f"convlora data {'synth' if spec.synthetic else 'download'} {spec.name} --root {root}"
    report = VerifyReport(spec.name, spec.dataset_dir(root), remedy=(
        f"Fix or remove the files named above, or delete {Path(root) / spec.folder} and run "
        f"`{command}` again."))
    if not report.dataset_dir.is_dir():
        report.problems.append(f"{report.dataset_dir} does not exist; run `{command}`")
        return report
    pairs, report.problems = check_layout(spec, root)
    report.counts = {split: len(split_pairs) for split, split_pairs in pairs.items()}
    for split, split_pairs in pairs.items():
        for image_path, mask_path in progress_bar(split_pairs, desc=f"verify {split}", disable=not progress):
            if image_path.is_file() and mask_path.is_file():
                problems, thresholded = _pair_problems(spec, image_path, mask_path)
                report.problems += [f"{split}: {p}" for p in problems]
                report.thresholded += thresholded
    return report


def _pair_problems(spec: DatasetSpec, image_path: Path, mask_path: Path) -> tuple[list, bool]:
    """(every problem with one present image/mask pair, whether its binary mask needs thresholding)."""
    image, image_problem = _decode(image_path)
    mask, mask_problem = _decode(mask_path)
    problems = [p for p in (image_problem, mask_problem) if p]
    if image is not None and mask is not None and image.size != mask.size:
        problems.append(f"size mismatch: image {image_path} is {image.size[0]}x{image.size[1]}, "
                        f"mask {mask_path} is {mask.size[0]}x{mask.size[1]}")
    thresholded = False
    if mask is not None:
        value_problems, thresholded = _mask_value_problems(spec, mask, mask_path)
        problems += value_problems
    return problems, thresholded


def _decode(path: Path):
    """(decoded PIL image, None) or (None, what is wrong with the file)."""
    try:
        with Image.open(path) as probe:
            probe.verify()  # structure and checksums (PNG CRCs)
        image = Image.open(path)
        image.load()  # full decode: catches truncated pixel data
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return None, f"cannot read {path}: {err}"
    return image, None


def _mask_value_problems(spec: DatasetSpec, mask: Image.Image, mask_path: Path) -> tuple[list, bool]:
    """(values that do not belong in a mask of ``spec``'s task, whether a binary mask is not pure
    0/255 or 0/1 but thresholds cleanly)."""
    if spec.task == "binary":
        values = set(np.unique(np.asarray(mask.convert("L"))).tolist())
        if any(values <= allowed for allowed in _BINARY_VALUE_SETS):
            return [], False
        try:
            binary_labels(mask, str(mask_path))
        except DataError as err:
            return [str(err)], False
        return [], True
    if mask.mode not in ("P", "L"):
        return [f"mask {mask_path} has mode {mask.mode}; class masks are palette or grayscale "
                "PNGs whose pixel value is the class id"], False
    values = np.unique(np.asarray(mask)).tolist()
    bad = [v for v in values if v >= spec.num_classes and v != IGNORE_INDEX]
    if bad:
        return [f"mask {mask_path} has values {bad[:10]} outside the classes 0..{spec.num_classes - 1} "
                f"(and {IGNORE_INDEX} = ignore)"], False
    return [], False
