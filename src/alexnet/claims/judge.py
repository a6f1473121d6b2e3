"""From a sweep's run directories to a verdict on one of the paper's claims (src/compare.py).

Every run directory of src/train.py holds `config.yaml` (which names its experiment, arm and the claim
it tests), `summary.json` and `metrics.csv`, and may hold `predictions/*.npz`; nothing here needs W&B. A claim
compares a reference arm (the paper's recipe) with an ablated arm on the metrics listed under `claim.paper` in the
experiment config, each with the paper's value of Δ = ablated − reference: a number, `+` / `-` (a direction only),
or `xR` (a ratio ablated / reference, compared on a log scale). Figures in `claim.report_only` (default: test
loss) are shown with the same statistics but never judged.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from alexnet.claims.family import REPORT_ONLY, adjust
from alexnet.claims.fig1 import select_runs
from alexnet.claims.runs import Run, arm_label, capped, censored, crops_arm
from alexnet.claims.stats import bootstrap
from alexnet.claims.verdict import REPORTED, Comparison, comparable, judge_values, parse_spec


def compare(metric: str, paper: Any, ref: list[Run], abl: list[Run], paired: bool = True) -> Comparison:
    """Δ, its interval and p-values for one metric, paired by seed where the arms share seeds, with the test-set
    bootstrap where the runs wrote their predictions; the outcome is verdict.decide's, from what the pairing found
    (reached, comparable, reported). `paper`: None for a figure reported without a verdict. A run without a value
    for the metric (e.g. a matched training error it never reached) is left out, with its pair, and counted in the
    note."""
    spec = REPORTED if paper is None else parse_spec(paper)
    if paired:
        by_seed = {r.seed: r for r in ref}
        # in seed order (the sweep's folders sort as text: seed 101 before seed 2), as the reports list them
        pairs = [(by_seed[a.seed], a) for a in sorted(abl, key=lambda run: run.seed) if a.seed in by_seed]
        paired = bool(pairs)  # one pair: values by seed, no interval (judge_values says so)
    if not paired:
        pairs = list(zip(ref, abl, strict=False))
    kept = [(r, a) for r, a in pairs if r.metrics.get(metric) is not None and a.metrics.get(metric) is not None]
    # a pair in which neither run reached the event bounds both values from below and their ratio not at all
    unreached = [(r, a) for r, a in kept if censored(r, metric) and censored(a, metric)] if paired else []
    kept = [pair for pair in kept if pair not in unreached]
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
    censoring = {"reference": [censored(x, metric) for x in ref_], "ablated": [censored(x, metric) for x in abl_]}
    c = judge_values(metric, spec, r, a, paired, ablated_level=level, reported=paper is None,
                     reached=bool(kept) or not unreached, comparable=comparable(metric, censoring))  # fmt: skip
    c.paper_spec, c.report_only = paper, paper is None
    if c.report_only:
        c.size = None
    c.seeds = [run.seed for run in abl_] if paired else []
    c.censored = censoring
    if paired and metric in bootstrap.METRICS:
        files = [(bootstrap.predictions_path(x.path, x.predictions), bootstrap.predictions_path(y.path, y.predictions))
                 for x, y in zip(ref_, abl_, strict=True)]  # fmt: skip
        c.bootstrap = bootstrap.paired_delta(files, metric)
    notes = []
    n_censored = sum(map(sum, c.censored.values()))
    if n_censored:
        what = (
            "still improving at their last epoch"
            if metric == "best_epoch"
            else "never reached it (counted at their end)"
        )
        notes.append(f"{n_censored} of {len(r) + len(a)} runs {what}")
    c.unreached = [a.seed for _, a in unreached]
    if unreached:
        notes.append(f"{len(unreached)} pairs where neither run reached it left out")
    dropped = len(ref) + len(abl) - len(r) - len(a) - 2 * len(unreached)
    if dropped:
        notes.append(f"{dropped} runs without a value left out" + (" with their pairs" if paired else ""))
    c.note = "; ".join([*filter(None, [c.note]), *notes])
    return c


def report_only(claim: dict[str, Any]) -> list[str]:
    """The metrics shown without a verdict: claim.report_only, else test loss (REPORT_ONLY)."""
    return list(claim.get("report_only") or REPORT_ONLY)


def judge(runs: list[Run]) -> tuple[dict[str, Any], list[Comparison], dict[str, list[Run]]]:
    """The claim the runs' experiment tests, one Comparison per metric the paper states (and one per figure
    reported without a verdict, `report_only`), and the runs compared, by arm label. With `select_by`, each arm's
    setting is chosen on the `tuning_seeds` and compared on the other seeds."""
    claim = runs[0].cfg.get("claim")
    if not claim:
        raise ValueError(f"{runs[0].path}: its experiment names no claim (conf/claim/NAME.yaml, in its defaults)")
    names = {r.cfg.get("experiment_name") for r in runs}
    if len(names) > 1:
        raise ValueError(f"the runs come from several experiments {sorted(map(str, names))}: compare one at a time")
    reference, ablated = str(claim["reference"]), str(claim["ablated"])
    if claim.get("arms_from") == "test_by_crops":
        reference, ablated = crops_arm(reference), crops_arm(ablated)
    shown = report_only(claim)
    judged = {m: p for m, p in claim["paper"].items() if m not in shown}
    claim = {**claim, "paper": judged}  # a figure reported without a verdict is never judged, whatever the config
    select_by = claim.get("select_by")
    if select_by:
        ref, abl = select_runs(runs, claim, reference), select_runs(runs, claim, ablated)
    else:
        ref = [r for r in runs if r.arm == reference]
        abl = [r for r in runs if r.arm == ablated]
    if not ref or not abl:
        raise ValueError(f"no runs of arm {reference!r} or {ablated!r} (found {sorted({r.arm for r in runs})})")
    results = [compare(metric, paper, ref, abl) for metric, paper in judged.items()]
    results += [compare(m, None, ref, abl) for m in shown if any(r.metrics.get(m) is not None for r in ref + abl)]
    chosen = {arm_label(ref[0], select_by): ref, arm_label(abl[0], select_by): abl}
    return {**claim, "reference": reference, "ablated": ablated}, results, chosen


def claim_json(experiment: str, claim: dict[str, Any], results: list[Comparison],
               extra: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """claim.json: per comparison, the per-seed values (censored ones flagged), Δ, its interval, the t-test and
    sign-flip p-values, the test-set bootstrap, the paper's translated size; decided as the claim's own family
    (family.adjust: stored as the row's fields and again under "alone"; compare.py --index decides the row again in
    the whole table's family). `reported`: the figures shown without a verdict. `extra` may hold `convergence`
    (convergence.assess), which the verdict reads."""
    rows = [asdict(c) for c in results]
    record = {
        "experiment": experiment,
        "section": claim.get("section"),
        "claim": claim.get("text"),
        "reference": claim["reference"],
        "ablated": claim["ablated"],
        "comparisons": [r for r in rows if not r["report_only"]],
        "reported": [r for r in rows if r["report_only"]],
        **(extra or {}),
    }
    adjust([record])
    adjust([record], into="alone")
    return record
