"""Compare the arms of a sweep and judge the paper's claim: a table, a Markdown report and plots.

    python src/compare.py logs/train/multiruns/ablate_lrn/<time> [more sweep dirs] --out experiments/ablate_lrn
    python src/compare.py --index experiments      # rebuild the claim table in experiments/README.md

Reads each run's config.yaml, summary.json and metrics.csv (no W&B needed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # python src/compare.py finds the package beside it

from alexnet import plots  # noqa: E402
from alexnet.report import VERDICT_RULE, Comparison, Run, group_arms, judge, load_runs, write_claim_json  # noqa: E402

COLUMNS = {  # metric -> (header, as percent)
    "test/top1_err": ("test top-1 %", True),
    "test/top5_err": ("test top-5 %", True),
    "best_val/top1_err": ("best val top-1 %", True),
    "overfit_gap": ("overfit gap (pts)", True),
    "steps_to_target": ("steps to target", False),
    "epochs_to_target": ("epochs to target", False),
    "best_epoch": ("best epoch", False),
    "steps": ("steps", False),
    "wall_seconds": ("wall s", False),
}
START, END = "<!-- claims:start -->", "<!-- claims:end -->"


def mean_std(values: list[float | None], percent: bool) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    scale = 100 if percent else 1
    finite = [v * scale for v in vals if math.isfinite(v)]
    never = len(vals) - len(finite)
    if not finite:
        return "never"
    text = f"{np.mean(finite):.2f} ± {np.std(finite, ddof=1) if len(finite) > 1 else 0:.2f}"
    return text + (f" ({never} never)" if never else "")


def arm_rows(arms: dict[str, list[Run]]) -> tuple[list[str], list[list[str]]]:
    present = [m for m in COLUMNS if any(r.metrics.get(m) is not None for runs in arms.values() for r in runs)]
    header = ["arm", "n", *(COLUMNS[m][0] for m in present)]
    rows = [[arm, str(len(runs)), *(mean_std([r.metrics[m] for r in runs], COLUMNS[m][1]) for m in present)]
            for arm, runs in arms.items()]  # fmt: skip
    return header, rows


def fmt_delta(c: Comparison) -> tuple[str, str]:
    if c.ratio:
        return f"×{math.exp(c.delta):.2f}", f"[×{math.exp(c.low):.2f}, ×{math.exp(c.high):.2f}]"
    percent = c.metric != "best_epoch" and "steps" not in c.metric
    scale, unit = (100, " pts") if percent else (1, "")
    return f"{c.delta * scale:+.2f}{unit}", f"[{c.low * scale:+.2f}, {c.high * scale:+.2f}]"


def fmt_paper(c: Comparison) -> str:
    if c.paper in ("+", "-") or c.ratio:
        return {"+": "higher", "-": "lower"}.get(c.paper, c.paper.replace("x", "×"))
    return f"{float(c.paper) * 100:+.1f} pts"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="left" if h in ("arm", "metric", "verdict") else "right")
    for r in rows:
        table.add_row(*r)
    Console().print(table)


def report(sweeps: list[Path], out: Path) -> dict:
    runs = load_runs(sweeps)
    if not runs:
        sys.exit(f"error: no finished runs (summary.json) under {', '.join(map(str, sweeps))}")
    claim, results, chosen = judge(runs)
    experiment = runs[0].cfg.get("experiment_name")
    select_by = claim.get("select_by")
    arms = group_arms(runs, select_by)
    out.mkdir(parents=True, exist_ok=True)

    header, rows = arm_rows(arms)
    print_table(f"{experiment}: mean ± std over seeds", header, rows)
    claim_rows = [
        [c.metric, fmt_paper(c), *fmt_delta(c), c.verdict + (f" ({c.note})" if c.note else "")] for c in results
    ]
    claim_header = [
        "metric",
        "paper",
        f"measured Δ ({claim['ablated']} − {claim['reference']})",
        "95% interval",
        "verdict",
    ]
    print_table(f"§{claim.get('section')}: {claim.get('text')}", claim_header, claim_rows)

    figures = []
    if any("train/top1_err_running" in r.curves for r in runs):
        target, window = runs[0].summary.get("train_error_target"), runs[0].summary.get("train_error_window")
        ratio = next((c for c in results if c.metric == "steps_to_target" and c.ratio), None)
        speed = f"; {claim['ablated']} / {claim['reference']} steps = ×{math.exp(ratio.delta):.2f}" if ratio else ""
        title = f"{experiment}: steps to {target:.0%} training error{speed}"
        figures.append(plots.steps_to_target(chosen, target, window, out / "steps_to_target.png", title))
    curves = plots.learning_curves(arms, out / "learning_curves.png", f"{experiment}: top-1 error, mean ± std")
    if curves:
        figures.append(curves)

    seconds = [_read_seconds(s) for s in sweeps]
    commits = sorted(
        {f"{r.summary['git']['commit'][:7]}{' (dirty)' if r.summary['git'].get('dirty') else ''}" for r in runs}
    )
    lines = [
        f"# {experiment}: §{claim.get('section')} — {claim.get('text')}",
        "",
        "Generated by `src/compare.py` from the sweep's run directories; regenerate with",
        "",
        f"```bash\nbash experiments/run.sh {experiment}\n```",
        "",
        f"Runs: {sum(len(v) for v in arms.values())} ({', '.join(f'{a}: {len(v)}' for a, v in arms.items())}), "
        f"seeds {sorted({r.seed for r in runs})}, code at commit {', '.join(commits)}. "
        + (f"Whole sweep: {sum(seconds) / 60:.1f} min wall. " if all(seconds) else "")
        + f"Setting: {_setting(runs[0], select_by)}."
        + _target_note(runs[0]),
        "",
        _choices_note(arms),
        "",
        "## Arms (mean ± std over seeds)",
        "",
        markdown_table(header, rows),
        "",
        "## The claim",
        "",
        markdown_table(claim_header, claim_rows),
        "",
        f"Verdict rule: {VERDICT_RULE}",
        "",
        *(f"![{f.stem}]({f.name})\n" for f in figures),
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    write_claim_json(out / "claim.json", experiment, claim, results)
    print(f"wrote {out / 'report.md'}, {out / 'claim.json'} and {len(figures)} figure(s)")
    return {"claim": claim, "results": results}


def _choices_note(arms: dict[str, list[Run]]) -> str:
    """The settings the runs rest on where the paper is ambiguous (docs/fidelity.md), per arm."""
    parts = []
    for arm, runs in arms.items():
        choices = runs[0].summary.get("choices")
        text = ", ".join(f"{k} {v}" for k, v in choices.items()) if choices else "not recorded (older runs)"
        parts.append(f"{arm}: {text}")
    return (
        "Choices where the paper is ambiguous ([docs/fidelity.md](../../docs/fidelity.md)): " + "; ".join(parts) + "."
    )


def _target_note(run: Run) -> str:
    s = run.summary
    if "train_error_target" not in s:
        return ""
    return (
        f" Target: {s['train_error_target']:.0%} training error, as the mean over the last "
        f"{s['train_error_window']} batches; a run that never reaches it counts as its total steps."
    )


def _read_seconds(sweep: Path) -> float | None:
    path = sweep / "sweep_seconds"
    return float(path.read_text()) if path.is_file() else None


def _setting(run: Run, select_by: str | None) -> str:
    cfg = run.cfg
    data, trainer = cfg["data"], cfg["trainer"]
    images = run.summary.get("train_images")
    return (
        f"data `{data['_target_'].rsplit('.', 1)[-1]}` ({images} training images), "
        f"model width {cfg['model'].get('width')}, "
        f"batch {data['batch_size']}, "
        + (f"{select_by} the best of the grid per arm" if select_by else f"lr {cfg['optimizer'].get('lr')}")
        + f", max {trainer.get('max_epochs')} epochs"
        + (f" / {trainer['max_steps']} steps" if trainer.get("max_steps", -1) not in (-1, None) else "")
        + f", test crops {data.get('test_crops')}"
    )


def index(folder: Path) -> None:
    """Rebuild the claim table of folder/README.md from every folder/*/claim.json."""
    rows = []
    for path in sorted(folder.glob("*/claim.json")):
        c = json.loads(path.read_text())
        for comp in c["comparisons"]:
            comparison = Comparison(
                comp["metric"],
                comp["paper"],
                [],
                [],
                comp["delta"],
                comp["low"],
                comp["high"],
                comp["verdict"],
                comp["ratio"],
            )
            delta, interval = fmt_delta(comparison)
            rows.append([f"§{c['section']} {c['claim']}", comp["metric"], fmt_paper(comparison), f"{delta} {interval}",
                         f"**{comp['verdict']}**", f"[{c['experiment']}]({path.parent.name}/report.md)"])  # fmt: skip
    table = markdown_table(["claim", "metric", "paper", "measured Δ (95% interval)", "verdict", "report"], rows)
    readme = folder / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        sys.exit(f"error: {readme} has no {START} ... {END} block to fill")
    head, rest = text.split(START, 1)
    readme.write_text(head + START + "\n" + table + "\n" + END + rest.split(END, 1)[1])
    print(f"wrote the claim table ({len(rows)} rows) into {readme}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="*", type=Path, help="sweep directories of src/train.py -m")
    parser.add_argument("--out", type=Path, help="where report.md, claim.json and the plots go")
    parser.add_argument("--index", type=Path, metavar="FOLDER", help="rebuild FOLDER/README.md's claim table")
    args = parser.parse_args()
    if args.index:
        return index(args.index)
    if not args.sweeps:
        parser.error("give one or more sweep directories, or --index FOLDER")
    missing = [str(s) for s in args.sweeps if not s.is_dir()]
    if missing:
        sys.exit(f"error: not a directory: {', '.join(missing)}")
    try:
        report(args.sweeps, args.out or Path(os.getcwd()) / "report")
    except ValueError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
