"""The structure loss's 31 x 31 box average: PyTorch's 2-D pool against the two 1-D passes of
``convlora_lite.training.losses.box_mean``, and the whole loss with its backward, on a batch of the
``cpu`` preset (4 x 1 x 256 x 256).

    python benchmarks/structure_loss_bench.py --threads 2 --repeats 20

Prints the median time of each (milliseconds) and the largest difference between the two averages.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from convlora_lite.training.losses import box_mean, structure_loss


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    mask = (torch.rand(4, 1, 256, 256) > 0.5).float()
    logits = torch.randn(4, 1, 256, 256, requires_grad=True)
    pool = median_ms(lambda: F.avg_pool2d(mask, 31, stride=1, padding=15), args.repeats)
    box = median_ms(lambda: box_mean(mask, 31), args.repeats)
    loss = median_ms(lambda: structure_loss(logits, mask).backward(), args.repeats)
    diff = (F.avg_pool2d(mask, 31, stride=1, padding=15) - box_mean(mask, 31)).abs().max().item()
    print(f"torch {torch.__version__}, {args.threads} thread(s), 4 x 1 x 256 x 256")
    print(f"F.avg_pool2d 31x31: {pool:.1f} ms | box_mean: {box:.1f} ms | structure loss + backward: {loss:.1f} ms")
    print(f"largest difference between the two averages: {diff:.2e}")


if __name__ == "__main__":
    main()
