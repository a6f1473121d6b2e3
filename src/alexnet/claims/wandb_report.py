"""A claim's report in Weights & Biases, beside its runs: one W&B run in the experiment's group (the group the runs
log to, `logger.wandb.group: ${experiment_name}`) and the runs' project, job type `claim`, holding the verdict rows
and every seed's values as W&B tables, the forest plot and the report's curves as images, and the headline verdict,
Δ and interval in its summary. Offline first, as the runs are: it logs online only if asked (`--wandb online`,
WANDB_MODE) or if the runs themselves logged online; `wandb sync` uploads an offline run later.

wandb is imported inside log_claim only: src/compare.py and the claims wing import neither torch nor Lightning, and
reading runs or writing a report needs no W&B."""

from __future__ import annotations

import math
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from alexnet.claims import plots
from alexnet.claims.runs import Run
from alexnet.claims.verdict import compared_values
from alexnet.claims.verdict_tables import family_view, fmt_delta, plain_table, verdict_cells
from alexnet.wandb_access import why_not_online

MODES = ("auto", "offline", "online", "disabled")
PROJECT = "alexnet-2012"  # conf/logger/wandb.yaml's, for runs that did not log to W&B


def choose_mode(requested: str, runs: list[Run]) -> str:
    """`requested` unless auto; then WANDB_MODE if the user set it, online if any run logged online (its wandb/ holds
    a `run-*` folder, an offline one `offline-run-*`), else offline: never a prompt for a key, never the network."""
    if requested not in MODES:
        raise ValueError(f"--wandb {requested}: allowed {', '.join(MODES)}")
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    online = any(next((r.path / "wandb").glob("run-*"), None) for r in runs)
    return "online" if online else "offline"


def verdict_rows(comparisons: list[dict]) -> tuple[list[str], list[list[Any]]]:
    """One row per verdict row of the claim, as report.md's claim table decides it (Holm, this claim): the printed
    cells, then the numbers behind them (Δ and its interval in the metric's own units, log-ratios for × rows)."""
    header, cells = plain_table([family_view(c, adjusted=False) for c in comparisons])
    numbers = ["delta", "low", "high", "p", "p_holm", "p_paper", "p_paper_holm"]
    rows = []
    for c, printed in zip(comparisons, cells, strict=True):
        c = family_view(c, adjusted=False)
        printed = [cell.replace("**", "") for cell in printed]  # Markdown's bold: plain text in a W&B table
        rows.append([*printed, *(_number(c.get(k)) for k in numbers), len(c.get("seeds") or []), str(c["verdict"]),
                     bool(c["ratio"])])  # fmt: skip
    # the numbers' columns named apart from the printed ones (W&B tables key columns by name)
    return [*header, *(f"{k} (value)" for k in numbers), "seeds", "outcome", "ratio"], rows


def seed_rows(claim_record: dict) -> tuple[list[str], list[list[Any]]]:
    """Every seed's value of each arm for each verdict row and each reported figure, and their difference (the terms
    of Δ: ablated - reference, or the log-ratio for × rows, as verdict.compared_values takes them)."""
    reference, ablated = claim_record["reference"], claim_record["ablated"]
    header = ["metric", "seed", f"{reference} (reference)", f"{ablated} (ablated)", "difference", "verdict row"]
    rows = []
    judged = [(c, True) for c in claim_record["comparisons"]]
    for c, verdict_row in judged + [(c, False) for c in claim_record.get("reported") or []]:
        ablated_values, reference_values = compared_values(c["reference"], c["ablated"], c["ratio"])
        differences = (ablated_values - reference_values).tolist()
        for seed, ref, abl, d in zip(c.get("seeds") or [], c["reference"], c["ablated"], differences, strict=False):
            rows.append([c["metric"], seed, _number(ref), _number(abl), _number(d), verdict_row])
    return header, rows


def headline(claim_record: dict) -> dict[str, Any]:
    """The run's summary: the claim's first verdict row (its headline metric) at the top level, each row under its
    metric's name."""
    summary: dict[str, Any] = {"experiment": claim_record["experiment"], "claim": claim_record["claim"],
                               "section": claim_record.get("section")}  # fmt: skip
    for i, row in enumerate(claim_record["comparisons"]):
        c = family_view(row, adjusted=False)
        delta, interval = fmt_delta(c)
        values = {
            "verdict": str(c["verdict"]),  # the outcome's word: W&B would write the enum by its name
            "verdict_text": verdict_cells(c)[0].replace("**", ""),
            "metric": c["metric"],
            "delta": _number(c["delta"]),
            "low": _number(c["low"]),
            "high": _number(c["high"]),
            "ratio": bool(c["ratio"]),
            "shown": f"{delta} {interval}",
            "paper": c["paper"],
        }
        if i == 0:
            summary.update(values)
        summary[c["metric"]] = values
    return summary


def log_claim(claim_record: dict, figures: list[Path], runs: list[Run], out: Path, mode: str = "auto") -> Path | None:
    """Log the claim's report as a W&B run into `out`/wandb/ (its id kept there, so a regenerated report continues
    the same W&B run); the offline run's folder (None when W&B is disabled)."""
    mode = choose_mode(mode, runs)
    if mode == "disabled" or not claim_record["comparisons"]:
        return None
    why = why_not_online("--wandb online", f"the report in {out} is written; log it with --wandb offline and upload it "
                         "later with `wandb sync`") if mode == "online" else None  # fmt: skip
    if why:
        raise ValueError(why)
    import wandb

    folder = out / "wandb"
    folder.mkdir(parents=True, exist_ok=True)
    id_file = folder / "claim_run_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
    id_file.write_text(run_id + "\n")
    experiment = claim_record["experiment"]
    logged_to = (runs[0].cfg.get("logger") or {}).get("wandb") or {}
    run = wandb.init(
        project=logged_to.get("project") or PROJECT,
        group=experiment,  # the runs' group: logger.wandb.group is ${experiment_name}
        job_type="claim",
        name=f"claim-{experiment}",
        tags=["claim"],
        dir=str(out),
        mode=mode,
        id=run_id,
        resume="allow",
        config={k: claim_record.get(k) for k in ("experiment", "claim", "section", "reference", "ablated", "runs")},
        settings=wandb.Settings(silent=True, disable_git=True),
        reinit="finish_previous",
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:  # the forest plot is W&B's only: the report folder keeps its files
            forest = plots.summary([claim_record], Path(tmp) / "forest.png")
            columns, rows = verdict_rows(claim_record["comparisons"])
            seed_columns, per_seed = seed_rows(claim_record)
            logged = {
                "verdicts": wandb.Table(columns=columns, data=rows),
                "seeds": wandb.Table(columns=seed_columns, data=per_seed),
                "forest": wandb.Image(str(forest), caption=f"{experiment}: Δ and 95% interval against the paper's"),
                **{f.stem: wandb.Image(str(f), caption=f.stem) for f in figures},
            }
            run.log(logged)
        run.summary.update(headline(claim_record))
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()
    return Path(run.dir).parent


def _number(value: Any) -> float | None:
    """A JSON-safe number for a table cell or the summary: None for a missing or non-finite value."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
