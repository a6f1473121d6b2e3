"""#30, item 8: what eval.py, predict.py and train.py say about a file that is not one of their checkpoints."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from faultkit import FAST, NARROW, data_args, no_traceback
from PIL import Image

CODE_WARNING = "could run code"
LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 4383863\n"
)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("image") / "grey.png"
    Image.fromarray(np.full((28, 28), 100, np.uint8)).save(path)
    return path


def use(entry, script: str, ckpt: Path, image: Path, out: Path):
    """eval.py or predict.py on `ckpt`."""
    args = [f"ckpt_path={ckpt}", f"hydra.run.dir={out}"]
    return entry.run(script, *([str(image)] if script == "predict.py" else []), *args)


SCRIPTS = ["eval.py", "predict.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_random_bytes_are_called_not_a_checkpoint(entry, tmp_path, image, script):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    result = use(entry, script, ckpt, image, tmp_path / "out")
    assert result.returncode != 0 and no_traceback(result), result.output[-2000:]
    assert str(ckpt) in result.stderr
    assert CODE_WARNING not in result.stderr, f"a file of random bytes is not a crafted pickle: {result.stderr}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_git_lfs_pointer_is_named_as_such(entry, tmp_path, image, script):
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_text(LFS_POINTER)
    result = use(entry, script, ckpt, image, tmp_path / "out")
    assert result.returncode != 0 and no_traceback(result), result.output[-2000:]
    assert str(ckpt) in result.stderr and "LFS" in result.stderr, result.stderr[-2000:]
    assert CODE_WARNING not in result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_text_file_named_ckpt_is_refused_with_a_message(entry, tmp_path, image, script):
    ckpt = tmp_path / "notes.ckpt"
    ckpt.write_text("hello\nthese are my notes on the run\n")
    result = use(entry, script, ckpt, image, tmp_path / "out")
    assert result.returncode != 0 and no_traceback(result), result.output[-2000:]
    assert str(ckpt) in result.stderr


class Payload:
    """A pickle that runs a command when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_crafted_pickle_is_refused_without_running_it(entry, tmp_path, image, script):
    """What holds today (#30): a pickle that would run code is refused, by name, and does not run."""
    marker = tmp_path / "it-ran"
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(pickle.dumps({"state_dict": Payload(marker)}))
    result = use(entry, script, ckpt, image, tmp_path / "out")
    assert result.returncode != 0 and no_traceback(result), result.output[-2000:]
    assert str(ckpt) in result.stderr and "refused" in result.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_a_checkpoint_of_another_net_names_the_settings_that_differ(entry, finished_run, fm_data, tmp_path):
    """The default net's checkpoint given to a run of the narrow net (model.width, model.fc_width differ)."""
    ckpt = finished_run[1] / "checkpoints" / "last.ckpt"
    result = entry.run("train.py", *data_args(fm_data), *FAST, *NARROW, f"ckpt_path={ckpt}",
                       f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert result.returncode != 0, result.output[-2000:]
    assert no_traceback(result), result.stderr[-2000:]
    assert str(ckpt) in result.stderr and "model.width" in result.stderr, result.stderr[-2000:]
