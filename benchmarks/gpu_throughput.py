"""Throughput of the paper net and the embedded sweeps on one GPU (issue: throughput), in one run of under 8 minutes:

    python benchmarks/gpu_throughput.py [--out benchmarks/results] [--images 20000]
    python benchmarks/gpu_throughput.py --cpu      # the CPU-sized variant: every code path, tiny sizes

1. writes a JPEG store of `--images` generated ILSVRC-like 256x256 images (smooth random fields with texture, 1000
   classes; src/alexnet/data/jpeg.py) on local disk, and reports its bytes per image;
2. the paper net's training step alone (batch 128, data already on the device): fp32 and bf16-mixed, NCHW and
   channels_last, eager and torch.compile'd;
3. the loader alone (store -> decoded on the GPU -> augmented on the GPU) and end to end through Lightning's Trainer
   and the project's data module, at the fastest step setting;
4. the embedded net's sweep: `python src/train.py -m` with hydra/launcher=gpu_jobs, jobs side by side, images/s summed;
5. LRN alone (the paper's conv1 output), fp32 and bf16, eager and compiled, and its fp32 error against the reference.
Writes benchmarks/results/gpu_throughput_<device>.json (device, torch, commit, command, numbers) and prints the table
for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from alexnet import AlexNet  # noqa: E402
from alexnet.data.jpeg import write_jpeg_shard  # noqa: E402
from alexnet.data.stats import Moments  # noqa: E402
from alexnet.data.store import PLAN, _write_json, finish_store  # noqa: E402
from alexnet.model import LocalResponseNorm  # noqa: E402
from alexnet.optim import PaperSGD  # noqa: E402


def generated_shard(args: tuple[Path, int, int, int, int]) -> None:
    """One shard of generated images: a 16x16 random colour field upsampled to 256 (smooth regions, as photos have)
    plus fine noise (texture), so that JPEG's size and decoding cost are of the order of real photographs'."""
    base, start, count, size, classes = args
    rng = np.random.default_rng(start)
    low = torch.from_numpy(rng.integers(0, 256, (count, 3, 16, 16)).astype(np.float32))
    smooth = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    images = (smooth + torch.from_numpy(rng.normal(0, 12, (count, 3, size, size)).astype(np.float32))).clamp(0, 255)
    arrays = [a for a in images.to(torch.uint8).numpy()]
    meta = write_jpeg_shard(base, arrays, quality=90)
    labels = [int(c) for c in rng.integers(0, classes, count)]
    moments = Moments()
    for a in arrays:
        moments.add(a)
    meta = {"count": count, "labels": labels, "skipped": [], **meta, "moments": moments.to_json()}
    _write_json(base.with_suffix(".json"), meta)


def write_store(store: Path, images: int, val: int, size: int, classes: int, shard: int) -> dict:
    splits = {"train": images, "val": val}
    store.mkdir(parents=True, exist_ok=True)
    plan = {"version": 1, "stored_size": size, "shard_size": shard, "classes": [f"c{i:04d}" for i in range(classes)],
            "class_names": [f"class {i}" for i in range(classes)], "format": "jpeg", "quality": 90,
            "splits": {s: {"images": n, "digest": "generated"} for s, n in splits.items()}}  # fmt: skip
    _write_json(store / PLAN, plan)
    tasks = []
    for split, n in splits.items():
        (store / split).mkdir(exist_ok=True)
        tasks += [(store / split / f"{k // shard:05d}", k + (10**7 if split == "val" else 0), min(shard, n - k), size,
                   classes) for k in range(0, n, shard)]  # fmt: skip
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(generated_shard, tasks))
    seconds = time.perf_counter() - start
    manifest = finish_store(store, {s: [("", 0)] * n for s, n in splits.items()}, shard, ".jpegs")
    total = sum(s["bytes"] for s in manifest["splits"]["train"]["shards"])
    return {"images": images, "bytes_per_image": total / images, "write_seconds": round(seconds, 1)}


def timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of `fn` after `warmup` calls, synchronised at both ends only."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def step_alone(device: torch.device, batch: int, steps: int, warmup: int, settings: list[tuple]) -> list[dict]:
    rows = []
    for precision, layout, compiled in settings:
        torch.manual_seed(0)
        net = AlexNet().to(device)
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        net = net.to(memory_format=fmt)
        run = torch.compile(net) if compiled else net
        opt = PaperSGD(net.parameters(), lr=0.01)
        x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=fmt)
        y = torch.randint(0, 1000, (batch,), device=device)
        dtype = torch.bfloat16 if precision == "bf16-mixed" else None

        def step(opt=opt, run=run, x=x, y=y, dtype=dtype) -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(run(x), y)
            loss.backward()
            opt.step()

        start = time.perf_counter()
        seconds = timed(step, steps, warmup, device)
        rows.append({"precision": precision, "layout": layout, "compiled": compiled,
                     "images_per_s": round(batch / seconds), "ms_per_step": round(seconds * 1e3, 2),
                     "setup_and_warmup_s": round(time.perf_counter() - start - seconds * steps, 1)})  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def data_module(store: Path, batch: int, workers: int, block: int | None):
    from alexnet.data import ImageNetDataModule

    dm = ImageNetDataModule(root=str(store.parent / "no_tree"), store_dir=str(store), source="store",
                            store_format="jpeg", num_classes=1000, batch_size=batch, num_workers=workers,
                            augment_on="device", decode_on="device", shuffle_block=block, test_crops=1)  # fmt: skip
    dm.setup()
    return dm


def loader_alone(store: Path, device: torch.device, batch: int, workers: int, batches: int) -> dict:
    """The data path without the step: read, decode on the device, augment on the device."""
    import lightning as L

    dm = data_module(store, batch, workers, block=256)
    trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, logger=False)
    dm.trainer = trainer
    trainer.training = True  # what on_after_batch_transfer asks to pick the training transform
    loader = iter(dm.train_dataloader())
    done, start = 0, None
    for i in range(batches + 5):
        if i == 5:  # workers started, first batches out
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        b = dm.on_before_batch_transfer(next(loader), 0)
        b = [t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t for t in b]
        x, _ = dm.on_after_batch_transfer(b, 0)
        done += len(x) if i >= 5 else 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"images_per_s": round(done / (time.perf_counter() - start)), "workers": workers, "batch": batch}


def end_to_end(store: Path, device: torch.device, batch: int, workers: int, steps: int, precision: str,
               layout: str, compiled: bool) -> dict:  # fmt: skip
    """Lightning's Trainer, the project's module and data module, from the JPEG store: images/s after warmup."""
    import lightning as L

    from alexnet.module import AlexNetModule

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step in (20, 20 + steps):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                self.marks.append(time.perf_counter())

    torch.manual_seed(0)
    net = AlexNet()
    dm = data_module(store, batch, workers, block=256)
    module = AlexNetModule(net, lambda p: PaperSGD(p, lr=0.01), 1000)
    if layout == "channels_last":
        module.net.to(memory_format=torch.channels_last)
        module.channels_last = True
    if compiled:
        module.compile_net()
    clock = Clock()
    trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=precision,
                        max_steps=20 + steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, benchmark=True, callbacks=[clock],
                        log_every_n_steps=50)  # fmt: skip
    trainer.fit(module, datamodule=dm)
    seconds = clock.marks[1] - clock.marks[0]
    return {"images_per_s": round(steps * batch / seconds), "precision": precision, "layout": layout,
            "compiled": compiled, "workers": workers}  # fmt: skip


def embedded_sweep(jobs: int, epochs: int, cpu: bool) -> dict:
    """The embedded net's sweep: `jobs` jobs at once (hydra/launcher=gpu_jobs), images/s summed over the jobs."""
    out = Path(tempfile.mkdtemp(prefix="sweep_"))
    seeds = ",".join(str(s) for s in range(1, jobs + 1))
    command = [sys.executable, str(ROOT / "src" / "train.py"), "-m", "hydra/launcher=gpu_jobs",
               f"hydra.launcher.n_jobs={jobs}", "experiment=ablate_lrn", "arm=lrn", "logger=csv",
               f"seed={seeds}", f"trainer.max_epochs={epochs}", "test=false", "also_test_crops=[]",
               "data.augment_on=device", "data.resident=true", "callbacks.progress_bar=null",
               "callbacks.train_eval_error=null", "train_error_sample=null", f"hydra.sweep.dir={out}"]  # fmt: skip
    if not cpu:
        command.append("trainer=gpu")
    else:
        command += ["data.train_subset=512", "trainer.limit_val_batches=2"]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode:
        return {"error": proc.stderr[-2000:]}
    rates = []
    for metrics in out.glob("*/metrics.csv"):
        import csv

        values = [
            float(r["train/images_per_sec"]) for r in csv.DictReader(open(metrics)) if r.get("train/images_per_sec")
        ]
        rates.append(values[-1])  # the last epoch: past start-up
    return {"jobs": jobs, "images_per_s_summed": round(sum(rates)), "per_job": [round(r) for r in rates],
            "wall_s": round(wall, 1), "command": " ".join(command[1:])}  # fmt: skip


def lrn_alone(device: torch.device, batch: int, repeats: int) -> list[dict]:
    rows = []
    x64 = torch.rand(min(batch, 8), 96, 55, 55, dtype=torch.float64) * 200
    layer = LocalResponseNorm(n=5, k=2.0, alpha=1e-4, beta=0.75, groups=2).to(device)
    reference = LocalResponseNorm(n=5, k=2.0, alpha=1e-4, beta=0.75, groups=2)
    reference.cpu_kernel = False  # torch's own formula, in float64: the reference
    ref = reference(x64)
    for compiled in (False, True):
        run = torch.compile(layer) if compiled else layer
        error = (run(x64.float().to(device)).double().cpu() - ref).abs().max().item() / ref.abs().max().item()
        for dtype in (torch.float32, torch.bfloat16):
            x = (torch.rand(batch, 96, 55, 55, device=device) * 200).to(dtype).requires_grad_()

            def fwd_bwd(run=run, x=x) -> None:
                run(x).sum().backward()

            seconds = timed(fwd_bwd, repeats, 3, device)
            rows.append({"dtype": str(dtype).removeprefix("torch."), "compiled": compiled,
                         "ms_fwd_bwd": round(seconds * 1e3, 3), "fp32_rel_error": error})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="the CPU-sized variant: tiny sizes, every code path")
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--jobs", type=int, default=8, help="embedded sweep jobs at once")
    args = parser.parse_args()
    device = torch.device("cpu" if args.cpu else "cuda")
    cpu = args.cpu
    batch, steps, warmup = (8, 2, 1) if cpu else (128, 30, 10)
    images = 256 if cpu else args.images
    started = time.perf_counter()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    results: dict = {
        "device": "cpu" if cpu else torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "commit": commit.stdout.strip() or "unknown",
        "command": "python benchmarks/gpu_throughput.py " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(),
    }
    if not cpu:
        torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory(prefix="jpeg_store_") as tmp:
        store = Path(tmp) / "store"
        results["store"] = write_store(store, images, val=max(batch, images // 20), size=256, classes=1000, shard=1000)
        print("store", results["store"], flush=True)
        modes = [(p, lay, c) for c in (False, True) for p in ("32-true", "bf16-mixed")
                 for lay in ("nchw", "channels_last")]  # fmt: skip
        if cpu:
            modes = [("32-true", "nchw", False), ("32-true", "channels_last", False)]
        results["step_alone"] = step_alone(device, batch, steps, warmup, modes)
        best = max(results["step_alone"], key=lambda r: r["images_per_s"])
        results["loader_alone"] = loader_alone(store, device, batch, 2 if cpu else args.workers, 3 if cpu else 60)
        print("loader", results["loader_alone"], flush=True)
        e2e_steps = 2 if cpu else 100
        results["end_to_end"] = [end_to_end(store, device, batch, 2 if cpu else args.workers, e2e_steps,
                                            best["precision"], best["layout"], best["compiled"])]  # fmt: skip
        print("end to end", results["end_to_end"], flush=True)
    results["embedded_sweep"] = embedded_sweep(2 if cpu else args.jobs, 1 if cpu else 2, cpu)
    print("embedded sweep", {k: v for k, v in results["embedded_sweep"].items() if k != "command"}, flush=True)
    results["lrn"] = lrn_alone(device, 8 if cpu else 128, 2 if cpu else 20)
    e2e = results["end_to_end"][0]["images_per_s"]
    results["goals"] = {
        "step_alone >= 40000": best["images_per_s"],
        "end_to_end >= 25000": e2e,
        "end_to_end / step_alone of the same settings >= 0.85": round(e2e / best["images_per_s"], 3),
        "embedded sweep summed >= 100000": results["embedded_sweep"].get("images_per_s_summed"),
    }
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "cpu" if cpu else results["device"].lower().replace(" ", "_")
    path = args.out / f"gpu_throughput_{name}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {path} in {results['seconds']} s")
    print("| setting | images/s |\n|---|---|")
    for r in results["step_alone"]:
        print(f"| step alone, {r['precision']}, {r['layout']}, {'compiled' if r['compiled'] else 'eager'} | "
              f"{r['images_per_s']:,} |")  # fmt: skip
    loader = results["loader_alone"]["images_per_s"]
    print(f"| loader alone (JPEG store, decoded and augmented on the device) | {loader:,} |")
    print(f"| end to end, {best['precision']}, {best['layout']} | {e2e:,} |")
    summed = results["embedded_sweep"].get("images_per_s_summed", math.nan)
    print(f"| embedded sweep, {results['embedded_sweep'].get('jobs')} jobs summed | {summed:,} |")


if __name__ == "__main__":
    main()
