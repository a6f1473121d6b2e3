"""From a sweep's run directories to a verdict on one of the paper's claims (src/compare.py).

Every run directory of src/train.py holds `config.yaml` (which names its experiment, arm and the claim
it tests), `summary.json` and `metrics.csv`; nothing here needs W&B. A claim compares a reference arm (the
paper's recipe) with an ablated arm on the metrics listed under `claim.paper` in the experiment config,
each with the paper's value of Δ = ablated − reference: a number, `+` / `-` (a direction only), or `xR`
(a ratio ablated / reference, compared on a log scale).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from scipy import stats

from alexnet.utils import write_json

VERDICT_RULE = (
    "Δ = mean(ablated) − mean(reference) over seeds, with a 95% Student-t interval (Welch's for independent "
    "arms; paired by seed when both arms are the same weights). **reproduced**: the interval excludes 0 and Δ "
    "has the paper's sign; **opposite**: it excludes 0 with the other sign; **inconclusive**: it contains 0 "
    "(or fewer than 2 runs per arm). Ratios (`xR`) are compared as Δ of log values. The verdict is on the "
    "direction; the paper's sizes come from its own data (ILSVRC; CIFAR-10 for Fig. 1) and are shown for reference."
)


@dataclass
class Run:
    path: Path
    cfg: dict[str, Any]
    summary: dict[str, Any]
    arm: str
    metrics: dict[str, float | None]
    curves: dict[str, list[tuple[int, int, float]]] = field(default_factory=dict)  # name -> (epoch, step, value)

    @property
    def seed(self) -> int:
        return self.summary["seed"]

    def setting(self, key: str) -> Any:
        return OmegaConf.select(OmegaConf.create(self.cfg), key) if key else None


def read_curves(path: Path) -> dict[str, list[tuple[int, int, float]]]:
    """metrics.csv as one list per metric; Lightning's CSV logger may write a row twice: kept once."""
    curves: dict[str, dict[tuple[int, int], float]] = defaultdict(dict)
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                epoch, step = int(row.get("epoch") or 0), int(row.get("step") or 0)
                for name, value in row.items():
                    if name not in ("epoch", "step") and value not in ("", None):
                        curves[name][(epoch, step)] = float(value)
    return {name: sorted((e, s, v) for (e, s), v in points.items()) for name, points in curves.items()}


def run_metrics(summary: dict[str, Any], test: dict[str, float] | None = None) -> dict[str, float | None]:
    """The numbers a claim can be judged on, from one run's summary.json."""
    test = summary.get("test", {}) if test is None else test
    train_eval = summary.get("train_eval") or {}
    images = summary.get("train_images")
    steps_to = summary.get("steps_to_target")
    if steps_to is None and "train_error_target" in summary:
        steps_to = math.inf  # never reached within the run's steps
    return {
        "test/top1_err": test.get("test/top1_err"),
        "test/top5_err": test.get("test/top5_err"),
        "best_val/top1_err": summary.get("best_val", {}).get("val/top1_err"),
        # test error minus the training error of the same weights in eval mode
        "overfit_gap": test["test/top1_err"] - train_eval["top1_err"] if train_eval and test else None,
        "best_epoch": None if summary.get("best_epoch") is None else summary["best_epoch"] + 1,
        "epochs": summary.get("epochs"),
        "steps": summary.get("steps"),
        "steps_to_target": steps_to,
        "epochs_to_target": (summary.get("images_to_target") or math.inf) / images if images and steps_to else None,
        "wall_seconds": summary.get("wall_seconds"),
    }


def load_runs(sweep_dirs: list[Path]) -> list[Run]:
    """Every finished run (a directory with summary.json) under the given sweep directories."""
    runs = []
    for sweep in sweep_dirs:
        for summary_path in sorted(Path(sweep).rglob("summary.json")):
            folder = summary_path.parent
            cfg = OmegaConf.to_container(OmegaConf.load(folder / "config.yaml"))
            summary = OmegaConf.to_container(OmegaConf.load(summary_path))  # JSON is YAML
            claim = cfg.get("claim") or {}
            curves = read_curves(folder / "metrics.csv")
            if claim.get("arms_from") == "test_by_crops":  # one run, tested several ways: one pseudo-run each
                for crops, test in summary["test_by_crops"].items():
                    runs.append(Run(folder, cfg, summary, crops_arm(crops), run_metrics(summary, test), curves))
            else:
                runs.append(Run(folder, cfg, summary, str(cfg.get("arm")), run_metrics(summary), curves))
    return runs


def crops_arm(crops: str | int) -> str:
    return f"{crops} crop" + ("s" if str(crops) != "1" else "")


def arm_label(run: Run, select_by: str | None) -> str:
    return f"{run.arm} ({select_by.split('.')[-1]}={run.setting(select_by)})" if select_by else run.arm


def group_arms(runs: list[Run], select_by: str | None = None) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[arm_label(run, select_by)].append(run)
    return dict(sorted(groups.items()))


def censored(run: Run, metric: str) -> bool:
    """The run ended before the metric's event: the target was never reached, or val error was still
    falling at the last epoch (so the epoch of the best val error is only a lower bound)."""
    value = run.metrics.get(metric)
    if metric == "best_epoch":
        return value is not None and value == run.summary.get("epochs")
    return value is not None and math.isinf(value)


def capped(run: Run, metric: str) -> float:
    """The metric, with a target never reached counted as the whole run (a bound, not a value)."""
    value = run.metrics.get(metric)
    if value is None:
        raise ValueError(f"{run.path}: no value for {metric}, which the claim needs (see its summary.json)")
    if not math.isinf(value):
        return float(value)
    steps = float(run.summary["steps"])
    if metric == "epochs_to_target":
        return steps * run.cfg["data"]["batch_size"] / run.summary["train_images"]
    return steps


def select_setting(runs: list[Run], arm: str, select_by: str, metric: str) -> list[Run]:
    """Per arm, the runs of the setting (e.g. learning rate) with the lowest mean `metric`: the paper
    tuned each net's learning rate to train as fast as possible (Fig. 1)."""
    settings = defaultdict(list)
    for run in runs:
        if run.arm == arm:
            settings[run.setting(select_by)].append(run)
    if not settings:
        return []

    def rank(setting: Any) -> tuple[int, float]:  # fewest runs that never got there, then the lowest mean
        runs_ = settings[setting]
        return sum(censored(r, metric) for r in runs_), float(np.mean([capped(r, metric) for r in runs_]))

    return settings[min(settings, key=rank)]


@dataclass
class Comparison:
    metric: str
    paper: str
    reference: list[float]
    ablated: list[float]
    delta: float
    low: float
    high: float
    verdict: str
    ratio: bool
    note: str = ""  # e.g. how many runs ended before the event the metric counts


def compare(metric: str, paper: Any, ref: list[Run], abl: list[Run], paired: bool) -> Comparison:
    """Δ, its 95% interval and the verdict for one metric (the rule is VERDICT_RULE)."""
    spec = str(paper).strip()
    ratio = spec.startswith("x")
    expected = math.copysign(1.0, math.log(float(spec[1:])) if ratio else -1.0 if spec.startswith("-") else 1.0)
    if paired:  # same weights tested two ways: pair by seed
        by_seed = {r.seed: r for r in ref}
        pairs = [(by_seed[a.seed], a) for a in abl if a.seed in by_seed]
        ref, abl = [p[0] for p in pairs], [p[1] for p in pairs]
    r = [capped(run, metric) for run in ref]
    a = [capped(run, metric) for run in abl]
    n_censored = sum(censored(run, metric) for run in [*ref, *abl])
    x, y = (np.log(a), np.log(r)) if ratio else (np.array(a), np.array(r))
    delta = float(x.mean() - y.mean()) if len(x) and len(y) else math.nan
    low = high = math.nan
    if len(x) >= 2 and len(y) >= 2:
        no_spread = np.ptp(x - y) == 0 if paired else np.ptp(x) == 0 and np.ptp(y) == 0
        if no_spread:
            low = high = delta  # no spread at all: the interval is the point
        else:
            test = stats.ttest_rel(x, y) if paired else stats.ttest_ind(x, y, equal_var=False)
            low, high = (float(v) for v in test.confidence_interval(0.95))
    if math.isnan(low) or low <= 0 <= high:
        verdict = "inconclusive"
    elif metric == "best_epoch" and n_censored:  # still improving when stopped: no epoch to compare
        verdict = "inconclusive"
    else:
        verdict = "reproduced" if math.copysign(1.0, delta) == expected else "opposite"
    note = ""
    if n_censored:
        what = (
            "still improving at their last epoch"
            if metric == "best_epoch"
            else "never reached it (counted at their end)"
        )
        note = f"{n_censored} of {len(r) + len(a)} runs {what}"
    return Comparison(metric, spec, r, a, delta, low, high, verdict, ratio, note)


def judge(runs: list[Run]) -> tuple[dict[str, Any], list[Comparison], dict[str, list[Run]]]:
    """The claim the runs' experiment tests, one Comparison per metric the paper states, and the runs
    compared, by arm label."""
    claim = runs[0].cfg.get("claim")
    if not claim:
        raise ValueError(f"{runs[0].path}: its experiment states no claim (conf/experiment/*.yaml `claim:`)")
    names = {r.cfg.get("experiment_name") for r in runs}
    if len(names) > 1:
        raise ValueError(f"the runs come from several experiments {sorted(map(str, names))}: compare one at a time")
    reference, ablated = str(claim["reference"]), str(claim["ablated"])
    if claim.get("arms_from") == "test_by_crops":
        reference, ablated = crops_arm(reference), crops_arm(ablated)
    select_by = claim.get("select_by")
    if select_by:  # the figure of merit is the first metric the paper states
        first_metric = next(iter(claim["paper"]))
        ref = select_setting(runs, reference, select_by, first_metric)
        abl = select_setting(runs, ablated, select_by, first_metric)
    else:
        ref = [r for r in runs if r.arm == reference]
        abl = [r for r in runs if r.arm == ablated]
    if not ref or not abl:
        raise ValueError(f"no runs of arm {reference!r} or {ablated!r} (found {sorted({r.arm for r in runs})})")
    results = [compare(metric, paper, ref, abl, bool(claim.get("paired"))) for metric, paper in claim["paper"].items()]
    chosen = {arm_label(ref[0], select_by): ref, arm_label(abl[0], select_by): abl}
    return {**claim, "reference": reference, "ablated": ablated}, results, chosen


def write_claim_json(path: Path, experiment: str, claim: dict[str, Any], results: list[Comparison]) -> None:
    write_json(
        path,
        {
            "experiment": experiment,
            "section": claim.get("section"),
            "claim": claim.get("text"),
            "reference": claim["reference"],
            "ablated": claim["ablated"],
            "comparisons": [
                {k: getattr(c, k) for k in ("metric", "paper", "delta", "low", "high", "verdict", "ratio", "note")}
                for c in results
            ],
        },
    )
