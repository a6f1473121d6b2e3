"""The paired bootstrap over test images, on run directories as src/train.py writes them (config.yaml,
summary.json, metrics.csv and predictions/*.npz), generated here; and a claim's report from such a sweep."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from alexnet.claims.judge import judge
from alexnet.claims.report import report
from alexnet.claims.runs import load_runs
from alexnet.claims.stats.bootstrap import paired_delta, per_image, predictions_path

N, CLASSES, SEEDS = 600, 10, (1, 2, 3, 4)
LABELS = np.arange(N) % CLASSES
CLAIM = {"section": "3.3", "text": "LRN lowers error", "reference": "lrn", "ablated": "no_lrn",
         "paper": {"test/top1_err": {"delta": 0.014, "base": 0.407}}}  # fmt: skip
PLATEAU, FALLING = [0.30, 0.20, 0.160, 0.151, 0.150, 0.152], [0.30, 0.22, 0.190, 0.175, 0.162, 0.150]


def _probs(seed: int, margin: float, crops: int = 1) -> np.ndarray:
    """Class probabilities of a net whose logit for the true class is raised by `margin` (a better net: larger),
    the same images for every run, each seed's own noise; crops: the mean softmax of that many noisy views."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (N, CLASSES))
    views = []
    for _ in range(crops):
        logits = base + rng.normal(0, 0.6, (N, CLASSES))
        logits[np.arange(N), LABELS] += margin
        e = np.exp(logits - logits.max(1, keepdims=True))
        views.append(e / e.sum(1, keepdims=True))
    return np.mean(views, 0).astype(np.float32)


def _test_metrics(probs: np.ndarray) -> dict[str, float]:
    return {"test/top1_err": float((probs.argmax(1) != LABELS).mean()),
            "test/loss": float(-np.log(probs[np.arange(N), LABELS]).mean())}  # fmt: skip


def _write_run(sweep: Path, arm: str, seed: int, margin: float, val: list[float], predictions: bool = True) -> Path:
    run = sweep / f"{arm}_seed{seed}"
    (run / "predictions").mkdir(parents=True)
    one, ten = _probs(100 * seed + (arm == "no_lrn"), margin), _probs(100 * seed + 7, margin, crops=10)
    if predictions:
        np.savez(run / "predictions" / "test.npz", probs=one, labels=LABELS)
        np.savez(run / "predictions" / "test_10crop.npz", probs=ten, labels=LABELS)
    cfg = {"experiment_name": "toy_lrn", "arm": arm, "claim": CLAIM, "budget": {"name": "converged"},
           "data": {"_target_": "alexnet.data.FashionMNISTDataModule", "batch_size": 128, "test_crops": 1},
           "model": {"width": 0.25}, "optimizer": {"lr": 0.01}, "trainer": {"max_epochs": len(val)}}  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    summary = {"seed": seed, "arm": arm, "experiment": "toy_lrn", "git": {"commit": "0123456789", "dirty": False},
               "test": _test_metrics(one), "test_crops": 1, "train_images": 1000, "epochs": len(val), "steps": 48,
               "test_by_crops": {"1": _test_metrics(one), "10": _test_metrics(ten)}}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "step", "val/top1_err", "train_eval/top1_err"])
        writer.writerows([e, 8 * e + 7, v, v - 0.01] for e, v in enumerate(val))
    return run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """4 seeds × 2 arms; no_lrn's nets a little better; one no_lrn run still improving at its end."""
    folder = tmp_path / "sweep"
    for seed in SEEDS:
        _write_run(folder, "lrn", seed, 1.6, PLATEAU)
        _write_run(folder, "no_lrn", seed, 1.8, FALLING if seed == 4 else PLATEAU)
    return folder


def test_the_bootstrap_resamples_test_images_alike_for_every_run(sweep: Path) -> None:
    pairs = [(predictions_path(sweep / f"lrn_seed{s}"), predictions_path(sweep / f"no_lrn_seed{s}")) for s in SEEDS]
    b = paired_delta(pairs, "test/top1_err")
    per_seed = [per_image(abl, "test/top1_err")[0] - per_image(ref, "test/top1_err")[0] for ref, abl in pairs]
    diff = np.mean(per_seed, 0)
    assert b["delta"] == pytest.approx(diff.mean()) and b["low"] < b["delta"] < b["high"]
    # test-set sampling alone: the standard error of a mean over N images
    assert b["sd"] == pytest.approx(diff.std() / np.sqrt(N), rel=0.1) and b["resamples"] == 2000
    assert paired_delta(pairs, "test/top1_err") == b and paired_delta(pairs, "test/top1_err", seed=1) != b
    # the same indices for every run: a run against itself differs on no resample
    same = paired_delta([(ref, ref) for ref, _ in pairs], "test/loss")
    assert same["low"] == same["high"] == same["sd"] == 0.0
    (sweep / "lrn_seed4" / "predictions" / "test.npz").unlink()
    assert paired_delta(pairs, "test/top1_err") is None  # an old run: no predictions, no bootstrap


def test_predictions_in_another_order_are_refused(sweep: Path, tmp_path: Path) -> None:
    with np.load(predictions_path(sweep / "lrn_seed1")) as f:
        probs, labels = f["probs"], f["labels"]
    order = np.random.default_rng(0).permutation(N)
    shuffled = tmp_path / "shuffled.npz"
    np.savez(shuffled, probs=probs[order], labels=labels[order])
    with pytest.raises(ValueError, match="same order"):
        paired_delta([(predictions_path(sweep / "lrn_seed1"), shuffled)], "test/top1_err")


def test_a_claims_report_carries_the_bootstrap_the_reported_loss_and_convergence(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    report([sweep], out)
    claim = json.loads((out / "claim.json").read_text())
    (row,) = claim["comparisons"]
    (loss,) = claim["reported"]
    assert row["bootstrap"]["delta"] == pytest.approx(row["delta"])  # the same runs' test error, image by image
    assert loss["metric"] == "test/loss" and loss["bootstrap"]["delta"] == pytest.approx(loss["delta"], rel=1e-5)
    assert 2 / 2**4 <= row["p_perm"] <= 1 and loss["verdict"] == "reported"
    # no_lrn's seed 4 still improving moves its arm's mean curve out of the band: the converged budget withholds the
    # verdict; both arms checked, each run's own check beside
    arms = claim["convergence"]["arms"]
    assert arms["lrn"]["converged"] and not arms["no_lrn"]["converged"]
    assert (arms["lrn"]["runs_converged"], arms["no_lrn"]["runs_converged"]) == (4, 3)
    assert row["verdict"] == "not converged" and row["verdict_tests"] in ("reproduced", "smaller", "opposite")
    text = (out / "report.md").read_text()
    assert (
        "no_lrn: **not converged**" in text and "3 of 4 runs pass alone" in text and "Reported, not a verdict" in text
    )
    low, high = (f"{row['bootstrap'][k] * 100:+.2f} pts" for k in ("low", "high"))
    assert f"[{low}, {high}]" in text


def test_the_crop_count_claim_bootstraps_each_crop_counts_predictions(sweep: Path) -> None:
    crops = {**CLAIM, "arms_from": "test_by_crops", "reference": "10", "ablated": "1",
             "runs_of": {"experiment": "toy_lrn", "arm": "lrn"}}  # fmt: skip
    claim, results, _ = judge(load_runs([sweep], crops))
    row = next(c for c in results if c.metric == "test/top1_err")
    expected = np.mean([per_image(predictions_path(sweep / f"lrn_seed{s}"), "test/top1_err")[0]
                        - per_image(predictions_path(sweep / f"lrn_seed{s}", "test_10crop"), "test/top1_err")[0]
                        for s in SEEDS])  # fmt: skip
    assert row.bootstrap["delta"] == pytest.approx(expected) == pytest.approx(row.delta)
