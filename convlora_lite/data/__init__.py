"""Datasets: the registry of specs, download, install + verification, and the torch datasets."""
from convlora_lite.data.install import download_dataset, install_dataset, is_installed
from convlora_lite.data.registry import DATASETS, DatasetSpec, get_dataset_spec
from convlora_lite.data.verify import VerifyReport, verify_dataset

__all__ = ["DATASETS", "DatasetSpec", "get_dataset_spec", "download_dataset", "install_dataset", "is_installed",
           "verify_dataset", "VerifyReport"]

from convlora_lite.data.datasets import (
    CsvSegmentationDataset,
    FolderSegmentationDataset,
    PairedSegmentationDataset,
    Trans10KDataset,
    build_dataset,
)
from convlora_lite.data.synthetic import SYNTHETIC_TASKS, generate_synthetic
from convlora_lite.data.transforms import IMAGENET_MEAN, IMAGENET_STD, SegmentationTransform, denormalize_image

__all__ += [
    "PairedSegmentationDataset", "CsvSegmentationDataset", "Trans10KDataset",
    "FolderSegmentationDataset", "build_dataset", "SYNTHETIC_TASKS", "generate_synthetic",
    "IMAGENET_MEAN", "IMAGENET_STD", "SegmentationTransform", "denormalize_image",
]
