"""The one small sweep that notebooks 08 (all methods), 09 (visualisations) and 10 (local prior)
share, so that each run is trained once.

All three call :func:`run_sweep` with the same preset, folders and checkpoint; it trains what is
missing through :func:`convlora_lite.reproduce.reproduce` (finished runs are skipped, interrupted
ones resume) into ``{output_dir}/sweep_{preset}/{dataset}/{method}/seed{seed}``.

What the notebooks change from the training presets, and only on the offline presets (the
``colab`` and ``paper`` presets run the official recipe unchanged):

* ``cpu``: 3 epochs of at most 4 batches of 4 images, validation and test on at most 4 batches
  (the ``cpu`` preset trains 8 full epochs and scores every image), so that four methods train in
  a few minutes on a 2-core CPU; the synthetic analogs at their default size.
* ``smoke``: the preset as it is (1 epoch of 3 batches), on tiny synthetic analogs (4 training
  images of 64 px) kept in ``{data_root}/smoke`` so they never replace the full-size ones.
"""
from __future__ import annotations

from pathlib import Path

from .data.registry import get_dataset_spec

#: TrainConfig overrides the notebooks apply on top of each preset.
NOTEBOOK_BUDGET: dict[str, dict] = {"smoke": {}, "cpu": {"epochs": 3, "max_train_batches": 4, "max_eval_batches": 4}}

#: generate_synthetic sizes per offline preset (cpu: the library's defaults).
SYNTHETIC_SIZES: dict[str, dict] = {"smoke": {"n_train": 4, "n_val": 2, "n_test": 2, "image_size": 64}, "cpu": {}}


def notebook_data_root(preset: str, data_root) -> Path:
    """Where a notebook's datasets live: ``data_root``, or ``data_root/smoke`` for ``smoke``."""
    root = Path(data_root).resolve()
    return root / "smoke" if preset == "smoke" else root


def ensure_synthetic(datasets, preset: str, data_root) -> Path:
    """Generate every missing ``synth_<task>`` of ``datasets`` at the preset's size (real
    datasets are left alone: training says how to download them). Returns the data root used."""
    from .data.synthetic import generate_synthetic

    root = notebook_data_root(preset, data_root)
    for name in datasets:
        spec = get_dataset_spec(name)
        if spec.synthetic and not spec.dataset_dir(root).exists():
            generate_synthetic(spec.name, root, **SYNTHETIC_SIZES.get(preset, {}))
    return root


def sweep_dir(output_dir, preset: str) -> Path:
    """The shared sweep folder of ``preset`` under ``output_dir``."""
    return Path(output_dir).resolve() / f"sweep_{preset}"


def run_sweep(preset: str, datasets, methods, seeds: int, output_dir, data_root, checkpoint="auto",
              log=print) -> Path:
    """Train the grid datasets x methods x ``seeds`` seeds with the notebook budget (see the module
    docstring) and write ``results.md``/``results.csv``; returns the sweep folder."""
    from .reproduce import reproduce

    root = ensure_synthetic(datasets, preset, data_root)
    folder = sweep_dir(output_dir, preset)
    reproduce(preset, list(datasets), list(methods), seeds, output_dir=folder, log=log, data_root=str(root),
              checkpoint=checkpoint, **NOTEBOOK_BUDGET.get(preset, {}))
    return folder


def run_path(folder, dataset: str, method: str, seed: int) -> Path:
    """The run directory of (dataset, method, seed) in a sweep folder."""
    return Path(folder) / dataset / method / f"seed{seed}"
