"""The spec of your own data (:class:`OwnDataSpec`, the task's default recipe in :data:`TASK_DEFAULTS`)
and the seeded split made when the data gives none (:func:`make_split`, :func:`split_keys`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from convlora_lite.data.own.layout import CLASSES_FILE, SPLIT_FRACTIONS, SPLITS, Scan, scan
from convlora_lite.data.registry import BINARY_CLASSES, TaskShape
from convlora_lite.errors import ConfigError, DataError

#: task -> (loss, select_metric, metrics) of the default recipe.
TASK_DEFAULTS = {
    "binary": ("structure", "iou", ("iou", "dice", "s_alpha", "e_phi")),
    "multiclass": ("set", "miou", ("acc", "miou", "iou_per_class")),
}


@dataclass(frozen=True)
class OwnDataSpec(TaskShape):
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

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> "OwnDataSpec":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


# ----------------------------------------------------------------------------------- the spec
def own_spec(data_dir, *, task: Optional[str] = None, name: Optional[str] = None,
             found: Optional[Scan] = None) -> OwnDataSpec:
    """The spec of the data at ``data_dir``: its task (``task``, else multi-class when it declares more
    than two classes), class names and the task's default recipe (a run's ``loss``/``select_metric``
    are applied by :func:`convlora_lite.training.run_data.with_recipe`). Used in notebook 11."""
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
    return OwnDataSpec(
        name=name or f"own_{(path.stem if path.is_file() else path.name) or 'data'}", source=str(path),
        shape=found.shape, task=task, classes=tuple(classes), loss=default_loss, select_metric=default_select,
        select_mode="max", metrics=metrics, test_splits=("test",) if _has_test(found) else (),
    )


def _has_test(found: Scan) -> bool:
    splits = {s.split for s in found.samples}
    return None in splits or "test" in splits or not found.samples


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
