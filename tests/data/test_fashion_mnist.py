"""Embedded data: finding, reading and checking the idx files; the split; §4.1 transforms."""

import gzip
import logging
from pathlib import Path

import pytest
import torch

from alexnet.data import DataError, FashionMNISTDataModule, SyntheticDataModule
from alexnet.data.fashion_mnist import FILES, read_idx
from alexnet.data.transforms import EvalTransform, TrainTransform, center_crop, ten_crop, to_float
from alexnet.train.module import average_softmax
from conftest import write_fashion_mnist, write_idx


def module(folder: Path, **kw) -> FashionMNISTDataModule:
    """The data module on generated files only (not the published ones: their checksums not checked, unless asked)."""
    kw = {"checksums": "off", **kw}
    return FashionMNISTDataModule(data_dir=str(folder), search_dirs=[], download_url=None, val_size=100, **kw)


def test_reads_the_files_splits_seeded_and_pads_to_the_stored_size(fmnist_dir: Path) -> None:
    a, b = module(fmnist_dir), module(fmnist_dir)
    a.setup(), b.setup()
    assert [len(a.sources[s]) for s in ("train", "val", "test")] == [500, 100, 200]
    assert torch.equal(a.sources["val"].tensors[0], b.sources["val"].tensors[0])  # same seed, same split
    assert a.sources["train"].tensors[0].shape[1:] == (1, 32, 32)
    c = module(fmnist_dir, split_seed=1)
    c.setup()
    assert not torch.equal(a.sources["val"].tensors[1], c.sources["val"].tensors[1])
    train_mean = a.sources["train"].tensors[0].float().mean().item() / 255
    assert a.mean[0] == pytest.approx(train_mean, rel=1e-5)  # training split only


def test_train_batches_are_crops_of_the_crop_size_with_the_mean_removed(fmnist_dir: Path) -> None:
    dm = module(fmnist_dir, batch_size=16)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 28, 28) and y.shape == (16,)
    # raw pixel values 0-255 minus the mean (docs/fidelity.md: the paper's scale)
    assert x.min() >= -255 * dm.mean[0] - 1e-3 and x.max() <= 255 * (1 - dm.mean[0]) + 1e-3
    assert x.max() > 0.5 * 255  # the generated images' white bars: not the [0, 1] scale
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (16, 1, 28, 28)
    dm10 = module(fmnist_dir, batch_size=4, test_crops=10)
    dm10.setup()
    assert next(iter(dm10.test_dataloader()))[0].shape == (4, 10, 1, 28, 28)


def test_finds_files_in_a_search_dir_after_data_dir(tmp_path: Path, fmnist_dir: Path) -> None:
    dm = FashionMNISTDataModule(
        data_dir=str(tmp_path / "empty"), search_dirs=[str(fmnist_dir)], download_url=None, val_size=100
    )
    dm.setup()
    assert len(dm.sources["test"]) == 200


def test_missing_everywhere_says_where_it_looked_and_how_to_get_them(tmp_path: Path) -> None:
    dm = FashionMNISTDataModule(
        data_dir=str(tmp_path / "a"),
        search_dirs=[str(tmp_path / "b")],
        download_url=(tmp_path / "nowhere").as_uri() + "/",
    )
    with pytest.raises(DataError) as e:
        dm.setup()
    msg = str(e.value)
    assert str(tmp_path / "a") in msg and str(tmp_path / "b") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "downloading" in msg


def test_download_verifies_checksums_and_keeps_no_bad_file(tmp_path: Path, fmnist_dir: Path) -> None:
    # A "mirror" serving our generated files: readable, but not the published data.
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "dl"), search_dirs=[], download_url=fmnist_dir.as_uri() + "/")
    with pytest.raises(DataError, match="checksum mismatch"):
        dm.setup()
    assert not any((tmp_path / "dl").iterdir())


def test_truncated_file_is_named(tmp_path: Path) -> None:
    folder = write_fashion_mnist(tmp_path / "f", n_train=200, n_test=50)
    path = folder / FILES["train_images"]
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*truncated"):
        module(folder).setup()
    path.write_bytes(path.read_bytes()[:100])  # cut inside the gzip stream
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*gzip"):
        module(folder).setup()


def test_wrong_file_is_named(tmp_path: Path) -> None:
    folder = write_fashion_mnist(tmp_path / "f", n_train=200, n_test=50)
    path = folder / FILES["test_labels"]
    path.write_bytes(gzip.compress(b"<html>not found</html>"))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz.*magic"):
        module(folder).setup()
    write_idx(path, torch.zeros(49, dtype=torch.uint8))  # one label short
    with pytest.raises(DataError, match="do not match"):
        module(folder).setup()


def test_files_unlike_the_published_ones_are_named_and_used_or_refused(
    fmnist_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="alexnet.data.fashion_mnist"):
        module(fmnist_dir, checksums="warn").setup()  # the default: named, and trained on
    named = [r.getMessage() for r in caplog.records]
    assert sorted(m.split(":")[0] for m in named) == sorted(str(fmnist_dir / name) for name in FILES.values())
    assert all("not the published Fashion-MNIST file" in m and "data.checksums=off" in m for m in named)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz.*not the published Fashion-MNIST file"):
        module(fmnist_dir, checksums="error").setup()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alexnet.data.fashion_mnist"):
        module(fmnist_dir, checksums="off").setup()
    assert not caplog.records
    with pytest.raises(ValueError, match="checksums"):
        module(fmnist_dir, checksums="sometimes")


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="needs dataset-fashion-mnist")
def test_the_published_files_pass_their_checksums() -> None:
    """Debian's copy: the authors' content in other gzip bytes (the checksums are of the content)."""
    FashionMNISTDataModule(data_dir="/nonexistent", search_dirs=["/usr/share/datasets/fashion-mnist"],
                           download_url=None, checksums="error").setup()  # fmt: skip


def test_read_idx_round_trip(tmp_path: Path) -> None:
    x = torch.randint(0, 256, (3, 4, 5), dtype=torch.uint8)
    write_idx(tmp_path / "x.gz", x)
    assert torch.equal(read_idx(tmp_path / "x.gz"), x)


@pytest.mark.parametrize(
    "kw, key", [({"crop_size": 40}, "crop_size"), ({"batch_size": 0}, "batch_size"), ({"test_crops": 5}, "test_crops")]
)
def test_bad_data_settings_are_named(fmnist_dir: Path, kw: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        module(fmnist_dir, **kw)


def test_ten_crop_is_four_corners_centre_and_their_mirrors() -> None:
    img = torch.arange(36).view(1, 6, 6)
    crops = ten_crop(img, 4)
    assert crops.shape == (10, 1, 4, 4)
    assert torch.equal(crops[0], img[:, :4, :4]) and torch.equal(crops[3], img[:, 2:, 2:])
    assert torch.equal(crops[1], img[:, :4, 2:]) and torch.equal(crops[2], img[:, 2:, :4])
    assert torch.equal(crops[4], center_crop(img, 4)) and torch.equal(crops[4], img[:, 1:5, 1:5])
    for i in range(5):
        assert torch.equal(crops[5 + i], crops[i].flip(-1))


def test_train_transform_crops_anywhere_and_flips_half_the_time() -> None:
    torch.manual_seed(0)
    img = torch.arange(64, dtype=torch.uint8).view(1, 8, 8)
    t = TrainTransform(crop_size=6, mean=[0.0])
    outs = [t(img) for _ in range(400)]
    corners = {round(o[0, 0, 0].item()) for o in outs}  # raw pixel values, mean 0
    # top-left pixel of an unflipped crop is img[t, l]; of a flipped one img[t, l + 5]
    assert corners == {r * 8 + c for r in range(3) for c in (0, 1, 2, 5, 6, 7)}
    flipped = sum(o[0, 0, 0] > o[0, 0, -1] for o in outs)
    assert 150 < flipped < 250
    fixed = TrainTransform(crop_size=6, mean=[0.0], random_crop=False, flip=False)
    assert all(torch.equal(fixed(img), EvalTransform(6, [0.0])(img)) for _ in range(5))


def test_ten_crop_prediction_averages_softmax_not_logits() -> None:
    # two images, three crops each, image-major as the crops of a batch are flattened: rows 0-2 image 0, 3-5 image 1
    logits = torch.tensor([[0.0, 10.0], [3.0, 0.0], [3.0, 0.0], [10.0, 0.0], [0.0, 3.0], [0.0, 3.0]])
    probs = average_softmax(logits, crops=3)
    assert probs.shape == (2, 2)
    torch.testing.assert_close(probs, logits.softmax(-1).view(2, 3, 2).mean(1))
    assert probs.argmax(-1).tolist() == [0, 1]  # two crops fairly sure of a class outvote one very sure crop
    assert logits.view(2, 3, 2).mean(1).argmax(-1).tolist() == [1, 0]  # averaging logits would have said the other
    # several different images: each image's probabilities are the mean over its own crops only
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4 * 10, 5, generator=g) * 3
    expected = torch.stack([logits[10 * i : 10 * (i + 1)].softmax(-1).mean(0) for i in range(4)])
    torch.testing.assert_close(average_softmax(logits, crops=10), expected)


@pytest.mark.parametrize("crops", [1, 10])
def test_eval_transform_subtracts_the_mean(crops: int) -> None:
    # a constant image of value v (per channel) gives to_float(v) - mean in every pixel of every patch; the mean is
    # given on the [0, 1] scale of the stored statistics, here k/255 for grey level k
    values, levels = (200, 90, 30), (120, 60, 10)
    img = torch.tensor(values, dtype=torch.uint8).view(3, 1, 1).expand(3, 8, 8).contiguous()
    out = EvalTransform(6, [k / 255 for k in levels], crops=crops)(img)
    assert out.shape == ((10, 3, 6, 6) if crops == 10 else (3, 6, 6))
    expected = to_float(torch.tensor(values, dtype=torch.uint8)) - to_float(torch.tensor(levels, dtype=torch.uint8))
    torch.testing.assert_close(out, expected.view(3, 1, 1).expand_as(out), rtol=1e-5, atol=1e-5)
    assert (expected.abs() > 0).all()
    # the same as a training crop without augmentation: every path subtracts the mean
    fixed = TrainTransform(6, [k / 255 for k in levels], random_crop=False, flip=False)
    torch.testing.assert_close(out if crops == 1 else out[4], fixed(img))


@pytest.mark.parametrize("crops", [1, 10])
def test_val_and_test_batches_have_the_mean_removed(fmnist_dir: Path, crops: int) -> None:
    dm = module(fmnist_dir, batch_size=16, test_crops=crops)
    dm.setup()
    assert dm.mean[0] > 0.05  # enough to see
    white = to_float(torch.tensor([255], dtype=torch.uint8))  # the net's pixel scale: mean k/255 is grey level k
    for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        x, _ = next(iter(loader))
        raw = dm.sources[split].tensors[0][:16]
        if split == "test" and crops == 10:
            patches = torch.stack([ten_crop(r, 28) for r in raw])
        else:
            patches = center_crop(raw, 28)
        assert x.shape == patches.shape, split
        torch.testing.assert_close(x, to_float(patches) - dm.mean[0] * white, rtol=1e-5, atol=1e-4)


def test_synthetic_data_is_repeatable_and_shaped_like_ilsvrc() -> None:
    dm = SyntheticDataModule(
        num_classes=1000,
        channels=3,
        stored_size=256,
        crop_size=224,
        batch_size=2,
        train_size=4,
        val_size=2,
        test_size=2,
    )
    dm.setup()
    assert torch.equal(dm.sources["train"][1][0], dm.sources["train"][1][0])
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 3, 224, 224)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="needs dataset-fashion-mnist")
def test_download_of_the_published_files_verifies_and_lands_in_data_dir(tmp_path: Path) -> None:
    # The Debian copy as a mirror: the same content as the authors' files, in other gzip bytes.
    mirror = Path("/usr/share/datasets/fashion-mnist").as_uri() + "/"
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "dl"), search_dirs=[], download_url=mirror)
    dm.setup()
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == sorted(FILES.values())
    assert [len(dm.sources[s]) for s in ("train", "val", "test")] == [55_000, 5_000, 10_000]
