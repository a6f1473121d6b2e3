"""The claim reports' Markdown and console tables: the arms (mean ± std over seeds), every seed's values, Fig. 1's
learning-rate grid and the 10-crop diagnostics (the claim's own tables: verdict_tables.py)."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from alexnet.claims.fig1 import chosen_settings, tuning_runs
from alexnet.claims.runs import Run, capped, censored
from alexnet.claims.verdict import Comparison
from alexnet.geometry import maps, pool_geometry
from alexnet.record import VIEWS

COLUMNS = {  # metric -> (header, as percent)
    "test/top1_err": ("test top-1 %", True),
    "test/loss": ("test loss", False),
    "best_val/top1_err": ("best val top-1 %", True),
    "train_eval/top1_err": ("train top-1 % (eval mode, last epoch)", True),
    "overfit_gap": ("gap, last epoch (pts)", True),
    "overfit_gap_matched": ("gap at matched train error (pts)", True),
    "matched_epoch": ("epoch at matched train error", False),
    "epochs_to_train_err": ("epochs to train error", False),
    # where the eval-mode training error settles for good: on a fixed schedule that is just after a cut (the rate,
    # not the feature, decides it), so it is shown, never judged
    "epochs_to_converge": ("epochs until train error settles (eval mode; follows the schedule's cuts)", False),
    "epochs_to_stop": ("epochs until §5's schedule stopped", False),
    "steps_to_target": ("steps to target", False),
    "epochs_to_target": ("epochs to target", False),
    "best_epoch": ("best epoch", False),
    "steps": ("steps", False),
    "wall_seconds": ("wall s", False),
}
MAP_KEYS = ("input_size", "stem_kernel", "stem_stride", "stem_padding", "pooling", "pool_edges")
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
    diverged = [sum(r.record.diverged_at_step is not None for r in rs) for rs in groups.values()]
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
        cuts = sorted({tuple(r.record.lr_reduction_epochs or []) for r in runs})
        if any(r.record.lr_reduction_epochs is not None for r in runs):  # None: an older run, which did not record them
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


def pooling_geometry(arms: dict[str, list[Run]]) -> str:
    """Where the arms differ in pooling (ablate_pooling*): each arm's poolings as its runs' config builds the net,
    and the share of each map's rows and columns that some window holds, so the report shows that neither arm
    loses a position (the claims issue; tests/model/test_geometry.py pins it, and checks every input pixel)."""
    models = {arm: dict(rs[0].cfg.get("model") or {}) for arm, rs in arms.items() if rs}
    if len({str(m.get("pooling")) for m in models.values()}) < 2:
        return ""
    parts = []
    for arm, model in models.items():
        m = maps(**{k: model[k] for k in MAP_KEYS if k in model})  # the shapes only: no net built
        pools = "; ".join(
            f"{g['pool']} {g['input'][0]}×{g['input'][1]} → {g['output'][0]}×{g['output'][1]} (padding "
            f"{g['padding'][0]}, {min(g['held']):.0%} of rows and columns held)"
            for g in pool_geometry(m)
        )
        parts.append(f"{arm} ({model.get('pooling')}, {m.window[0]}/{m.window[1]}, "
                     f"pool_edges={model.get('pool_edges', 'floor')}): {pools}")  # fmt: skip
    return "Pooling geometry (each arm's net built from its runs' config): " + "; ".join(parts) + "."
