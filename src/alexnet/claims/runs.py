"""A sweep's finished runs as the reports read them: each run directory's config.yaml, summary.json (a
record.RunRecord) and metrics.csv, and the numbers a claim is judged on (nothing here needs W&B).

A job the analysis cannot use is left out by name, never silently (#30): one that failed (failed.json) or has not
finished, and one whose files are missing or damaged (a copy that stopped part-way changes a convergence verdict
without a word if read as it is). Two runs of one arm and seed are refused: which one the claim pairs is the user's
choice, not the order of a directory listing."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

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


@dataclass(frozen=True)
class LeftOut:
    """A job under the sweep directories that the analysis does not use: the file at fault (the job's directory
    for a job that failed or has not finished), what is wrong with it, and what to do."""

    job: Path
    file: Path
    problem: str
    todo: str

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}: left out of the analysis; {self.todo}"

    def short(self) -> str:
        """The same without the sweep's own path (report.md's list): the file from its job's directory on."""
        return f"`{self.file.relative_to(self.job.parent)}`: {self.problem}; {self.todo}"


@dataclass
class Sweep:
    """What the sweep directories hold: the runs a claim is judged on, and the jobs left out of it."""

    runs: list[Run]
    left_out: list[LeftOut]


# a file of a finished job: damaged in a copy, or in the job's own directory (then only training it again mends it)
COPY_AGAIN = (
    "copy it again from the run's own directory, or delete this job's directory and rerun its sweep into the same "
    "folder (finished jobs are skipped)"
)
RERUN = "rerun the sweep into its directory to run it again (finished jobs are skipped)"


def load_runs(sweep_dirs: list[Path], claim: dict[str, Any] | None = None) -> list[Run]:
    """read_sweeps(...).runs: the runs only (what a test of a whole sweep reads; a report uses read_sweeps, which
    also names the jobs it left out)."""
    return read_sweeps(sweep_dirs, claim).runs


def read_sweeps(sweep_dirs: list[Path], claim: dict[str, Any] | None = None) -> Sweep:
    """Every finished run (a directory with summary.json) under the given sweep directories, and every job left
    out: failed, unfinished, or with a file missing or damaged. A folder given twice (or inside another given) is
    read once. `claim`: judge them on this claim instead of their own (a claim measured on another experiment's
    runs, e.g. ablate_test_crops on ablate_lrn's reference arm: `claim.runs_of` picks the runs). Raises ValueError
    for two runs of one arm and seed."""
    runs: list[Run] = []
    left_out: list[LeftOut] = []
    for folder in _job_folders(sweep_dirs):
        read = _read_job(folder, claim)
        if isinstance(read, LeftOut):
            left_out.append(read)
        elif read is not None:
            runs.extend(read)
    _refuse_twins(runs)
    return Sweep(runs, left_out)


def _job_folders(sweep_dirs: list[Path]) -> list[Path]:
    """The job directories under the sweep directories, each once: those with a summary.json (finished), a
    failed.json (sweeps.record_failure's) or Hydra's .hydra/ (started; wandb's own config.yaml files are not
    jobs)."""
    folders: dict[Path, Path] = {}  # by resolved path, in the order of the sweeps given, each sweep's sorted
    for sweep in sweep_dirs:
        found = {
            path.parent for marker in ("summary.json", "failed.json", ".hydra") for path in Path(sweep).rglob(marker)
        }
        for folder in sorted(found):
            folders.setdefault(folder.resolve(), folder)
    return list(folders.values())


def _read_job(folder: Path, claim: dict[str, Any] | None) -> list[Run] | LeftOut | None:
    """One job directory: its runs (several for a claim that tests one run several ways), why it is left out, or
    None for a run of another experiment or arm than `claim.runs_of` names."""
    config = folder / "config.yaml"
    cfg = _read_config(config) if config.is_file() else None
    if isinstance(cfg, LeftOut):
        return cfg
    if cfg is not None and claim is not None and not _runs_of(cfg, claim):
        return None
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        return _unfinished(folder)
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return LeftOut(folder, summary_path, f"not a whole JSON file ({e})", COPY_AGAIN)
    if not isinstance(summary, dict):
        return LeftOut(folder, summary_path, "not a run's summary", COPY_AGAIN)
    if cfg is None:
        return LeftOut(folder, config, "missing (a run's arm and claim are read from it)", COPY_AGAIN)
    if claim is not None:
        cfg = {**cfg, "claim": claim}
    metrics_csv = folder / "metrics.csv"
    damage = metrics_damage(metrics_csv, summary, expected="csv" in (cfg.get("logger") or {}))
    if damage:
        return LeftOut(folder, metrics_csv, damage, COPY_AGAIN)
    claim_ = cfg.get("claim") or {}
    curves = read_curves(metrics_csv)
    record = RunRecord.from_json(summary)
    if claim_.get("arms_from") == "test_by_crops":  # one run, tested several ways: one pseudo-run each
        return [
            Run(folder, cfg, summary, crops_arm(crops), run_metrics(summary, test, curves, claim_, stops_at(cfg)),
                curves, prediction_name(crops, record.test_crops))
            for crops, test in record.test_by_crops.items()
        ]  # fmt: skip
    metrics = run_metrics(summary, None, curves, claim_, stops_at(cfg))
    return [Run(folder, cfg, summary, str(cfg.get("arm")), metrics, curves)]


def _read_config(path: Path) -> dict[str, Any] | LeftOut:
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, OmegaConfBaseException) as e:
        return LeftOut(path.parent, path, f"unreadable ({type(e).__name__})", COPY_AGAIN)
    if not isinstance(cfg, dict):
        return LeftOut(path.parent, path, "not a run's config", COPY_AGAIN)
    return cfg


def _runs_of(cfg: dict[str, Any], claim: dict[str, Any]) -> bool:
    """Whether the run is one of those `claim.runs_of` names (all runs, where it names none)."""
    runs_of = claim.get("runs_of") or {}
    wanted = {"experiment_name": runs_of.get("experiment"), "arm": runs_of.get("arm")}
    return all(str(cfg.get(k)) == str(v) for k, v in wanted.items() if v)


def _unfinished(folder: Path) -> LeftOut:
    """A job without summary.json: failed (sweeps.record_failure wrote failed.json), or started and not finished."""
    failed = folder / "failed.json"
    if not failed.is_file():
        return LeftOut(folder, folder, "not finished (no summary.json)",
                       "still running, or interrupted: rerun the sweep into its directory to resume it")  # fmt: skip
    try:
        record = json.loads(failed.read_text())
        what = f"{record['error']}: {record['message']}"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        what = f"{failed} unreadable"
    return LeftOut(folder, folder, f"failed ({what})", f"its error.txt has the traceback; {RERUN}")


def metrics_damage(path: Path, summary: dict[str, Any], expected: bool = True) -> str | None:
    """What is wrong with a finished run's metrics.csv, or None: missing (where the run logged to CSV: `expected`),
    cut short (a last line without its end, a row of the wrong width, or rows that stop before the run's last
    epoch), or not a CSV of numbers."""
    if not path.is_file():
        return "missing (the run logged to CSV)" if expected else None
    try:
        data = path.read_bytes()
        if not data:
            return "empty (the run logged to CSV)" if expected else None
        if not data.endswith(b"\n"):
            return f"cut short (its last line ends mid-row, at byte {len(data):,})"
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            epochs = []
            for row in reader:
                if None in row or None in row.values():  # more fields than the header, or fewer
                    width = "more" if None in row else "fewer"
                    return f"damaged (line {reader.line_num} has {width} fields than its header)"
                if row.get("epoch"):
                    epochs.append(int(row["epoch"]))
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as e:
        return f"unreadable ({type(e).__name__}: {e})"
    last, ran = max(epochs, default=None), RunRecord.from_json(summary).epochs
    if last is not None and ran and last < ran - 1:  # each epoch's end is logged: rows of the last one are missing
        return f"cut short (its rows end at epoch {last + 1} of the run's {ran})"
    return None


def _refuse_twins(runs: list[Run]) -> None:
    """Two runs of one arm and seed (and setting, where the claim chooses one per arm): a copied job, or a sweep
    rerun into a second directory. A claim pairs one run per arm and seed, so the user says which."""
    seen: dict[tuple[str, Any, Any], Run] = {}
    for run in runs:
        select_by = (run.cfg.get("claim") or {}).get("select_by")
        key = (run.arm, run.seed, run.setting(select_by) if select_by else None)
        other = seen.setdefault(key, run)
        if other is not run and other.path != run.path:
            setting = f", {select_by}={key[2]}" if select_by else ""
            raise ValueError(
                f"two runs of arm {run.arm!r}, seed {run.seed}{setting}: {other.path} and {run.path}; a claim pairs "
                "one run per arm and seed: move the one not to judge out of the folders given"
            )


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
