"""§4.1 in batches, on the device the batch lands on (`data.augment_on=device`).

The loader's workers stop at the cheap part: per image they read the uint8 image at the stored size (or, with
`data.resident`, only its index: the whole split then lives on the device as one uint8 tensor) and draw the
presentation's random choices from its own stream (streams.py: crop offsets, flip, colour shift). The heavy part,
cropping, mirroring, conversion to float, colour noise, mean subtraction and the 10 test views, runs once per
batch as tensor operations in the data module's `on_after_batch_transfer`, on the GPU when training on one.

The choices are drawn by the very code the per-image path uses (TrainTransform.draw) and applied with the same
operations in the same order, so a run gives the same numbers either way (tested); only where the work runs moves.
Why by hand: torchvision.transforms.v2 applies one random crop to a whole batch, and DALI or kornia would pull in
dependencies and their own random streams; the paper's per-image choices in a batch are a gather and a few
element-wise operations.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from alexnet.data.transforms import EvalTransform, TrainTransform, center_crop, ten_crop, to_float
from alexnet.streams import generator

PARAMS = 6  # per image: top, left, flip, and the colour shift (3 values on the net's scale)


def choices(transform: TrainTransform, h: int, w: int, g: torch.Generator | None) -> torch.Tensor:
    """One presentation's choices as a float32 row of PARAMS (exact: offsets < 2^24, the shift already float32)."""
    top, left, flip, shift = transform.draw(h, w, g)
    return torch.cat([torch.tensor([top, left, float(flip)]), shift.float()])


def crop_flip(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, size: int
) -> torch.Tensor:
    """BxCxHxW -> BxCxsizexsize, image b cut at (top[b], left[b]) and mirrored where flip[b]: one gather."""
    b, c = images.shape[:2]
    steps = torch.arange(size, device=images.device)
    rows = top.long()[:, None] + steps
    cols = left.long()[:, None] + torch.where(flip[:, None], size - 1 - steps, steps)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return images[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def augment_batch(transform: TrainTransform, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """TrainTransform for a batch: BxCxSxS uint8 and Bx6 choices -> Bxcxsxs floats, minus the mean."""
    flip = params[:, 2] > 0.5
    x = to_float(crop_flip(images, params[:, 0], params[:, 1], flip, transform.crop_size), transform.pixel_max)
    if transform.pca:
        x = x + params[:, 3:].view(-1, 3, 1, 1)
    return x - transform.mean.to(x.device)


def eval_batch(transform: EvalTransform, images: torch.Tensor) -> torch.Tensor:
    """EvalTransform for a batch: the centre crop (Bxcxsxs) or the ten views (Bx10xcxsxs), minus the mean."""
    size = transform.crop_size
    patches = ten_crop(images, size) if transform.crops == 10 else center_crop(images, size)
    return to_float(patches, transform.pixel_max) - transform.mean.to(images.device)


def in_memory(source: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The (images, labels) tensors behind a TensorDataset, or a Subset of one (data.train_subset)."""
    if isinstance(source, TensorDataset):
        return source.tensors[0], source.tensors[1]
    if isinstance(source, Subset):
        images, labels = in_memory(source.dataset)
        keep = torch.as_tensor(source.indices)
        return images[keep], labels[keep]
    raise ValueError(
        f"data.resident needs a data set held in memory as tensors (Fashion-MNIST); {type(source).__name__} is read "
        "from files: use data.resident=false (the loader reads the images, the device still augments them)"
    )


class Presentations(Dataset):
    """What the loader delivers with data.augment_on=device: (uint8 image, choices, label) per training image,
    (uint8 image, label) per evaluation image. With `resident`, the image is its index in the split's tensor; from
    a JPEG store decoded on the device, its bytes. Every image has the stored size."""

    def __init__(
        self, source: Dataset, transform: TrainTransform | None, seed: int, resident: bool, stored_size: int
    ) -> None:
        self.source, self.transform, self.seed, self.size = source, transform, seed, stored_size
        self.labels = in_memory(source)[1] if resident else None

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def _image(self, i: int) -> tuple[Any, int]:
        if self.labels is not None:
            return i, int(self.labels[i])
        return self.source[i]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, ...]:
        epoch, i = key if isinstance(key, tuple) else (None, key)
        img, label = self._image(i)
        if self.transform is None:
            return img, label
        g = generator(self.seed, "augment", epoch, i) if epoch is not None else None
        return img, choices(self.transform, self.size, self.size, g), label
