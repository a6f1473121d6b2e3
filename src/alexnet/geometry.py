"""The net's map sizes and §3.4's pooling windows, in plain integers: what AlexNet builds its layers from
(model/net.py) and what a claim report shows of each arm's pooling (claims/run_tables.py), without building a net.

Pooling in floor mode (pool_edges="floor"): on the paper's odd maps 3/2 holds every position and 2/2 drops the last
row and column; "cover" pads with -inf where needed so that no position is lost (ablate_pooling, on even maps: both
arms the same sizes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

POOLINGS = {"overlapping": (3, 2), "non_overlapping": (2, 2)}  # (z, s) of §3.4


def out_size(size: int, kernel: int, stride: int, pad: int = 0) -> int:
    return (size + pad - kernel) // stride + 1


def pool_padding(size: int, z: int, s: int, edges: str) -> int:
    """Padding (of -inf, on both sides) for a z/s max-pool of a `size` map. "floor": none, and windows that do not fit
    are dropped (floor mode: 2/2 on 23 positions leaves out the last). "cover": the least padding (0 or 1) with which
    every position lies in some window, so no row or column of the map is lost."""
    if edges == "floor":
        return 0
    for pad in (0, 1):
        if pool_coverage(size, z, s, pad)[1] == 1.0:
            return pad
    raise ValueError(f"a {z}/{s} pooling cannot cover {size} positions with one position of padding")


def pool_coverage(size: int, z: int, s: int, pad: int) -> tuple[int, float]:
    """(output size, the fraction of the `size` input positions that some window holds) of a z/s pooling."""
    windows = out_size(size, z, s, 2 * pad)
    held = {i for w in range(windows) for i in range(w * s - pad, w * s - pad + z) if 0 <= i < size}
    return windows, len(held) / size


@dataclass(frozen=True)
class Maps:
    """conv1's output (height, width), the maps entering pool1, pool2 and pool5, each pooling's padding (one int, or
    (height, width) where they differ), pool5's output, and the window (z, s)."""

    conv1: tuple[int, int]
    pool_inputs: list[tuple[int, int]]
    pads: list[Any]
    pool5: tuple[int, int]
    window: tuple[int, int]


def maps(input_size: int = 224, stem_kernel: int = 11, stem_stride: int = 4,
         stem_padding: Sequence[int] = (0, 3, 0, 3), pooling: str = "overlapping",
         pool_edges: str = "floor") -> Maps:  # fmt: skip
    """The map sizes of a net with these settings (conv2-conv5 keep their input's size)."""
    z, s = POOLINGS[pooling]
    pad_lr, pad_tb = stem_padding[0] + stem_padding[1], stem_padding[2] + stem_padding[3]
    h1 = out_size(input_size, stem_kernel, stem_stride, pad_tb)
    w1 = out_size(input_size, stem_kernel, stem_stride, pad_lr)
    inputs: list[tuple[int, int]] = [(h1, w1)]
    pads: list[Any] = []
    for i in range(3):
        pad = tuple(pool_padding(d, z, s, pool_edges) for d in inputs[i])
        pads.append(pad[0] if pad[0] == pad[1] else pad)
        out = tuple(out_size(d, z, s, 2 * p) for d, p in zip(inputs[i], pad, strict=True))
        if i < 2:
            inputs.append(out)
    return Maps((h1, w1), inputs, pads, out, (z, s))


def pool_geometry(m: Maps) -> list[dict[str, Any]]:
    """Per max-pooling (pool1, pool2, pool5): its input map, window and stride, padding, output map and the
    fraction of the input's rows and columns that some window holds (1.0 each: no position lost)."""
    z, s = m.window
    rows = []
    for name, size, pad in zip(("pool1", "pool2", "pool5"), m.pool_inputs, m.pads, strict=True):
        pads = pad if isinstance(pad, tuple) else (pad, pad)
        out = [pool_coverage(d, z, s, p) for d, p in zip(size, pads, strict=True)]
        rows.append({"pool": name, "input": tuple(size), "window": z, "stride": s, "padding": tuple(pads),
                     "output": tuple(o for o, _ in out), "held": tuple(f for _, f in out)})  # fmt: skip
    return rows
