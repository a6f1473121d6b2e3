"""§4.1 in batches on the device (data.augment_on=device): the same numbers as the per-image path, through real
training runs, and the statistics of the choices: offsets uniform over every position, flips at rate 0.5, one colour
draw per image per presentation, the ten views, all deterministic per seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from scipy import stats

from alexnet.data.batched import augment_batch, choices, crop_flip, eval_batch
from alexnet.data.transforms import EvalTransform, TrainTransform
from alexnet.streams import generator

MEAN = (0.45, 0.5, 0.55)


def _images(n: int, size: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("pca, pixel_max", [(True, 255.0), (False, 255.0), (True, 1.0)])
@pytest.mark.parametrize("random_crop, flip", [(True, True), (False, True), (True, False)])
def test_a_batch_is_augmented_exactly_as_each_image_alone(pca, pixel_max, random_crop, flip) -> None:
    transform = TrainTransform(32, MEAN, random_crop=random_crop, flip=flip, pca=pca, pixel_max=pixel_max)
    images = _images(16, 40)
    alone = torch.stack([transform(img, generator(7, "augment", 3, i)) for i, img in enumerate(images)])
    params = torch.stack([choices(transform, 40, 40, generator(7, "augment", 3, i)) for i in range(16)])
    assert torch.equal(augment_batch(transform, images, params), alone)


def test_crop_offsets_are_uniform_over_every_position_and_flips_half() -> None:
    transform = TrainTransform(28, (0.5,), pixel_max=255.0)
    n = 6000
    params = torch.stack([choices(transform, 32, 32, generator(1, "augment", i // 100, i % 100)) for i in range(n)])
    top, left, flipped = params[:, 0].long(), params[:, 1].long(), params[:, 2]
    joint = torch.bincount(top * 5 + left, minlength=25)  # 5 x 5 positions for 28 in 32
    assert (joint > 0).all()
    assert stats.chisquare(joint.numpy()).pvalue > 1e-3
    rate = flipped.mean().item()
    assert abs(rate - 0.5) < 4 * (0.25 / n) ** 0.5
    # each (top, left, flip) cuts exactly that window, mirrored where asked
    images = _images(8, 32, channels=1)
    cut = crop_flip(images, top[:8], left[:8], flipped[:8] > 0.5, 28)
    for b in range(8):
        window = images[b, :, top[b] : top[b] + 28, left[b] : left[b] + 28]
        assert torch.equal(cut[b], window.flip(-1) if flipped[b] else window)


def test_one_colour_draw_per_image_per_presentation_and_the_same_for_the_same_seed() -> None:
    transform = TrainTransform(28, MEAN, pca=True)

    def shift(seed: int, epoch: int, i: int) -> torch.Tensor:
        return choices(transform, 32, 32, generator(seed, "augment", epoch, i))[3:]

    draws = [shift(1, e, i) for e in range(3) for i in range(20)]
    assert len({tuple(d.tolist()) for d in draws}) == len(draws)  # every presentation its own
    assert torch.equal(shift(1, 2, 5), shift(1, 2, 5)) and not torch.equal(shift(1, 2, 5), shift(2, 2, 5))
    # the shift is the §4.1 one: about 3.2 grey levels of std per channel at alpha ~ N(0, 0.1)
    many = torch.stack([shift(3, 0, i) for i in range(3000)])
    assert many.std(0).min() > 2.5 and many.std(0).max() < 4.0


@pytest.mark.parametrize("crops", [1, 10])
def test_the_test_views_of_a_batch_are_those_of_each_image(crops: int) -> None:
    transform = EvalTransform(28, (0.5,), crops=crops)
    images = _images(6, 32, channels=1)
    batch = eval_batch(transform, images)
    assert torch.equal(batch, torch.stack([transform(img) for img in images]))
    if crops == 10:  # corners, centre, then the same five mirrored (§4.1)
        assert batch.shape == (6, 10, 1, 28, 28)
        assert torch.equal(batch[:, 9], batch[:, 4].flip(-1)) and torch.equal(batch[:, 5], batch[:, 0].flip(-1))
        assert torch.equal(batch[:, 0], images[:, :, :28, :28].float() - 127.5)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_training_on_device_batches_gives_the_same_run(train_here, tmp_path: Path) -> None:
    """The real Trainer, three ways: per-image transforms in the loader, batched on the device, and with the
    images resident on the device. Same seed: the same weights, bit for bit, and the same 10-crop test."""
    runs = {}
    for name, extra in {
        "loader": ["data.augment_on=loader"],
        "device": ["data.augment_on=device"],
        "resident": ["data.augment_on=device", "data.resident=true"],
    }.items():
        _, runs[name] = train_here(
            "debug=fast", "trainer.max_epochs=2", "data.test_crops=10", "model.dropout=0.5", "model.width=0.125",
            "model.fc_width=64", *extra,
            run_dir=tmp_path / name,
        )  # fmt: skip
    reference = _weights(runs["loader"])
    for name in ("device", "resident"):
        weights = _weights(runs[name])
        assert all(torch.equal(weights[k], reference[k]) for k in reference), name
        ref_summary = (runs["loader"] / "summary.json").read_text()
        import json

        assert json.loads((runs[name] / "summary.json").read_text())["test"] == json.loads(ref_summary)["test"]


def test_resident_images_need_device_augmentation(train_cfg) -> None:
    from alexnet.train.pipeline import ConfigError, build

    with pytest.raises(ConfigError, match="resident=true keeps the images on the device"):
        build(train_cfg("data.augment_on=loader", "data.resident=true"))
    with pytest.raises(ConfigError, match="augment_on"):
        build(train_cfg("data.augment_on=gpu"))
