"""Lightning strategies that keep each tower of a TwoTowerAlexNet on its own device.

Lightning's strategies move the whole LightningModule to one root device. Ours let them do that and
then call the net's own `place()`, so a tower moved to the root device goes back where it belongs;
the root device is the first tower's, where batches, logits, loss and metrics live. Everything else
(optimizer set-up, checkpoint restore, precision plugins) is Lightning's own: torch's optimizers
load each state tensor onto the device of its parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

from alexnet.model.towers import TwoTowerAlexNet


def _two_tower_nets(module: torch.nn.Module) -> list[TwoTowerAlexNet]:
    return [m for m in module.modules() if isinstance(m, TwoTowerAlexNet)]


class _TowerPlacement:
    """What both strategies add: towers back on their devices after Lightning moved the module, and
    optimizer state (momentum buffers) beside its parameter after Lightning moved it to the root."""

    tower_devices: list[torch.device]

    def _place_towers(self) -> None:
        for net in _two_tower_nets(self.model):
            net.devices = self.tower_devices
            net.place()

    def model_to_device(self) -> None:
        self.model.to(self.root_device)
        self._place_towers()

    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        super().load_optimizer_state_dict(checkpoint)  # loads, then moves every state to the root
        for optimizer in self.optimizers:
            # torch's own loading puts each state tensor on its parameter's device
            optimizer.load_state_dict(optimizer.state_dict())


def pair_for_rank(devices: Sequence[str], local_rank: int) -> list[torch.device]:
    """Local rank r owns the pair shifted by 2r GPUs: [cuda:0, cuda:1] -> rank 1 gets [cuda:2, cuda:3].
    CPU entries stay CPU, so [cpu, cpu] gives every rank two CPU towers."""
    pair = []
    for d in map(torch.device, devices):
        pair.append(torch.device(d.type, (d.index or 0) + 2 * local_rank) if d.type == "cuda" else d)
    return pair


class TwoDeviceStrategy(_TowerPlacement, SingleDeviceStrategy):
    """One process, two devices: tower A on `devices[0]` (the root device), tower B on `devices[1]`."""

    def __init__(self, devices: Sequence[str], **kwargs) -> None:
        self.tower_devices = [torch.device(d) for d in devices]
        super().__init__(device=self.tower_devices[0], **kwargs)


class PairedDDPStrategy(_TowerPlacement, DDPStrategy):
    """Data parallel over device pairs: each process owns two devices (`pair_for_rank`) and one
    two-tower replica; DistributedDataParallel wraps the multi-device module with device_ids=None,
    so gradients are all-reduced per parameter on that parameter's device."""

    def __init__(self, devices: Sequence[str], **kwargs) -> None:
        types = {torch.device(d).type for d in devices}
        if len(types) != 1:
            raise ValueError(
                f"model.devices={list(devices)} with trainer=ddp (or ddp_sim): DistributedDataParallel needs both "
                "towers on the same kind of device ([cuda:0,cuda:1] or [cpu,cpu])"
            )
        self.pair_template = list(devices)
        super().__init__(**kwargs)

    @property
    def tower_devices(self) -> list[torch.device]:
        return pair_for_rank(self.pair_template, self.local_rank)

    @property
    def root_device(self) -> torch.device:
        return self.tower_devices[0]

    def determine_ddp_device_ids(self) -> list[int] | None:
        return None  # a module spread over two devices: DDP must not pin it to one
