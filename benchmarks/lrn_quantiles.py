"""Does LRN normalise? The quantiles of its denominator (k + alpha' * sum of a^2)^beta at each LRN layer.

    python benchmarks/lrn_quantiles.py RUN_DIR_OR_CKPT [--images 256] [--json OUT]

Runs the checkpoint's net (rebuilt from the config saved in it) on the first `--images` validation images, as
validation feeds them (centre crop, the run's pixel scale and mean), and prints, for lrn1 and lrn2, the
percentiles of the denominator over every unit, in units of k^beta: 1.00 everywhere means the layer is the
constant factor k^-beta and normalises nothing (what a net fed [0, 1] pixels gets); a 99th percentile of 1.2
means the strongest 1% of responses are damped 20% more than the rest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from alexnet.model.lrn import LocalResponseNorm  # noqa: E402
from alexnet.train.pipeline import load_checkpoint, rebuild  # noqa: E402

PERCENTILES = (5, 50, 95, 99, 99.9)


@torch.no_grad()
def denominator_quantiles(net: torch.nn.Module, batches: list[torch.Tensor]) -> dict[str, dict[str, float]]:
    """Per LRN layer: percentiles of the denominator / k^beta over every unit of every image in `batches`."""
    seen: dict[str, list[np.ndarray]] = {}
    hooks = []
    for name, layer in net.named_modules():
        if isinstance(layer, LocalResponseNorm):

            def hook(module: LocalResponseNorm, args: tuple, _name: str = name) -> None:
                d = module.denominator(args[0]) / module.k**module.beta
                seen.setdefault(_name, []).append(d.flatten().cpu().numpy())

            hooks.append(layer.register_forward_pre_hook(hook))
    for x in batches:
        net(x)
    for h in hooks:
        h.remove()
    out = {}
    for name, parts in seen.items():
        values = np.concatenate(parts)
        row = {f"p{p:g}": float(np.percentile(values, p)) for p in PERCENTILES}
        out[name] = {**row, "max": float(values.max()), "units": int(values.size)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run directory (its checkpoints/best.ckpt) or a .ckpt file")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    run = Path(args.run)
    cfg = OmegaConf.create({"ckpt_path": str(run) if run.is_file() else None, "run_dir": str(run)})
    ckpt_path, checkpoint, run_cfg = load_checkpoint(cfg)
    run_cfg.model.devices = None  # one device is enough to look at activations
    module, datamodule = rebuild(checkpoint, run_cfg)
    datamodule.setup("validate")
    module.eval()
    batches, count = [], 0
    for x, _ in datamodule.val_dataloader():
        batches.append(x[: args.images - count])
        count += len(batches[-1])
        if count >= args.images:
            break
    result = denominator_quantiles(module.net, batches)
    lrn = run_cfg.model.lrn
    k_beta = lrn.k**lrn.beta
    table = Table(title=f"LRN denominator / k^beta ({k_beta:.4f}) over {count} validation images, {ckpt_path}")
    for column in ("layer", *(f"p{p:g}" for p in PERCENTILES), "max", "units"):
        table.add_column(column, justify="right")
    for name, row in result.items():
        table.add_row(name, *(f"{row[f'p{p:g}']:.3f}" for p in PERCENTILES), f"{row['max']:.3f}", str(row["units"]))
    Console().print(table)
    pixel_max = run_cfg.data.get("pixel_max", 1.0)  # runs from before the setting fed [0, 1] pixels
    print(f"pixel_max={pixel_max}, alpha_convention={lrn.alpha_convention}, alpha={lrn.alpha}, k={lrn.k}, n={lrn.n}")
    if args.json:
        report = {"checkpoint": str(ckpt_path), "images": count, "pixel_max": pixel_max, "layers": result}
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
