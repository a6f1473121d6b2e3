"""`python src/predict.py IMAGE ... run_dir=PATH`: new images preprocessed as the run's test images."""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexnet.data import FashionMNISTDataModule, ImageNetDataModule
from alexnet.data.fashion_mnist import CLASSES
from conftest import make_fashion_like, write_ilsvrc


def test_a_new_image_is_loaded_exactly_as_the_stored_images(tmp_path: Path, fmnist_dir: Path) -> None:
    # Fashion-MNIST: a 28x28 grey PNG of a test image becomes that test image as stored (padded to 32)
    dm = FashionMNISTDataModule(data_dir=str(fmnist_dir), search_dirs=[], download_url=None, val_size=100)
    dm.setup()
    stored, _ = dm.sources["test"][3]
    Image.fromarray(stored[0, 2:30, 2:30].numpy()).save(tmp_path / "item.png")
    assert torch.equal(dm.load_image(tmp_path / "item.png"), stored)
    # ILSVRC: a file is what the data module reads for it (decoded by content, rescaled, centre crop)
    write_ilsvrc(tmp_path / "tree", "folders", train_per_class=1, val_per_class=1)
    dm = ImageNetDataModule(root=str(tmp_path / "tree"), num_classes=4, stored_size=32, crop_size=28, source="raw")
    dm.setup()
    path, _ = dm.sources["test"].items[0]
    assert torch.equal(dm.load_image(path), dm.sources["test"][0][0])


def test_predict_on_a_fashion_mnist_run_prints_named_classes_and_survives_a_bad_file(fast_run, tmp_path: Path, run_cli):
    _, run_dir = fast_run  # debug=fast, width 0.125, centre-crop testing: predict's test_crops=10 overrides it
    checkpoint = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=False)
    assert len(checkpoint["FashionMNISTDataModule"]["mean"]) == 1  # the training-set mean travels with the run
    images, _ = make_fashion_like(2, seed=5)
    Image.fromarray(images[0].numpy().astype(np.uint8)).save(tmp_path / "trouser.png")
    Image.fromarray(images[1].numpy().astype(np.uint8)).convert("RGB").resize((90, 70)).save(tmp_path / "big.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    proc = run_cli(
        "predict.py", str(tmp_path / "trouser.png"), str(tmp_path / "empty.png"), f"images=[{tmp_path / 'big.jpg'}]",
        f"run_dir={run_dir}", "test_crops=10", f"hydra.run.dir={tmp_path}/predict",
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"{tmp_path / 'empty.png'}: cannot be decoded" in proc.stderr and "1 of 3 images" in proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "predict" / "predictions.json").read_text())
    assert report["view"] == "10 crops, softmax averaged"
    assert sorted(report["predictions"]) == sorted([str(tmp_path / "trouser.png"), str(tmp_path / "big.jpg")])
    for rows in report["predictions"].values():
        assert len(rows) == 5 and {r["name"] for r in rows} <= set(CLASSES)
        assert [r["probability"] for r in rows] == sorted((r["probability"] for r in rows), reverse=True)
    top = report["predictions"][str(tmp_path / "trouser.png")][0]["name"]
    assert top in proc.stdout and "probability" in proc.stdout


def test_a_hydra_flag_value_is_not_taken_for_an_image(tmp_path: Path, run_cli) -> None:
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(tmp_path / "a.png")
    proc = run_cli("predict.py", str(tmp_path / "a.png"), "--cfg", "job", "run_dir=somewhere", "top=3")
    assert proc.returncode == 0, proc.stderr[-2000:]  # Hydra prints the job config and exits
    assert "top: 3" in proc.stdout and "run_dir: somewhere" in proc.stdout and "cannot be decoded" not in proc.stderr


def test_a_hydra_flag_with_a_value_among_the_images(fast_run, tmp_path: Path, run_cli) -> None:
    # -cn's value is the config's name, not an image; the image after it is not -cn's value: Hydra's own parser
    # says which argument is a flag's value
    _, run_dir = fast_run
    Image.fromarray(make_fashion_like(1, seed=6)[0][0].numpy().astype(np.uint8)).save(tmp_path / "shirt.png")
    proc = run_cli("predict.py", "-cn", "predict", str(tmp_path / "shirt.png"), f"run_dir={run_dir}",
                   "--config-name", "predict", "top=2", f"hydra.run.dir={tmp_path}/predict")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "predict" / "predictions.json").read_text())
    assert list(report["predictions"]) == [str(tmp_path / "shirt.png")]
    assert len(report["predictions"][str(tmp_path / "shirt.png")]) == 2
