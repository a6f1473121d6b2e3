"""§4.1 augmentation and the 10-crop test, shared by every data module.

Images arrive as uint8 CxSxS tensors at the stored size (256x256 for ILSVRC; 32x32 for the embedded
Fashion-MNIST). Training takes a random crop of the crop size (224; 28) and mirrors it with
probability 0.5; testing takes the centre crop, or the four corners and the centre plus their
mirrors, whose softmax outputs the model averages. Every path subtracts the training-set mean.
Training can add the PCA colour noise of §4.1 (RGB data only).

Pixel scale. The net sees raw pixel values, 0-255, minus the training mean, as the author's pipeline fed it:
§3.3's LRN constants (k=2, alpha=1e-4) belong to that scale. On [0, 1] pixels every activation is ~255x
smaller, alpha*sum(a^2) vanishes next to k, and LRN becomes the constant factor k^-beta (measured: the
denominator equal to 2^0.75 to four digits at every unit). `pixel_max` is the value of a white pixel: 255
(the paper) or 1 (the common [0, 1] convention, kept as a switch). The training-set statistics (mean pixel, PCA
eigen decomposition) are stored on the [0, 1] scale whatever the net sees (STATS_SCALE), and scaled here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alexnet.config.schema import require

PAPER_PIXEL_MAX = 255.0  # a white pixel as the net sees it: raw pixel values, as the author's code
STATS_SCALE = "[0, 1]"  # the scale of stored means and eigenvalues (stats.json, checkpoints), whatever pixel_max


def to_float(img: torch.Tensor, pixel_max: float = PAPER_PIXEL_MAX) -> torch.Tensor:
    """uint8 in [0, 255] -> float in [0, pixel_max] (255: the raw values, the paper's scale)."""
    x = img.float()
    return x if pixel_max == 255.0 else x.mul_(pixel_max / 255.0)


# §4.1's PCA colour noise with the widely used ImageNet values: eigenvalues are variances of pixels on the
# [0, 1] scale (STATS_SCALE; not standard deviations on [0, 255], as cuda-convnet2 used them: about twice the
# shift); column i of EIGVEC is the eigenvector p_i of the 3x3 RGB covariance. The fallback when no stats.json
# was computed from the training set (python src/prepare.py).
PUBLISHED_EIGVAL = (0.2175, 0.0188, 0.0045)
PUBLISHED_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def pca_shift(
    alpha: torch.Tensor, eigval: torch.Tensor, eigvec: torch.Tensor, pixel_max: float = PAPER_PIXEL_MAX
) -> torch.Tensor:
    """§4.1: the RGB shift sum_i p_i * alpha_i * lambda_i added to every pixel of one image, as 3x1x1.
    `eigval` are variances on the [0, 1] scale; the shift is returned on the net's scale (x pixel_max), so it has
    the same size in grey levels whatever the net sees: about 3.2 levels of std per channel with the published
    values and alpha ~ N(0, 0.1)."""
    return (eigvec @ (alpha * eigval)).view(3, 1, 1) * pixel_max


def crop(img: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    return img[..., top : top + size, left : left + size]


def center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    return crop(img, (h - size) // 2, (w - size) // 2, size)


def ten_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """§4.1 test: four corner patches, the centre patch, and their horizontal mirrors -> 10xCxsxs (one CxHxW image)
    or Bx10xCxsxs (a BxCxHxW batch)."""
    h, w = img.shape[-2:]
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size)]
    patches = [crop(img, t, left, size) for t, left in corners] + [center_crop(img, size)]
    patches += [p.flip(-1) for p in patches]
    return torch.stack(patches, dim=-4)  # 10xCxsxs, or Bx10xCxsxs for a batch


class TrainTransform:
    """Random crop (or centre crop) + random horizontal flip, PCA colour noise if `pca`, mean subtraction.

    `mean` and `eigval` are on the [0, 1] scale (STATS_SCALE) and scaled to `pixel_max` here; alpha_i is drawn
    from N(0, pca_std) afresh for every image each time it is presented (§4.1: pca_std = 0.1)."""

    def __init__(
        self,
        crop_size: int,
        mean: Sequence[float],
        random_crop: bool = True,
        flip: bool = True,
        pca: bool = False,
        eigval: Sequence[float] = PUBLISHED_EIGVAL,
        eigvec: Sequence[Sequence[float]] = PUBLISHED_EIGVEC,
        pca_std: float = 0.1,
        pixel_max: float = PAPER_PIXEL_MAX,
    ) -> None:
        self.crop_size, self.random_crop, self.flip, self.pca = crop_size, random_crop, flip, pca
        self.pixel_max = pixel_max
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1) * pixel_max
        self.eigval = torch.as_tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.as_tensor(eigvec, dtype=torch.float32)
        self.pca_std = pca_std
        if pca and (self.eigval.shape != (3,) or self.eigvec.shape != (3, 3)):
            raise ValueError("PCA colour noise needs 3 eigenvalues and a 3x3 eigenvector matrix (RGB)")

    def draw(self, h: int, w: int, g: torch.Generator | None = None) -> tuple[int, int, bool, torch.Tensor]:
        """One presentation's random choices for an HxW image: crop offsets, flip, and the shift of its colours
        (3 values on the net's scale; zeros without PCA). `g`: the generator of this presentation (streams.py); None
        draws from torch's global one. The draws are always the same four (offsets, flip, alpha), whatever is
        switched off, so that arms that differ in one augmentation see the same draws for the others."""
        size = self.crop_size
        top = int(torch.randint(h - size + 1, (), generator=g))
        left = int(torch.randint(w - size + 1, (), generator=g))
        flip = bool(torch.rand((), generator=g) < 0.5)
        alpha = torch.randn(3, generator=g) * self.pca_std
        if not self.random_crop:
            top, left = (h - size) // 2, (w - size) // 2
        shift = pca_shift(alpha, self.eigval, self.eigvec, self.pixel_max).flatten() if self.pca else torch.zeros(3)
        return top, left, self.flip and flip, shift

    def __call__(self, img: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        top, left, flip, shift = self.draw(*img.shape[-2:], g)
        img = crop(img, top, left, self.crop_size)
        if flip:
            img = img.flip(-1)
        x = to_float(img, self.pixel_max)
        if self.pca:
            x = x + shift.view(3, 1, 1)
        return x - self.mean


class EvalTransform:
    """Centre crop (`crops=1`) or the ten patches of §4.1 (`crops=10`), mean subtracted."""

    def __init__(
        self, crop_size: int, mean: Sequence[float], crops: int = 1, pixel_max: float = PAPER_PIXEL_MAX
    ) -> None:
        require("data", test_crops=crops)
        self.crop_size, self.crops, self.pixel_max = crop_size, crops, pixel_max
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1) * pixel_max

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        patches = ten_crop(img, self.crop_size) if self.crops == 10 else center_crop(img, self.crop_size)
        return to_float(patches, self.pixel_max) - self.mean
