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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from alexnet.utils import write_json
from alexnet.verdict import Comparison, judge_values, parse_spec


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


def by_epoch(curves: dict[str, list[tuple[int, int, float]]], metric: str) -> dict[int, float]:
    """A per-epoch metric of metrics.csv as {epoch (0-based): value}."""
    return {e: v for e, _, v in curves.get(metric, [])}


def run_metrics(
    summary: dict[str, Any],
    test: dict[str, float] | None = None,
    curves: dict[str, list[tuple[int, int, float]]] | None = None,
    claim: dict[str, Any] | None = None,
) -> dict[str, float | None]:
    """The numbers a claim can be judged on, from one run's summary.json and metrics.csv. `inf` marks an event
    the run ended before (a target never reached): compare() counts it as the whole run, a bound."""
    test = summary.get("test", {}) if test is None else test
    curves, claim = curves or {}, claim or {}
    images = summary.get("train_images")
    steps_to = summary.get("steps_to_target")
    if steps_to is None and "train_error_target" in summary:
        steps_to = math.inf  # never reached within the run's steps
    metrics: dict[str, float | None] = {
        "test/top1_err": test.get("test/top1_err"),
        "test/top5_err": test.get("test/top5_err"),
        "test/loss": test.get("test/loss"),
        "best_val/top1_err": summary.get("best_val", {}).get("val/top1_err"),
        "best_epoch": None if summary.get("best_epoch") is None else summary["best_epoch"] + 1,
        "epochs": summary.get("epochs"),
        "steps": summary.get("steps"),
        "steps_to_target": steps_to,
        "epochs_to_target": (summary.get("images_to_target") or math.inf) / images if images and steps_to else None,
        "wall_seconds": summary.get("wall_seconds"),
    }
    for target, reached in (summary.get("to_targets") or {}).items():  # Fig. 1 at several training errors
        metrics[f"steps_to_{target}"] = math.inf if reached is None else reached[0]
        metrics[f"epochs_to_{target}"] = math.inf if reached is None else reached[1] / images
    for name, value in test.items():  # 10-crop diagnostics: each view, centre + mirror
        if "view" in name or "centre_mirror" in name:
            metrics[name] = value
    val, train_eval = by_epoch(curves, "val/top1_err"), by_epoch(curves, "train_eval/top1_err")
    both = sorted(set(val) & set(train_eval))
    if both:  # validation minus eval-mode training error of the same weights, epoch by epoch
        metrics["train_eval/top1_err"] = train_eval[both[-1]]
        metrics["overfit_gap"] = val[both[-1]] - train_eval[both[-1]]
        threshold = claim.get("match_train_err")
        if threshold is not None:
            first = next((e for e in both if train_eval[e] <= threshold), None)
            metrics["overfit_gap_matched"] = None if first is None else val[first] - train_eval[first]
            metrics["epochs_to_train_err"] = math.inf if first is None else first + 1
    elif summary.get("train_eval") and test:  # older runs: test error minus the training error of the tested weights
        metrics["overfit_gap"] = test["test/top1_err"] - summary["train_eval"]["top1_err"]
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
                for crops, test in summary["test_by_crops"].items():
                    metrics = run_metrics(summary, test, curves, claim_)
                    runs.append(Run(folder, cfg, summary, crops_arm(crops), metrics, curves))
            else:
                metrics = run_metrics(summary, None, curves, claim_)
                runs.append(Run(folder, cfg, summary, str(cfg.get("arm")), metrics, curves))
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
    """The metric, with an event never reached counted as the whole run (a bound, not a value)."""
    value = run.metrics.get(metric)
    if value is None:
        raise ValueError(f"{run.path}: no value for {metric}, which the claim needs (see its summary.json)")
    if not math.isinf(value):
        return float(value)
    if metric.startswith("epochs_to_train_err"):
        return float(run.summary["epochs"])
    steps = float(run.summary["steps"])
    if metric.startswith("epochs_to"):
        return steps * run.cfg["data"]["batch_size"] / run.summary["train_images"]
    return steps


def select_setting(runs: list[Run], arm: str, select_by: str, metrics: str | list[str]) -> list[Run]:
    """Per arm, the runs of the setting (e.g. learning rate) that reach the `metrics` events fastest: fewest
    misses first, then the lowest mean of log values summed over the metrics. The paper tuned each net's learning
    rate to train as fast as possible (Fig. 1)."""
    metrics = [metrics] if isinstance(metrics, str) else metrics
    settings = defaultdict(list)
    for run in runs:
        if run.arm == arm:
            settings[run.setting(select_by)].append(run)
    if not settings:
        return []

    def rank(setting: Any) -> tuple[int, float]:
        runs_ = settings[setting]
        misses = sum(censored(r, m) or r.summary.get("diverged_at_step") is not None for r in runs_ for m in metrics)
        return misses, float(sum(np.mean(np.log([capped(r, m) for r in runs_])) for m in metrics))

    return settings[min(settings, key=rank)]


def at_grid_edge(runs: list[Run], chosen: list[Run], select_by: str) -> bool:
    """The chosen setting is the smallest or largest of the grid: the optimum may lie outside it."""
    grid = sorted({r.setting(select_by) for r in runs if r.arm == chosen[0].arm})
    return len(grid) > 1 and chosen[0].setting(select_by) in (grid[0], grid[-1])


def compare(metric: str, paper: Any, ref: list[Run], abl: list[Run], paired: bool = True) -> Comparison:
    """Δ, its interval, p-values and the verdict for one metric (verdict.VERDICT_RULE), paired by seed where the
    arms share seeds. A run without a value for the metric (e.g. a matched training error it never reached) is
    left out, with its pair, and counted in the note."""
    spec = parse_spec(paper)
    if paired:
        by_seed = {r.seed: r for r in ref}
        pairs = [(by_seed[a.seed], a) for a in abl if a.seed in by_seed]
        paired = bool(pairs)  # one pair: values by seed, no interval (judge_values says so)
    if not paired:
        pairs = list(zip(ref, abl, strict=False))
    kept = [(r, a) for r, a in pairs if r.metrics.get(metric) is not None and a.metrics.get(metric) is not None]
    ref_, abl_ = (
        ([p[0] for p in kept], [p[1] for p in kept])
        if paired
        else (
            [r for r in ref if r.metrics.get(metric) is not None],
            [a for a in abl if a.metrics.get(metric) is not None],
        )
    )
    r, a = [capped(run, metric) for run in ref_], [capped(run, metric) for run in abl_]
    level = float(np.mean(a)) if a else None
    c = judge_values(metric, spec, r, a, paired, ablated_level=level)
    c.seeds = [run.seed for run in abl_] if paired else []
    c.censored = {"reference": [censored(x, metric) for x in ref_], "ablated": [censored(x, metric) for x in abl_]}
    notes = []
    n_censored = sum(map(sum, c.censored.values()))
    if n_censored:
        what = (
            "still improving at their last epoch"
            if metric == "best_epoch"
            else "never reached it (counted at their end)"
        )
        notes.append(f"{n_censored} of {len(r) + len(a)} runs {what}")
        if metric == "best_epoch" and c.verdict != "inconclusive":  # no epoch to compare
            c.verdict = "inconclusive"
    dropped = len(ref) + len(abl) - len(r) - len(a)
    if dropped:
        notes.append(f"{dropped} runs without a value left out" + (" with their pairs" if paired else ""))
    c.note = "; ".join([*filter(None, [c.note]), *notes])
    return c


def judge(runs: list[Run]) -> tuple[dict[str, Any], list[Comparison], dict[str, list[Run]]]:
    """The claim the runs' experiment tests, one Comparison per metric the paper states, and the runs
    compared, by arm label. With `select_by`, each arm's setting is chosen on the `tuning_seeds` and compared
    on the other seeds."""
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
    if select_by:
        ref, abl = select_runs(runs, claim, reference), select_runs(runs, claim, ablated)
    else:
        ref = [r for r in runs if r.arm == reference]
        abl = [r for r in runs if r.arm == ablated]
    if not ref or not abl:
        raise ValueError(f"no runs of arm {reference!r} or {ablated!r} (found {sorted({r.arm for r in runs})})")
    results = [compare(metric, paper, ref, abl) for metric, paper in claim["paper"].items()]
    chosen = {arm_label(ref[0], select_by): ref, arm_label(abl[0], select_by): abl}
    return {**claim, "reference": reference, "ablated": ablated}, results, chosen


def tuning_runs(runs: list[Run], claim: dict[str, Any]) -> list[Run]:
    """Fig. 1: the runs on the claim's tuning seeds (all the runs, for a sweep without separate tuning seeds)."""
    tuning = set(claim.get("tuning_seeds") or [])
    return [r for r in runs if r.seed in tuning] or runs


def select_runs(runs: list[Run], claim: dict[str, Any], arm: str) -> list[Run]:
    """Fig. 1: the arm's setting chosen on the tuning seeds; the runs of that setting on the other seeds (or, for
    a sweep without separate tuning seeds, the tuning runs themselves)."""
    select_by, tuning = claim["select_by"], set(claim.get("tuning_seeds") or [])
    chosen = select_setting(tuning_runs(runs, claim), arm, select_by, list(claim["paper"]))
    if not chosen:
        return []
    setting = chosen[0].setting(select_by)
    compared = [r for r in runs if r.arm == arm and r.seed not in tuning and r.setting(select_by) == setting]
    return compared or chosen


def chosen_settings(runs: list[Run], claim: dict[str, Any]) -> dict[str, Any]:
    """Each arm's setting chosen on the tuning seeds (what experiments/programme.sh runs the comparison at)."""
    select_by, tuned = claim["select_by"], tuning_runs(runs, claim)
    out = {}
    for arm in sorted({r.arm for r in tuned}):
        chosen = select_setting(tuned, arm, select_by, list(claim["paper"]))
        out[arm] = chosen[0].setting(select_by)
        if all(censored(r, m) for r in tuned if r.arm == arm for m in claim["paper"]):
            out[f"{arm}_reached_nothing"] = True  # no setting reached any target: the choice is arbitrary
        elif at_grid_edge(tuned, chosen, select_by):
            out[f"{arm}_at_grid_edge"] = True
    return out


def write_claim_json(path: Path, experiment: str, claim: dict[str, Any], results: list[Comparison],
                     extra: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Per comparison: the per-seed values (censored ones flagged), Δ, its interval, p-values, the paper's
    translated size, the MDE and the seeds it would need, and the verdict (Holm-adjusted by compare.py --index)."""
    comparisons = []
    for c, paper in zip(results, claim["paper"].values(), strict=True):
        row = asdict(c)
        row["paper_spec"] = paper
        row["verdict_alone"] = c.verdict
        comparisons.append(row)
    write_json(path, {
        "experiment": experiment,
        "section": claim.get("section"),
        "claim": claim.get("text"),
        "reference": claim["reference"],
        "ablated": claim["ablated"],
        "comparisons": comparisons,
        **(extra or {}),
    })  # fmt: skip


def convergence(runs: list[Run], within: float = 0.002) -> str:
    """The reference arm's convergence check (the claims issue's): the best validation error of the run is within
    `within` of the best of its last 3 epochs, i.e. the run ended at its best, not past it. A run still falling
    passes too, so the report also shows how far the last 3 epochs' errors spread (a plateau would be ~0)."""
    ok, lines = 0, []
    for run in sorted(runs, key=lambda r: r.seed):
        val = [v for _, v in sorted(by_epoch(run.curves, "val/top1_err").items())]
        if len(val) < 3:
            return ""
        last = val[-3:]
        distance, spread = min(last) - min(val), max(last) - min(last)
        ok += distance <= within
        lines.append(f"seed {run.seed}: {distance * 100:.2f} / {spread * 100:.2f}")
    return (f"Convergence of the reference arm (the best val top-1 within {within * 100:.1f} points of the best of "
            f"the last 3 epochs): **{ok} of {len(runs)} runs**. Per seed, points: that distance / the last 3 epochs' "
            f"spread ({'; '.join(lines)}).")  # fmt: skip
