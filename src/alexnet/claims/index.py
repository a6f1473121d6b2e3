"""One Holm family across every claim of a folder (experiments/): written back into each claim.json and the
verdict block of its report.md, the folder's README.md claim table (with what later work found) and its summary
figure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from alexnet.claims import literature, plots
from alexnet.claims.family import adjust
from alexnet.claims.run_tables import VEND, VSTART, markdown_table
from alexnet.claims.verdict import VERDICT_RULE
from alexnet.claims.verdict_tables import claim_table, fmt_delta, fmt_value, verdict_cells
from alexnet.files import write_json

START, END = "<!-- claims:start -->", "<!-- claims:end -->"
HEADER = ["claim", "metric", "paper", "paper's size here", "measured Δ (95% interval)", "verdict (Holm, one family)",
          "later evidence", "report"]  # fmt: skip


def index(folder: Path) -> None:
    """Every folder/*/claim.json decided as one family (and each again as its own, for its report), written back
    into each claim.json and report.md; the claim table of folder/README.md and folder/summary.png."""
    paths, claims = [], []
    for path in sorted(folder.glob("*/claim.json")):
        claim = json.loads(path.read_text())
        if any("p" not in c for c in claim["comparisons"]):  # written by an older compare.py: no p-values
            print(f"warning: {path} has no p-values (an older compare.py): left out; rerun compare.py", file=sys.stderr)
            continue
        paths.append(path)
        claims.append(claim)
    adjust(claims)
    for claim in claims:
        adjust([claim], into="alone")
    evidence = literature.load(folder)
    rows = []
    for path, c in zip(paths, claims, strict=True):
        write_json(path, c)
        _rewrite_report(path.parent / "report.md", c["comparisons"])
        for comp in c["comparisons"]:
            delta, interval = fmt_delta(comp)
            size = fmt_value(comp["metric"], comp["size"], comp["ratio"]) if comp.get("size") is not None else "–"
            rows.append([f"§{c['section']} {c['claim']}", comp["metric"], comp["paper"], size, f"{delta} {interval}",
                         verdict_cells(comp)[0], literature.cell(evidence.get(c["experiment"]), comp["verdict"]),
                         f"[{c['experiment']}]({path.parent.name}/report.md)"])  # fmt: skip
    table = markdown_table(HEADER, rows)
    if claims:
        plots.summary(claims, folder / "summary.png")
    readme = folder / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no {START} ... {END} block to fill")
    head, rest = text.split(START, 1)
    block = f"{table}\n\nVerdict rule: {VERDICT_RULE}"
    readme.write_text(head + START + "\n" + block + "\n" + END + rest.split(END, 1)[1])
    m = claims[0]["comparisons"][0].get("family_size") if claims and claims[0]["comparisons"] else 0
    print(f"wrote the claim table ({len(rows)} rows, one Holm family of {m} tests) into {readme} and "
          f"{folder / 'summary.png'}")  # fmt: skip


def _rewrite_report(report_md: Path, comparisons: list[dict]) -> None:
    """The verdict block of a claim's report.md: the whole table's family, then the claim's own."""
    if not report_md.is_file() or VSTART not in report_md.read_text():
        return
    head, rest = report_md.read_text().split(VSTART, 1)
    tables = claim_table(comparisons, adjusted=True) + "\n\n" + claim_table(comparisons, adjusted=False)
    report_md.write_text(head + VSTART + "\n" + tables + "\n" + VEND + rest.split(VEND, 1)[1])
