"""The network of §3: eight learned layers, ReLU, LRN, overlapping pooling, dropout, two towers.

`AlexNet()` with no arguments is the paper's net: 3x224x224 in, 1000 classes out, 60,965,224
parameters. Neurons per layer: 290,400 (conv1; the paper's caption says 253,440, a known typo for
55*55*96), 186,624, 64,896, 64,896, 43,264, 4096, 4096, 1000. The two towers of §3.2 live on one
device here as grouped convolutions (conv2, conv4, conv5 see only their own tower; conv3 and the FC
layers see both): the same function with the same parameters as the two-GPU net (towers.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Kernels per conv layer in the paper's net (both towers together), Figure 2.
PAPER_CONV_CHANNELS = (96, 256, 384, 384, 256)
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
POOLINGS = {"overlapping": (3, 2), "non_overlapping": (2, 2)}  # (z, s) of §3.4
LRN_CONVENTIONS = ("paper", "cuda_convnet")
TOWERS = ("two", "one")
INITS = ("paper", "kaiming")


class LocalResponseNorm(nn.Module):
    """§3.3: b = a / (k + alpha * sum of a^2 over n adjacent maps)^beta, within each tower.

    `convention="paper"` is the formula as printed; `"cuda_convnet"` divides alpha by n, as the
    author's code (and PyTorch, and Caffe) do. With the paper's constants the two differ 5x in alpha.
    `groups=2` keeps the sum inside each tower's maps, as on the two GPUs: the last map of tower A
    and the first of tower B are not neighbours.
    """

    def __init__(
        self,
        n: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 2.0,
        alpha_convention: str = "cuda_convnet",
        groups: int = 1,
    ) -> None:
        super().__init__()
        if alpha_convention not in LRN_CONVENTIONS:
            raise ValueError(f"alpha_convention={alpha_convention!r}: allowed {LRN_CONVENTIONS}")
        self.n, self.alpha, self.beta, self.k = n, alpha, beta, k
        self.alpha_convention, self.groups = alpha_convention, groups
        # the coefficient of the sum of squares in the denominator
        self.scale = alpha if alpha_convention == "paper" else alpha / n
        self.shifted_sums_on_cpu = True  # both paths compute the same function; see _shifted_sums

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        per_tower = x.reshape(b * self.groups, c // self.groups, h, w)
        if x.is_cuda or not self.shifted_sums_on_cpu:  # torch's kernel is the faster one on GPUs
            y = F.local_response_norm(per_tower, self.n, self.scale * self.n, self.beta, self.k)
        else:
            y = self._shifted_sums(per_tower)
        return y.reshape(b, c, h, w)

    def _shifted_sums(self, x: torch.Tensor) -> torch.Tensor:
        # The sum over n adjacent maps as n shifted slices of the squares. torch's local_response_norm
        # gets it from avg_pool3d, which is slower on CPU for the small maps of the embedded net, where
        # LRN was half the step time (benchmarks/lrn.py); on a GPU torch's own is faster.
        c = x.shape[1]
        front = self.n // 2  # maps i - n/2 ... i + n/2, cut at the tower's edges (zero padding)
        padded = F.pad(x.square(), (0, 0, 0, 0, front, self.n - 1 - front))
        window = padded[:, :c]
        for i in range(1, self.n):
            window = window + padded[:, i : i + c]
        return x / (window * self.scale + self.k).pow(self.beta)

    def extra_repr(self) -> str:
        return (
            f"n={self.n}, alpha={self.alpha} ({self.alpha_convention}), beta={self.beta}, "
            f"k={self.k}, groups={self.groups}"
        )


def conv_channels(width: float, towers: str) -> list[int]:
    """Kernels per conv layer. The one-tower net of §3.2 halves every conv layer but the last."""
    channels = [max(2, 2 * round(c * width / 2)) for c in PAPER_CONV_CHANNELS]  # even: 2 towers
    if towers == "one":
        channels = [c // 2 for c in channels[:4]] + channels[4:]
    return channels


def _out(size: int, kernel: int, stride: int, pad: int = 0) -> int:
    return (size + pad - kernel) // stride + 1


class AlexNet(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int = 224,
        width: float = 1.0,
        fc_width: int = 4096,
        stem_kernel: int = 11,
        stem_stride: int = 4,
        stem_padding: Sequence[int] = (0, 3, 0, 3),
        activation: str = "relu",
        lrn: dict | None = None,
        pooling: str = "overlapping",
        dropout: float = 0.5,
        towers: str = "two",
        init: str = "paper",
    ) -> None:
        super().__init__()
        for key, value, allowed in (
            ("activation", activation, tuple(ACTIVATIONS)),
            ("pooling", pooling, tuple(POOLINGS)),
            ("towers", towers, TOWERS),
            ("init", init, INITS),
        ):
            if value not in allowed:
                raise ValueError(f"{key}={value!r}: allowed {allowed}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout}: must be in [0, 1); 0 turns dropout off")
        lrn = {"enabled": True, **(lrn or {})}

        g = 2 if towers == "two" else 1
        c1, c2, c3, c4, c5 = conv_channels(width, towers)
        z, s = POOLINGS[pooling]
        act = ACTIVATIONS[activation]

        # 224 vs 227 (PAPER.md): we keep the paper's 224 input and pad conv1's right and bottom edges
        # by 3 zeros, which is what the author's cuda-convnet2 does by rounding output sizes up:
        # (224 + 3 - 11) / 4 + 1 = 55 exactly, and no kernel position is wasted on padding alone.
        self.pad = nn.ZeroPad2d(tuple(stem_padding))
        self.conv1 = nn.Conv2d(in_channels, c1, stem_kernel, stem_stride)  # sees the whole image
        self.lrn1 = self._lrn(lrn, g)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2, groups=g)  # within tower
        self.lrn2 = self._lrn(lrn, g)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)  # across towers
        self.conv4 = nn.Conv2d(c3, c4, 3, padding=1, groups=g)  # within tower
        self.conv5 = nn.Conv2d(c4, c5, 3, padding=1, groups=g)  # within tower
        self.pool = nn.MaxPool2d(z, s)  # floor mode: 3/2 and 2/2 give the same sizes on odd inputs
        self.act = act()

        pad_lr, pad_tb = stem_padding[0] + stem_padding[1], stem_padding[2] + stem_padding[3]
        h1 = _out(input_size, stem_kernel, stem_stride, pad_tb)
        w1 = _out(input_size, stem_kernel, stem_stride, pad_lr)
        h5, w5 = (_out(_out(_out(d, z, s), z, s), z, s) for d in (h1, w1))
        if min(h5, w5) < 1:
            raise ValueError(
                f"input_size={input_size} is too small for stem_kernel={stem_kernel}, "
                f"stem_stride={stem_stride}: conv1 gives {h1}x{w1} and pool5 {h5}x{w5}"
            )
        self.conv1_size = (h1, w1)
        self.fc6 = nn.Linear(c5 * h5 * w5, fc_width)  # 256 * 6 * 6 = 9216 in the paper's net
        self.fc7 = nn.Linear(fc_width, fc_width)
        self.fc8 = nn.Linear(fc_width, num_classes)
        self.dropout = nn.Dropout(dropout)  # §4.2: on the outputs of fc6 and fc7
        self.reset_parameters(init)

    @staticmethod
    def _lrn(cfg: dict, groups: int) -> nn.Module:
        if not cfg["enabled"]:
            return nn.Identity()
        keys = ("n", "alpha", "beta", "k", "alpha_convention")
        return LocalResponseNorm(**{k: cfg[k] for k in keys if k in cfg}, groups=groups)

    def reset_parameters(self, init: str = "paper") -> None:
        layers = [m for m in self.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        for m in layers:
            if init == "paper":  # §5: N(0, 0.01) weights ...
                nn.init.normal_(m.weight, 0.0, 0.01)
            else:  # He et al. 2015; a departure, for small nets that do not train from N(0, 0.01)
                nonlinearity = "tanh" if isinstance(self.act, nn.Tanh) else "relu"
                nn.init.kaiming_normal_(m.weight, nonlinearity=nonlinearity)
            nn.init.zeros_(m.bias)
        if init == "paper":  # ... and biases 1 in conv2, conv4, conv5 and the hidden FC layers.
            for m in (self.conv2, self.conv4, self.conv5, self.fc6, self.fc7):
                nn.init.ones_(m.bias)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        if f"{prefix}towers.0.conv1.weight" in state_dict:  # a two-device net's weights: join them
            from alexnet.towers import convert_in_place, towers_to_grouped

            convert_in_place(state_dict, prefix, towers_to_grouped)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.lrn1(self.act(self.conv1(self.pad(x)))))
        x = self.pool(self.lrn2(self.act(self.conv2(x))))
        x = self.act(self.conv3(x))
        x = self.act(self.conv4(x))
        x = self.pool(self.act(self.conv5(x)))
        x = torch.flatten(x, 1)
        x = self.dropout(self.act(self.fc6(x)))
        x = self.dropout(self.act(self.fc7(x)))
        return self.fc8(x)
