"""The embedded net's CPU training step, taken apart (issue: CPU speed).

    python benchmarks/cpu_step.py [--repeats 15] [--json PATH]      # every section
    python benchmarks/cpu_step.py --sections raw layers             # some of them

Sections, each printed as a table (and all written to --json):
- `raw`: the training step outside Lightning (forward, cross entropy, backward, PaperSGD step; batch 128 of
  28x28 crops, the default net `model=alexnet_mini`), in each layout/kernel variant, measured side by side:
  interleaved repeats of every variant, medians, ratios against today's NCHW step;
- `layers`: each layer's forward and backward alone at its real input shape, NCHW against NHWC;
- `eval`: eval-mode forward throughput at the batch sizes of validation and of the 10-crop test;
- `profile`: torch.profiler's table of the step's own ops (self CPU time), in the chosen layout.
The Lightning loop, data loading, augmentation, metrics, logging, validation and the 10-crop test are profiled in
a real run by benchmarks/cpu_run.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from alexnet.model.net import AlexNet  # noqa: E402
from alexnet.train.optim import PaperSGD, parameter_groups  # noqa: E402

BATCH = 128


def mini_kwargs() -> dict:
    """The default run's net, as conf/ composes it."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        model = OmegaConf.to_container(compose("train").model, resolve=True)
    return {k: v for k, v in model.items() if k not in ("_target_", "devices")} | {"num_classes": 10, "in_channels": 1,
                                                                                   "input_size": 28}  # fmt: skip


def make_step(channels_last: bool, compiled: bool = False, bf16: bool = False, seed: int = 0) -> Callable[[], float]:
    torch.manual_seed(seed)
    net = AlexNet(**mini_kwargs())
    optimizer = PaperSGD(parameter_groups(net.named_parameters(), False), lr=0.02, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(BATCH, 1, 28, 28, generator=g) * 255 - 73).contiguous()  # raw pixels minus the mean
    y = torch.randint(0, 10, (BATCH,), generator=g)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    run = torch.compile(net) if compiled else net

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # trainer.precision=bf16-mixed
            loss = F.cross_entropy(run(x), y)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, inner: int = 5) -> dict[str, float]:
    """Median ms per call of each fn, the fns taking turns so that a busy machine slows them alike."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - start) / inner * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def raw(repeats: int, compile_too: bool) -> dict:
    variants = {"nchw": make_step(False), "channels_last": make_step(True)}
    variants["channels_last+bf16-mixed"] = make_step(True, bf16=True)  # not fp32: a different arithmetic
    if compile_too:
        variants["channels_last+compile"] = make_step(True, compiled=True)
    ms = interleaved(variants, repeats)
    base = ms["nchw"]
    print(f"\nraw training step, batch {BATCH}, {torch.get_num_threads()} threads (median of {repeats} x 5 steps)")
    print(f"{'variant':24} {'ms/step':>8} {'images/s':>9} {'speed-up':>9}")
    for name, t in ms.items():
        print(f"{name:24} {t:8.1f} {BATCH / t * 1e3:9.0f} {base / t:8.2f}x")
    return {"ms_per_step": ms, "speedup_vs_nchw": {k: base / v for k, v in ms.items()}}


def layers(repeats: int) -> dict:
    """Forward and forward+backward of each layer alone, on inputs of the shape it sees in the net."""
    torch.manual_seed(0)
    net = AlexNet(**mini_kwargs())
    inputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda m, i, n=n: inputs.__setitem__(n, i[0].detach()))
             for n, m in net.named_children()]  # fmt: skip
    net(torch.rand(BATCH, 1, 28, 28) * 255 - 73)
    for h in hooks:
        h.remove()
    out: dict[str, dict[str, float]] = {}
    print(f"\neach layer alone, batch {BATCH}: forward / forward+backward, ms (median of {repeats} x 5)")
    print(f"{'layer':8} {'input':>16} {'NCHW fwd':>9} {'NCHW f+b':>9} {'NHWC fwd':>9} {'NHWC f+b':>9}")
    for name, layer in net.named_children():
        x = inputs[name]
        fns = {}
        for fmt, mf in (("nchw", torch.contiguous_format), ("nhwc", torch.channels_last)):
            xf = x.contiguous(memory_format=mf) if x.dim() == 4 else x
            lf = layer.to(memory_format=mf) if x.dim() == 4 else layer
            xg = xf.clone().requires_grad_(name != "conv1")  # conv1 sees the images: no input gradient

            def fwd(lf=lf, xf=xf) -> object:
                with torch.no_grad():
                    return lf(xf)

            def both(lf=lf, xg=xg) -> None:
                y = lf(xg)
                y.backward(torch.ones_like(y))

            fns[f"{fmt} fwd"], fns[f"{fmt} f+b"] = fwd, both
        ms = interleaved(fns, repeats)
        out[name] = ms
        print(f"{name:8} {str(tuple(x.shape[1:])):>16} " + " ".join(f"{ms[k]:9.2f}" for k in fns))
    layer.to(memory_format=torch.contiguous_format)
    totals = {k: sum(v[k] for v in out.values()) for k in next(iter(out.values()))}
    print(f"{'sum':8} {'':>16} " + " ".join(f"{v:9.2f}" for v in totals.values()))
    return {"per_layer_ms": out, "sum_ms": totals}


def profile(steps: int, channels_last: bool) -> dict:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    step = make_step(channels_last)
    for _ in range(3):
        step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    rows = [(e.key, e.self_cpu_time_total / steps / 1e3, e.self_cpu_time_total / total, e.count // steps)
            for e in events[:20]]  # fmt: skip
    print(f"\ntorch.profiler, {'NHWC' if channels_last else 'NCHW'}: self CPU time per step by op (top 20)")
    for key, ms, share, calls in rows:
        print(f"{key[:48]:48} {ms:7.2f} ms {share:6.1%}  x{calls}")
    return {"layout": "nhwc" if channels_last else "nchw", "ops": [list(r) for r in rows]}


def evaluation(repeats: int) -> dict:
    """Forward passes in eval mode (validation, the 10-crop test, the training-error pass): images per second at
    batch sizes from the training batch to the 10-crop test's 10 x 128 crops, in each layout."""
    torch.manual_seed(0)
    fns, sizes = {}, (128, 320, 640, 1280)
    for fmt, mf in (("nchw", torch.contiguous_format), ("nhwc", torch.channels_last)):
        net = AlexNet(**mini_kwargs()).eval().to(memory_format=mf)
        for b in sizes:
            x = (torch.rand(b, 1, 28, 28) * 255 - 73).contiguous(memory_format=mf)

            def fwd(net=net, x=x) -> object:
                with torch.no_grad():
                    return net(x)

            fns[(fmt, b)] = fwd
    ms = interleaved(fns, repeats, inner=2)
    print(f"\neval-mode forward, images/s (median of {repeats} x 2)")
    print(f"{'batch':>6} {'NCHW':>8} {'NHWC':>8}")
    for b in sizes:
        print(f"{b:6d} {b / ms[('nchw', b)] * 1e3:8.0f} {b / ms[('nhwc', b)] * 1e3:8.0f}")
    return {f"{fmt}_{b}": b / t * 1e3 for (fmt, b), t in ms.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=["raw", "layers", "eval", "profile"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (inductor) in `raw`")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if "raw" in args.sections:
        results["raw"] = raw(args.repeats, args.compile)
    if "layers" in args.sections:
        results["layers"] = layers(args.repeats)
    if "eval" in args.sections:
        results["eval_images_per_sec"] = evaluation(args.repeats)
    if "profile" in args.sections:
        results["profile"] = {f: profile(10, f == "nhwc") for f in ("nchw", "nhwc")}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
