"""The compressed store (data.store_format=jpeg): prepare writes it, training reads it with the images decoded by
the loader or per batch on the device (the CPU fallback here), and reading in shuffled blocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.data import ImageNetDataModule
from alexnet.data.jpeg import JpegImages, decode_batch, decode_cpu, encode
from alexnet.data.store import COMPLETE, PLAN, StoreImages
from alexnet.streams import EpochSampler
from conftest import CONF, ilsvrc_overrides, train_in_process, write_ilsvrc


@pytest.fixture(scope="module")
def jpeg_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated ILSVRC-like tree with its JPEG store (and its uint8 store, to compare), each written as
    `python src/prepare.py ... workers=2 shard_size=7` writes it (its command line: test_imagenet.py)."""
    from hydra import compose, initialize_config_dir

    from alexnet.train.pipeline import build_data

    root = tmp_path_factory.mktemp("jpeg")
    write_ilsvrc(root, train_per_class=6, val_per_class=2)
    for fmt in ("jpeg", "npy"):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("prepare", overrides=[*ilsvrc_overrides(root, f"data.store_format={fmt}"), "workers=2",
                                                "shard_size=7"])  # fmt: skip
        build_data(cfg).prepare_store(workers=cfg.workers, shard_size=cfg.shard_size)
    return root


def test_prepare_writes_a_jpeg_store_in_a_shuffled_order(jpeg_tree: Path) -> None:
    store = jpeg_tree / "prepared_32_jpeg"
    plan, manifest = json.loads((store / PLAN).read_text()), json.loads((store / COMPLETE).read_text())
    assert plan["format"] == "jpeg" and plan["quality"] == 90
    files = [s["file"] for s in manifest["splits"]["train"]["shards"]]
    assert files == ["train/00000.jpegs", "train/00001.jpegs", "train/00002.jpegs", "train/00003.jpegs"]
    jpeg_bytes = sum(s["bytes"] for s in manifest["splits"]["train"]["shards"])
    npy = json.loads((jpeg_tree / "prepared_32" / COMPLETE).read_text())
    assert jpeg_bytes < sum(s["bytes"] for s in npy["splits"]["train"]["shards"])  # smaller than uint8
    images = JpegImages(store, manifest["splits"]["train"])
    stored = StoreImages(jpeg_tree / "prepared_32", npy["splits"]["train"])
    assert sorted(images.labels) == sorted(stored.labels)  # the same images, in another order
    assert images.labels != sorted(images.labels)  # classes mixed along the store: blocks of it mix them too
    # each JPEG is its uint8 stored image to JPEG's rounding: match them by content
    jpegs = torch.stack([images[i][0] for i in range(len(images))]).float()
    for i in range(len(stored)):
        image, label = stored[i]
        distance = (jpegs - image.float()).abs().mean((1, 2, 3))
        assert distance.min() < 6 and images.labels[int(distance.argmin())] == label


def test_jpeg_bytes_decode_to_the_image_within_jpeg_error() -> None:
    ramp = np.linspace(0, 255, 32)
    image = np.stack([ramp[None, :] + 0 * ramp[:, None], ramp[:, None] + 0 * ramp[None, :], (ramp[:, None] + ramp) / 2])
    image = image.astype(np.uint8)  # smooth: what JPEG keeps
    data = torch.frombuffer(bytearray(encode(image, 95)), dtype=torch.uint8)
    decoded = decode_cpu(data)
    assert decoded.shape == (3, 32, 32)
    assert (decoded.float() - torch.from_numpy(image).float()).abs().mean() < 3
    assert torch.equal(decode_batch([data, data], torch.device("cpu")), torch.stack([decoded, decoded]))


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_training_reads_the_jpeg_store_decoded_by_the_loader_or_per_batch(
    jpeg_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    net = ["model.width=0.125", "model.fc_width=64", "data.batch_size=4", "debug=fast", "data.num_workers=0"]
    runs = {}
    for name, extra in {
        "loader": [],
        "device": ["data.augment_on=device", "data.decode_on=device", "data.shuffle_block=8"],
    }.items():
        run_dir = tmp_path / name
        block = [] if name == "device" else ["data.shuffle_block=8"]
        train_in_process([*ilsvrc_overrides(jpeg_tree, "data.store_format=jpeg"), *net, *extra, *block], run_dir)
        assert "no store" not in capsys.readouterr().err
        runs[name] = run_dir
    a, b = _weights(runs["loader"]), _weights(runs["device"])
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same decoder on the CPU: the same run


def test_decoding_on_the_device_needs_the_jpeg_store(jpeg_tree: Path) -> None:
    with pytest.raises(ValueError, match="needs store_format=jpeg"):
        ImageNetDataModule(root=str(jpeg_tree), num_classes=4, stored_size=32, crop_size=28, augment_on="device",
                           decode_on="device")  # fmt: skip
    dm = ImageNetDataModule(root=str(jpeg_tree), num_classes=4, stored_size=32, crop_size=28, source="store",
                            store_dir=str(jpeg_tree / "prepared_32"), store_format="jpeg")  # fmt: skip
    with pytest.raises(Exception, match="is a npy store, but data.store_format=jpeg"):
        dm.setup()


def test_block_shuffling_reads_runs_of_consecutive_images_in_a_seeded_order() -> None:
    sampler = EpochSampler(103, seed=5, block=10)
    order = sampler.order(0)
    assert sorted(order.tolist()) == list(range(103))  # every image once
    blocks = [order[i : i + 10] for i in range(0, 100, 10)]
    assert sum(int(b.max() - b.min()) < 10 for b in blocks) >= 9  # runs from one block (the short one shifts some)
    assert torch.equal(order, EpochSampler(103, seed=5, block=10).order(0))  # deterministic
    assert not torch.equal(order, sampler.order(1)) and not torch.equal(order, EpochSampler(103, 6, block=10).order(0))
