"""The paths a GPU run takes that the CPU can check (issue #21): JPEG batches as one tensor decoded one batch ahead,
a torchvision that does not load, sweep jobs downloading Fashion-MNIST together, resuming across device types."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import wait
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from alexnet.data.fashion_mnist import FILES
from alexnet.data.jpeg import (
    DecodeAheadLoader,
    DecodingAhead,
    JpegImages,
    batch_images,
    collate_raw,
    decode_cpu,
    write_jpeg_shard,
)
from alexnet.streams import generator, restore_state

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def jpeg_split(tmp_path: Path) -> tuple[JpegImages, list[np.ndarray]]:
    """A one-shard JPEG split of 10 images of different content (so of different byte lengths), read raw."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (3, 16, 16), dtype=np.uint8) for _ in range(10)]
    (tmp_path / "train").mkdir()
    meta = write_jpeg_shard(tmp_path / "train" / "00000", images, quality=90)
    (tmp_path / "train" / "00000.json").write_text(json.dumps({"offsets": meta["offsets"], "labels": list(range(10))}))
    split = {"shards": [{"file": "train/00000.jpegs", "count": len(images)}]}
    return JpegImages(tmp_path, split, raw=True), images


def test_a_jpeg_batch_leaves_the_worker_as_one_byte_tensor_and_decodes_to_each_image(jpeg_split) -> None:
    raw, _ = jpeg_split
    # one worker process: the batch crosses to this process through shared memory, as in training
    batch = next(iter(DataLoader(raw, batch_size=4, num_workers=1, collate_fn=collate_raw)))
    (data, lengths), labels = batch
    files = [raw[i][0] for i in range(4)]
    assert data.dtype == torch.uint8 and data.ndim == 1 and torch.equal(data, torch.cat(files))
    assert lengths.tolist() == [len(f) for f in files] and len(set(lengths.tolist())) > 1
    assert labels.tolist() == [0, 1, 2, 3]
    images = batch_images((data, lengths), torch.device("cpu"))
    assert torch.equal(images, torch.stack([decode_cpu(f) for f in files]))


def test_the_next_batch_is_decoding_before_the_step_asks_for_it(jpeg_split) -> None:
    raw, _ = jpeg_split
    loader = DecodeAheadLoader(raw, batch_size=4, collate_fn=collate_raw, decode_device="cpu")
    batches = iter(loader)
    first, second = next(batches), next(batches)  # what Lightning holds while it runs the first batch's step
    assert isinstance(first[0], DecodingAhead) and isinstance(second[0], DecodingAhead)
    wait([second[0].future])  # decoded in the background: nothing here asked for its images
    assert second[0].future.done()
    expected = [torch.stack([decode_cpu(raw[i][0]) for i in range(lo, hi)]) for lo, hi in ((0, 4), (4, 8), (8, 10))]
    rest = list(batches)
    got = [batch_images(b[0], torch.device("cpu")) for b in (first, second, *rest)]
    assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))
    assert [b[1].tolist() for b in (first, second, *rest)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_torchvision_that_does_not_load_with_this_torch_falls_back_to_pillow_and_says_why(
    tmp_path: Path, jpeg_split
) -> None:
    # what a torchvision built for another torch does at import (issue #21: `operator torchvision::nms does not exist`)
    broken = tmp_path / "site" / "torchvision"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    raw, images = jpeg_split
    first = raw[0][0].numpy().tobytes()
    # jpeg.py alone: a broken torchvision also breaks `import torchmetrics` (so Lightning), which
    # benchmarks/gpu_check.sh checks before anything runs; here the decoder's own fallback
    code = (
        "import sys, torch, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('jpeg', {str(ROOT / 'src/alexnet/data/jpeg.py')!r})\n"
        "jpeg = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(jpeg)\n"
        "print(jpeg._tv_decode_jpeg is None)\n"
        "print(jpeg.TORCHVISION_MISSING)\n"
        "image = jpeg.decode_cpu(torch.frombuffer(bytearray(sys.stdin.buffer.read()), dtype=torch.uint8))\n"
        "print(tuple(image.shape))\n"
    )
    env = {"PYTHONPATH": f"{tmp_path / 'site'}:{ROOT / 'src'}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], input=first, capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    fallback, reason, shape = proc.stdout.decode().splitlines()
    assert fallback == "True" and shape == str((3, 16, 16))
    assert "does not load with torch" in reason and "nms does not exist" in reason and "docs/gpu.md" in reason


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="needs dataset-fashion-mnist (the published files)")
def test_sweep_jobs_downloading_together_each_get_the_verified_files(tmp_path: Path) -> None:
    # 4 processes at once into one data_dir, from a mirror of the published files (Debian's copy, as a file:// URL)
    mirror = DEBIAN_FASHION_MNIST.as_uri() + "/"
    code = (
        "import sys; from pathlib import Path\n"
        "from alexnet.data.fashion_mnist import download, read_idx, FILES\n"
        "folder = download(sys.argv[1], Path(sys.argv[2]))\n"
        "print(len(read_idx(folder / FILES['train_images'])))\n"
    )
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", code, mirror, str(tmp_path / "dl")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(4)
    ]
    results = [(job.communicate(timeout=300), job.returncode) for job in jobs]
    for (out, err), code_ in results:
        assert code_ == 0, err[-2000:]
        assert out.strip() == "60000"
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == sorted(FILES.values())  # no temporary left over


def test_a_generator_state_from_another_device_type_reseeds_the_stream_instead_of_failing() -> None:
    g = generator(3, "dropout", 0)
    g.manual_seed(5)
    saved = g.get_state()
    after = torch.rand(4, generator=g)
    # the same device type: the stream continues exactly, whether the checkpoint recorded its device or not
    for saved_on in ("cpu", None):
        fresh = generator(3, "dropout", 0)
        assert restore_state(fresh, saved, saved_on, 3, "dropout", 0)
        assert torch.equal(torch.rand(4, generator=fresh), after)
    # a CUDA generator's state (Philox: seed and offset, 16 bytes) into a CPU generator, and a CPU state labelled as
    # from a GPU: not set (torch would raise), re-seeded from the checkpoint, the same on every resumption
    cuda_state = torch.tensor([7, 0], dtype=torch.int64).view(torch.uint8)
    draws = []
    for state, saved_on in ((cuda_state, "cuda"), (cuda_state, None), (cuda_state, "cuda"), (saved, "cuda")):
        fresh = generator(3, "dropout", 0)
        assert not restore_state(fresh, state, saved_on, 3, "dropout", 0)
        draws.append(torch.rand(4, generator=fresh))
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], draws[2])
    assert not torch.equal(draws[0], draws[3])  # another checkpoint, another stream
    assert not torch.equal(draws[0], torch.rand(4, generator=generator(3, "dropout", 0)))  # not the run's start


def test_a_checkpoint_written_on_a_gpu_resumes_on_the_cpu_with_a_warning(train_run, tmp_path: Path) -> None:
    proc, run_dir = train_run("debug=fast", "test=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = run_dir / "checkpoints/last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    streams = checkpoint["callbacks"]["RandomStreams"]
    assert streams["dropout_device"] == "cpu" and streams["dropout"].numel() == torch.Generator().get_state().numel()
    # what a CUDA run writes: its dropout generator's Philox state (seed and offset)
    streams.update(dropout=torch.tensor([11, 0], dtype=torch.int64).view(torch.uint8), dropout_device="cuda")
    from_gpu = tmp_path / "from_gpu.ckpt"
    torch.save(checkpoint, from_gpu)
    proc, run_dir = train_run("debug=fast", "test=false", f"ckpt_path={from_gpu}", "trainer.max_epochs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dropout stream was drawn on another device type" in proc.stderr
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 6
