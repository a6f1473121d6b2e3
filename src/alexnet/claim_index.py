"""Holm's correction across every claim of a folder (experiments/): written back into each claim.json and the
verdict block of its report.md, the folder's README.md claim table and its summary figure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from alexnet import plots
from alexnet.render import VEND, VSTART, claim_table, fmt_delta, fmt_value, markdown_table, verdict_cells
from alexnet.utils import write_json
from alexnet.verdict import adjust

START, END = "<!-- claims:start -->", "<!-- claims:end -->"


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
        raise ValueError(f"{readme} has no {START} ... {END} block to fill")
    head, rest = text.split(START, 1)
    readme.write_text(head + START + "\n" + table + "\n" + END + rest.split(END, 1)[1])
    print(f"wrote the claim table ({len(rows)} rows, Holm-corrected) into {readme} and {folder / 'summary.png'}")
