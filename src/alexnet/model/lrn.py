"""Local Response Normalisation (Krizhevsky et al. 2012, §3.3): the layer the paper describes.

    b_i = a_i d_i^-beta,    d_i = k + scale * sum_{j = i - n//2}^{i + n - 1 - n//2} a_j^2

over the maps j of one tower (channel group), cut at the group's edges (zero padding). `scale` is the paper's
alpha, or alpha / n in cuda-convnet's convention (which torch and Caffe share). For even n the window holds
n//2 maps before i and n//2 - 1 after, as in torch's F.local_response_norm.

The fast kernels that compute it (and why they are hand-written) are in lrn_kernels.py; `denominator` below is the
formula written plainly, shifted sums of the squares.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.config.schema import require
from alexnet.model.lrn_kernels import channels_last, local_response_norm

__all__ = ["LocalResponseNorm", "local_response_norm", "lrn_layer"]
ARGUMENTS = ("n", "alpha", "beta", "k", "alpha_convention", "mode")  # model.lrn's keys that build the layer


class LocalResponseNorm(nn.Module):
    """§3.3: b = a / (k + alpha * sum of a^2 over n adjacent maps)^beta, within each tower.

    `convention="paper"` is the formula as printed; `"cuda_convnet"` divides alpha by n, as the
    author's code (and PyTorch, and Caffe) do. With the paper's constants the two differ 5x in alpha.
    `groups=2` keeps the sum inside each tower's maps, as on the two GPUs: the last map of tower A
    and the first of tower B are not neighbours. `mode="constant"` is a control, not the paper's layer: it
    multiplies by k^-beta, the factor LRN applies where the maps are silent (0.595 with the paper's constants),
    so that an ablation can compare normalisation against its own scale rather than against no layer at all.
    """

    def __init__(
        self,
        n: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 2.0,
        alpha_convention: str = "cuda_convnet",
        groups: int = 1,
        mode: str = "normalise",
    ) -> None:
        super().__init__()
        require("model.lrn", n=n, alpha=alpha, beta=beta, k=k, alpha_convention=alpha_convention, mode=mode)
        self.n, self.alpha, self.beta, self.k = n, alpha, beta, k
        self.alpha_convention, self.groups, self.mode = alpha_convention, groups, mode
        # the coefficient of the sum of squares in the denominator
        self.scale = alpha if alpha_convention == "paper" else alpha / n
        self.cpu_kernel = True  # alexnet.model.lrn on CPU (False: torch's kernel there too); the same function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "constant":
            return x * self.k**-self.beta
        if channels_last(x):  # NHWC on any device: a product with the window matrix, no copy to NCHW and back
            return local_response_norm(x, self.n, self.scale, self.beta, self.k, self.groups)
        if x.is_cuda or not self.cpu_kernel:  # NCHW on a GPU: torch's kernel (benchmarks/lrn.py)
            b, c, h, w = x.shape
            y = F.local_response_norm(x.reshape(b * self.groups, c // self.groups, h, w), self.n, self.scale * self.n,
                                      self.beta, self.k)  # fmt: skip
            return y.reshape(b, c, h, w)
        # NCHW on CPU: our analytic-backward kernel; LRN was 30-40% of the embedded net's step with torch's or with
        # shifted sums under autograd, about 12% with it (benchmarks/lrn.py)
        return local_response_norm(x, self.n, self.scale, self.beta, self.k, self.groups)

    @torch.no_grad()
    def denominator(self, x: torch.Tensor) -> torch.Tensor:
        """(k + alpha' * sum of a^2 over the window)^beta at every unit of `x` (this layer's input): 1 x k^beta
        everywhere means the layer only rescales (benchmarks/lrn_quantiles.py). Written plainly, as shifted sums
        of the squares within each tower, cut at its edges."""
        b, c, h, w = x.shape
        squares = x.reshape(b * self.groups, c // self.groups, h, w).square()
        front = self.n // 2  # maps i - n/2 ... i + n - 1 - n/2
        padded = F.pad(squares, (0, 0, 0, 0, front, self.n - 1 - front))
        window = sum(padded[:, i : i + c // self.groups] for i in range(self.n))
        return (window * self.scale + self.k).pow(self.beta).reshape(b, c, h, w)

    def extra_repr(self) -> str:
        return (
            f"n={self.n}, alpha={self.alpha} ({self.alpha_convention}), beta={self.beta}, "
            f"k={self.k}, groups={self.groups}" + (", mode=constant (k^-beta)" if self.mode == "constant" else "")
        )


def lrn_layer(settings: Mapping[str, Any], groups: int) -> nn.Module:
    """The layer `model.lrn` asks for (its keys, or an LRN layer's own attributes), over `groups` towers; nn.Identity
    where LRN is off."""
    if isinstance(settings, nn.Identity) or not _get(settings, "enabled", True):
        return nn.Identity()
    return LocalResponseNorm(**{k: _get(settings, k) for k in ARGUMENTS if _get(settings, k) is not None},
                             groups=groups)  # fmt: skip


def _get(settings: Any, key: str, default: Any = None) -> Any:
    return settings.get(key, default) if isinstance(settings, Mapping) else getattr(settings, key, default)
