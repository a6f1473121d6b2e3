"""ILSVRC-2012, and any data set of class folders (Imagenette, Tiny ImageNet, your own), read from the
resize-once store written by `python src/prepare.py` or from the raw tree (decoded every epoch, slower)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from rich.console import Console
from torch.utils.data import Dataset, Subset

from alexnet.config.schema import require
from alexnet.data.base import ImageDataModule
from alexnet.data.decode import stored_image
from alexnet.data.jpeg import JpegImages
from alexnet.data.layout import (
    Items,
    Tree,
    class_folders,
    count_classes,
    find_split,
    labelled_splits,
    list_split,
    open_tree,
)
from alexnet.data.stats import STATS, Moments, describe, load_stats, published_pca, sample
from alexnet.data.store import COMPLETE, PLAN, StoreImages, open_store, prepare_store, progress_bar
from alexnet.errors import DataError

log = logging.getLogger(__name__)


class RawImages(Dataset):
    """(path, label) items decoded, rescaled and centre-cropped when read: the store's work, every epoch."""

    def __init__(self, items: Items, stored_size: int) -> None:
        self.items, self.stored_size = items, stored_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        return stored_image(path, self.stored_size), label


class ImageFolderDataModule(ImageDataModule):
    """train/<class>/ images, and val/ (class folders, or flat with the devkit's or Kaggle's labels); the
    test split is test/ if it has class folders, else val/ (ILSVRC-2012: the 50,000 validation images, whose
    labels are public; the test set's are not). Labels index the sorted training class folders."""

    name, config_name = "class-folder data set", "imagefolder"

    def __init__(
        self,
        root: str | None = None,
        store_dir: str | None = None,
        source: str = "auto",
        on_corrupt: str = "error",
        devkit_dir: str | None = None,
        val_size: int = 0,
        split_seed: int = 0,
        stats_sample: int = 1000,
        num_classes: int | None = None,
        channels: int = 3,
        stored_size: int = 256,
        crop_size: int = 224,
        store_format: str = "npy",
        jpeg_quality: int = 90,
        **kwargs: Any,
    ) -> None:
        if not root:
            raise ValueError(
                f"data.root is not set: pass data.root=PATH, the folder holding train/ and val/ of the {self.name}"
            )
        # (val_size 0: validate on val/; N: a seeded held-out N of the training images)
        require("data", source=source, on_corrupt=on_corrupt, val_size=val_size, store_format=store_format,
                jpeg_quality=jpeg_quality)  # fmt: skip
        if channels != 3:
            raise ValueError(f"channels={channels}: images are decoded to RGB, so channels=3")
        if num_classes is None:  # null: as many as there are (conf/data/imagefolder.yaml)
            num_classes = count_classes_or_store(root, store_dir, stored_size)
        if num_classes is None:
            raise ValueError(f"num_classes is null: no class folders found in {root}/train; check data.root")
        super().__init__(num_classes, channels, stored_size, crop_size, **kwargs)
        require("data", decode_on=self.decode_on, store_format=store_format)  # the JPEG store's own decoding
        self.root = Path(root).resolve()  # the store's plan records paths: one spelling of the tree
        self.store_format, self.jpeg_quality = store_format, jpeg_quality
        default = f"prepared_{stored_size}" + ("_jpeg" if store_format == "jpeg" else "")
        self.store = Path(store_dir) if store_dir else self.root / default
        self.source, self.on_corrupt, self.devkit_dir = source, on_corrupt, devkit_dir
        self.val_size, self.split_seed, self.stats_sample = val_size, split_seed, stats_sample
        self.used_source: str | None = None  # "store" or "raw", once loaded

    @property
    def prepare_command(self) -> str:
        fmt = " data.store_format=jpeg" if self.store_format == "jpeg" else ""
        return f"python src/prepare.py data={self.config_name} data.root={self.root}{fmt}"

    def tree(self) -> Tree:
        tree = open_tree(self.root, self.devkit_dir)
        self._check_classes(len(tree.classes), tree.splits["train"])
        return tree

    def _check_classes(self, found: int, where: Path) -> None:
        if found != self.num_classes:
            raise DataError(
                f"{where}: {found} class folders, but data.num_classes={self.num_classes}. Pass "
                f"data.num_classes={found} to train on these classes, or point data.root at the full data set"
            )

    def _check_store_matches_tree(self, classes: list[str]) -> None:
        """A store named by data.store_dir may have been prepared from another tree: where the raw training folder
        is at hand, its classes must be the store's, or every label would mean another class."""
        train = find_split(Path(self.root), "train") if self.root else None
        if train is None:
            return  # the raw tree is gone: the store is all there is
        here = class_folders(train)
        if here != list(classes):
            missing, extra = sorted(set(classes) - set(here)), sorted(set(here) - set(classes))
            raise DataError(
                f"the store at {self.store} was prepared from another tree: its {len(classes)} classes are not the "
                f"{len(here)} class folders of {train} (in the store only: {missing[:3]}; in the tree only: "
                f"{extra[:3]}). Point data.store_dir at this tree's store, or rerun {self.prepare_command}"
            )

    def raw_items(self, tree: Tree) -> dict[str, Items]:
        return {split: list_split(tree, split) for split in labelled_splits(tree)}

    # -- the store ------------------------------------------------------------------------------------------
    def prepare_store(self, workers: int | None = None, shard_size: int = 1000) -> dict[str, Any]:
        """Write (or finish) the resize-once store of every labelled split; see alexnet.data.store."""
        tree = self.tree()
        info = {"classes": tree.classes, "class_names": tree.class_names}
        return prepare_store(
            self.store, self.raw_items(tree), info, self.stored_size, shard_size, workers, self.on_corrupt,
            resume_hint=f"rerun {self.prepare_command}", fmt=self.store_format, quality=self.jpeg_quality,
        )  # fmt: skip

    def compute_stats(self, n: int, seed: int = 0, train: Items | None = None) -> dict[str, Any]:
        """Mean pixel and RGB covariance eigen decomposition of a fixed random `n` of the raw training images."""
        items = sample(train if train is not None else list_split(self.tree(), "train"), n, seed)
        moments, used = Moments(), 0
        with progress_bar(Console(stderr=True)) as bar:
            for path, _ in bar.track(items, description=f"statistics of {len(items)} training images"):
                try:
                    image = stored_image(path, self.stored_size).numpy()
                except DataError:
                    if self.on_corrupt == "error":
                        raise
                    continue
                moments.add(image)
                used += 1
        return moments.finish(used, f"a sample of {used} of the raw training images in {self.root}")

    # -- reading --------------------------------------------------------------------------------------------
    def load(self) -> None:
        opened = None if self.source == "raw" else open_store(self.store, self.prepare_command)
        if opened is None and self.source == "store":
            raise DataError(f"no store at {self.store} (data.source=store); run {self.prepare_command}")
        if opened is not None:
            plan, manifest = opened
            if plan["stored_size"] != self.stored_size:
                raise DataError(
                    f"{self.store}: stored size {plan['stored_size']}, but data.stored_size={self.stored_size}"
                )
            self._check_classes(len(plan["classes"]), self.store / PLAN)
            self._check_store_matches_tree(plan["classes"])
            if plan.get("format", "npy") != self.store_format:
                raise DataError(
                    f"{self.store} is a {plan.get('format', 'npy')} store, but data.store_format={self.store_format}"
                )
            if self.store_format == "jpeg":
                raw = self.decode_on == "device"  # the bytes, decoded per batch where training runs
                splits = {s: JpegImages(self.store, v, raw) for s, v in manifest["splits"].items()}
            else:
                splits = {s: StoreImages(self.store, v) for s, v in manifest["splits"].items()}
            self.class_names, self.used_source = plan["class_names"], "store"
            log.info("reading the store at %s", self.store)
        else:
            if self.source == "auto":
                Console(stderr=True).print(
                    f"[yellow]warning: no store at {self.store}: reading the raw images, decoding and resizing "
                    f"every epoch (slower). {self.prepare_command} writes the store once"
                )
            tree = self.tree()
            items = self.raw_items(tree)
            if self.on_corrupt == "skip":
                items = {s: self._readable(v, s) for s, v in items.items()}
            splits = {s: RawImages(v, self.stored_size) for s, v in items.items()}
            self.class_names, self.used_source = tree.class_names, "raw"
        self.sources = self._split(splits)
        self._load_stats(splits["train"])

    def _readable(self, items: Items, split: str) -> Items:
        """With on_corrupt=skip, raw reading decodes every file once here and drops unreadable ones: a
        DataLoader cannot drop an item mid-epoch, and substituting another image would give it a wrong label."""
        good = []
        with progress_bar(Console(stderr=True)) as bar:
            for path, label in bar.track(items, description=f"checking {split} images"):
                try:
                    stored_image(path, self.stored_size)
                    good.append((path, label))
                except DataError:
                    pass
        if len(good) < len(items):
            Console(stderr=True).print(
                f"[yellow]warning: {len(items) - len(good)} unreadable {split} images left out (data.on_corrupt=skip)"
            )
        return good

    def _split(self, splits: dict[str, Dataset]) -> dict[str, Dataset]:
        """train/val/test: test is test/ if labelled, else val/ (ILSVRC's 50k); val is val/ itself (as the
        paper, which reported and scheduled on it) or, with val_size > 0, a seeded held-out slice of train."""
        if "val" not in splits:
            raise DataError(f"{self.root}: no val/ folder; the test and validation images go in val/")
        train, test = splits["train"], splits.get("test", splits["val"])
        if not self.val_size:
            return {"train": train, "val": splits["val"], "test": test}
        if self.val_size >= len(train):  # type: ignore[arg-type]
            raise DataError(f"data.val_size={self.val_size}: the training set has only {len(train)} images")
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.split_seed)).tolist()  # type: ignore[arg-type]
        return {
            "train": Subset(train, order[self.val_size :]),
            "val": Subset(train, order[: self.val_size]),
            "test": test,
        }

    def _load_stats(self, train: Dataset) -> None:
        """Mean pixel and PCA from the store's stats.json (all training images); without one, the mean of a
        sample of `stats_sample` training images and the published PCA values, logged as such."""
        stats = load_stats(self.store / STATS)
        if stats is None:
            if self.used_source == "store":
                raise DataError(f"{self.store / STATS} is missing from a complete store; rerun {self.prepare_command}")
            items = train.items if isinstance(train, RawImages) else None
            stats = {**self.compute_stats(self.stats_sample, train=items), **published_pca()}
            Console(stderr=True).print(
                f"[yellow]no {self.store / STATS}: mean of {stats['images']} sampled training images, published "
                f"ImageNet PCA values. python src/prepare.py ... stats_only=true computes both once"
            )
        self.mean, self.eigval, self.eigvec = stats["mean"], stats["eigval"], stats["eigvec"]
        log.info("training-set statistics from %s: %s", stats["source"], describe(stats))


class ImageNetDataModule(ImageFolderDataModule):
    """ILSVRC-2012 (docs/ilsvrc.md): 1000 classes, every validation layout; `data=imagenet`."""

    name = "ILSVRC-2012 data set"
    config_name = "imagenet"


def count_classes_or_store(root: str | None, store_dir: str | None = None, stored_size: int = 256) -> int | None:
    """data.num_classes=null: the class folders of root/train, or the classes of a store when the raw tree is gone."""
    if not root:
        return None
    found = count_classes(root)
    plan = Path(store_dir) if store_dir else Path(root) / f"prepared_{stored_size}"
    if found is None and (plan / PLAN).is_file() and (plan / COMPLETE).is_file():
        return len(json.loads((plan / PLAN).read_text())["classes"])
    return found


# configs saved before data.num_classes was null (runs of 2026-12-07 and earlier) name this resolver
OmegaConf.register_new_resolver("alexnet.num_classes", count_classes_or_store, replace=True)
