"""Throughput of the paper net and the embedded sweeps on one GPU (issue: throughput), in one run under a deadline:

    python benchmarks/gpu_throughput.py [--out benchmarks/results] [--images 20000] [--deadline 420]
    python benchmarks/gpu_throughput.py --cpu      # the CPU-sized variant: every code path, tiny sizes, ~1 minute

1. writes a JPEG store of `--images` generated ILSVRC-like 256x256 images (smooth random fields with texture, 1000
   classes; src/alexnet/data/jpeg.py) on local disk, and reports its bytes per image;
2. the paper net's training step alone (batch 128, data already on the device): fp32 and bf16-mixed, NCHW and
   channels_last, eager and torch.compile'd;
3. the loader alone (store -> decoded on the GPU -> augmented on the GPU) and end to end through Lightning's Trainer
   and the project's data module as src/train.py runs them (the random streams, PCA colour noise, the model
   summary's example input), at the fastest step setting;
4. the embedded net's sweep: `python src/train.py -m` with hydra/launcher=gpu_jobs, jobs side by side: every job's
   training images over the wall span from the first job's start to the last one's end (whether or not they
   overlapped), and the sum of the per-job rates beside it;
5. LRN alone (the paper's conv1 output), fp32 and bf16, eager and compiled, torch's kernel (what the net runs on
   CUDA) and alexnet.model.lrn's, and their fp32 errors against float64.
The results go to benchmarks/results/gpu_throughput_<device>.json after every section (device, torch, commit,
command, numbers so far); a section that would start past `--deadline` seconds is recorded as skipped. Prints the
table for benchmarks/README.md at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from alexnet import AlexNet  # noqa: E402
from alexnet.data.jpeg import write_jpeg_shard  # noqa: E402
from alexnet.data.stats import Moments  # noqa: E402
from alexnet.data.store import PLAN, _write_json, finish_store  # noqa: E402
from alexnet.model.lrn import LocalResponseNorm, local_response_norm  # noqa: E402
from alexnet.record import git_commit  # noqa: E402
from alexnet.train.optim import PaperSGD  # noqa: E402


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


def data_module(store: Path, batch: int, workers: int, block: int | None, pca: bool = False):
    from alexnet.data import ImageNetDataModule

    dm = ImageNetDataModule(root=str(store.parent / "no_tree"), store_dir=str(store), source="store",
                            store_format="jpeg", num_classes=1000, batch_size=batch, num_workers=workers,
                            augment_on="device", decode_on="device", shuffle_block=block, test_crops=1,
                            augment={"pca": pca})  # fmt: skip
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
    """Lightning's Trainer, the project's module and data module, from the JPEG store, set up as src/train.py sets
    them up (pipeline.build): the random streams callback, PCA colour noise, the model summary's example input
    (graph breaks under compile included). Images/s after warmup."""
    import lightning as L

    from alexnet.train.callbacks import RandomStreams
    from alexnet.train.module import AlexNetModule

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
    dm = data_module(store, batch, workers, block=256, pca=True)
    module = AlexNetModule(net, lambda p: PaperSGD(p, lr=0.01), 1000)
    if layout == "channels_last":
        module.net.to(memory_format=torch.channels_last)
        module.channels_last = True
    if compiled:
        module.compile_net()
    module.example_input_array = torch.zeros(1, 3, 224, 224)  # as pipeline.build: the model summary's input
    clock = Clock()
    trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=precision,
                        max_steps=20 + steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, benchmark=True, callbacks=[RandomStreams(0), clock],
                        log_every_n_steps=50)  # fmt: skip
    trainer.fit(module, datamodule=dm)
    seconds = clock.marks[1] - clock.marks[0]
    return {"images_per_s": round(steps * batch / seconds), "precision": precision, "layout": layout,
            "compiled": compiled, "workers": workers, "pca": True, "random_streams": True}  # fmt: skip


def sweep_rate(jobs: list[dict]) -> dict:
    """The sweep's throughput from its jobs' summaries: every training image of every job over the wall span from
    the first job's start to the last job's end. Jobs that ran one after another count their gaps; jobs side by side
    share the span: the number is what the GPU delivered, however the launcher placed them. A lower bound on the
    training rate (each span holds its job's start-up and validation too)."""
    starts = [j["end"] - j["wall_seconds"] for j in jobs]
    span = max(j["end"] for j in jobs) - min(starts)
    images = sum(j["train_images"] * j["epochs"] for j in jobs)
    fit = sum(j["fit_seconds"] for j in jobs)
    return {"images": images, "wall_span_s": round(span, 1), "images_per_s_over_span": round(images / span),
            "overlap": round(fit / span, 2)}  # fmt: skip


def embedded_sweep(jobs: int, epochs: int, cpu: bool, timeout: float) -> dict:
    """The embedded net's sweep: `jobs` jobs at once (hydra/launcher=gpu_jobs)."""
    import csv

    out = Path(tempfile.mkdtemp(prefix="sweep_"))
    seeds = ",".join(str(s) for s in range(1, jobs + 1))
    command = [sys.executable, str(ROOT / "src" / "train.py"), "-m", "hydra/launcher=gpu_jobs",
               f"hydra.launcher.n_jobs={jobs}", "experiment=ablate_lrn", "arm=lrn", "logger=csv",
               f"seed={seeds}", f"trainer.max_epochs={epochs}", "test=false", "also_test_crops=[]",
               "data.augment_on=device", "data.resident=true", "callbacks.progress_bar=null",
               "callbacks.train_eval_error=null", f"hydra.sweep.dir={out}"]  # fmt: skip
    if not cpu:
        command.append("trainer=gpu")
    else:
        command += ["data.train_subset=512", "trainer.limit_val_batches=2"]
    start = time.perf_counter()
    # a session of its own: past the deadline, the launcher's job processes go with it, not on using the GPU
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"error": f"past the deadline after {timeout:.0f} s", "command": " ".join(command[1:])}
    wall = time.perf_counter() - start
    if proc.returncode:
        return {"error": stderr[-2000:], "command": " ".join(command[1:])}
    summaries, rates = [], []
    for path in sorted(out.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        summaries.append({**summary, "end": path.stat().st_mtime})
        metrics = path.with_name("metrics.csv")
        values = [float(r["train/images_per_sec"]) for r in csv.DictReader(open(metrics))
                  if r.get("train/images_per_sec")]  # fmt: skip
        rates.append(values[-1])  # each job's last epoch on its own clock
    per_job = {"per_job_last_epoch": [round(r) for r in rates], "per_job_summed": round(sum(rates))}
    return {
        "jobs": jobs,
        **sweep_rate(summaries),
        **per_job,
        "wall_s": round(wall, 1),
        "command": " ".join(command[1:]),
    }


def lrn_alone(device: torch.device, batch: int, repeats: int) -> list[dict]:
    """Both kernels at the paper's conv1 output: torch's (what LocalResponseNorm runs on CUDA, model/net.py) and
    alexnet.model.lrn's (what it runs on the CPU), eager and compiled, each against torch's formula in float64."""
    rows = []
    x64 = torch.rand(min(batch, 8), 96, 55, 55, dtype=torch.float64) * 200
    reference = LocalResponseNorm(n=5, k=2.0, alpha=1e-4, beta=0.75, groups=2)
    reference.cpu_kernel = False  # torch's own formula, in float64: the reference
    ref = reference(x64)
    torch_kernel = LocalResponseNorm(n=5, k=2.0, alpha=1e-4, beta=0.75, groups=2).to(device)
    torch_kernel.cpu_kernel = False  # torch's kernel on every device

    def ours(x: torch.Tensor, layer=torch_kernel) -> torch.Tensor:
        return local_response_norm(x, layer.n, layer.scale, layer.beta, layer.k, layer.groups)

    for kernel, fn in (("torch", torch_kernel), ("alexnet.model.lrn", ours)):
        for compiled in (False, True):
            run = torch.compile(fn) if compiled else fn
            error = (run(x64.float().to(device)).double().cpu() - ref).abs().max().item() / ref.abs().max().item()
            # torch's CPU kernel has no bfloat16 (avg_pool3d); bfloat16 is a GPU question anyway
            dtypes = (torch.float32,) if device.type == "cpu" and kernel == "torch" else (torch.float32, torch.bfloat16)
            for dtype in dtypes:
                x = (torch.rand(batch, 96, 55, 55, device=device) * 200).to(dtype).requires_grad_()

                def fwd_bwd(run=run, x=x) -> None:
                    run(x).sum().backward()

                seconds = timed(fwd_bwd, repeats, 3, device)
                rows.append({"kernel": kernel, "dtype": str(dtype).removeprefix("torch."), "compiled": compiled,
                             "ms_fwd_bwd": round(seconds * 1e3, 3), "fp32_rel_error": error})  # fmt: skip
                print(rows[-1], flush=True)
    return rows


class Results:
    """The results so far, written to `path` after every section: a run stopped by a deadline or a crash still
    leaves what it measured."""

    def __init__(self, path: Path, deadline: float, **header) -> None:
        self.path, self.started, self.deadline = path, time.perf_counter(), deadline
        self.data: dict = {**header, "deadline_s": deadline, "skipped": {}}
        path.parent.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.deadline - (time.perf_counter() - self.started)

    def section(self, name: str, needs: float, run) -> Any:
        """`run()` if `needs` seconds are left before the deadline, else recorded as skipped; written either way."""
        if self.left() < needs:
            self.data["skipped"][name] = f"{self.left():.0f} s left before the deadline, {needs:.0f} s needed"
            print("skipped", name, self.data["skipped"][name], flush=True)
            value = None
        else:
            try:
                value = run()
            except Exception as e:  # noqa: BLE001 - the next sections still run, the error is recorded
                value = {"error": f"{type(e).__name__}: {e}"}
            self.data[name] = value
            print(name, value if not isinstance(value, list) else "", flush=True)
        self.write()
        return value

    def write(self) -> None:
        self.data["seconds"] = round(time.perf_counter() - self.started, 1)
        self.path.write_text(json.dumps(self.data, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="the CPU-sized variant: tiny sizes, every code path")
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--jobs", type=int, default=8, help="embedded sweep jobs at once")
    parser.add_argument("--deadline", type=float, default=420, help="seconds: later sections are skipped")
    args = parser.parse_args()
    cpu = args.cpu
    device = torch.device("cpu" if cpu else "cuda")
    batch, steps, warmup = (8, 2, 1) if cpu else (128, 30, 10)
    images = 256 if cpu else args.images
    name = "cpu" if cpu else torch.cuda.get_device_name(0)
    commit = os.environ.get("ALEXNET_COMMIT") or git_commit(ROOT)["commit"][:7]  # a copy without .git: set it
    results = Results(args.out / f"gpu_throughput_{name.lower().replace(' ', '_')}.json", args.deadline,
                      device=name, torch=torch.__version__, commit=commit, cpus=os.cpu_count(),
                      command="python benchmarks/gpu_throughput.py " + " ".join(sys.argv[1:]))  # fmt: skip
    if not cpu:
        torch.backends.cudnn.benchmark = True
    workers = 2 if cpu else args.workers
    # each section's second argument: the seconds it needs on an H200 (the CPU variant's sizes take less), most
    # important first; a section that would start with less left than that is skipped
    with tempfile.TemporaryDirectory(prefix="jpeg_store_") as tmp:
        store = Path(tmp) / "store"
        val = max(batch, images // 20)
        results.section("store", 0, lambda: write_store(store, images, val=val, size=256, classes=1000, shard=1000))
        modes = [(p, lay, c) for c in (False, True) for p in ("32-true", "bf16-mixed")
                 for lay in ("nchw", "channels_last")]  # fmt: skip
        if cpu:
            modes = [("32-true", "nchw", False), ("32-true", "channels_last", False)]
        rows: list[dict] = []
        for mode in modes:  # one row at a time: the compiled ones cost most, and come last
            row = results.section(
                str(mode), 45 if mode[2] else 10, lambda m=mode: step_alone(device, batch, steps, warmup, [m])
            )
            rows += row if isinstance(row, list) else []
            results.data.pop(str(mode), None)
            results.data["step_alone"] = rows
            results.write()
        fallback = {"precision": "32-true", "layout": "nchw", "compiled": False, "images_per_s": 0}
        best = max(rows, key=lambda r: r["images_per_s"]) if rows else fallback
        results.section("loader_alone", 20, lambda: loader_alone(store, device, batch, workers, 3 if cpu else 60))
        e2e_steps = 2 if cpu else 100
        setting = (best["precision"], best["layout"], best["compiled"])
        results.section("end_to_end", 60, lambda: end_to_end(store, device, batch, workers, e2e_steps, *setting))
    jobs, epochs = (2, 1) if cpu else (args.jobs, 2)
    results.section("embedded_sweep", 90, lambda: embedded_sweep(jobs, epochs, cpu, results.left() - 30))
    results.section("lrn", 40, lambda: lrn_alone(device, 8 if cpu else 128, 2 if cpu else 20))
    e2e = (results.data.get("end_to_end") or {}).get("images_per_s")
    sweep = results.data.get("embedded_sweep") or {}
    results.data["goals"] = {
        "step_alone >= 40000": best["images_per_s"],
        "end_to_end >= 25000": e2e,
        "end_to_end / step_alone of the same settings >= 0.85": round(e2e / best["images_per_s"], 3) if e2e else None,
        "embedded sweep over its wall span >= 100000": sweep.get("images_per_s_over_span"),
    }
    results.write()
    print(f"wrote {results.path} in {results.data['seconds']} s")
    print("| setting | images/s |\n|---|---|")
    for r in rows:
        print(f"| step alone, {r['precision']}, {r['layout']}, {'compiled' if r['compiled'] else 'eager'} | "
              f"{r['images_per_s']:,} |")  # fmt: skip
    loader = (results.data.get("loader_alone") or {}).get("images_per_s", math.nan)
    print(f"| loader alone (JPEG store, decoded and augmented on the device) | {loader:,} |")
    print(f"| end to end, {best['precision']}, {best['layout']} | {e2e if e2e is not None else math.nan:,} |")
    print(f"| embedded sweep, {sweep.get('jobs')} jobs, over the wall span | "
          f"{sweep.get('images_per_s_over_span', math.nan):,} |")  # fmt: skip


if __name__ == "__main__":
    main()
