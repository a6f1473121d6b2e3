"""A sweep's finished runs as the reports read them: each run directory's config.yaml, summary.json (a
record.RunRecord) and metrics.csv, and the numbers a claim is judged on (nothing here needs W&B)."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from alexnet.claims.curves import AREA, error_area, fig1_curve, fig1_metrics, overfit_metrics
from alexnet.claims.stats.bootstrap import prediction_name
from alexnet.record import RunRecord


@dataclass
class Run:
    path: Path
    cfg: dict[str, Any]
    summary: dict[str, Any]  # summary.json as read
    arm: str
    metrics: dict[str, float | None]
    curves: dict[str, list[tuple[int, int, float]]] = field(default_factory=dict)  # name -> (epoch, step, value)
    predictions: str = "test"  # its predictions/<name>.npz (bootstrap.py): another name for a test of other crops
    record: RunRecord = field(init=False, repr=False)  # the summary, typed

    def __post_init__(self) -> None:
        self.record = RunRecord.from_json(self.summary)

    @property
    def seed(self) -> int:
        return self.record.seed

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


def by_epoch(curves: dict[str, list[tuple[int, int, float]]], metric: str) -> dict[int, float]:
    """A per-epoch metric of metrics.csv as {epoch (0-based): value}."""
    return {e: v for e, _, v in curves.get(metric, [])}


def run_metrics(
    summary: RunRecord | dict[str, Any],
    test: dict[str, float] | None = None,
    curves: dict[str, list[tuple[int, int, float]]] | None = None,
    claim: dict[str, Any] | None = None,
    max_epochs: int | None = None,
) -> dict[str, float | None]:
    """The numbers a claim can be judged on, from one run's summary.json and metrics.csv. `inf` marks an event
    the run ended before (a target never reached; `max_epochs`, given for a run whose schedule stops it, reached
    first): compare() counts it as the whole run, a bound."""
    record = summary if isinstance(summary, RunRecord) else RunRecord.from_json(summary)
    test = record.test if test is None else test
    curves, claim = curves or {}, claim or {}
    images, fig1 = record.train_images, record.extra  # fig1: callbacks.TrainErrorTarget.summary
    steps_to = fig1.get("steps_to_target")
    if steps_to is None and "train_error_target" in fig1:
        steps_to = math.inf  # never reached within the run's steps
    metrics: dict[str, float | None] = {
        "test/top1_err": test.get("test/top1_err"),
        "test/top5_err": test.get("test/top5_err"),
        "test/loss": test.get("test/loss"),
        "best_val/top1_err": record.best_val.get("val/top1_err"),
        "best_epoch": None if record.best_epoch is None else record.best_epoch + 1,
        "epochs": record.epochs,
        "steps": record.steps,
        "steps_to_target": steps_to,
        "epochs_to_target": (fig1.get("images_to_target") or math.inf) / images if images and steps_to else None,
        "wall_seconds": record.wall_seconds,
    }
    if max_epochs:  # §5's plateau schedule stops a run at the plateau after its last cut (budget=until_stopped)
        metrics["epochs_to_stop"] = math.inf if record.epochs >= max_epochs else record.epochs
    for target, reached in (fig1.get("to_targets") or {}).items():  # Fig. 1 at several training errors
        metrics[f"steps_to_{target}"] = math.inf if reached is None else reached[0]
        metrics[f"epochs_to_{target}"] = math.inf if reached is None else reached[1] / images
    for name, value in test.items():  # 10-crop diagnostics: each view, centre + mirror
        if "view" in name or "centre_mirror" in name:
            metrics[name] = value
    curve = fig1_curve(curves, fig1)
    if curve and "train_error_target" in fig1:  # Fig. 1 from the per-step training-error curve
        metrics.update(fig1_metrics(*curve, claim, fig1.get("train_error_targets") or []))
    val, train_eval = by_epoch(curves, "val/top1_err"), by_epoch(curves, "train_eval/top1_err")
    if set(val) & set(train_eval):  # validation minus eval-mode training error of the same weights, epoch by epoch
        metrics.update(overfit_metrics(train_eval, val, claim))
    elif record.train_eval and test:  # older runs: test error minus the training error of the tested weights
        metrics["overfit_gap"] = test["test/top1_err"] - record.train_eval["top1_err"]
    return metrics


def load_runs(sweep_dirs: list[Path], claim: dict[str, Any] | None = None) -> list[Run]:
    """Every finished run (a directory with summary.json) under the given sweep directories. `claim`: judge them
    on this claim instead of their own (a claim measured on another experiment's runs, e.g. ablate_test_crops on
    ablate_lrn's reference arm: `claim.runs_of` picks the runs)."""
    runs = []
    for sweep in sweep_dirs:
        for summary_path in sorted(Path(sweep).rglob("summary.json")):
            folder = summary_path.parent
            cfg = OmegaConf.to_container(OmegaConf.load(folder / "config.yaml"))
            summary = OmegaConf.to_container(OmegaConf.load(summary_path))  # JSON is YAML
            if claim is not None:
                runs_of = claim.get("runs_of") or {}
                if any(str(cfg.get(k)) != str(v) for k, v in {"experiment_name": runs_of.get("experiment"),
                                                               "arm": runs_of.get("arm")}.items() if v):  # fmt: skip
                    continue
                cfg = {**cfg, "claim": claim}
            claim_ = cfg.get("claim") or {}
            curves = read_curves(folder / "metrics.csv")
            if claim_.get("arms_from") == "test_by_crops":  # one run, tested several ways: one pseudo-run each
                for crops, test in RunRecord.from_json(summary).test_by_crops.items():
                    metrics = run_metrics(summary, test, curves, claim_, stops_at(cfg))
                    name = prediction_name(crops, RunRecord.from_json(summary).test_crops)
                    runs.append(Run(folder, cfg, summary, crops_arm(crops), metrics, curves, name))
            else:
                metrics = run_metrics(summary, None, curves, claim_, stops_at(cfg))
                runs.append(Run(folder, cfg, summary, str(cfg.get("arm")), metrics, curves))
    return runs


def stops_at(cfg: dict[str, Any]) -> int | None:
    """The epoch cap of a run whose schedule stops it (§5's plateau schedule); None for a fixed schedule."""
    stops = str((cfg.get("scheduler") or {}).get("_target_", "")).endswith("PlateauSchedule")
    return (cfg.get("trainer") or {}).get("max_epochs") if stops else None


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
        return value is not None and value == run.record.epochs
    return value is not None and math.isinf(value)


def capped(run: Run, metric: str) -> float:
    """The metric, with an event never reached counted as the whole run (a bound, not a value)."""
    value = run.metrics.get(metric)
    if value is None:
        raise ValueError(f"{run.path}: no value for {metric}, which the claim needs (see its summary.json)")
    if not math.isinf(value):
        return float(value)
    if metric.startswith(("epochs_to_train_err", "epochs_to_converge", "epochs_to_stop")):
        return float(run.record.epochs)
    if metric.startswith(AREA):  # the area under the whole run's curve
        return error_area((fig1_curve(run.curves, run.record.extra) or ([], 1))[0], float(run.record.steps))
    steps = float(run.record.steps)
    if metric.startswith("epochs_to"):
        return steps * run.cfg["data"]["batch_size"] / run.record.train_images
    return steps
