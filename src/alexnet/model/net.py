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
from torch import nn

from alexnet.config.schema import require
from alexnet.geometry import maps, pool_geometry
from alexnet.model.lrn import lrn_layer

# Kernels per conv layer in the paper's net (both towers together), Figure 2.
PAPER_CONV_CHANNELS = (96, 256, 384, 384, 256)
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
# Fan-in of every layer of the paper's net (kernel area x input maps per tower, Figure 2): the gain_matched
# init scales N(0, 0.01) by sqrt(paper fan-in / this net's fan-in), so that a smaller net's signal keeps the
# size it has in the paper's net; on the paper's net itself it is the paper's init exactly.
PAPER_FAN_IN = {
    "conv1": 11 * 11 * 3, "conv2": 5 * 5 * 48, "conv3": 3 * 3 * 256, "conv4": 3 * 3 * 192, "conv5": 3 * 3 * 192,
    "fc6": 256 * 6 * 6, "fc7": 4096, "fc8": 4096,
}  # fmt: skip


class Dropout(nn.Module):
    """§4.2: each hidden unit's output is zeroed with probability p during training.

    `style="paper"`: the kept outputs are left as they are, and at test time every output is multiplied by
    1 - p ("we use all the neurons but multiply their outputs by 0.5"). `"inverted"`: PyTorch's nn.Dropout,
    which scales the kept outputs by 1 / (1 - p) in training and does nothing at test. Both compute the same
    function at test; in training the layers after an inverted dropout see twice the paper's signal at p=0.5.
    The mask is drawn with `draw_mask`, so the two-device net can draw one mask for both towers (towers.py)
    and match the grouped net draw for draw.
    """

    def __init__(self, p: float = 0.5, style: str = "paper") -> None:
        super().__init__()
        require("model", dropout=p, dropout_style=style)
        self.p, self.style = p, style
        self.generator: torch.Generator | None = None  # the run's dropout stream (callbacks.RandomStreams)

    def draw_mask(self, shape: Sequence[int], device: torch.device) -> torch.Tensor:
        """True where a unit is kept; one uniform draw per unit, from the dropout stream if one is attached."""
        if self.generator is not None and self.generator.device != torch.device(device):
            raise RuntimeError(f"dropout stream on {self.generator.device}, masks wanted on {device}")
        return torch.rand(tuple(shape), device=device, generator=self.generator) >= self.p

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        if self.p == 0.0:
            return x
        if not self.training:
            return x * (1.0 - self.p) if self.style == "paper" else x
        keep = self.draw_mask(x.shape, x.device) if keep is None else keep
        gain = 1.0 if self.style == "paper" else 1.0 / (1.0 - self.p)
        return x * (keep.to(x.dtype) * gain)

    def extra_repr(self) -> str:
        return f"p={self.p}, style={self.style}"


def conv_channels(width: float, towers: str) -> list[int]:
    """Kernels per conv layer. The one-tower net of §3.2 halves every conv layer but the last."""
    channels = [max(2, 2 * round(c * width / 2)) for c in PAPER_CONV_CHANNELS]  # even: 2 towers
    if towers == "one":
        channels = [c // 2 for c in channels[:4]] + channels[4:]
    return channels


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
        dropout_style: str = "paper",
        towers: str = "two",
        init: str = "paper",
        pool_edges: str = "floor",
    ) -> None:
        super().__init__()
        require("model", width=width, fc_width=fc_width, stem_kernel=stem_kernel, stem_stride=stem_stride,
                stem_padding=list(stem_padding), activation=activation, pooling=pooling, dropout=dropout,
                dropout_style=dropout_style, towers=towers, init=init, pool_edges=pool_edges)  # fmt: skip
        lrn = {"enabled": True, **(lrn or {})}

        g = 2 if towers == "two" else 1
        c1, c2, c3, c4, c5 = conv_channels(width, towers)
        act = ACTIVATIONS[activation]

        # 224 vs 227 (docs/fidelity.md): we keep the paper's 224 input and pad conv1's right and bottom edges
        # by 3 zeros, which is what the author's cuda-convnet2 does by rounding output sizes up:
        # (224 + 3 - 11) / 4 + 1 = 55 exactly, and no kernel position is wasted on padding alone. The maps before
        # pool1, pool2 and pool5 and each pooling's padding: geometry.maps.
        self.maps = maps(input_size, stem_kernel, stem_stride, stem_padding, pooling, pool_edges)
        self.pool_inputs, pads = self.maps.pool_inputs, self.maps.pads
        (h5, w5), (z, s) = self.maps.pool5, self.maps.window
        (h1, w1) = self.conv1_size = self.maps.conv1
        if min(h5, w5) < 1:
            raise ValueError(
                f"input_size={input_size} is too small for stem_kernel={stem_kernel}, "
                f"stem_stride={stem_stride}: conv1 gives {h1}x{w1} and pool5 {h5}x{w5}"
            )

        # Registered in the order the data flows (Fig. 2), so that print(net) reads as the figure: ReLU after
        # every learned layer but the last, LRN after conv1 and conv2, max-pooling after both LRNs and conv5
        # (§3.5), dropout on the outputs of fc6 and fc7 (§4.2). Pooling in floor mode (pool_edges="floor"): on the
        # paper's odd maps 3/2 holds every position and 2/2 drops the last row and column; "cover" pads with -inf
        # where needed so that no position is lost (ablate_pooling, on even maps: both arms the same sizes).
        self.pad = nn.ZeroPad2d(tuple(stem_padding))
        self.conv1 = nn.Conv2d(in_channels, c1, stem_kernel, stem_stride)  # sees the whole image
        self.act1, self.lrn1, self.pool1 = act(), lrn_layer(lrn, g), nn.MaxPool2d(z, s, pads[0])
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2, groups=g)  # within tower
        self.act2, self.lrn2, self.pool2 = act(), lrn_layer(lrn, g), nn.MaxPool2d(z, s, pads[1])
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)  # across towers
        self.act3 = act()
        self.conv4 = nn.Conv2d(c3, c4, 3, padding=1, groups=g)  # within tower
        self.act4 = act()
        self.conv5 = nn.Conv2d(c4, c5, 3, padding=1, groups=g)  # within tower
        self.act5, self.pool5 = act(), nn.MaxPool2d(z, s, pads[2])
        self.fc6 = nn.Linear(c5 * h5 * w5, fc_width)  # 256 * 6 * 6 = 9216 in the paper's net
        self.act6, self.drop6 = act(), Dropout(dropout, dropout_style)
        self.fc7 = nn.Linear(fc_width, fc_width)
        self.act7, self.drop7 = act(), Dropout(dropout, dropout_style)
        self.fc8 = nn.Linear(fc_width, num_classes)
        self.reset_parameters(init)

    def pool_geometry(self) -> list[dict[str, Any]]:
        """Per max-pooling: input, window, stride, padding, output and the share of rows and columns held."""
        return pool_geometry(self.maps)

    def reset_parameters(self, init: str = "paper") -> None:
        for name in PAPER_FAN_IN:
            m = getattr(self, name)
            if init == "kaiming":  # He et al. 2015; a departure from the paper, kept as a switch
                nonlinearity = "tanh" if isinstance(self.act, nn.Tanh) else "relu"
                nn.init.kaiming_normal_(m.weight, nonlinearity=nonlinearity)
                nn.init.zeros_(m.bias)
                continue
            # §5: N(0, 0.01) weights; gain_matched scales them to keep the paper's net's signal in a smaller net
            fan_in = m.weight[0].numel()
            std = 0.01 * (PAPER_FAN_IN[name] / fan_in) ** 0.5 if init == "gain_matched" else 0.01
            nn.init.normal_(m.weight, 0.0, std)
            # ... and biases 1 in conv2, conv4, conv5 and the hidden FC layers, 0 elsewhere
            nn.init.constant_(m.bias, 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0)

    # one of each kind, for code that asks what the net's activation, pooling or dropout is (all uses share it)
    act = property(lambda self: self.act1)
    pool = property(lambda self: self.pool1)
    dropout = property(lambda self: self.drop6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.lrn1(self.act1(self.conv1(self.pad(x)))))
        x = self.pool2(self.lrn2(self.act2(self.conv2(x))))
        x = self.act3(self.conv3(x))
        x = self.act4(self.conv4(x))
        x = self.pool5(self.act5(self.conv5(x)))
        x = torch.flatten(x, 1)
        x = self.drop6(self.act6(self.fc6(x)))
        x = self.drop7(self.act7(self.fc7(x)))
        return self.fc8(x)
