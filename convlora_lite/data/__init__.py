"""Datasets: the registry of specs, download, install + verification, and the torch datasets."""
# --- registry, download and verification (owner: data-download) ---
from convlora_lite.data.install import download_dataset, install_dataset, is_installed
from convlora_lite.data.registry import DATASETS, DatasetSpec, get_dataset_spec
from convlora_lite.data.verify import VerifyReport, verify_dataset

__all__ = ["DATASETS", "DatasetSpec", "VerifyReport", "download_dataset", "get_dataset_spec", "install_dataset",
           "is_installed", "verify_dataset"]

# --- datasets, transforms and synthetic data (owner: datasets); extend below this line ---
from convlora_lite.data.datasets import (
    CsvSegmentationDataset,
    FolderSegmentationDataset,
    PairedSegmentationDataset,
    Trans10KDataset,
    build_dataset,
)
from convlora_lite.data.synthetic import SYNTHETIC_TASKS, generate_synthetic, preview_figure
from convlora_lite.data.transforms import IMAGENET_MEAN, IMAGENET_STD, SegmentationTransform, denormalize_image

__all__ += [
    "IMAGENET_MEAN", "IMAGENET_STD", "SYNTHETIC_TASKS", "CsvSegmentationDataset", "FolderSegmentationDataset",
    "PairedSegmentationDataset", "SegmentationTransform", "Trans10KDataset", "build_dataset", "denormalize_image",
    "generate_synthetic", "preview_figure",
]
