"""The sweep folder the notebooks share (00 and 03 to 10), so that each run is trained once.

Each notebook calls :func:`run_sweep` (or ``fit`` on :func:`run_path`) with the same preset,
folders and checkpoint; it trains what is missing through :func:`convlora_lite.training.sweep.reproduce`
(finished runs are read back, interrupted ones resume) into
``{output_dir}/sweep_{preset}/{dataset}/{method}/seed{seed}``.

The notebooks train with the presets as they are (``cpu``: 8 epochs of batch 4 on the 64
training images of an analog, under a minute per run for micro_sam on a 2-core CPU). The only
offline adjustment is the data: on ``smoke`` the synthetic analogs are tiny (4 training images of
64 px) and kept in ``{data_root}/smoke`` so they never replace the full-size ones.
"""
from __future__ import annotations

from pathlib import Path

from convlora_lite.data.install import is_installed
from convlora_lite.data.registry import get_dataset_spec

#: generate_synthetic sizes per offline preset (cpu: the library's defaults).
SYNTHETIC_SIZES: dict[str, dict] = {"smoke": {"n_train": 4, "n_val": 2, "n_test": 2, "image_size": 64}, "cpu": {}}


def notebook_data_root(preset: str, data_root) -> Path:
    """Where a notebook's datasets live: ``data_root``, or ``data_root/smoke`` for ``smoke``."""
    root = Path(data_root).resolve()
    return root / "smoke" if preset == "smoke" else root


def ensure_synthetic(datasets, preset: str, data_root) -> Path:
    """Generate every ``synth_<task>`` of ``datasets`` that is not installed (missing, or its
    generation was interrupted; :func:`~convlora_lite.data.install.is_installed`) at the preset's
    size. Real datasets are left alone: the notebooks' ``download_dataset`` installs them, and
    accepts a folder once ``convlora data install`` adopted it. Returns the data root used."""
    from convlora_lite.data.synthetic import generate_synthetic

    root = notebook_data_root(preset, data_root)
    for name in datasets:
        spec = get_dataset_spec(name)
        if spec.synthetic and not is_installed(spec, root):
            generate_synthetic(spec.name, root, **SYNTHETIC_SIZES.get(preset, {}))
    return root


def sweep_dir(output_dir, preset: str) -> Path:
    """The shared sweep folder of ``preset`` under ``output_dir``."""
    return Path(output_dir).resolve() / f"sweep_{preset}"


def run_sweep(preset: str, datasets, methods, seeds: int, output_dir, data_root, checkpoint="auto",
              log=print) -> Path:
    """Train the grid datasets x methods x ``seeds`` seeds on ``preset`` (finished runs are read back)
    and write ``results.md``/``results.csv``; returns the sweep folder."""
    from convlora_lite.training.sweep import reproduce

    root = ensure_synthetic(datasets, preset, data_root)
    folder = sweep_dir(output_dir, preset)
    reproduce(preset, list(datasets), list(methods), seeds, output_dir=folder, log=log, data_root=str(root),
              checkpoint=checkpoint)
    return folder


def run_path(folder, dataset: str, method: str, seed: int) -> Path:
    """The run directory of (dataset, method, seed) in a sweep folder."""
    return Path(folder) / dataset / method / f"seed{seed}"
