"""Shared fixtures: small generated Fashion-MNIST files, composed configs, and a train.py runner."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
os.environ.setdefault("ALEXNET_ROOT", str(ROOT))


def write_idx(path: Path, array: torch.Tensor) -> None:
    """The idx format of the original files: zero, zero, type 0x08 (ubyte), ndim, dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.to(torch.uint8).numpy().tobytes())


def make_fashion_like(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """28x28 images whose class is a bright bar at a class-dependent row: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 60, (n, 28, 28), generator=g)
    for i, c in enumerate(labels.tolist()):
        images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 255
    return images, labels


def write_fashion_mnist(folder: Path, n_train: int = 600, n_test: int = 200) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = make_fashion_like(n, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fashion_mnist(tmp_path_factory.mktemp("fashion-mnist"))


def data_overrides(folder: Path) -> list[str]:
    """Point the data module at `folder` only: no system copy, no download."""
    return [f"data.data_dir={folder}", "data.search_dirs=[]", "data.download_url=null", "data.val_size=100"]


def mini_kwargs(**overrides) -> dict:
    """AlexNet's arguments in the embedded default, `model=alexnet_mini`, as the config gives them."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        model = OmegaConf.to_container(compose("train").model, resolve=True)
    del model["_target_"], model["devices"]
    return {**model, **overrides}


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.fixture
def train_cfg(tmp_path: Path, fmnist_dir: Path):
    """Compose the train config on the small generated data, writing into tmp_path."""

    def make(*overrides: str) -> DictConfig:
        return compose_train([*data_overrides(fmnist_dir), "debug=fast", *overrides], tmp_path / "run")

    return make


def run_script(script: str, *overrides: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """python src/<script> as a user would run it, with the output captured."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / script), *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def train_run(tmp_path: Path, fmnist_dir: Path):
    """Run src/train.py on the generated data into tmp_path/run; returns (process, run_dir)."""

    def run(*overrides: str, generated_data: bool = True) -> tuple[subprocess.CompletedProcess, Path]:
        run_dir = tmp_path / "run"
        data = data_overrides(fmnist_dir) if generated_data else []
        proc = run_script("train.py", *data, f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path}/logs", *overrides)
        return proc, run_dir

    return run
