"""The dataset registry: one :class:`DatasetSpec` per paper task, and an offline analog of each.

A spec says where a dataset comes from (URL, checksum, Google Drive id), how it lies on disk
(``layout``, ``splits``), what it contains (``task``, ``classes``) and the official recipe that
trains and scores it (``loss``, ``select_metric``/``select_mode``, ``epochs``, ``lr``, ``metrics``).

Sources:

* The six binary tasks are the AutoGluon zips that the Conv-LoRA example downloads
  (``autogluon/examples/automm/Conv-LoRA/prepare_semantic_segmentation_datasets.py``); the
  per-task loss, selection metric, epochs and learning rate come from
  ``get_default_training_setting`` in ``run_semantic_segmentation.py`` of the same example.
* Trans10K-v2 is distributed on Google Drive. The file id is the one the PaddleViT semantic
  segmentation README gives for "Trans10kV2" (``BR-IDL/PaddleViT``,
  ``semantic_segmentation/README_cn.md``: ``drive.google.com/file/d/1YzAAMY8xfL9BMTIDU-nFC3dcGbSIBPu5``;
  Baidu mirror ``pan.baidu.com/s/1P-2l-Q2brbnwRd2kXi--Dg``, code ``oqms``). The class order is the
  one of ``TransparentSegmentation.classes`` in Trans2Seg
  (``xieenze/Trans2Seg``, ``segmentron/data/dataloader/transparent11.py``): background, Shelf,
  Jar or Tank, Freezer, Window, Glass Door, Eyeglass, Cup, Floor Glass (wall), Glass Bowl,
  Water Bottle, Storage Box; mask pixel value = class index.
* The official example has no Trans10K entry, so its epochs and lr are that script's defaults
  (30 epochs, 1e-4); the loss (set loss) and selection (mIoU) follow the paper.

No sha256 of the official zips is published, so ``sha256`` is None for all of them; the fetcher
then checks the archive's CRCs instead (``zipfile.ZipFile.testzip``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from convlora_lite.errors import ConfigError

#: where the official zips live; ``{OFFICIAL_BASE_URL}/{zip name}.zip``.
OFFICIAL_BASE_URL = "https://automl-mm-bench.s3.amazonaws.com/semantic_segmentation"

BINARY_CLASSES = ("background", "foreground")

#: Trans10K-v2 classes in label order (mask value = index); short names of Trans2Seg's classes.
TRANS10K_CLASSES = (
    "background", "shelf", "jar", "freezer", "window", "door",
    "eyeglass", "cup", "wall", "bowl", "bottle", "box",
)

#: the value that marks "ignore" in multi-class label maps.
IGNORE_INDEX = 255


class TaskShape:
    """What every task spec (a registry task, a user's own data) derives from its ``classes`` and
    ``test_splits``."""

    classes: tuple
    test_splits: tuple

    @property
    def num_classes(self) -> int:
        """Number of classes, background included (2 for binary tasks)."""
        return len(self.classes)

    @property
    def all_splits(self) -> tuple:
        """Every split in reading order: ``("train", "val", *test_splits)``."""
        return ("train", "val", *self.test_splits)


@dataclass(frozen=True)
class DatasetSpec(TaskShape):
    """Everything known about one dataset: source, layout, classes and the official recipe.

    ``layout == "csv"``: ``{root}/{folder}/{folder}/`` holds ``train.csv``, ``val.csv`` and the test
    CSVs; their ``image`` and ``label`` columns are paths relative to that folder.
    ``layout == "trans10k"``: ``{root}/{folder}/{train,validation,test}/{images,masks_12}`` with
    ``images/N.jpg`` and ``masks_12/N_mask.png`` (palette PNG, value = class index).
    ``folder`` is the zip's name for the official zips (e.g. ``camo_sem_seg``), else ``name``.
    """

    name: str
    title: str
    domain: str
    task: str
    layout: str
    splits: dict
    test_splits: tuple
    classes: tuple
    metrics: tuple
    loss: str
    select_metric: str
    select_mode: str
    epochs: int
    lr: float
    url: str | None
    sha256: str | None
    gdrive_id: str | None
    synthetic: bool

    @property
    def folder(self) -> str:
        """The folder name under ``root``: the zip's stem for an official zip, else the name."""
        if self.url is not None:
            return Path(urlparse(self.url).path).stem
        return self.name

    @property
    def archive_name(self) -> str | None:
        """The file name of the official archive (``polyp.zip``), or None when there is no URL."""
        return None if self.url is None else Path(urlparse(self.url).path).name


    def dataset_dir(self, root) -> Path:
        """The folder that holds the split CSVs (csv layout) or split folders (trans10k layout)."""
        if self.layout == "csv":
            return Path(root) / self.folder / self.folder
        return Path(root) / self.folder

    def split_path(self, root, split: str) -> Path:
        """The CSV file (csv layout) or split folder (trans10k layout) of ``split``."""
        if split not in self.splits:
            raise ConfigError(
                f"dataset {self.name!r} has no split {split!r}; choose one of {', '.join(self.splits)}"
            )
        return self.dataset_dir(root) / self.splits[split]


def _binary(name, title, domain, folder, test_splits, metrics, loss, select_metric, select_mode,
            epochs, lr) -> DatasetSpec:
    """A binary task from the official AutoGluon zips (csv layout)."""
    return DatasetSpec(
        name=name, title=title, domain=domain, task="binary", layout="csv",
        splits={"train": "train.csv", "val": "val.csv", **test_splits},
        test_splits=tuple(test_splits), classes=BINARY_CLASSES, metrics=metrics, loss=loss,
        select_metric=select_metric, select_mode=select_mode, epochs=epochs, lr=lr,
        url=f"{OFFICIAL_BASE_URL}/{folder}.zip", sha256=None, gdrive_id=None, synthetic=False,
    )


_SOD = ("s_alpha", "e_phi")
_REAL = (
    _binary("polyp", "Kvasir-SEG + CVC-ClinicDB (polyp)", "medical", "polyp",
            {"test_kvasir": "test_Kvasir.csv", "test_cvc": "test_CVC-ClinicDB.csv"},
            _SOD, "structure", "s_alpha", "max", 30, 1e-4),
    _binary("isic2017", "ISIC 2017 (skin lesion)", "medical", "isic2017", {"test": "test.csv"},
            ("iou", "dice"), "structure", "iou", "max", 30, 1e-4),
    _binary("camo", "CAMO (camouflaged object)", "natural", "camo_sem_seg", {"test": "test_CAMO.csv"},
            (*_SOD, "f_beta_w"), "structure", "s_alpha", "max", 20, 1e-4),
    _binary("sbu", "SBU (shadow)", "natural", "SBU-shadow", {"test": "test.csv"},
            ("ber",), "balanced_bce", "ber", "min", 10, 1e-4),
    _binary("leaf", "Leaf disease segmentation", "agriculture", "leaf_disease_segmentation",
            {"test": "test.csv"}, ("iou", "dice"), "structure", "iou", "max", 30, 3e-4),
    _binary("road", "Massachusetts roads", "remote_sensing", "road_segmentation", {"test": "test.csv"},
            ("iou", "dice"), "structure", "iou", "max", 20, 3e-4),
    DatasetSpec(
        name="trans10k", title="Trans10K-v2 (transparent objects, 11 classes + background)",
        domain="multiclass", task="multiclass", layout="trans10k",
        splits={"train": "train", "val": "validation", "test": "test"}, test_splits=("test",),
        classes=TRANS10K_CLASSES, metrics=("acc", "miou", "iou_per_class"), loss="set",
        select_metric="miou", select_mode="max", epochs=30, lr=1e-4,
        url=None, sha256=None, gdrive_id="1YzAAMY8xfL9BMTIDU-nFC3dcGbSIBPu5", synthetic=False,
    ),
)


def _synthetic_analog(spec: DatasetSpec) -> DatasetSpec:
    """The offline analog of ``spec``: same task, layout, classes, metrics, loss and selection;
    splits train/val/test; nothing to download (``convlora data synth`` writes it)."""
    test_file = "test.csv" if spec.layout == "csv" else "test"
    return replace(
        spec, name=f"synth_{spec.name}", title=f"Synthetic analog of {spec.title}",
        splits={"train": spec.splits["train"], "val": spec.splits["val"], "test": test_file},
        test_splits=("test",), url=None, sha256=None, gdrive_id=None, synthetic=True,
    )


def _prior_task(kind: str) -> DatasetSpec:
    """A controlled binary task of the local-prior experiment (``docs/experiments/local_prior.md``,
    :mod:`convlora_lite.data.prior_scenes`): ISIC 2017's binary recipe (structure loss, IoU selection,
    30 epochs, lr 1e-4), which the ``cpu`` preset overrides to 4 epochs at lr 2e-3."""
    return DatasetSpec(
        name=f"synth_prior_{kind}", title=f"Local-prior experiment, {kind} task (controlled, synthetic)",
        domain="controlled", task="binary", layout="csv",
        splits={"train": "train.csv", "val": "val.csv", "test": "test.csv"}, test_splits=("test",),
        classes=BINARY_CLASSES, metrics=("iou", "dice"), loss="structure", select_metric="iou", select_mode="max",
        epochs=30, lr=1e-4, url=None, sha256=None, gdrive_id=None, synthetic=True,
    )


#: every dataset by name: the seven real ones, their synthetic analogs, then the local-prior experiment's tasks.
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (*_REAL, *map(_synthetic_analog, _REAL), *map(_prior_task, ("texture", "colour")))
}


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec registered under ``name``; ConfigError listing the known names otherwise.
    Used in notebooks 00, 08, 09 and 10."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)} "
            "(`convlora data list` shows them with their recipes)"
        ) from None
