"""LRN forward+backward time: torch's F.local_response_norm against our shifted sums of squares.

LocalResponseNorm uses the shifted sums on CPU and torch's kernel on GPUs: this script is why.

    python benchmarks/lrn.py [--device cpu|cuda] [--repeats 20]

Both compute the same function (checked below). Shapes: conv1's output in the embedded mini net
(128x24x23x23) and in the paper's net (128x96x55x55).
"""

import argparse
import time

import torch
import torch.nn.functional as F

from alexnet import LocalResponseNorm


def timed(fn, x: torch.Tensor, repeats: int) -> float:
    for _ in range(3):
        fn(x).sum().backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x).sum().backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    ours = LocalResponseNorm(n=5, alpha=1e-4, beta=0.75, k=2.0, alpha_convention="cuda_convnet")
    print(f"device={args.device} threads={torch.get_num_threads()}")
    for shape in ((128, 24, 23, 23), (128, 96, 55, 55)):
        x = (torch.randn(shape, device=args.device) * 10).requires_grad_()
        torch.testing.assert_close(ours(x), F.local_response_norm(x, 5, 1e-4, 0.75, 2.0))
        t_torch = timed(lambda t: F.local_response_norm(t, 5, 1e-4, 0.75, 2.0), x, args.repeats)
        t_ours = timed(ours._shifted_sums, x, args.repeats)
        print(
            f"{tuple(shape)}: torch {t_torch * 1e3:.1f} ms, ours {t_ours * 1e3:.1f} ms, "
            f"speed-up {t_torch / t_ours:.2f}x"
        )


if __name__ == "__main__":
    main()
