"""One Holm family across every claim of a folder (experiments/): written back into each claim.json and the
verdict block of its report.md, the folder's README.md claim table (with what later work found) and its summary
figure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from alexnet.claims import history, literature, plots
from alexnet.claims.family import adjust, leave_one_out, robustness
from alexnet.claims.run_tables import VEND, VSTART, markdown_table
from alexnet.claims.verdict import VERDICT_RULE, Outcome
from alexnet.claims.verdict_tables import claim_table, fmt_delta, fmt_value, verdict_cells
from alexnet.files import write_json, write_text

START, END = "<!-- claims:start -->", "<!-- claims:end -->"
RSTART, REND = "<!-- results:start -->", "<!-- results:end -->"
RESULTS_HEADER = ["claim (headline metric)", "the paper's effect", "ours: Δ (95% interval)", "verdict", "report"]
HEADER = ["claim", "metric", "paper", "paper's size here", "measured Δ (95% interval)", "verdict (Holm, one family)",
          "one seed left out", "later evidence", "report"]  # fmt: skip


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
    leave_one_out(claims)
    for claim in claims:
        adjust([claim], into="alone")
    evidence = literature.load(folder)
    changes = history.load(folder)
    rows = []
    for path, c in zip(paths, claims, strict=True):
        write_json(path, c)
        _rewrite_report(path.parent / "report.md", c["comparisons"])
        for comp in c["comparisons"]:
            delta, interval = fmt_delta(comp)
            size = fmt_value(comp["metric"], comp["size"], comp["ratio"]) if comp.get("size") is not None else "–"
            rows.append([f"§{c['section']} {c['claim']}", comp["metric"], comp["paper"], size, f"{delta} {interval}",
                         _with_note(verdict_cells(comp)[0], history.first_rule_note(c, comp, changes)),
                         robustness(comp),
                         literature.cell(evidence.get(c["experiment"]), comp["verdict"]),
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
    write_text(readme, head + START + "\n" + block + "\n" + END + rest.split(END, 1)[1])
    front = folder.parent / "README.md"  # the project's first screen: one row per claim
    if claims and front.is_file() and RSTART in front.read_text():
        head, rest = front.read_text().split(RSTART, 1)
        write_text(
            front, head + RSTART + "\n" + results_table(paths, claims, folder) + "\n" + REND + rest.split(REND, 1)[1]
        )
    m = claims[0]["comparisons"][0].get("family_size") if claims and claims[0]["comparisons"] else 0
    print(f"wrote the claim table ({len(rows)} rows, one Holm family of {m} tests) into {readme} and "
          f"{folder / 'summary.png'}")  # fmt: skip


def _with_note(verdict: str, note: str) -> str:
    return f"{verdict} ({note})" if note else verdict


def results_table(paths: list[Path], claims: list[dict], folder: Path) -> str:
    """The README's first table: one row per claim at its headline metric (the first its config states), the
    paper's effect, ours with its interval, the verdict, and a link to the report naming the other rows' verdicts;
    then how far the claims are along their planned seeds."""
    rows, pending = [], 0
    for path, c in zip(paths, claims, strict=True):
        head, *others = c["comparisons"]
        delta, interval = fmt_delta(head)
        paper = head["paper"] + (f"; here {fmt_value(head['metric'], head['size'], head['ratio'])}"
                                 if head.get("size") is not None and " at " in head["paper"] else "")  # fmt: skip
        more = "; ".join(f"{o['metric']}: {o['verdict']}" for o in others)
        link = f"{folder.name}/{path.parent.name}/report.md"
        report = f"[{c['experiment']}]({link})" + (f" ({more})" if more else "")
        rows.append([f"§{c['section']} {c['claim']} ({head['metric']})", paper, f"{delta} {interval}",
                     verdict_cells(head)[0], report])  # fmt: skip
        pending += head["verdict"] == Outcome.PENDING
    done = "All" if not pending else f"{len(claims) - pending} of"
    status = f"{done} {len(claims)} claims have the seeds experiments/plan.yaml planned for them"
    if pending:
        verb = "is" if pending == 1 else "are"
        status += f"; {pending} {verb} pending (their Δ so far shown, no verdict until their planned seeds finish)"
    return markdown_table(RESULTS_HEADER, rows) + "\n\n" + status + "."


def _rewrite_report(report_md: Path, comparisons: list[dict]) -> None:
    """The verdict block of a claim's report.md: the whole table's family, then the claim's own."""
    if not report_md.is_file() or VSTART not in report_md.read_text():
        return
    head, rest = report_md.read_text().split(VSTART, 1)
    tables = claim_table(comparisons, adjusted=True) + "\n\n" + claim_table(comparisons, adjusted=False)
    write_text(report_md, head + VSTART + "\n" + tables + "\n" + VEND + rest.split(VEND, 1)[1])
