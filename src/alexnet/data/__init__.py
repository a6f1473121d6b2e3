"""The data modules (Hydra's `data._target_`), imported when first named: the store, layout and decoding modules
(src/prepare.py's, and the loader workers') work without importing Lightning."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from alexnet.errors import DataError

_HOMES = {
    "ImageDataModule": "alexnet.data.base",
    "FashionMNISTDataModule": "alexnet.data.fashion_mnist",
    "ImageFolderDataModule": "alexnet.data.imagenet",
    "ImageNetDataModule": "alexnet.data.imagenet",
    "SyntheticDataModule": "alexnet.data.synthetic",
}

__all__ = ["DataError", *_HOMES]


def __getattr__(name: str) -> Any:  # PEP 562: `from alexnet.data import ImageNetDataModule` imports it then
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
