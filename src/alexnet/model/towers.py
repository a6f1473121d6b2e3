"""§3.2: the net split over two devices, one tower on each, as the paper trained it on two GTX 580s.

Each tower holds half the kernels of conv1-conv5 and half the units of fc6 and fc7. The towers
exchange activations only where the paper says: conv3, fc6 and fc7 read both towers' outputs; fc8
lives on the first device, which reads both towers' fc7 (the softmax, loss and metrics are there too,
so the logits need no further move). Everything else stays on its own device.

`TwoTowerAlexNet` computes the same function as the grouped one-device `AlexNet` with the same
parameters, and either loads the other's state dict (`towers_to_grouped`, `grouped_to_towers`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from alexnet.config.schema import require
from alexnet.model.lrn import lrn_layer
from alexnet.model.net import AlexNet

SPLIT_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")  # halved by output unit


class Tower(nn.Module):
    """One device's half: layers cut from a grouped AlexNet along their output units."""

    def __init__(self, net: AlexNet) -> None:
        super().__init__()
        self.pad, self.act, self.dropout = (copy.deepcopy(m) for m in (net.pad, net.act, net.dropout))
        # each pooling its own: with pool_edges="cover" their padding can differ
        self.pool1, self.pool2, self.pool5 = (copy.deepcopy(m) for m in (net.pool1, net.pool2, net.pool5))
        self.lrn1, self.lrn2 = (lrn_layer(m, groups=1) for m in (net.lrn1, net.lrn2))  # one tower's maps
        for name in SPLIT_LAYERS:
            layer = getattr(net, name)
            if isinstance(layer, nn.Conv2d):
                half = nn.Conv2d(
                    layer.in_channels // layer.groups,  # conv2/4/5 see their own tower, conv1/3 everything
                    layer.out_channels // 2,
                    layer.kernel_size,
                    layer.stride,
                    layer.padding,
                )
            else:
                half = nn.Linear(layer.in_features, layer.out_features // 2)
            setattr(self, name, half)


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    # Copies onto a GPU are ordered on its stream, so they need not block; a copy from a GPU into
    # ordinary host memory must, or the CPU tower could read it before it has arrived.
    return x.to(device, non_blocking=device.type == "cuda")


def _cross(mine: torch.Tensor, theirs: torch.Tensor, first: bool) -> torch.Tensor:
    """Both towers' activations on this tower's device, tower A's channels first."""
    theirs = _to(theirs, mine.device)
    return torch.cat((mine, theirs) if first else (theirs, mine), dim=1)


class TwoTowerAlexNet(nn.Module):
    def __init__(self, devices: Sequence[str | torch.device] = ("cpu", "cpu"), **alexnet_kwargs: Any) -> None:
        super().__init__()
        require("model", devices=[str(d) for d in devices])
        if alexnet_kwargs.get("towers", "two") != "two":
            raise ValueError("towers='one' has a single tower: it cannot be split over two devices (devices=null)")
        if alexnet_kwargs.get("fc_width", 4096) % 2:
            raise ValueError(f"fc_width={alexnet_kwargs['fc_width']}: must be even to split over two towers")
        grouped = AlexNet(**alexnet_kwargs)  # the same initialisation as the one-device net
        self.devices = [torch.device(d) for d in devices]
        with torch.random.fork_rng(devices=[]):  # their init is overwritten: leave the RNG as the grouped net does
            self.towers = nn.ModuleList([Tower(grouped), Tower(grouped)])
            self.fc8 = nn.Linear(grouped.fc8.in_features, grouped.fc8.out_features)
        self.load_state_dict(grouped_to_towers(grouped.state_dict()))

    def place(self) -> TwoTowerAlexNet:
        """Tower i on devices[i], fc8 on devices[0]. Call after anything that moved the whole module."""
        for tower, device in zip(self.towers, self.devices, strict=True):
            tower.to(device)
        self.fc8.to(self.devices[0])
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.towers
        xa, xb = _to(x, self.devices[0]), _to(x, self.devices[1])
        ha, hb = (t.pool1(t.lrn1(t.act(t.conv1(t.pad(v))))) for t, v in ((a, xa), (b, xb)))
        ha, hb = (t.pool2(t.lrn2(t.act(t.conv2(v)))) for t, v in ((a, ha), (b, hb)))
        ha, hb = a.act(a.conv3(_cross(ha, hb, True))), b.act(b.conv3(_cross(hb, ha, False)))  # exchange
        ha, hb = (t.pool5(t.act(t.conv5(t.act(t.conv4(v))))) for t, v in ((a, ha), (b, hb)))
        ha, hb = ha.flatten(1), hb.flatten(1)
        ha, hb = self._dropout(a.act(a.fc6(_cross(ha, hb, True))), b.act(b.fc6(_cross(hb, ha, False))))
        ha, hb = self._dropout(a.act(a.fc7(_cross(ha, hb, True))), b.act(b.fc7(_cross(hb, ha, False))))
        return self.fc8(_cross(ha, hb, True))

    def _dropout(self, ha: torch.Tensor, hb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One mask over both towers' units, drawn on the first device as the grouped net draws it over the whole
        layer: the same seed gives the same masks, so the split trains exactly as the grouped net."""
        a, b = self.towers
        if not (a.dropout.training and a.dropout.p > 0):
            return a.dropout(ha), b.dropout(hb)
        keep = a.dropout.draw_mask((len(ha), ha.shape[1] + hb.shape[1]), ha.device)
        keep_a, keep_b = keep.split([ha.shape[1], hb.shape[1]], dim=1)
        return a.dropout(ha, keep_a), b.dropout(hb, _to(keep_b, hb.device))


def convert_in_place(state_dict: dict, prefix: str, convert) -> None:
    """Replace the entries under `prefix` by `convert` of them (for loading across the two layouts)."""
    mine = {k[len(prefix) :]: state_dict.pop(k) for k in [k for k in state_dict if k.startswith(prefix)]}
    state_dict.update({prefix + k: v for k, v in convert(mine).items()})


def grouped_to_towers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """AlexNet's state dict -> TwoTowerAlexNet's: every split layer cut in half along its outputs."""
    out = {f"fc8.{p}": state[f"fc8.{p}"] for p in ("weight", "bias")}
    for name in SPLIT_LAYERS:
        for p in ("weight", "bias"):
            halves = state[f"{name}.{p}"].chunk(2, dim=0)
            for i, half in enumerate(halves):
                out[f"towers.{i}.{name}.{p}"] = half.clone()
    return out


def towers_to_grouped(state: Mapping[str, torch.Tensor], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """TwoTowerAlexNet's state dict -> AlexNet's, on one device."""
    out = {f"fc8.{p}": state[f"fc8.{p}"].to(device) for p in ("weight", "bias")}
    for name in SPLIT_LAYERS:
        for p in ("weight", "bias"):
            out[f"{name}.{p}"] = torch.cat([state[f"towers.{i}.{name}.{p}"].to(device) for i in range(2)])
    return out


def in_layout_of(net: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str = "net.") -> dict:
    """`state_dict` with the weights under `prefix` in `net`'s layout: a two-device run's towers joined for the
    grouped net, or a grouped run's layers split for the two towers, so that a run trained on two devices is
    evaluated on one and the other way round. Explicit, where a checkpoint is loaded: no load converts silently."""
    state = dict(state_dict)
    if isinstance(net, AlexNet) and f"{prefix}towers.0.conv1.weight" in state:
        convert_in_place(state, prefix, towers_to_grouped)
    elif isinstance(net, TwoTowerAlexNet) and f"{prefix}conv1.weight" in state:
        convert_in_place(state, prefix, grouped_to_towers)
    return state


def build_net(devices: Sequence[str] | None = None, **alexnet_kwargs: Any) -> nn.Module:
    """The config's model: the grouped one-device net, or with `devices=[A, B]` the two-device split."""
    if devices:
        return TwoTowerAlexNet(list(devices), **alexnet_kwargs)
    return AlexNet(**alexnet_kwargs)
