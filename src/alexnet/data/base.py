"""What every data module shares: stored-size uint8 images in, §4.1 transforms, loaders out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from alexnet.config.schema import require
from alexnet.data.batched import Presentations, augment_batch, eval_batch, in_memory
from alexnet.data.decode import stored_image
from alexnet.data.jpeg import DecodeAheadLoader, Decoded, batch_images, collate_raw
from alexnet.data.transforms import (
    PAPER_PIXEL_MAX,
    PUBLISHED_EIGVAL,
    PUBLISHED_EIGVEC,
    STATS_SCALE,
    EvalTransform,
    TrainTransform,
)
from alexnet.errors import DataError
from alexnet.streams import EpochSampler, generator


class Transformed(Dataset):
    """(uint8 image, label) pairs from `source`, passed through `transform`. Indexed by an (epoch, index) key of
    an `EpochSampler`, the transform draws from that presentation's own stream (streams.py)."""

    def __init__(self, source: Dataset, transform: Callable[..., torch.Tensor], seed: int = 0) -> None:
        self.source, self.transform, self.seed = source, transform, seed

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        if isinstance(key, tuple):
            epoch, i = key
            img, label = self.source[i]
            return self.transform(img, generator(self.seed, "augment", epoch, i)), label
        img, label = self.source[key]
        return self.transform(img), label


class ImageDataModule(L.LightningDataModule):
    """Subclasses implement `load()`, which sets `self.sources` (train/val/test datasets of uint8
    CxSxS images at the stored size) and `self.mean` (per-channel training-set mean on the [0, 1] scale, whatever
    `pixel_max` the net sees), and may set
    `self.class_names` and `self.eigval`/`self.eigvec` (§4.1 PCA of the training set's RGB covariance)."""

    def __init__(
        self,
        num_classes: int,
        channels: int,
        stored_size: int,
        crop_size: int,
        batch_size: int = 128,
        num_workers: int = 0,
        test_crops: int = 1,
        augment: dict[str, bool] | None = None,
        train_subset: int | None = None,
        subset_seed: int = 0,
        pca_std: float = 0.1,
        pixel_max: float = PAPER_PIXEL_MAX,
        shuffle_seed: int = 0,
        augment_on: str = "loader",
        resident: bool = False,
        decode_on: str = "loader",
        shuffle_block: int | None = None,
    ) -> None:
        super().__init__()
        augment = {"random_crop": True, "flip": True, "pca": False, **(augment or {})}
        require("data", batch_size=batch_size, num_workers=num_workers, stored_size=stored_size, crop_size=crop_size,
                test_crops=test_crops, train_subset=train_subset, pca_std=pca_std, pixel_max=pixel_max,
                augment_on=augment_on, resident=resident, decode_on=decode_on, shuffle_block=shuffle_block)  # fmt: skip
        require("data.augment", **augment)
        if augment["pca"] and channels != 3:
            raise ValueError(
                f"augment.pca needs RGB images (channels=3); this data set has {channels} channel"
                f"{'s' if channels != 1 else ''}. PCA colour noise (§4.1) is for data=imagenet or data=imagefolder"
            )
        self.num_classes, self.channels = num_classes, channels
        self.stored_size, self.crop_size = stored_size, crop_size
        self.batch_size, self.num_workers, self.test_crops = batch_size, num_workers, test_crops
        self.augment = augment
        self.train_subset, self.subset_seed = train_subset, subset_seed
        self.sources: dict[str, Dataset] = {}
        self.mean: Sequence[float] = (0.0,) * channels
        self.class_names: Sequence[str] = tuple(str(i) for i in range(num_classes))
        self.pca_std, self.pixel_max, self.shuffle_seed = pca_std, float(pixel_max), shuffle_seed
        self.eigval: Sequence[float] = PUBLISHED_EIGVAL
        self.eigvec: Sequence[Sequence[float]] = PUBLISHED_EIGVEC
        self.augment_on, self.resident, self.decode_on = augment_on, resident, decode_on
        self.shuffle_block = shuffle_block
        self._on_device: dict[tuple, Any] = {}  # resident images and transforms, per split or setting and device

    def load_image(self, path: str | Path) -> torch.Tensor:
        """One image file as this data set stores its images (uint8 CxSxS), for predicting on new images:
        decoded by content, converted to RGB (or grey), shorter side rescaled to the stored size, centre crop."""
        return stored_image(path, self.stored_size, "RGB" if self.channels == 3 else "L")

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint by Lightning: what predicting needs without reading the data set again."""
        if not self.sources:
            return {}
        return {
            "stats_scale": STATS_SCALE,
            "pixel_max": self.pixel_max,
            "mean": [float(m) for m in self.mean],
            "class_names": list(self.class_names),
            "eigval": [float(v) for v in self.eigval],
            "eigvec": [[float(v) for v in row] for row in self.eigvec],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and state.get("stats_scale") != STATS_SCALE:
            raise DataError(
                "this checkpoint's data statistics come from an older version of the project (no stats_scale "
                f"{STATS_SCALE!r}); its net was trained on another pixel scale: retrain it with this version"
            )
        self.mean = state.get("mean", self.mean)
        self.class_names = state.get("class_names", self.class_names)
        self.eigval, self.eigvec = state.get("eigval", self.eigval), state.get("eigvec", self.eigvec)

    def load(self) -> None:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self.sources:
            self.load()
            if self.train_subset is not None:
                self._take_train_subset()

    def _take_train_subset(self) -> None:
        """A random `train_subset` of the training images drawn with `subset_seed`: one fixed subset (the default, 0),
        or one per seed (budget=overfit sets it to the seed: the arms of a seed share it); the mean stays that of the
        whole training set."""
        train = self.sources["train"]
        if self.train_subset > len(train):  # type: ignore[arg-type]
            raise DataError(f"data.train_subset={self.train_subset}: the training set has only {len(train)} images")
        g = torch.Generator().manual_seed(self.subset_seed)
        keep = torch.randperm(len(train), generator=g)[: self.train_subset]  # type: ignore[arg-type]
        self.sources["train"] = Subset(train, keep.tolist())

    def train_transform(self) -> TrainTransform:
        return TrainTransform(
            self.crop_size,
            self.mean,
            **self.augment,
            eigval=self.eigval,
            eigvec=self.eigvec,
            pca_std=self.pca_std,
            pixel_max=self.pixel_max,
        )

    def eval_transform(self, crops: int = 1) -> EvalTransform:
        """What validation (1), the test (test_crops) and src/predict.py feed the net: the same pixels and mean."""
        return EvalTransform(self.crop_size, self.mean, crops=crops, pixel_max=self.pixel_max)

    def _loader(self, split: str, transform: Callable, sampler: EpochSampler | None = None) -> DataLoader:
        """In order (validation, test), or in the sampler's (epoch, index) keys (training). With augment_on=device
        the loader delivers uint8 images (or indices) and the training choices; on_after_batch_transfer does the
        rest."""
        if self.augment_on == "device":
            draw = transform if isinstance(transform, TrainTransform) else None
            dataset: Dataset = Presentations(
                self.sources[split], draw, self.shuffle_seed, self.resident, self.stored_size
            )
        else:
            dataset = Transformed(self.sources[split], transform, self.shuffle_seed)
        options: dict[str, Any] = {
            "batch_size": self.batch_size,
            "sampler": sampler,
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
            "pin_memory": self.augment_on == "device" and torch.cuda.is_available(),
        }
        if self.decode_on == "device":  # JPEG bytes, decoded where training runs one batch ahead of the step
            return DecodeAheadLoader(dataset, collate_fn=collate_raw, decode_device=self._device(), **options)
        return DataLoader(dataset, **options)

    def _device(self) -> torch.device:
        """Where the batches land: the trainer's device (the first of a two-device split), else the CPU."""
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def train_dataloader(self) -> DataLoader:
        """Batches in the order of (shuffle_seed, epoch), each image augmented from (shuffle_seed, epoch, index):
        a run resumed from a checkpoint, even one written mid-epoch, sees the batches the interrupted run would
        have seen (streams.py)."""
        # Lightning's overfit_batches (debug=overfit) wants the same batches every epoch: no shuffling then
        overfit = self.trainer is not None and self.trainer.overfit_batches > 0
        sampler = EpochSampler(
            len(self.sources["train"]), self.shuffle_seed, shuffle=not overfit, block=self.shuffle_block
        )  # type: ignore[arg-type]
        loop = self.trainer.fit_loop if self.trainer is not None else None
        if loop is not None:  # resumed: the epoch about to run, and the batches it has already trained on
            progress, epochs = loop.epoch_loop.batch_progress, loop.epoch_progress.current
            # a checkpoint from the last batch's end (SlurmRequeue) has not counted its epoch as processed yet
            sampler.epoch = epochs.processed + int(progress.is_last_batch and epochs.ready > epochs.processed)
            # processed, not completed: a checkpoint written in on_train_batch_end (SlurmRequeue) counts its batch.
            # Under data parallelism Lightning splits the order after this sampler, so a mid-epoch position cannot
            # be skipped per process: the interrupted epoch restarts there (exact resume is single-process).
            done = 0 if progress.is_last_batch else progress.current.processed
            sampler.skip = done * self.batch_size if self.trainer.world_size == 1 else 0
        return self._loader("train", self.train_transform(), sampler)

    def train_sample_dataloader(self, n: int, seed: int = 0) -> DataLoader:
        """A fixed random `n` of the training images as the test sees them (centre crop, no flip, no colour
        noise): the training error of the weights, to set against their test error."""
        source = Decoded(self.sources["train"]) if self.decode_on == "device" else self.sources["train"]
        keep = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))[:n]  # type: ignore[arg-type]
        transform = self.eval_transform(crops=1)
        return DataLoader(Transformed(Subset(source, keep.tolist()), transform), batch_size=self.batch_size)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """decode_on=device: the batch's JPEG files, decoded where training runs (nvJPEG on CUDA) one batch ahead by
        DecodeAheadLoader."""
        if self.decode_on != "device" or self.trainer is None or not isinstance(batch, list | tuple):
            return batch
        return (batch_images(batch[0], self._device()), *batch[1:])

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """augment_on=device: the batch, on its device, cropped, mirrored, coloured and mean-subtracted (training)
        or cut into the test's views (data/batched.py)."""
        # (the model summary sends its example input through this hook too: a tensor, not a batch)
        if self.augment_on != "device" or self.trainer is None or not isinstance(batch, list | tuple):
            return batch
        trainer = self.trainer
        split = "train" if trainer.training else "test" if trainer.testing else "val"
        images = batch[0]
        if self.resident:  # indices into the split, which lives on the device
            images = self._resident(split, images.device)[images]
        if split == "train":
            return augment_batch(self._on(images.device, 0), images, batch[1]), batch[2]
        crops = self.test_crops if split == "test" else 1
        return eval_batch(self._on(images.device, crops), images), batch[1]

    def _on(self, device: torch.device, crops: int) -> Any:
        """The training (crops=0) or evaluation transform with its mean already on `device`: copying it there for
        every batch would make the host wait for the device each time."""
        key = ("transform", crops, str(device), tuple(self.mean), self.pixel_max)
        if key not in self._on_device:
            transform = self.train_transform() if crops == 0 else self.eval_transform(crops)
            transform.mean = transform.mean.to(device)
            self._on_device[key] = transform
        return self._on_device[key]

    def _resident(self, split: str, device: torch.device) -> torch.Tensor:
        key = (split, str(device))
        if key not in self._on_device:
            self._on_device[key] = in_memory(self.sources[split])[0].to(device)
        return self._on_device[key]

    def val_dataloader(self) -> DataLoader:  # centre crop: cheap, and what the schedule watches
        return self._loader("val", self.eval_transform(crops=1))

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_transform(crops=self.test_crops))
