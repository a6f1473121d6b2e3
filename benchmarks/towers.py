"""Training-step time of the two-tower net with both towers on ONE device, over the grouped net.

    python benchmarks/towers.py [--device cpu|cuda] [--net mini|paper] [--batch 128] [--steps 10]

Both nets hold the same weights; the step is forward, cross-entropy, backward and a PaperSGD update.
Steps alternate between the two nets so that clock and thermal drift hit both alike.
Goal (issue #3): ratio <= 1.10.
"""

import argparse
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from alexnet import AlexNet, TwoTowerAlexNet
from alexnet.train.optim import PaperSGD


def mini_kwargs() -> dict:
    """The embedded default net exactly as conf/model/alexnet_mini.yaml builds it."""
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        model = OmegaConf.to_container(compose("train").model, resolve=True)
    del model["_target_"], model["devices"]
    return model


NETS = {"paper": (dict, (3, 224)), "mini": (mini_kwargs, (1, 28))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--net", default="mini", choices=NETS)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    make_kwargs, (channels, size) = NETS[args.net]
    kwargs = make_kwargs()
    device = torch.device(args.device)
    torch.manual_seed(0)
    grouped = AlexNet(**kwargs).to(device)
    split = TwoTowerAlexNet([device, device], **kwargs).place()
    split.load_state_dict(grouped.state_dict())
    x = torch.randn(args.batch, channels, size, size, device=device)
    y = torch.randint(0, grouped.fc8.out_features, (args.batch,), device=device)

    def make_step(net):
        opt = PaperSGD(net.parameters(), lr=0.01)

        def step() -> None:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()

        return step

    steps = {"grouped": make_step(grouped), "two towers, one device": make_step(split)}
    seconds = {name: [] for name in steps}
    for _ in range(3):  # warm-up
        for step in steps.values():
            step()
    for _ in range(args.steps):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name].append(time.perf_counter() - start)
    median = {name: sorted(s)[len(s) // 2] for name, s in seconds.items()}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{args.net} net, batch {args.batch}, {name}")
    for key, value in median.items():
        print(f"  {key}: {value * 1e3:.1f} ms/step (median of {args.steps})")
    print(f"  ratio two towers / grouped: {median['two towers, one device'] / median['grouped']:.3f}")


if __name__ == "__main__":
    main()
