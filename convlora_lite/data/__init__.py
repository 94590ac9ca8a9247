"""Datasets: the registry of specs, download + verification, and the torch datasets."""
# --- registry, download and verification (owner: data-download) ---
from .registry import DATASETS, DatasetSpec, get_dataset_spec

__all__ = ["DATASETS", "DatasetSpec", "get_dataset_spec"]

# --- datasets, transforms and synthetic data (owner: datasets); extend below this line ---
