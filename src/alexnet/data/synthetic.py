"""Random images of any shape, for smoke tests and benchmarks of the full paper net."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from alexnet.data.base import ImageDataModule


class RandomImages(Dataset):
    """Image i is the same uint8 noise every time it is read (seeded by i); label i % classes."""

    def __init__(self, size: int, channels: int, stored_size: int, num_classes: int, seed: int) -> None:
        self.size, self.shape = size, (channels, stored_size, stored_size)
        self.num_classes, self.seed = num_classes, seed

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        return torch.randint(0, 256, self.shape, dtype=torch.uint8, generator=g), i % self.num_classes


class SyntheticDataModule(ImageDataModule):
    def __init__(
        self, train_size: int = 512, val_size: int = 128, test_size: int = 128, seed: int = 0, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.seed = seed

    def load(self) -> None:
        self.mean = [0.5] * self.channels  # the mean of uniform noise on [0, 1]
        self.sources = {
            split: RandomImages(n, self.channels, self.stored_size, self.num_classes, self.seed + k)
            for k, (split, n) in enumerate(self.sizes.items())
        }
