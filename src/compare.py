"""Compare the arms of a sweep and judge the paper's claim: a table, a Markdown report and plots.

    python src/compare.py logs/train/multiruns/ablate_lrn/<time> [more sweep dirs] --out experiments/ablate_lrn
    python src/compare.py --index experiments      # Holm across every claim; the table in experiments/README.md
    python src/compare.py SWEEP --experiment ablate_test_crops --out DIR   # a claim measured on another's runs
    python src/compare.py TUNING_SWEEP --select    # Fig. 1: each arm's learning rate, chosen on the tuning seeds

Reads each run's config.yaml, summary.json and metrics.csv (no W&B needed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # python src/compare.py finds the package beside it

from alexnet import plots  # noqa: E402
from alexnet.module import VIEWS  # noqa: E402
from alexnet.report import (  # noqa: E402
    Run,
    capped,
    censored,
    chosen_settings,
    convergence,
    group_arms,
    judge,
    load_runs,
    tuning_runs,
    write_claim_json,
)
from alexnet.utils import write_json  # noqa: E402
from alexnet.verdict import VERDICT_RULE, Comparison, adjust  # noqa: E402

COLUMNS = {  # metric -> (header, as percent)
    "test/top1_err": ("test top-1 %", True),
    "test/loss": ("test loss", False),
    "best_val/top1_err": ("best val top-1 %", True),
    "train_eval/top1_err": ("train top-1 % (eval mode, last epoch)", True),
    "overfit_gap": ("gap, last epoch (pts)", True),
    "overfit_gap_matched": ("gap at matched train error (pts)", True),
    "epochs_to_train_err": ("epochs to train error", False),
    "steps_to_target": ("steps to target", False),
    "epochs_to_target": ("epochs to target", False),
    "best_epoch": ("best epoch", False),
    "steps": ("steps", False),
    "wall_seconds": ("wall s", False),
}
START, END = "<!-- claims:start -->", "<!-- claims:end -->"
VSTART, VEND = "<!-- verdicts:start -->", "<!-- verdicts:end -->"


def is_percent(metric: str) -> bool:
    if metric.startswith(("epochs_to", "steps_to")):  # counts, even when named after a training error
        return False
    return metric.endswith("_err") or metric.startswith("overfit_gap") or metric == "best_val/top1_err"


def mean_std(values: list[float], bounds: list[bool], percent: bool) -> str:
    """mean ± std over seeds; with runs that ended before the event, the mean is a bound (≥)."""
    if not values:
        return "–"
    scale = 100 if percent else 1
    vals = np.array(values, float) * scale
    text = f"{vals.mean():.2f} ± {vals.std(ddof=1) if len(vals) > 1 else 0:.2f}"
    return f"≥ {text} ({sum(bounds)} censored)" if any(bounds) else text


def arm_rows(arms: dict[str, list[Run]], metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    present = [m for m in metrics if any(r.metrics.get(m) is not None for runs in arms.values() for r in runs)]
    header = ["arm", "n", *(COLUMNS.get(m, (m, False))[0] for m in present)]
    rows = []
    for arm, runs in arms.items():
        cells = []
        for m in present:
            kept = [r for r in runs if r.metrics.get(m) is not None]
            cells.append(mean_std([capped(r, m) for r in kept], [censored(r, m) for r in kept],
                                  COLUMNS.get(m, (m, is_percent(m)))[1]))  # fmt: skip
        rows.append([arm, str(len(runs)), *cells])
    return header, rows


def grid_table(runs: list[Run], claim: dict) -> str:
    """Fig. 1's tuning: every arm at every setting of the grid on the tuning seeds, the chosen one marked, so a
    reader sees that the grid brackets each arm's optimum (or that an arm reached nothing at any setting)."""
    select_by = claim.get("select_by")
    if not select_by:
        return ""
    tuned, chosen, key = tuning_runs(runs, claim), chosen_settings(runs, claim), select_by.rsplit(".", 1)[-1]
    groups: dict[str, list[Run]] = {}
    for r in sorted(tuned, key=lambda r: (r.arm, r.setting(select_by))):
        setting = r.setting(select_by)
        label = f"{r.arm} {key}={setting}" + (" (chosen)" if chosen.get(r.arm) == setting else "")
        groups.setdefault(label, []).append(r)
    header, rows = arm_rows(groups, list(claim["paper"]))
    diverged = [sum(r.summary.get("diverged_at_step") is not None for r in rs) for rs in groups.values()]
    rows = [[*row, str(d)] for row, d in zip(rows, diverged, strict=True)]
    notes = [
        f"**{arm} reached no target at any {key} of the grid**: its chosen {key} is arbitrary and its steps are bounds."
        if chosen.get(f"{arm}_reached_nothing")
        else f"{arm}'s chosen {key} is at the edge of the grid: its optimum may lie outside it."
        for arm in sorted({r.arm for r in tuned})
        if chosen.get(f"{arm}_reached_nothing") or chosen.get(f"{arm}_at_grid_edge")
    ]
    return "\n\n".join(
        [
            f"## The {key} grid (tuning seeds {sorted({r.seed for r in tuned})}; ≥: some runs never reached it)",
            markdown_table([*header, "diverged"], rows),
            *notes,
        ]
    )


def fmt_value(metric: str, value: float, ratio: bool, signed: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if ratio:
        return f"×{math.exp(value):.2f}"
    if is_percent(metric):
        return f"{value * 100:+.2f} pts" if signed else f"{value * 100:.2f} pts"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def fmt_delta(c: dict | Comparison) -> tuple[str, str]:
    c = c if isinstance(c, dict) else asdict(c)
    delta = fmt_value(c["metric"], c["delta"], c["ratio"])
    if math.isnan(c["low"]):
        return delta, "–"
    return delta, f"[{fmt_value(c['metric'], c['low'], c['ratio'])}, {fmt_value(c['metric'], c['high'], c['ratio'])}]"


def fmt_p(p: float | None) -> str:
    return "–" if p is None or math.isnan(p) else f"{p:.3g}"


def verdict_cells(c: dict) -> list[str]:
    """The verdict and what it rests on: MDE and seeds needed where inconclusive."""
    verdict = f"**{c['verdict']}**"
    if c["verdict"] == "inconclusive" and not math.isnan(c["mde"]):
        need = c.get("seeds_needed")
        more = f"; the paper's size needs {need} seeds" if need else ("; no size to detect" if c.get("size") is None
                                                                      else "; > 10,000 seeds")  # fmt: skip
        verdict += f" (MDE {fmt_value(c['metric'], c['mde'], c['ratio'], signed=False)}{more})"
    if c["verdict"] == "reproduced" and not math.isnan(c.get("p_paper", math.nan)) and c["p_paper"] < 0.05:
        verdict += " (smaller than the paper's size)"
    return [verdict, c.get("note") or ""]


def claim_table(comparisons: list[dict], adjusted: bool) -> str:
    header = ["metric", "paper", "paper's size here", "measured Δ", "95% interval", "p (Δ=0)", "p (paper's size)",
              "verdict" + (" (Holm, whole table)" if adjusted else " (this claim alone)"), "note"]  # fmt: skip
    rows = []
    for c in comparisons:
        size = fmt_value(c["metric"], c["size"], c["ratio"]) if c.get("size") is not None else "–"
        p, pp = (c.get("p_holm"), c.get("p_paper_holm")) if adjusted else (c["p"], c["p_paper"])
        cells = verdict_cells(c if adjusted else {**c, "verdict": c["verdict_alone"]})
        rows.append([c["metric"], c["paper"], size, *fmt_delta(c), fmt_p(p), fmt_p(pp), *cells])
    return markdown_table(header, rows)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="left" if h in ("arm", "metric", "verdict", "seed") else "right")
    for r in rows:
        table.add_row(*(x.replace("**", "") for x in r))
    Console().print(table)


def per_seed_table(results: list[Comparison]) -> str:
    """Every seed's values of every metric: ref / ablated (≥: a bound)."""
    seeds = sorted({s for c in results for s in c.seeds})
    if not seeds:
        return ""
    header = ["seed", *(f"{c.metric}: ref / abl" for c in results)]
    rows = []
    for seed in seeds:
        cells = []
        for c in results:
            if seed not in c.seeds:
                cells.append("–")
                continue
            i = c.seeds.index(seed)
            ref = _seed_value(c.metric, c.reference[i], c.censored["reference"][i])
            cells.append(f"{ref} / {_seed_value(c.metric, c.ablated[i], c.censored['ablated'][i])}")
        rows.append([str(seed), *cells])
    return markdown_table(header, rows)


def _seed_value(metric: str, value: float, bound: bool) -> str:
    return ("≥" if bound else "") + (f"{value * 100:.2f}" if is_percent(metric) else f"{value:.4g}")


def lr_cuts(arms: dict[str, list[Run]]) -> str:
    parts = []
    for arm, runs in arms.items():
        cuts = sorted({tuple(r.summary.get("lr_reduction_epochs") or []) for r in runs})
        if any("lr_reduction_epochs" in r.summary for r in runs):
            shown = " or ".join(f"[{', '.join(map(str, c))}]" if c else "none" for c in cuts)
            parts.append(f"{arm}: {shown}")
    return ("Learning-rate cuts (÷10 after these epochs): " + "; ".join(parts) + ".") if parts else ""


def views_table(arms: dict[str, list[Run]]) -> str:
    """10-crop diagnostics: the error of each view, of centre + mirror, of all ten (§4.1)."""
    runs = [r for runs in arms.values() for r in runs if r.metrics.get("test/view0_top1_err") is not None]
    if not runs:
        return ""
    names = [*(f"test/view{i}_top1_err" for i in range(10)), "test/centre_mirror_top1_err", "test/top1_err"]
    labels = [*VIEWS, "centre + mirror", "all ten"]
    rows = [[label, mean_std([r.metrics[n] for r in runs], [False] * len(runs), True)]
            for label, n in zip(labels, names, strict=True)]  # fmt: skip
    return f"10-crop diagnostics over {len(runs)} runs (top-1 %, mean ± std):\n\n" + markdown_table(
        ["test view", "top-1 %"], rows
    )


def report(sweeps: list[Path], out: Path, experiment: str | None = None) -> dict:
    claim_override = load_claim(experiment) if experiment else None
    runs = load_runs(sweeps, claim_override)
    if not runs:
        sys.exit(f"error: no finished runs (summary.json) under {', '.join(map(str, sweeps))}")
    claim, results, chosen = judge(runs)
    experiment = experiment or runs[0].cfg.get("experiment_name")
    select_by = claim.get("select_by")
    arms = chosen if select_by else group_arms(runs)
    out.mkdir(parents=True, exist_ok=True)

    metrics = [*claim["paper"], *(m for m in COLUMNS if m not in claim["paper"])]
    header, rows = arm_rows(arms, metrics)
    print_table(f"{experiment}: mean ± std over seeds", header, rows)
    write_claim_json(out / "claim.json", experiment, claim, results, extra=_extra(runs, claim, arms))
    comparisons = json.loads((out / "claim.json").read_text())["comparisons"]
    print_table(f"§{claim.get('section')}: {claim.get('text')}", *_plain(comparisons))

    figures = []
    if any("train/top1_err_running" in r.curves for r in runs):
        figures.append(
            plots.training_error_by_epoch(
                chosen,
                runs[0].summary.get("train_error_targets") or [],
                out / "fig1_training_error.png",
                f"{experiment}: training error (last 20 batches), per seed",
            )
        )
    curves = plots.learning_curves(arms, out / "learning_curves.png", f"{experiment}: per seed")
    if curves:
        figures.append(curves)

    seconds = [_read_seconds(s) for s in sweeps]
    commits = sorted(
        {f"{r.summary['git']['commit'][:7]}{' (dirty)' if r.summary['git'].get('dirty') else ''}" for r in runs}
    )
    regenerate = f"bash experiments/programme.sh {experiment}"
    tuning = claim.get("tuning_seeds")
    lines = [
        f"# {experiment}: §{claim.get('section')} — {claim.get('text')}",
        "",
        "Generated by `src/compare.py` from the sweep's run directories; regenerate with",
        "",
        f"```bash\n{regenerate}\n```",
        "",
        f"Runs compared: {sum(len(v) for v in arms.values())} "
        f"({', '.join(f'{a}: {len(v)}' for a, v in arms.items())}), "
        f"seeds {sorted({r.seed for rs in arms.values() for r in rs})}"
        + (f" ({select_by} chosen per arm on tuning seeds {tuning}: {len(runs)} runs in all)" if tuning else "")
        + f", code at commit {', '.join(commits)}. "
        + (f"Whole sweep: {sum(seconds) / 60:.1f} min wall on a 2-core CPU. " if all(seconds) else "")
        + f"Setting: {_setting(runs[0], select_by)}."
        + _target_note(runs[0]),
        "",
        _choices_note(arms),
        "",
        lr_cuts(arms),
        "",
        convergence(arms.get(claim["reference"], []))
        if runs[0].cfg.get("budget", {}).get("name") == "converged"
        else "",
        "",
        "## Arms (mean ± std over seeds)",
        "",
        markdown_table(header, rows),
        "",
        grid_table(runs, claim),
        "",
        "## The claim",
        "",
        VSTART,
        claim_table(comparisons, adjusted=False),
        VEND,
        "",
        f"Verdict rule: {VERDICT_RULE}",
        "",
        "## Per seed",
        "",
        per_seed_table(results),
        "",
        views_table(arms),
        "",
        *(f"![{f.stem}]({f.name})\n" for f in figures),
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'report.md'}, {out / 'claim.json'} and {len(figures)} figure(s)")
    return {"claim": claim, "results": results}


def _plain(comparisons: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["metric", "paper", "size here", "measured Δ", "95% interval", "p", "verdict"]
    return header, [[c["metric"], c["paper"], fmt_value(c["metric"], c["size"], c["ratio"])
                     if c.get("size") is not None else "–", *fmt_delta(c), fmt_p(c["p"]),
                     verdict_cells(c)[0]] for c in comparisons]  # fmt: skip


def _extra(runs: list[Run], claim: dict, arms: dict[str, list[Run]]) -> dict:
    extra: dict = {"runs": {arm: [str(r.path) for r in rs] for arm, rs in arms.items()}}
    if claim.get("select_by"):
        extra["chosen"] = chosen_settings(runs, claim)
    return extra


def load_claim(experiment: str) -> dict:
    """The `claim:` block of conf/experiment/NAME.yaml, for a claim measured on another experiment's runs."""
    path = Path(__file__).resolve().parents[1] / "conf" / "experiment" / f"{experiment}.yaml"
    if not path.is_file():
        sys.exit(f"error: no experiment {experiment!r} ({path} does not exist)")
    claim = OmegaConf.to_container(OmegaConf.load(path)).get("claim")
    if not claim:
        sys.exit(f"error: {path} states no claim")
    return claim


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
    """Holm's correction across every folder/*/claim.json, written back into each claim.json and report.md, and
    the claim table of folder/README.md, and the summary figure folder/summary.png."""
    paths, claims = [], []
    for path in sorted(folder.glob("*/claim.json")):
        claim = json.loads(path.read_text())
        if any("p" not in c for c in claim["comparisons"]):  # written by an older compare.py: no p-values
            print(f"warning: {path} predates the four-outcome verdict; left out (rerun compare.py)", file=sys.stderr)
            continue
        paths.append(path)
        claims.append(claim)
    adjust(claims)
    rows = []
    for path, c in zip(paths, claims, strict=True):
        write_json(path, c)
        report_md = path.parent / "report.md"
        if report_md.is_file() and VSTART in report_md.read_text():
            head, rest = report_md.read_text().split(VSTART, 1)
            report_md.write_text(
                head
                + VSTART
                + "\n"
                + claim_table(c["comparisons"], adjusted=True)
                + "\n\n"
                + claim_table(c["comparisons"], adjusted=False)
                + "\n"
                + VEND
                + rest.split(VEND, 1)[1]
            )
        for comp in c["comparisons"]:
            delta, interval = fmt_delta(comp)
            size = fmt_value(comp["metric"], comp["size"], comp["ratio"]) if comp.get("size") is not None else "–"
            rows.append([f"§{c['section']} {c['claim']}", comp["metric"], comp["paper"], size, f"{delta} {interval}",
                         verdict_cells(comp)[0], f"[{c['experiment']}]({path.parent.name}/report.md)"])  # fmt: skip
    table = markdown_table(
        ["claim", "metric", "paper", "paper's size here", "measured Δ (95% interval)", "verdict (Holm)", "report"], rows
    )
    if claims:
        plots.summary(claims, folder / "summary.png")
    readme = folder / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        sys.exit(f"error: {readme} has no {START} ... {END} block to fill")
    head, rest = text.split(START, 1)
    readme.write_text(head + START + "\n" + table + "\n" + END + rest.split(END, 1)[1])
    print(f"wrote the claim table ({len(rows)} rows, Holm-corrected) into {readme} and {folder / 'summary.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="*", type=Path, help="sweep directories of src/train.py -m")
    parser.add_argument("--out", type=Path, help="where report.md, claim.json and the plots go")
    parser.add_argument(
        "--index", type=Path, metavar="FOLDER", help="Holm-correct and rebuild FOLDER/README.md's table"
    )
    parser.add_argument("--experiment", help="judge the runs on this experiment's claim (e.g. ablate_test_crops)")
    parser.add_argument("--select", action="store_true",
                        help="print each arm's chosen setting (Fig. 1's learning rate) as ARM=VALUE lines")  # fmt: skip
    args = parser.parse_args()
    if args.index:
        return index(args.index)
    if not args.sweeps:
        parser.error("give one or more sweep directories, or --index FOLDER")
    missing = [str(s) for s in args.sweeps if not s.is_dir()]
    if missing:
        sys.exit(f"error: not a directory: {', '.join(missing)}")
    try:
        if args.select:
            runs = load_runs(args.sweeps)
            if not runs:
                sys.exit(f"error: no finished runs (summary.json) under {', '.join(map(str, args.sweeps))}")
            for arm, value in chosen_settings(runs, runs[0].cfg["claim"]).items():
                print(f"{arm}={value}")
            return
        report(args.sweeps, args.out or Path(os.getcwd()) / "report", args.experiment)
    except ValueError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
