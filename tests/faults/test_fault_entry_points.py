"""#30, items 5, 6, 9 and 10: what the entry points do with settings and inputs a user gets wrong, or that look
right and are not: misspelt keys, out-of-range seeds, read-only directories, runs that train nothing, altered data,
16-bit images, a diverging run logged to a file, data=imagefolder, W&B online without access."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from faultkit import FAST, NARROW, ROOT, data_args, fresh_interpreter, no_traceback, tmpfs
from PIL import Image

# --- what holds ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["model.dropout=1.5", "data.batch_size=0", "optimizer.lr=0", "seed=-1"])
def test_a_bad_value_names_its_key(entry, fm_data, tmp_path, setting):
    """What holds today (#30): a bad value stops the run with one line naming the key."""
    result = entry.run("train.py", *data_args(fm_data), *FAST, setting, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0 and no_traceback(result), result.output[-2000:]
    assert setting in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


# --- item 10 ---------------------------------------------------------------------------------------------------------


def test_a_seed_above_32_bits_names_the_key(entry, fm_data, tmp_path):
    result = entry.run("train.py", *data_args(fm_data), *FAST, "seed=4294967296", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert no_traceback(result), result.stderr[-2000:]
    assert "seed=4294967296" in result.stderr and "4294967295" in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize(("typo", "meant"), [("optimiser.lr=0.1", "optimizer"), ("model.dropuot=0.3", "dropout")])
def test_a_misspelt_key_gets_the_keys_there_are(entry, tmp_path, typo, meant):
    result = entry.run("train.py", typo, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0
    key = typo.split("=")[0]
    assert f"+{key}" not in result.stderr, f"the user is told to add the misspelt key:\n{result.stderr}"
    assert key in result.stderr and meant in result.stderr, result.stderr[-2000:]


def test_a_read_only_run_directory_is_named_without_a_traceback(entry, fm_data, tmp_path):
    with tmpfs(tmp_path / "read-only", size="1m", read_only=True) as run:
        result = entry.run("train.py", *data_args(fm_data), *FAST, f"hydra.run.dir={run}")
    assert result.returncode != 0
    assert no_traceback(result), result.stderr[-2000:]
    assert str(run) in result.stderr


def test_wandb_online_without_a_key_says_what_to_do(entry, fm_data, tmp_path):
    home = tmp_path / "home"  # no ~/.netrc: no key
    home.mkdir()
    env = {"WANDB_MODE": "online", "HOME": str(home), "WANDB_API_KEY": "", "WANDB_DIR": str(tmp_path)}
    result = entry.run("train.py", *data_args(fm_data), *FAST, *NARROW, "logger=wandb",
                       f"hydra.run.dir={tmp_path / 'run'}", env=env)  # fmt: skip
    assert result.returncode != 0
    assert no_traceback(result), result.stderr[-2000:]
    assert "WANDB_MODE" in result.stderr or "wandb login" in result.stderr


def test_wandb_online_without_network_says_what_to_do(entry, fm_data, tmp_path):
    env = {"WANDB_MODE": "online", "WANDB_API_KEY": "0" * 40, "WANDB_DIR": str(tmp_path),
           "WANDB_BASE_URL": "https://wandb.invalid"}  # fmt: skip
    result = entry.run("train.py", *data_args(fm_data), *FAST, *NARROW, "logger=wandb",
                       f"hydra.run.dir={tmp_path / 'run'}", env=env, timeout=120)  # fmt: skip
    assert result.returncode != 0
    assert no_traceback(result), result.stderr[-2000:]
    assert "WANDB_MODE" in result.stderr and "wandb.invalid" in result.stderr, result.stderr[-2000:]


# --- item 9: silent ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fashion_mnist_files_that_differ_from_the_published_ones_are_reported(finished_run):
    """finished_run trained on generated files in data.data_dir: well-formed, and not Zalando's."""
    printed = finished_run[0].output
    line = next((ln for ln in printed.splitlines() if "train-images-idx3-ubyte.gz" in ln), None)
    assert line is not None, "nothing the run printed names the training images file"
    assert any(w in printed.lower() for w in ("checksum", "sha256", "published")), line


@pytest.mark.slow
def test_predict_reads_a_16_bit_png_at_its_depth(entry, finished_run, tmp_path):
    y, x = np.mgrid[0:28, 0:28]
    grey = ((x * 9 + y * 3) % 256).astype(np.uint8)
    Image.fromarray(grey).save(eight := tmp_path / "eight.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(sixteen := tmp_path / "sixteen.png")  # the same image
    assert Image.open(sixteen).mode.startswith("I;16")
    out = tmp_path / "out"
    result = entry.run("predict.py", str(eight), str(sixteen), f"run_dir={finished_run[1]}", "test_crops=1",
                       "top=10", f"hydra.run.dir={out}")  # fmt: skip
    assert result.returncode == 0, result.output[-2000:]
    predictions = json.loads((out / "predictions.json").read_text())["predictions"]
    as_8, as_16 = ({p["class"]: p["probability"] for p in predictions[str(f)]} for f in (eight, sixteen))
    differences = {c: abs(as_8[c] - as_16[c]) for c in as_8}
    assert max(differences.values()) < 1e-6, f"the same image at 16 bits is classified otherwise: {differences}"


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["trainer.limit_train_batches=0", "train=false"])
def test_a_run_that_trains_nothing_does_not_look_finished(entry, fm_data, tmp_path, setting):
    run = tmp_path / "run"
    result = entry.run("train.py", *data_args(fm_data), *FAST, *NARROW, setting, f"hydra.run.dir={run}")
    key = setting.split("=")[0]
    assert key in result.stderr + result.stdout, f"nothing names {key}:\n{result.output[-2000:]}"
    summary = run / "summary.json"
    assert not (summary.is_file() and json.loads(summary.read_text()).get("test")), (
        "summary.json holds the test error of untrained weights"
    )


# --- item 5 ----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_stop_on_nonfinite_records_the_divergence_when_output_is_a_file(entry, fm_data, tmp_path):
    run = tmp_path / "run"
    result = entry.run("train.py", *data_args(fm_data), *FAST, *NARROW, "stop_on_nonfinite=true", "optimizer.lr=1e6",
                       f"hydra.run.dir={run}")  # fmt: skip
    assert result.returncode == 0, result.output[-2000:]
    assert json.loads((run / "summary.json").read_text())["diverged_at_step"] is not None


# --- item 6 ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory) -> Path:
    """root/train/<class>/*.png and root/val/<class>/*.png: two classes of coloured noise."""
    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        for k, colour in enumerate(((200, 40, 40), (40, 60, 210))):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(np.array(colour) + rng.integers(-20, 21, (30, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_imagefolder_trains_from_the_command_line(entry, class_folders, tmp_path):
    data = ["data=imagefolder", f"data.root={class_folders}", "data.stored_size=32", "data.crop_size=28",
            "data.num_workers=0", "data.batch_size=4", "data.test_crops=1", "data.augment.pca=false"]  # fmt: skip
    result = entry.run("train.py", *data, *NARROW, "debug=fast", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.output[-2000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["test"]
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["data"]["num_classes"] == recorded["model"]["num_classes"] == 2, "the run records what it counted"


@pytest.mark.parametrize(
    ("overrides", "expression", "expected"),
    [
        ([], "OmegaConf.select(cfg, 'hydra.run.dir', throw_on_missing=True)", str(ROOT / "logs" / "train" / "runs")),
        # null in the config (counted from the folders): what a notebook that builds the data gets
        (["data=imagefolder", "data.root=ROOT"], "instantiate(cfg.data).num_classes", "2"),
    ],
)
def test_the_train_config_composes_with_hydras_compose_api(class_folders, overrides, expression, expected):
    """What a notebook or a user's script does: compose conf/train.yaml with Hydra's API, without the entry points
    (which used to register the resolvers the config named), and read a setting or build a part."""
    overrides = [o.replace("ROOT", str(class_folders)) for o in overrides]
    code = textwrap.dedent(f"""
        from hydra import compose, initialize_config_dir
        from hydra.utils import instantiate
        from omegaconf import OmegaConf
        with initialize_config_dir(config_dir={str(ROOT / "conf")!r}, version_base="1.3"):
            cfg = compose("train", overrides={overrides!r}, return_hydra_config=True)
        print("VALUE", {expression})
    """)
    result = fresh_interpreter(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"VALUE {expected}" in result.stdout, result.stdout[-2000:]
