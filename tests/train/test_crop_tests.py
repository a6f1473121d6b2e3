"""Each test of a run keeps every test image's class probabilities (predictions/<name>.npz): what a claim's report
resamples for its bootstrap over test images. They must be the probabilities the test's metrics came from."""

from __future__ import annotations

import numpy as np

from alexnet.data.fashion_mnist import read_idx


def test_predictions_are_the_tested_probabilities_in_test_set_order(train_here, fmnist_dir) -> None:
    summary, run_dir = train_here("debug=fast", "data.test_crops=1", "also_test_crops=[10]", "data.batch_size=32",
                                  "trainer.limit_test_batches=3")  # fmt: skip
    labels = read_idx(fmnist_dir / "t10k-labels-idx1-ubyte.gz").numpy()
    for name, crops in (("test", "1"), ("test_10crop", "10")):
        saved = np.load(run_dir / "predictions" / f"{name}.npz")
        probs, y = saved["probs"], saved["labels"]
        assert probs.shape == (96, 10) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        assert (y == labels[:96]).all()  # the test set's own order: every run's row i is the same image
        error = float((probs.argmax(1) != y).mean())
        assert abs(error - summary["test_by_crops"][crops]["test/top1_err"]) < 1e-6
        loss = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
        assert abs(loss - summary["test_by_crops"][crops]["test/loss"]) < 1e-4
    one, ten = (np.load(run_dir / "predictions" / f"{n}.npz")["probs"] for n in ("test", "test_10crop"))
    assert not np.allclose(one, ten)  # two tests, two files: the 10-crop average is not the centre crop
    assert not list((run_dir / "predictions").glob("*.tmp*"))
