"""The protocol's rule changes after runs they judge (experiments/rules.yaml), and what each claim-table row would
read under a rule as first committed (#29: "where a verdict would differ under the rule as first committed, the
table says so")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

FILE = "rules.yaml"


def load(folder: Path) -> list[dict[str, Any]]:
    path = Path(folder) / FILE
    return list(yaml.safe_load(path.read_text()) or []) if path.is_file() else []


def first_rule_note(claim: dict[str, Any], row: dict[str, Any], changes: list[dict[str, Any]]) -> str:
    """'under the rule as first committed (before COMMIT): VERDICT' for each change that would alter this row."""
    notes = []
    for change in changes:
        if claim["experiment"] not in change.get("claims", []):
            continue
        if change.get("metrics") and row["metric"] not in change["metrics"]:
            continue
        was = None
        if change.get("first_rule") == "every_run_within_band":
            runs = (claim.get("convergence") or {}).get("runs") or []
            if runs and not all(r["converged"] for r in runs):
                failing = sum(not r["converged"] for r in runs)
                was = f"not converged ({failing} of {len(runs)} runs outside the band alone)"
        elif change.get("first_verdict"):
            was = str(change["first_verdict"])
        if was and not was.startswith(str(row["verdict"])):
            notes.append(f"under the rule before {change['commit']} ({change['date']}): {was}")
    return "; ".join(notes)
