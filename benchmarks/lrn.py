"""LRN forward+backward on CPU: torch's F.local_response_norm, shifted sums under autograd (LocalResponseNorm's
CPU path before alexnet.model.lrn), and alexnet.model.lrn.local_response_norm (analytic backward, what LocalResponseNorm
uses on CPU now); then the embedded net's training step with each.

    python benchmarks/lrn.py [--repeats 10] [--paper-repeats 3] [--threads N]

Part 1 times one LRN layer (n=5, alpha=1e-4 in cuda-convnet's convention, beta=0.75, k=2) at conv1's output
shape in the embedded net (128x24x23x23) and in the paper's net (128x96x55x55), on activations on the 0-255
scale (ReLU of randn * 50), and prints the largest differences from torch's output and input gradient.
Part 2 times forward + cross entropy + backward of the embedded net (Fashion-MNIST, width 0.25) with
LocalResponseNorm on torch's kernel (cpu_kernel=False), on alexnet.model.lrn (the default), and with LRN off; LRN's
share of the step is (t_with - t_without) / t_with. Repeats are interleaved; times are medians of wall time.

On a machine whose cores other processes are using, run it with --threads 1: with 2 threads every op's
parallel region can wait a time slice for its second thread, and the timings measure the scheduler.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from alexnet.model.lrn import LocalResponseNorm, local_response_norm
from alexnet.model.net import AlexNet

N, ALPHA, BETA, K = 5, 1e-4, 0.75, 2.0
NET = dict(
    num_classes=10,
    in_channels=1,
    input_size=28,
    width=0.25,
    fc_width=512,
    stem_kernel=6,
    stem_stride=1,
    stem_padding=(0, 0, 0, 0),
)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time in ms of each fn, the fns taking turns within every repeat."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def one_shape(
    impls: dict[str, Callable[[torch.Tensor], torch.Tensor]], shape: tuple[int, ...], repeats: int
) -> tuple[dict[str, float], list[str]]:
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(shape, generator=g) * 50).requires_grad_()
    grad_out = torch.randn(shape, generator=g)
    results = {}

    def step(name: str) -> None:
        y = impls[name](x)
        y.backward(grad_out)
        results[name] = (y.detach(), x.grad)
        x.grad = None

    ms = interleaved({name: (lambda name=name: step(name)) for name in impls}, repeats)
    y_ref, dx_ref = results.pop("torch F.lrn")
    diffs = [
        f"  {str(shape):18s} {name:13s} max|y - y_torch| {(y - y_ref).abs().max():.2e} "
        f"(|y| <= {y_ref.abs().max():.0f}), max|dx - dx_torch| {(dx - dx_ref).abs().max():.2e} "
        f"(|dx| <= {dx_ref.abs().max():.2f})"
        for name, (y, dx) in results.items()
    ]
    return ms, diffs


def shifted_sums(x: torch.Tensor) -> torch.Tensor:
    """LocalResponseNorm's CPU path before alexnet.model.lrn: shifted slices of the squares, autograd's backward."""
    c, front = x.shape[1], N // 2
    padded = F.pad(x.square(), (0, 0, 0, 0, front, N - 1 - front))
    window = sum(padded[:, i : i + c] for i in range(N))
    return x / (window * (ALPHA / N) + K).pow(BETA)


def lrn_layers(repeats_by_shape: dict[tuple[int, ...], int]) -> None:
    layer = LocalResponseNorm(n=N, alpha=ALPHA, beta=BETA, k=K, alpha_convention="cuda_convnet")
    impls = {
        "torch F.lrn": lambda t: F.local_response_norm(t, N, ALPHA, BETA, K),
        "shifted sums": shifted_sums,
        "alexnet.model.lrn": lambda t: local_response_norm(t, N, layer.scale, BETA, K),
    }
    print("LRN layer, forward + backward (ms, median):")
    print(
        f"{'shape':18s}" + "".join(f"{name:>14s}" for name in impls) + "   speed-up of alexnet.model.lrn vs those two"
    )
    all_diffs = []
    for shape, repeats in repeats_by_shape.items():
        ms, diffs = one_shape(impls, shape, repeats)
        ours = ms["alexnet.model.lrn"]
        print(
            f"{str(shape):18s}" + "".join(f"{t:14.1f}" for t in ms.values()) + "   "
            f"{ms['torch F.lrn'] / ours:.1f}x, {ms['shifted sums'] / ours:.1f}x  ({repeats} repeats)"
        )
        all_diffs += diffs
    print("Differences from torch's output and input gradient (float32):")
    print("\n".join(all_diffs))


def training_step(repeats: int) -> None:
    torch.manual_seed(0)
    ours = AlexNet(**NET)  # LocalResponseNorm on CPU: alexnet.model.lrn
    as_is = copy.deepcopy(ours)  # torch's kernel
    for m in as_is.modules():
        if isinstance(m, LocalResponseNorm):
            m.cpu_kernel = False
    off = AlexNet(**NET, lrn={"enabled": False})
    off.load_state_dict(ours.state_dict())
    nets = {"torch F.lrn": as_is, "alexnet.model.lrn": ours, "LRN off": off}
    x = torch.randint(0, 256, (128, 1, 28, 28), generator=torch.Generator().manual_seed(1)).float() - 72
    y = torch.randint(0, 10, (128,), generator=torch.Generator().manual_seed(2))

    def step(net: AlexNet) -> None:
        torch.manual_seed(3)  # the same dropout masks for every net
        F.cross_entropy(net(x), y).backward()

    # The same function: the same conv1 gradient, in float64 (in float32, last-bit differences in LRN's output
    # move some of max pooling's argmaxes among near-equal values, and with them parts of the gradient).
    grads = []
    for net in (as_is, ours):
        net64 = copy.deepcopy(net).double()
        torch.manual_seed(3)
        F.cross_entropy(net64(x.double()), y).backward()
        grads.append(net64.conv1.weight.grad)
    diff = (grads[0] - grads[1]).abs().max() / grads[0].abs().max()
    ms = interleaved({name: (lambda net=net: step(net)) for name, net in nets.items()}, repeats, warmup=2)
    print(f"Embedded net training step (forward + cross entropy + backward, batch 128x1x28x28), {repeats} repeats:")
    print("".join(f"{name:>16s}" for name in ms) + "  (ms/step, median)")
    print("".join(f"{t:16.1f}" for t in ms.values()))
    for name in ("torch F.lrn", "alexnet.model.lrn"):
        share = (ms[name] - ms["LRN off"]) / ms[name]
        print(f"LRN's share of the step with {name:13s}: {share:6.1%}")
    print(f"conv1 weight gradient in float64, alexnet.model.lrn vs torch F.lrn: max relative difference {diff:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="for the embedded net's shape and step")
    parser.add_argument("--paper-repeats", type=int, default=3, help="for the paper net's shape (seconds each)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU, float32, threads={torch.get_num_threads()}")
    lrn_layers({(128, 24, 23, 23): args.repeats, (128, 96, 55, 55): args.paper_repeats})
    print()
    training_step(args.repeats)


if __name__ == "__main__":
    main()
