from alexnet.data.base import DataError, ImageDataModule
from alexnet.data.fashion_mnist import FashionMNISTDataModule
from alexnet.data.imagenet import ImageFolderDataModule, ImageNetDataModule
from alexnet.data.synthetic import SyntheticDataModule

__all__ = [
    "DataError",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "ImageNetDataModule",
    "SyntheticDataModule",
]
