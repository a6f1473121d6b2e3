"""The resize-once store (§2): every image decoded, rescaled and centre-cropped to 256x256 once, kept as uint8
shards that training memory-maps, so an epoch decodes nothing.

Layout of a store folder:
  plan.json              what is being stored: classes, stored size, shard size, a digest of each split's files
  train_files.txt ...    the source file and label of every planned image, in store order
  train/00000.npy        a shard: uint8 N x 3 x S x S (numpy format, read with mmap_mode="r")
  train/00000.json       its labels, skipped files and pixel moments; written after the .npy, so it marks it done
  stats.json             mean pixel and RGB covariance eigen decomposition of the training images ([0, 1] scale)
  COMPLETE.json          written last: counts, skipped files and the byte size of every shard
Every file is written under a temporary name and renamed (os.replace), so an interrupted run leaves finished
shards and no half-written one; a rerun skips finished shards; training refuses a store without COMPLETE.json.
"""

from __future__ import annotations

import hashlib
import json
import os
from bisect import bisect_right
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.data import Dataset

from alexnet.config.schema import problem
from alexnet.data.decode import stored_array
from alexnet.data.jpeg import SUFFIX, write_jpeg_shard
from alexnet.data.stats import STATS, Moments, save_stats
from alexnet.errors import DataError

PLAN, COMPLETE, VERSION = "plan.json", "COMPLETE.json", 1
SUFFIXES = {"npy": ".npy", "jpeg": SUFFIX}
Items = list[tuple[str, int]]


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    _write_atomic(path, lambda f: f.write((json.dumps(data, indent=1) + "\n").encode()))


def write_shard(
    out: Path, items: Items, size: int, on_corrupt: str, moments: bool, fmt: str = "npy", quality: int = 90
) -> dict[str, Any]:
    """Decode `items` into out.npy (or, fmt="jpeg", re-encode them into out.jpegs: data/jpeg.py) and describe them
    in out.json. Runs in a worker process."""
    images, labels, skipped, m = [], [], [], Moments()
    for path, label in items:
        try:
            image = stored_array(path, size)
        except DataError as e:
            if on_corrupt == "error":
                raise DataError(f"{e}. Pass data.on_corrupt=skip to leave such files out") from None
            skipped.append({"path": path, "error": str(e)})
            continue
        images.append(image)
        labels.append(label)
        if moments:
            m.add(image)
    if fmt == "jpeg":
        written = write_jpeg_shard(out, images, quality)
    else:
        array = np.stack(images) if images else np.zeros((0, 3, size, size), np.uint8)
        _write_atomic(out.with_suffix(".npy"), lambda f: np.save(f, array))
        written = {"bytes": out.with_suffix(".npy").stat().st_size}
    meta = {
        "count": len(labels),
        "labels": labels,
        "skipped": skipped,
        **written,
        "moments": m.to_json() if moments else None,
    }
    _write_json(out.with_suffix(".json"), meta)
    return meta


def _digest(items: Items) -> str:
    return hashlib.sha256("".join(f"{p}\t{label}\n" for p, label in items).encode()).hexdigest()


def _describe(plan: dict[str, Any]) -> str:
    images = ", ".join(f"{s} {v['images']}" for s, v in plan.get("splits", {}).items())
    return f"stored size {plan.get('stored_size')}, shard size {plan.get('shard_size')}, images {images}"


def _shard_done(base: Path, suffix: str = ".npy") -> bool:
    """A shard is finished when its .json exists and its .npy (.jpegs) has the size the .json recorded."""
    meta, npy = base.with_suffix(".json"), base.with_suffix(suffix)
    if not (meta.is_file() and npy.is_file()):
        return False
    return json.loads(meta.read_text())["bytes"] == npy.stat().st_size


def progress_bar(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


def prepare_store(
    store: Path,
    splits: dict[str, Items],
    info: dict[str, Any],
    stored_size: int,
    shard_size: int = 1000,
    workers: int | None = None,
    on_corrupt: str = "error",
    resume_hint: str = "rerun the same command",
    fmt: str = "npy",
    quality: int = 90,
) -> dict[str, Any]:
    """Write (or finish) the store of `splits` at `store`, with `workers` processes (default: every core).
    `info` (classes, class names) goes into the plan. Returns the manifest written to COMPLETE.json.
    Interrupted (Ctrl-C, a crash, a DataError), it leaves finished shards; a rerun does only the rest.
    fmt="jpeg" writes the compressed store (data/jpeg.py) in a seeded shuffled order, for block-shuffled reading."""
    message = problem("data.store_format", fmt)
    if message:
        raise DataError(message)
    jpeg = {"format": "jpeg", "quality": quality, "order": "shuffled, seed 0"} if fmt == "jpeg" else {}
    if fmt == "jpeg":
        splits = {s: _shuffled(items) for s, items in splits.items()}
    plan = {
        "version": VERSION,
        "stored_size": stored_size,
        "shard_size": shard_size,
        **info,
        **jpeg,
        "splits": {s: {"images": len(it), "digest": _digest(it)} for s, it in splits.items()},
    }
    store.mkdir(parents=True, exist_ok=True)
    if (store / PLAN).is_file():
        old = json.loads((store / PLAN).read_text())
        if old != plan:
            raise DataError(
                f"{store} holds a store of other images or settings: its {PLAN} has {_describe(old)}; this run "
                f"asks for {_describe(plan)}. Delete it, or set data.store_dir to another folder"
            )
        if (store / COMPLETE).is_file():
            Console().print(f"{store} is already complete")
            return json.loads((store / COMPLETE).read_text())
    else:
        _write_json(store / PLAN, plan)
    for part in store.rglob("*.part"):  # left by an interrupted run
        part.unlink()
    tasks = []
    for split, items in splits.items():
        (store / split).mkdir(exist_ok=True)
        (store / f"{split}_files.txt").write_text("".join(f"{p}\t{label}\n" for p, label in items))
        for k in range(0, len(items), shard_size):
            base = store / split / f"{k // shard_size:05d}"
            if not _shard_done(base, SUFFIXES[fmt]):
                tasks.append((base, items[k : k + shard_size], stored_size, on_corrupt, split == "train", fmt, quality))
    total = sum(len(it) for it in splits.values())
    done = total - sum(len(t[1]) for t in tasks)
    workers = workers or len(os.sched_getaffinity(0))  # every core this process may use (SLURM, containers)
    with progress_bar() as bar, ProcessPoolExecutor(max_workers=workers) as pool:
        task = bar.add_task(f"prepare {store.name} ({workers} workers)", total=total, completed=done)
        pending = {pool.submit(write_shard, *t): len(t[1]) for t in tasks}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
                for future in finished:
                    future.result()  # a worker's DataError stops the run here; finished shards stay
                    bar.advance(task, pending.pop(future))
        except BaseException as e:
            pool.shutdown(wait=True, cancel_futures=True)
            left = len(pending)
            if isinstance(e, DataError):
                raise DataError(f"{e}. {len(tasks) - left} new shards are kept: {resume_hint} to resume") from e
            raise
    return finish_store(store, splits, shard_size, SUFFIXES[fmt])


def _shuffled(items: Items) -> Items:
    order = np.random.default_rng(0).permutation(len(items))
    return [items[i] for i in order]


def finish_store(store: Path, splits: dict[str, Items], shard_size: int, suffix: str = ".npy") -> dict[str, Any]:
    """Collect the shards into stats.json and COMPLETE.json, the mark training looks for."""
    manifest: dict[str, Any] = {"version": VERSION, "splits": {}}
    for split, items in splits.items():
        shards, skipped, moments = [], [], Moments()
        for k in range((len(items) + shard_size - 1) // shard_size):
            meta = json.loads((store / split / f"{k:05d}.json").read_text())
            shards.append({"file": f"{split}/{k:05d}{suffix}", "count": meta["count"], "bytes": meta["bytes"]})
            skipped += meta["skipped"]
            if meta["moments"]:
                moments += Moments(**meta["moments"])
        count = sum(s["count"] for s in shards)
        manifest["splits"][split] = {"images": count, "skipped": skipped, "shards": shards}
        if split == "train":
            save_stats(store / STATS, moments.finish(count, f"all {count} training images, {store}"))
    if any(v["skipped"] for v in manifest["splits"].values()):
        n = sum(len(v["skipped"]) for v in manifest["splits"].values())
        Console(stderr=True).print(f"[yellow]warning: {n} unreadable files left out; listed in {store / COMPLETE}")
    _write_json(store / COMPLETE, manifest)
    return manifest


def open_store(store: Path, prepare_command: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(plan, manifest) of a complete store; None if there is none; DataError if it is incomplete or damaged."""
    if not (store / PLAN).is_file():
        return None
    plan = json.loads((store / PLAN).read_text())
    if not (store / COMPLETE).is_file():
        planned = sum(-(-v["images"] // plan["shard_size"]) for v in plan["splits"].values())
        suffix = SUFFIXES[plan.get("format", "npy")]
        finished = sum(_shard_done(p.with_suffix(""), suffix) for p in store.glob("*/*.json"))
        raise DataError(
            f"store at {store} is incomplete ({finished} of {planned} shards); rerun {prepare_command} to finish it"
        )
    manifest = json.loads((store / COMPLETE).read_text())
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            path = store / shard["file"]
            if not path.is_file() or path.stat().st_size != shard["bytes"]:
                raise DataError(
                    f"{path}: missing or not {shard['bytes']} bytes as {store / COMPLETE} records; the store is "
                    f"damaged: delete {store} and rerun {prepare_command}"
                )
    return plan, manifest


class StoreImages(Dataset):
    """The images of one split of a store: (uint8 3xSxS tensor, label), read from memory-mapped shards."""

    def __init__(self, store: Path, split: dict[str, Any]) -> None:
        self.files = [store / s["file"] for s in split["shards"] if s["count"]]
        self.ends = np.cumsum([s["count"] for s in split["shards"] if s["count"]]).tolist()
        labels = [json.loads(f.with_suffix(".json").read_text())["labels"] for f in self.files]
        self.labels = [label for shard in labels for label in shard]
        self._maps: dict[int, np.ndarray] = {}  # opened lazily in each DataLoader worker

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": {}}  # memory maps are not sent to workers; each opens its own

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        k = bisect_right(self.ends, i)
        if k not in self._maps:
            self._maps[k] = np.load(self.files[k], mmap_mode="r")
        j = i - (self.ends[k - 1] if k else 0)
        return torch.from_numpy(np.array(self._maps[k][j])), self.labels[i]
