"""Checkpoints: loading one safely, the newest usable one of a run, and a finished run rebuilt from its own.

A checkpoint of src/train.py holds the run's resolved config (`alexnet_config`), its weights (`state_dict`), the
data module's state under the data module's class name (Lightning's key for a LightningDataModule's state_dict)
and the validation history.

Checkpoints are written atomically beside their target (AtomicCheckpointIO): Lightning's own writer copies a temporary
file from $TMPDIR into place, which across filesystems truncates the target first, so a full disk or a kill mid-write
would leave a cut-off file under the name of the last good one. A moved run directory keeps using its own checkpoints
(FollowMovedRun)."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.data import ImageDataModule
from alexnet.errors import ConfigError
from alexnet.files import write_bytes
from alexnet.legacy import upgrade
from alexnet.model.towers import in_layout_of
from alexnet.train.build import build_data, instantiate
from alexnet.train.module import AlexNetModule

# best.ckpt last: at the step of last.ckpt it holds an older state of the other checkpoint callbacks, and it is the
# newest usable one only when a later write failed (a full disk) or was cut short (a kill)
CHECKPOINT_GLOBS = (
    "checkpoints/last.ckpt", "checkpoints/on_exception.ckpt", "hpc_ckpt_*.ckpt", "checkpoints/best.ckpt",
)  # fmt: skip


# how a file that torch.load can read begins: torch.save's zip archive, or a pickle (torch's legacy format) of
# protocol 2 to 5; anything else is no checkpoint, and is named for what it is rather than handed to the unpickler
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGICS = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def safe_load(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint loaded without running code from it: torch's weights-only unpickler admits tensors and plain
    Python types (all our checkpoints hold), and refuses any other object a crafted pickle would build. A file that
    is no checkpoint at all (empty, text, a Git LFS pointer, other bytes) is named for what it is."""
    not_one = what_it_is(Path(path))
    if not_one:
        raise ConfigError(f"{path}: not a checkpoint: {not_one}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        # torch's message does not tell a refused object from a malformed file (a crafted pickle of protocol 4 or 5
        # stops at its first FRAME opcode): the pickle's own opcodes, read without running them, do
        named = pickled_globals(Path(path))
        if named is None:
            raise ConfigError(f"{path}: not a readable checkpoint (a damaged pickle); is the file complete?") from e
        if not named:
            raise ConfigError(f"{path}: not a readable checkpoint: a pickle that torch.save did not write") from e
        foreign = [n for n in named if not n.startswith(("torch.", "collections.OrderedDict"))] or named
        raise ConfigError(
            f"{path}: refused to load: it holds objects other than tensors and plain Python types (it names "
            f"{', '.join(sorted(set(foreign))[:3])}), which could run code when unpickled. Checkpoints written by "
            "src/train.py never do; load only files you trust"
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise ConfigError(f"{path}: not a readable checkpoint ({e}); is the file complete?") from e
    except Exception as e:  # malformed opcodes end in KeyError, IndexError, struct.error, ...: all say "damaged"
        raise ConfigError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e}); is the file complete?") from e


def pickled_globals(path: Path) -> list[str] | None:
    """The functions and classes the pickle in `path` (or in torch.save's zip archive) names, read by pickletools
    without building anything; None if it does not parse as a pickle."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if member is None:
                    return None
                data = archive.read(member)
        else:
            data = path.read_bytes()
        names, strings = [], []
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                names.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(".".join(strings[-2:]))
            elif isinstance(arg, str):
                strings.append(arg)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, UnicodeDecodeError):
        return None
    return names


def what_it_is(path: Path) -> str | None:
    """What a file is if it cannot be a checkpoint, judged by its first bytes; None if it may be one (torch.load
    then decides)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
        size = path.stat().st_size
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if head.startswith((ZIP_MAGIC, *PICKLE_MAGICS)):
        return None
    if not head:
        return "the file is empty (a copy that never began, or a run killed as it wrote it)"
    if head.startswith(LFS_POINTER):
        return (
            "it is a Git LFS pointer, a placeholder for the file, whose content was never fetched: run `git lfs pull` "
            "in the repository it came from (after `git lfs install`, if Git LFS is new on this machine)"
        )
    try:
        text = head.decode()
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c.isspace() for c in text):
        first = " ".join(text.split())[:60]
        return f"a text file ({size:,} bytes: {first!r}); src/train.py writes checkpoints/best.ckpt and last.ckpt"
    return f"its {size:,} bytes begin neither as torch.save's zip archive nor as a pickle; is it the right file?"


def checkpoint_step(path: Path) -> int | None:
    """The global step a checkpoint was written at, or None if it cannot be loaded safely (partial, foreign)."""
    try:
        return int(safe_load(path, mmap=True).get("global_step", -1))  # mmap: no need to read the weights
    except (ConfigError, ValueError, TypeError):
        return None


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint of `run_dir` that got furthest (highest global step; at the same step best.ckpt last, then the
    newest file) and loads: a file cut short or left empty is passed over."""
    found = [p for pattern in CHECKPOINT_GLOBS for p in run_dir.glob(pattern)]
    steps = {p: checkpoint_step(p) for p in found}
    usable = [p for p, step in steps.items() if step is not None]
    return max(usable, key=lambda p: (steps[p], p.name != "best.ckpt", p.stat().st_mtime), default=None)


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into memory, then the bytes into a temporary file beside the target, flushed, fsynced and renamed
    over it (files.replacing): a write that fails leaves the previous checkpoint as it was, and no file named like a
    checkpoint that does not load. The OSError of a failed write names the checkpoint (e.g. a full disk: ENOSPC)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()  # serialised first: torch's writer would turn a failed write into a RuntimeError
        torch.save(checkpoint, buffer)
        write_bytes(target, buffer.getbuffer())


class FollowMovedRun(L.Callback):
    """A run directory moved (archived, copied to another machine) and resumed: its checkpoints hold the
    ModelCheckpoint states of the old place (absolute paths), and Lightning, seeing another dirpath, keeps only the
    old best_model_path and forgets the best score (the next validation is then 'best', written as best-v1.ckpt).
    Before the states load, their paths under the old directory are moved to the new one. Only for the run's own
    checkpoint (a file inside the run directory): a new run started from another run's checkpoint keeps Lightning's
    handling, its best files being the other run's."""

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
                           ) -> None:  # fmt: skip
        states = checkpoint.get("callbacks") or {}
        loaded = Path(str(trainer.ckpt_path or "")).absolute()
        for callback in trainer.checkpoint_callbacks:
            state = states.get(callback.state_key) if isinstance(callback, ModelCheckpoint) else None
            old = state.get("dirpath") if isinstance(state, dict) else None
            if not old or callback.dirpath is None or os.path.abspath(old) == os.path.abspath(callback.dirpath):
                continue
            if not loaded.is_relative_to(Path(callback.dirpath).absolute().parent):
                continue
            new = str(callback.dirpath)

            def moved(path: Any, old: str = old, new: str = new) -> Any:
                return new + path[len(old) :] if isinstance(path, str) and path.startswith(old + os.sep) else path

            state["dirpath"] = new
            for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
                if key in state:
                    state[key] = moved(state[key])
            if isinstance(state.get("best_k_models"), dict):
                state["best_k_models"] = {moved(k): v for k, v in state["best_k_models"].items()}


def data_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The data module's saved state (training-set mean, class names, PCA): Lightning stores a datamodule's
    state_dict under its class's __qualname__, which is the last part of the run's `data._target_`."""
    target = str((checkpoint.get("alexnet_config") or {}).get("data", {}).get("_target_", ""))
    return checkpoint.get(target.rsplit(".", 1)[-1]) or {}


def load_checkpoint(cfg: DictConfig) -> tuple[Path, dict[str, Any], DictConfig]:
    """The checkpoint named by `cfg.ckpt_path`, or `cfg.run_dir`'s best one; its contents and the run's config,
    with what `cfg` replaces: a data or model option (eval.yaml's groups), the data settings test_crops and batch_size
    when not null, and model.devices. `cfg`'s seed, experiment_name, arm and tags, where null, become the run's."""
    if cfg.ckpt_path:
        ckpt_path = Path(cfg.ckpt_path)
    elif cfg.run_dir:
        ckpt_path = Path(cfg.run_dir) / "checkpoints" / "best.ckpt"
    else:
        raise ConfigError("pass run_dir=PATH (a directory of src/train.py) or ckpt_path=PATH")
    if not ckpt_path.is_file():
        raise ConfigError(f"no checkpoint at {ckpt_path}; pass ckpt_path=PATH to a .ckpt file")
    checkpoint = safe_load(ckpt_path)
    if not checkpoint.get("alexnet_config"):
        raise ConfigError(f"{ckpt_path} holds no run config: it was not written by src/train.py")
    if "stats_scale" not in data_state(checkpoint):
        raise ConfigError(
            f"{ckpt_path} was written before the pixel-scale change (its net saw pixels on [0, 1] and inverted "
            "dropout; this version feeds raw 0-255 pixels, docs/fidelity.md): retrain it with this version"
        )
    checkpoint["alexnet_config"] = upgrade(checkpoint["alexnet_config"])  # an older version's import paths
    run_cfg = OmegaConf.create(checkpoint["alexnet_config"])
    with open_dict(cfg):  # what the evaluation's groups interpolate: the run's own seed, experiment, arm and tags
        for key in ("seed", "experiment_name", "arm", "tags"):
            if key in cfg and cfg[key] in (None, []) and run_cfg.get(key) is not None:
                cfg[key] = run_cfg[key]
    chosen = {g: OmegaConf.to_container(cfg[g]) for g in ("data", "model") if cfg.get(g) is not None}
    if chosen:  # an option chosen for the evaluation (eval.yaml) replaces the run's own, whole
        run_cfg = replace_groups(run_cfg, chosen, OmegaConf.to_container(cfg.paths, resolve=True))
    for key in ("test_crops", "batch_size"):
        if cfg.get(key) is not None:
            run_cfg.data[key] = cfg[key]
    if cfg.get("devices", "run") != "run":  # e.g. a split run evaluated on one device: devices=null
        run_cfg.model.devices = cfg.devices
    return ckpt_path, checkpoint, run_cfg


def replace_groups(run_cfg: DictConfig, chosen: dict[str, Any], paths: dict[str, Any]) -> DictConfig:
    """The run's config with whole groups replaced, resolved where they stand: a data option's paths are this
    machine's and its seed the run's; a net's sizes (model.num_classes: ${data.num_classes}) the data's. A net and
    data that do not fit each other are refused here, before anything is built."""
    context = OmegaConf.create(OmegaConf.to_container(run_cfg))
    context.paths = paths
    for group, node in chosen.items():
        context[group] = node
    try:
        replaced = OmegaConf.create(OmegaConf.to_container(context, resolve=True))
    except Exception as e:  # an interpolation a chosen option needs and this config lacks
        raise ConfigError(f"{' and '.join(chosen)}: {e}") from e
    net, data = replaced.model, replaced.data
    for size, of_data in (("num_classes", "num_classes"), ("in_channels", "channels"), ("input_size", "crop_size")):
        if size in net and of_data in data and net[size] != data[of_data]:
            raise ConfigError(
                f"{' and '.join(chosen)}: the net takes {size}={net[size]}, the data gives {of_data}={data[of_data]}"
            )
    return replaced


def rebuild(checkpoint: dict[str, Any], run_cfg: DictConfig) -> tuple[AlexNetModule, ImageDataModule]:
    """The run's module with its trained weights, and its data module, from a checkpoint and its config."""
    datamodule = build_data(run_cfg)
    net = instantiate("model", run_cfg.model)
    module = AlexNetModule(
        net, optimizer=None, num_classes=datamodule.num_classes, run_config=checkpoint["alexnet_config"]
    )
    try:
        module.load_state_dict(in_layout_of(module.net, checkpoint["state_dict"]))
    except RuntimeError as e:  # a model option (eval.py model=...) whose net is not the checkpoint's
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"model: the checkpoint's weights do not fit this net ({first} ...)") from e
    return module, datamodule
