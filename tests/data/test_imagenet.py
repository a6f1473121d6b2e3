"""ILSVRC-2012 and class-folder data: layouts, quirky files, the resize-once store, PCA noise, end to end."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from alexnet.data import DataError, FashionMNISTDataModule, ImageFolderDataModule, ImageNetDataModule
from alexnet.data.decode import decode, stored_array
from alexnet.data.layout import list_split, open_tree
from alexnet.data.stats import load_stats
from alexnet.data.store import COMPLETE
from alexnet.data.transforms import PUBLISHED_EIGVAL, PUBLISHED_EIGVEC, EvalTransform, TrainTransform, pca_shift
from alexnet.train.module import AlexNetModule
from conftest import (
    COLOURS,
    DEVKIT_ORDER,
    WNIDS,
    WORDS,
    class_image,
    ilsvrc_overrides,
    train_in_process,
    write_ilsvrc,
)


def imagenet(root: Path, **kw) -> ImageNetDataModule:
    kw = {"num_classes": 4, "stored_size": 32, "crop_size": 28, "batch_size": 4, "test_crops": 10, **kw}
    return ImageNetDataModule(root=str(root), **kw)


def corrupt_jpeg(path: Path) -> None:
    """A JPEG cut in half: its header reads, its pixels do not."""
    buffer = io.BytesIO()
    class_image(0, (64, 48), seed=7).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


@pytest.fixture(scope="module")
def devkit_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ilsvrc")
    write_ilsvrc(root, "devkit", train_per_class=4, val_per_class=2)
    return root


# --- reading ILSVRC ---------------------------------------------------------------------------------------------


def test_every_validation_layout_gives_the_same_labels(tmp_path: Path) -> None:
    labels = {}
    for layout in ("folders", "devkit", "kaggle"):
        truth = write_ilsvrc(tmp_path / layout, layout)
        tree = open_tree(tmp_path / layout)
        assert tree.classes == WNIDS
        by_stem = {Path(p).stem: label for p, label in list_split(tree, "val")}
        assert by_stem == truth, layout
        labels[layout] = by_stem
        # and through the store into the test split the data module serves
        imagenet(tmp_path / layout).prepare_store(workers=1, shard_size=5)
        dm = imagenet(tmp_path / layout)
        dm.setup()
        files = (tmp_path / layout / "prepared_32" / "val_files.txt").read_text().splitlines()
        stored = {
            Path(line.split("\t")[0]).stem: label for line, label in zip(files, dm.sources["test"].labels, strict=True)
        }
        assert stored == truth, layout
    assert labels["folders"] == labels["devkit"] == labels["kaggle"]
    # the devkit's IDs, used as indices, would have been wrong for most images: the test can see a mix-up
    assert DEVKIT_ORDER != WNIDS
    ids_as_labels = {s: DEVKIT_ORDER.index(WNIDS[label]) for s, label in truth.items()}
    assert sum(ids_as_labels[s] != truth[s] for s in truth) >= len(truth) // 2
    # class names: WNID and words, from meta.mat (devkit) and LOC_synset_mapping.txt (Kaggle)
    for layout in ("devkit", "kaggle"):
        assert open_tree(tmp_path / layout).class_names[0] == f"{WNIDS[0]} {WORDS[WNIDS[0]]}"
    assert open_tree(tmp_path / "folders").class_names == WNIDS


def test_flat_validation_folder_without_labels_says_what_to_add(tmp_path: Path) -> None:
    write_ilsvrc(tmp_path, "devkit")
    shutil.rmtree(tmp_path / "ILSVRC2012_devkit_t12")
    with pytest.raises(DataError, match=r"flat folder of 8 images.*ILSVRC2012_validation_ground_truth.txt.*meta.mat"):
        list_split(open_tree(tmp_path), "val")


def test_wrong_number_of_classes_is_a_clear_error(devkit_tree: Path) -> None:
    with pytest.raises(DataError, match=r"4 class folders, but data.num_classes=1000.*data.num_classes=4"):
        imagenet(devkit_tree, num_classes=1000, source="raw").setup()
    with pytest.raises(ValueError, match="data.root is not set"):
        ImageNetDataModule(root=None, num_classes=1000)


def quirk(path: Path, kind: str, colour: tuple[int, int, int]) -> Image.Image:
    """Write one of the files of PAPER.md that break naive loaders; return what it should decode to."""
    rgb = Image.new("RGB", (48, 40), colour)
    if kind == "cmyk_jpeg":
        rgb.convert("CMYK").save(path, "JPEG", quality=95)
    elif kind == "png_named_jpeg":
        rgb.save(path, "PNG")
    elif kind == "grayscale_jpeg":
        rgb = rgb.convert("L").convert("RGB")
        rgb.convert("L").save(path, "JPEG", quality=95)
    elif kind == "palette_png":
        rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(path, "PNG")
    return rgb


@pytest.mark.parametrize("kind", ["cmyk_jpeg", "png_named_jpeg", "grayscale_jpeg", "palette_png"])
def test_quirky_files_decode_by_content_to_rgb(tmp_path: Path, kind: str) -> None:
    path = tmp_path / ("x.png" if kind == "palette_png" else "x.JPEG")
    expected = quirk(path, kind, COLOURS[2])
    img = decode(path)
    assert img.mode == "RGB" and img.size == (48, 40)
    np.testing.assert_allclose(np.asarray(img, float), np.asarray(expected, float), atol=6)
    assert stored_array(path, 32).shape == (3, 32, 32)


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_a_16_bit_grey_image_decodes_as_the_same_image_at_8_bits(tmp_path: Path, mode: str) -> None:
    """Pillow's own conversion clips every 16-bit value above 255 (black and white); v * 257 is v at 16 bits."""
    y, x = np.mgrid[0:40, 0:48]
    grey = ((x * 9 + y * 3) % 256).astype(np.uint8)
    sixteen = tmp_path / ("x.png" if mode == "I;16" else "x.tif")
    Image.fromarray(grey.astype(np.uint16 if mode == "I;16" else np.int32) * 257).save(sixteen)
    assert Image.open(sixteen).mode == mode
    for as_mode in ("L", "RGB"):
        expected = Image.fromarray(grey).convert(as_mode)
        assert np.array_equal(np.asarray(decode(sixteen, as_mode)), np.asarray(expected))
    eight_in_i = tmp_path / "eight.tif"  # 32-bit integers of 8-bit values (no value above 255): read as they are
    Image.fromarray(grey.astype(np.int32)).save(eight_in_i)
    assert np.array_equal(np.asarray(decode(eight_in_i, "L")), grey)


def test_quirky_files_in_the_tree_are_read_with_their_labels(tmp_path: Path) -> None:
    write_ilsvrc(tmp_path, "folders", train_per_class=1)
    for label, kind in enumerate(["cmyk_jpeg", "png_named_jpeg", "grayscale_jpeg", "palette_png"]):
        quirk(tmp_path / "train" / WNIDS[label] / f"{kind}.JPEG", kind, COLOURS[label])
    dm = imagenet(tmp_path, source="raw", augment={"pca": False})
    dm.setup()
    train = dm.sources["train"]
    assert len(train) == 8
    for i, (path, _) in enumerate(train.items):
        image, label = train[i]
        assert label == WNIDS.index(Path(path).parent.name) and image.shape == (3, 32, 32)
        if "grayscale" not in path:  # the content says the class: its colour is the nearest
            pixel = image.float().mean((1, 2))
            assert int(torch.cdist(pixel[None], torch.tensor(COLOURS).float()).argmin()) == label, path


def test_truncated_file_is_named_or_skipped_with_a_count(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    write_ilsvrc(tmp_path, "folders", train_per_class=2)
    bad = tmp_path / "train" / WNIDS[1] / "broken.JPEG"
    corrupt_jpeg(bad)
    dm = imagenet(tmp_path, source="raw", stats_sample=4)
    with pytest.raises(DataError, match=r"broken.JPEG: cannot be decoded"):
        dm.setup()
        [dm.sources["train"][i] for i in range(len(dm.sources["train"]))]
    dm = imagenet(tmp_path, source="raw", on_corrupt="skip")
    dm.setup()
    assert "1 unreadable train images left out" in capfd.readouterr().err
    assert len(dm.sources["train"]) == 8 and str(bad) not in [p for p, _ in dm.sources["train"].items]
    assert all(label == WNIDS.index(Path(p).parent.name) for p, label in dm.sources["train"].items)


# --- the resize-once store --------------------------------------------------------------------------------------


def test_shorter_side_is_rescaled_then_the_centre_cropped(tmp_path: Path) -> None:
    # 512x256 -> shorter side 32: 64x32, of which the central 32x32 (columns 16-48) is kept. Red and blue
    # margins (96 of 512 columns: output columns 0-12 and 52-64) are cut off; the white top band (64 of 256
    # rows: output rows 0-8) stays, as the whole height does.
    array = np.zeros((256, 512, 3), np.uint8)
    array[:, :96], array[:, 96:416], array[:, 416:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    array[:64, 96:416] = 255
    for name, image in (("wide", array), ("tall", array.transpose(1, 0, 2))):
        Image.fromarray(np.ascontiguousarray(image)).save(tmp_path / f"{name}.png")
        stored = stored_array(tmp_path / f"{name}.png", 32)
        if name == "tall":  # 256x512 portrait: the same, transposed
            stored = stored.transpose(0, 2, 1)
        assert stored.shape == (3, 32, 32)
        assert (stored[:, 1:7] == 255).all(), name  # the white band: the full height is there
        assert (stored[:, 10:] == np.array([0, 255, 0])[:, None, None]).all(), name  # no red, no blue


def test_store_holds_every_image_with_its_label_and_reads_as_the_raw_tree(devkit_tree: Path) -> None:
    dm = imagenet(devkit_tree, store_dir=str(devkit_tree / "store"))
    manifest = dm.prepare_store(workers=2, shard_size=5)
    assert manifest["splits"]["train"]["images"] == 16 and manifest["splits"]["val"]["images"] == 8
    assert [s["count"] for s in manifest["splits"]["train"]["shards"]] == [5, 5, 5, 1]
    store, raw = imagenet(devkit_tree, store_dir=str(devkit_tree / "store")), imagenet(devkit_tree, source="raw")
    store.setup(), raw.setup()
    assert store.used_source == "store" and raw.used_source == "raw"
    for split in ("train", "val", "test"):
        assert len(store.sources[split]) == len(raw.sources[split])
        for i in range(len(raw.sources[split])):
            (a, la), (b, lb) = store.sources[split][i], raw.sources[split][i]
            assert la == lb and torch.equal(a, b), (split, i)
    truth = {Path(p).stem: label for p, label in list_split(open_tree(devkit_tree), "val")}
    assert store.sources["test"].labels == [truth[s] for s in sorted(truth)]  # the 50k val set is the test set
    # statistics of all training images, on the [0, 1] scale
    pixels = torch.stack([store.sources["train"][i][0] for i in range(16)]).float() / 255
    stats = load_stats(devkit_tree / "store" / "stats.json")
    np.testing.assert_allclose(stats["mean"], pixels.mean((0, 2, 3)).numpy(), atol=1e-5)
    flat = pixels.permute(1, 0, 2, 3).reshape(3, -1).double()
    np.testing.assert_allclose(stats["cov"], torch.cov(flat, correction=0).numpy(), atol=1e-6)
    assert store.mean == stats["mean"] and store.eigval == stats["eigval"]
    assert store.class_names == [f"{w} {WORDS[w]}" for w in WNIDS]
    x, y = next(iter(store.train_dataloader()))
    assert x.shape == (4, 3, 28, 28) and y.dtype == torch.int64
    assert next(iter(store.test_dataloader()))[0].shape == (4, 10, 3, 28, 28)


def test_interrupted_prepare_resumes_to_the_same_store(tmp_path: Path) -> None:
    write_ilsvrc(tmp_path / "tree", "folders", train_per_class=4)
    good = tmp_path / "tree" / "train" / WNIDS[3] / f"{WNIDS[3]}_2.JPEG"
    saved = good.read_bytes()
    corrupt_jpeg(good)  # the 15th of 16 training images: prepare stops in the 4th shard
    store = tmp_path / "store"
    dm = imagenet(tmp_path / "tree", store_dir=str(store))
    with pytest.raises(DataError, match=rf"{good.name}: cannot be decoded.*rerun python src/prepare.py"):
        dm.prepare_store(workers=1, shard_size=4)
    assert not (store / COMPLETE).exists() and not list(store.rglob("*.part"))
    finished = {p: p.stat().st_mtime_ns for p in store.glob("train/*.npy")}
    assert len(finished) == 3
    done = len(list(store.glob("*/*.json")))  # 3 of train, and the val shards the worker had already taken
    with pytest.raises(DataError, match=rf"store at {store} is incomplete \({done} of 6 shards\); rerun python src/"):
        imagenet(tmp_path / "tree", store_dir=str(store)).setup()
    good.write_bytes(saved)  # the file is fixed; the rerun only does what is left
    dm.prepare_store(workers=1, shard_size=4)
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    fresh = tmp_path / "fresh"
    imagenet(tmp_path / "tree", store_dir=str(fresh)).prepare_store(workers=2, shard_size=4)
    for npy in sorted(fresh.rglob("*.npy")):
        assert np.array_equal(np.load(npy), np.load(store / npy.relative_to(fresh))), npy
    for name in ("COMPLETE.json", "stats.json", "plan.json"):
        assert (fresh / name).read_text() == (store / name).read_text().replace(str(store), str(fresh)), name


def test_prepare_skips_unreadable_files_and_lists_them(tmp_path: Path) -> None:
    write_ilsvrc(tmp_path, "folders", train_per_class=2)
    bad = tmp_path / "val" / WNIDS[0] / "broken.JPEG"
    corrupt_jpeg(bad)
    manifest = imagenet(tmp_path, on_corrupt="skip").prepare_store(workers=1, shard_size=3)
    assert [s["path"] for s in manifest["splits"]["val"]["skipped"]] == [str(bad)]
    dm = imagenet(tmp_path)
    dm.setup()
    raw = imagenet(tmp_path, source="raw", on_corrupt="skip")
    raw.setup()
    assert dm.sources["val"].labels == [label for _, label in raw.sources["val"].items]  # no label shifted


# --- §4.1 PCA colour noise --------------------------------------------------------------------------------------


def test_pca_noise_adds_eigvec_times_alpha_lambda_scaled_to_the_pixels() -> None:
    eigval, eigvec = torch.tensor(PUBLISHED_EIGVAL), torch.tensor(PUBLISHED_EIGVEC)
    alpha = torch.tensor([0.1, -0.2, 0.05])
    expected = sum(eigvec[:, i] * alpha[i] * eigval[i] for i in range(3))  # eigenvalues of [0, 1] pixels
    torch.testing.assert_close(pca_shift(alpha, eigval, eigvec, 1.0).flatten(), expected)
    torch.testing.assert_close(pca_shift(alpha, eigval, eigvec).flatten(), 255 * expected)  # the net's raw pixels
    # inside the transform: the same shift on every pixel, alpha ~ N(0, 0.1) drawn per image
    img = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    t = TrainTransform(8, [0.0] * 3, random_crop=False, flip=False, pca=True)
    shifts = torch.stack([(t(img) - img.float()).flatten(1) for _ in range(4000)])
    assert (shifts.std(-1) < 1e-3).all()  # constant over the pixels of one image
    shifts = shifts[:, :, 0]
    # std of channel c: 255 * pca_std * sqrt(sum_i p_ci^2 lambda_i^2) -- about 3.2 grey levels for red
    predicted = 255 * 0.1 * (eigvec**2 @ eigval**2).sqrt()
    torch.testing.assert_close(shifts.std(0), predicted, rtol=0.06, atol=0)
    assert 2.5 < predicted[0] < 3.6 and shifts.abs().max() < 25  # grey levels, not twice them (cuda-convnet2)
    assert shifts.mean(0).abs().max() < 0.5


def test_pca_needs_rgb_data() -> None:
    with pytest.raises(ValueError, match=r"augment.pca needs RGB images \(channels=3\); this data set has 1 channel"):
        FashionMNISTDataModule(data_dir="x", augment={"pca": True})


def test_train_py_stops_on_pca_with_grayscale_data(train_run) -> None:
    proc, _ = train_run("debug=fast", "data.augment.pca=true")
    assert proc.returncode != 0
    assert "error: data: augment.pca needs RGB images" in proc.stderr and "Traceback" not in proc.stderr


# --- §4.1 test: 10 crops, softmax averaged ----------------------------------------------------------------------


class ScoreByCorner(nn.Module):
    """Logits chosen by the crop: a crop whose top-left pixel is bright (above the mean; all else is at the mean) is
    very sure of class 1 (logits 0, 30), any other crop fairly sure of class 0 (2, 0). One such crop of ten: mean
    logits 1.8 vs 3.0, mean softmax 0.79 vs 0.21."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        strong = x[:, 0, 0, 0] > 0
        return torch.where(strong[:, None], torch.tensor([0.0, 30.0]), torch.tensor([2.0, 0.0]))


def test_ten_crop_prediction_averages_softmax_not_logits() -> None:
    # Three different images, so that averaging over the wrong axis (crop i of every image) gives other numbers.
    # The ten 4x4 patches of a 6x6 image start at (0, 0), (0, 2), (2, 0), (2, 2), (1, 1); the mirrors' top-left
    # pixels are (0, 3), (0, 5), (2, 3), (2, 5), (1, 4).
    imgs = torch.zeros(3, 3, 6, 6, dtype=torch.uint8)
    imgs[0, :, 0, 0] = 255  # one strong crop: softmax says class 0, mean logits class 1
    # image 1: no strong crop, class 0 both ways
    for r, c in ((0, 0), (0, 2), (2, 0), (2, 2), (1, 1), (0, 3)):
        imgs[2, :, r, c] = 255  # six strong crops: class 1 both ways
    transform = EvalTransform(4, [0.0] * 3, crops=10)
    crops = torch.stack([transform(img) for img in imgs])
    assert crops.shape == (3, 10, 3, 4, 4)
    module = AlexNetModule(ScoreByCorner(), optimizer=None, num_classes=2)
    logits = torch.stack([ScoreByCorner()(c) for c in crops])  # 3 x 10 x 2, each image's own crops
    assert (logits[:, :, 1] == 30).sum(1).tolist() == [1, 0, 6]
    probs = module.predict_proba(crops)
    torch.testing.assert_close(probs, logits.softmax(-1).mean(1))
    assert logits.mean(1).argmax(-1).tolist() == [1, 0, 1]  # averaging logits: one very sure crop outvotes nine
    assert probs.argmax(-1).tolist() == [0, 0, 1]  # averaging softmax (§4.1): nine fairly sure crops win


# --- end to end -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_prepare_then_train_then_predict(
    devkit_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture, run_cli
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(devkit_tree, tree, ignore=shutil.ignore_patterns("store"))
    for label, kind in enumerate(["cmyk_jpeg", "png_named_jpeg", "grayscale_jpeg", "palette_png"]):
        quirk(tree / "train" / WNIDS[label] / f"quirk_{kind}.JPEG", kind, COLOURS[label])
    data = ilsvrc_overrides(tree)
    proc = run_cli("prepare.py", *data, "workers=2", "shard_size=6", f"hydra.run.dir={tmp_path}/prep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "store complete" in proc.stdout and "train 20 (skipped 0), val 8" in proc.stdout
    assert (tree / "prepared_32" / COMPLETE).is_file()
    run = tmp_path / "run"
    net = ["model.width=0.125", "model.fc_width=64", "data.batch_size=4"]
    capsys.readouterr()
    train_in_process([*data, *net, "debug=fast"], run)
    assert "no store" not in capsys.readouterr().err  # it read the store
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_images"] == 20 and summary["test_crops"] == 10
    quadrants = np.zeros((64, 64, 3), np.uint8)  # four class colours, one per quadrant: the ten patches differ
    for i, (r, c) in enumerate(((0, 0), (0, 32), (32, 0), (32, 32))):
        quadrants[r : r + 32, c : c + 32] = COLOURS[i]
    Image.fromarray(quadrants).save(tmp_path / "quadrants.png")
    images = [tree / "val" / "ILSVRC2012_val_00000001.JPEG", tree / "train" / WNIDS[0] / "quirk_cmyk_jpeg.JPEG",
              tmp_path / "quadrants.png"]  # fmt: skip
    (tmp_path / "bad.JPEG").write_bytes(b"not an image")
    proc = run_cli("predict.py", *map(str, images), str(tmp_path / "bad.JPEG"), f"run_dir={run}",
                   f"hydra.run.dir={tmp_path}/predict")  # fmt: skip
    assert proc.returncode == 1
    assert f"{tmp_path / 'bad.JPEG'}: cannot be decoded" in proc.stderr and "1 of 4 images" in proc.stderr
    predictions = json.loads((tmp_path / "predict" / "predictions.json").read_text())
    assert predictions["view"] == "10 crops, softmax averaged"
    assert sorted(predictions["predictions"]) == sorted(map(str, images))
    for rows in predictions["predictions"].values():
        assert len(rows) == 4 and sum(r["probability"] for r in rows) == pytest.approx(1, abs=1e-4)
        assert {r["name"] for r in rows} == {f"{w} {WORDS[w]}" for w in WNIDS}
    # the probabilities are the run's best weights on the 10 patches of each image with the training mean removed,
    # softmax averaged: recomputed here with a net of the run's config, the weights loaded by hand
    logits = ten_crop_logits(run / "checkpoints" / "best.ckpt", images)
    for path, patch_logits in logits.items():
        probs = patch_logits.softmax(-1).mean(0)
        got = {r["class"]: r["probability"] for r in predictions["predictions"][str(path)]}
        assert got == pytest.approx(dict(enumerate(probs.tolist())), rel=1e-5, abs=1e-7), path
        top = max(got, key=got.get)
        assert WNIDS[top] in proc.stdout and f"{got[top]:.4f}" in proc.stdout  # printed too
    # on the quadrants the patches disagree: the centre patch alone would have said other numbers (this barely
    # trained net's logits are too close for softmax vs logit averaging to show: test_ten_crop_prediction_... pins it)
    quadrant_logits = logits[tmp_path / "quadrants.png"]
    assert (quadrant_logits.softmax(-1).mean(0) - quadrant_logits[4].softmax(-1)).abs().max() > 1e-4


def ten_crop_logits(ckpt_path: Path, images: list[Path]) -> dict[Path, torch.Tensor]:
    """The logits of the 10 test patches of each image, from the checkpoint's weights and its run config."""
    from hydra.utils import instantiate

    from alexnet import AlexNet

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    run_cfg = ckpt["alexnet_config"]
    net = AlexNet(**{k: v for k, v in run_cfg["model"].items() if k not in ("_target_", "devices")})
    net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    datamodule = instantiate(run_cfg["data"])
    datamodule.setup()  # the training-set mean from the data, not from the checkpoint
    assert min(datamodule.mean) > 0.1  # coloured images: a mean worth subtracting
    transform = datamodule.eval_transform(crops=10)
    with torch.no_grad():
        net.eval()
        return {path: net(transform(datamodule.load_image(path))) for path in images}


def test_imagefolder_reads_any_class_folder_tree_raw(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_ilsvrc(tmp_path / "tree", "folders", train_per_class=4)
    for wnid in WNIDS:  # a test/ split of its own
        shutil.copytree(tmp_path / "tree" / "val" / wnid, tmp_path / "tree" / "test" / wnid)
    run = tmp_path / "run"
    train_in_process([
        "data=imagefolder", f"data.root={tmp_path / 'tree'}", "data.stored_size=32", "data.crop_size=28",
        "data.batch_size=4", "data.test_crops=1", "model.width=0.125", "model.fc_width=64", "debug=fast",
    ], run)  # fmt: skip
    stderr = capsys.readouterr().err
    assert "no store at" in stderr and "slower" in stderr  # the raw tree, with the warning
    config = (run / "config.yaml").read_text()
    assert "num_classes: 4" in config  # counted from the class folders
    dm = ImageFolderDataModule(root=str(tmp_path / "tree"), num_classes=4, stored_size=32, crop_size=28)
    dm.setup()
    assert dm.sources["test"].items[0][0].startswith(str(tmp_path / "tree" / "test"))


def test_tiny_imagenet_layout_is_read_too(tmp_path: Path) -> None:
    # train/<wnid>/images/*.JPEG; val/images/*.JPEG labelled by val/val_annotations.txt; test/images/ unlabelled
    truth = write_ilsvrc(tmp_path, "folders", train_per_class=2)
    for wnid in WNIDS:
        (tmp_path / "train" / wnid / "images").mkdir()
        for f in (tmp_path / "train" / wnid).glob("*.JPEG"):
            f.rename(tmp_path / "train" / wnid / "images" / f.name)
        (tmp_path / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    (tmp_path / "val" / "images").mkdir()
    lines = []
    for f in sorted((tmp_path / "val").glob("n*/*.JPEG")):
        f.rename(tmp_path / "val" / "images" / f.name)
        lines.append(f"{f.name}\t{f.parent.name}\t0\t0\t10\t10\n")
    (tmp_path / "val" / "val_annotations.txt").write_text("".join(lines))
    for wnid in WNIDS:
        (tmp_path / "val" / wnid).rmdir()
    (tmp_path / "test" / "images").mkdir(parents=True)
    shutil.copy(tmp_path / "val" / "images" / "ILSVRC2012_val_00000001.JPEG", tmp_path / "test" / "images")
    dm = imagenet(tmp_path, source="raw")
    dm.setup()
    assert len(dm.sources["train"]) == 8
    assert {Path(p).stem: label for p, label in dm.sources["test"].items} == truth  # test = val: test/ has no labels


def test_a_half_sorted_validation_folder_is_an_error(tmp_path: Path) -> None:
    from alexnet.data.layout import list_class_folders

    (tmp_path / "n01").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "n01" / "a.JPEG")
    Image.new("RGB", (8, 8)).save(tmp_path / "ILSVRC2012_val_00000002.JPEG")  # not sorted yet
    with pytest.raises(DataError, match="lie next to class folders"):
        list_class_folders(tmp_path, ["n01"])


@pytest.mark.parametrize(
    "text, words",
    [("\ufeffImageId,PredictionString\nILSVRC2012_val_00000001,n01 1 2 3 4\n", None),
     ("Image,Labels\nx,n01\n", "expected the header"),
     ("ImageId,PredictionString\nx,\n", ":2: no image id or no WNID")],
)  # fmt: skip
def test_kaggle_solution_is_read_or_named(text: str, words: str | None, tmp_path: Path) -> None:
    from alexnet.data.layout import read_kaggle_solution

    path = tmp_path / "LOC_val_solution.csv"
    path.write_text(text, encoding="utf-8")
    if words is None:
        assert read_kaggle_solution(path) == {"ILSVRC2012_val_00000001": "n01"}
    else:
        with pytest.raises(DataError, match=words):
            read_kaggle_solution(path)


def test_a_shared_store_from_another_tree_is_refused(tmp_path: Path, run_cli) -> None:
    write_ilsvrc(tmp_path / "a", "folders", train_per_class=1, val_per_class=1)
    store = tmp_path / "shared_store"
    proc = run_cli("prepare.py", *ilsvrc_overrides(tmp_path / "a", f"data.store_dir={store}"), "workers=1",
                   f"hydra.run.dir={tmp_path}/prep")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    write_ilsvrc(tmp_path / "b", "folders", train_per_class=1, val_per_class=1)
    (tmp_path / "b" / "train" / WNIDS[0]).rename(tmp_path / "b" / "train" / "n09999999")  # another class
    dm = ImageNetDataModule(root=str(tmp_path / "b"), store_dir=str(store), num_classes=4, stored_size=32,
                            crop_size=28)  # fmt: skip
    with pytest.raises(DataError, match=r"prepared from another tree.*in the tree only: \['n09999999'\]"):
        dm.setup()
    ok = ImageNetDataModule(root=str(tmp_path / "a"), store_dir=str(store), num_classes=4, stored_size=32, crop_size=28)
    ok.setup()  # its own tree: read from the store
    assert ok.used_source == "store"
