"""Does the paper's net learn from the paper's initialisation? Reproductions often report a flat loss here.

    python benchmarks/paper_init.py [--steps 300] [--batch 32] [--classes 10] [--json OUT] [override ...]

Trains `model=alexnet` (224x224 crops of 256x256 images, 60.9M parameters at 1000 classes; here --classes
outputs) exactly as composed from conf/ — the paper's N(0, 0.01) init with biases 1, raw 0-255 pixels minus
the mean, LRN, the paper's dropout, PaperSGD at lr 0.01 with weight decay on the weights — on a stream of
generated images whose class is a colour and a texture: class c has one of five hues and horizontal or
vertical stripes, with noise, random brightness and random stripe phase. Each image goes through the
project's own training transform (random 224 crop, flip, PCA colour noise, mean subtraction). Prints the
training loss every 10 steps against chance, ln(classes). Extra arguments are Hydra overrides of the train
config (e.g. model.init=kaiming, optimizer.bias_decay=true, data.pixel_max=1).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from alexnet.data.transforms import TrainTransform  # noqa: E402
from alexnet.train.optim import parameter_groups  # noqa: E402

HUES = torch.tensor([[200, 60, 50], [60, 170, 70], [60, 80, 200], [210, 190, 60], [150, 70, 170]]).float()


def generated_batch(n: int, classes: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n uint8 3x256x256 images: hue = label % 5, stripes horizontal if label // 5 % 2 else vertical."""
    labels = torch.randint(classes, (n,), generator=g)
    coords = torch.arange(256).float()
    period = 16.0
    phase = torch.rand(n, 1, generator=g) * period
    wave = (torch.sin(2 * math.pi * (coords[None] + phase) / period) > 0).float()  # n x 256
    horizontal = ((labels // 5) % 2 == 1).view(n, 1, 1)
    stripes = torch.where(horizontal, wave[:, :, None].expand(n, 256, 256), wave[:, None, :].expand(n, 256, 256))
    brightness = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=g)
    colour = HUES[labels % 5].view(n, 3, 1, 1) * brightness
    images = colour * (0.55 + 0.45 * stripes[:, None]) + 25 * torch.randn(n, 3, 256, 256, generator=g)
    return images.clamp(0, 255).to(torch.uint8), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32, help="the paper's is 128; 32 keeps a CPU run short")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    overrides = ["model=alexnet", "data=synthetic", f"data.num_classes={args.classes}", "data.augment.pca=true"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, *args.overrides])
    torch.manual_seed(args.seed)
    net = instantiate(cfg.model)
    optimizer_cfg = cfg.optimizer.copy()
    with open_dict(optimizer_cfg):
        bias_decay = optimizer_cfg.pop("bias_decay")
    optimizer = instantiate(optimizer_cfg)(parameter_groups(net.named_parameters(), bias_decay))
    g = torch.Generator().manual_seed(args.seed)
    mean = generated_batch(256, args.classes, g)[0].float().mean((0, 2, 3)) / 255  # the stats' [0, 1] scale
    data = cfg.data
    transform = TrainTransform(data.crop_size, mean.tolist(), pca=True, pixel_max=data.pixel_max)
    chance = math.log(args.classes)
    keys = ("model.init", "model.dropout_style", "data.pixel_max", "optimizer.lr", "optimizer.bias_decay")
    settings = {k: OmegaConf.select(cfg, k) for k in (*keys, "model.lrn.alpha_convention")}
    print(f"model=alexnet, {args.classes} classes, batch {args.batch}, {settings}; chance loss {chance:.3f}")
    curve, window, started = [], [], time.time()
    net.train()
    for step in range(1, args.steps + 1):
        images, labels = generated_batch(args.batch, args.classes, g)
        x = torch.stack([transform(img) for img in images])
        loss = F.cross_entropy(net(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if not math.isfinite(loss.item()):
            print(f"step {step}: non-finite loss {loss.item()}")
            break
        window.append(loss.item())
        if step % 10 == 0:
            mean_loss = sum(window) / len(window)
            window.clear()
            curve.append({"step": step, "loss": mean_loss, "seconds": round(time.time() - started, 1)})
            print(f"step {step:4d}  loss (mean of last 10) {mean_loss:.3f}  = {mean_loss / chance:.2f} x chance  "
                  f"{time.time() - started:.0f} s", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "batch": args.batch, "classes": args.classes,
                                         "chance": chance, "curve": curve}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
