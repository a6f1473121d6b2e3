"""§4.1 augmentation and the 10-crop test, shared by every data module.

Images arrive as uint8 CxSxS tensors at the stored size (256x256 for ILSVRC; 32x32 for the embedded
Fashion-MNIST). Training takes a random crop of the crop size (224; 28) and mirrors it with
probability 0.5; testing takes the centre crop, or the four corners and the centre plus their
mirrors, whose softmax outputs the model averages. Every path subtracts the training-set mean.
Training can add the PCA colour noise of §4.1 (RGB data only).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def to_float(img: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float in [0, 1]: the pixel scale every later step assumes."""
    return img.float().div_(255.0)


# §4.1's PCA colour noise with the widely used ImageNet values (PAPER.md, Data): eigenvalues are variances of
# pixels in [0, 1] (not standard deviations on [0, 255], as cuda-convnet2 used them: about twice the shift);
# column i of EIGVEC is the eigenvector p_i of the 3x3 RGB covariance. The fallback when no stats.json was
# computed from the training set (python src/prepare.py).
PUBLISHED_EIGVAL = (0.2175, 0.0188, 0.0045)
PUBLISHED_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
PIXEL_SCALE = "[0, 1]"  # the scale the eigenvalues belong to: images after to_float


def pca_shift(alpha: torch.Tensor, eigval: torch.Tensor, eigvec: torch.Tensor) -> torch.Tensor:
    """§4.1: the RGB shift sum_i p_i * alpha_i * lambda_i added to every pixel of one image, as 3x1x1."""
    return (eigvec @ (alpha * eigval)).view(3, 1, 1)


def crop(img: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    return img[..., top : top + size, left : left + size]


def center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    return crop(img, (h - size) // 2, (w - size) // 2, size)


def ten_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """§4.1 test: four corner patches, the centre patch, and their horizontal mirrors -> 10xCxsxs."""
    h, w = img.shape[-2:]
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size)]
    patches = [crop(img, t, left, size) for t, left in corners] + [center_crop(img, size)]
    patches += [p.flip(-1) for p in patches]
    return torch.stack(patches)


class TrainTransform:
    """Random crop (or centre crop) + random horizontal flip, PCA colour noise if `pca`, mean subtraction.

    The colour noise is added on the [0, 1] pixel scale, the scale of `eigval` (variances); alpha_i is drawn
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
    ) -> None:
        self.crop_size, self.random_crop, self.flip, self.pca = crop_size, random_crop, flip, pca
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.eigval = torch.as_tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.as_tensor(eigvec, dtype=torch.float32)
        self.pca_std = pca_std
        if pca and (self.eigval.shape != (3,) or self.eigvec.shape != (3, 3)):
            raise ValueError("PCA colour noise needs 3 eigenvalues and a 3x3 eigenvector matrix (RGB)")

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        size = self.crop_size
        if self.random_crop:
            h, w = img.shape[-2:]
            top = int(torch.randint(h - size + 1, ()))
            left = int(torch.randint(w - size + 1, ()))
            img = crop(img, top, left, size)
        else:
            img = center_crop(img, size)
        if self.flip and bool(torch.rand(()) < 0.5):
            img = img.flip(-1)
        x = to_float(img)
        if self.pca:
            x = x + pca_shift(torch.randn(3) * self.pca_std, self.eigval, self.eigvec)
        return x - self.mean


class EvalTransform:
    """Centre crop (`crops=1`) or the ten patches of §4.1 (`crops=10`), mean subtracted."""

    def __init__(self, crop_size: int, mean: Sequence[float], crops: int = 1) -> None:
        if crops not in (1, 10):
            raise ValueError(f"test_crops={crops}: allowed 1 (centre) or 10 (corners+centre, mirrored)")
        self.crop_size, self.crops = crop_size, crops
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.crops == 10:
            return to_float(ten_crop(img, self.crop_size)) - self.mean
        return to_float(center_crop(img, self.crop_size)) - self.mean
