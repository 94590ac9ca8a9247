"""Reading a ``cpu`` run's data every epoch: decoding each image and mask again, against keeping the
decoded samples in memory (``PairedSegmentationDataset.keep_in_memory``, what the trainer does with
``num_workers=0``). The items are the same either way (``tests/data/test_datasets.py``).

    python benchmarks/data_cache_bench.py --root /tmp/bench_data --epochs 4

Generates ``synth_polyp`` under ``--root`` when it is missing, then reads the training split
(64 images at 256 px) and the validation split (16) once per epoch, as a run does, and prints the
seconds each way and the memory the kept samples take.
"""
import argparse
import time

import torch

from convlora_lite.data.datasets import build_splits
from convlora_lite.data.install import ensure_dataset
from convlora_lite.data.registry import get_dataset_spec
from convlora_lite.training.trainer import DATA_CACHE_BYTES


def read_epochs(splits: dict, epochs: int) -> float:
    """Seconds to read every item of ``train`` and ``val`` ``epochs`` times."""
    torch.manual_seed(0)
    start = time.perf_counter()
    for _ in range(epochs):
        for split in ("train", "val"):
            for index in range(len(splits[split])):
                splits[split][index]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/bench_data")
    parser.add_argument("--dataset", default="synth_polyp")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    spec = get_dataset_spec(args.dataset)
    ensure_dataset(spec, args.root)
    decoded = read_epochs(build_splits(spec, args.root, 256), args.epochs)
    kept_splits = build_splits(spec, args.root, 256, cache_bytes=DATA_CACHE_BYTES)
    kept = read_epochs(kept_splits, args.epochs)
    held = kept_splits["train"].kept_bytes + kept_splits["val"].kept_bytes
    print(f"{args.dataset}, {args.epochs} epochs of train + val: decoded every time {decoded:.2f} s, "
          f"kept in memory {kept:.2f} s ({held / 2**20:.0f} MiB kept)")


if __name__ == "__main__":
    main()
