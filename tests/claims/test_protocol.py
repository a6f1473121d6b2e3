"""The claims issue's protocol (#29) in the verdicts: no verdict before a claim has its planned seeds, each verdict
tried with every seed left out, and each report's check of its own pre-registration."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
from scipy import stats

from alexnet.claims import preregistration
from alexnet.claims.family import adjust, holm, leave_one_out, without_seed
from alexnet.claims.verdict import Outcome, decide, judge_values, parse_spec

SPEC = "+"  # the paper's direction only: higher


def claim_of(differences: list[float], plan: dict | None = None) -> dict:
    seeds = list(range(1, len(differences) + 1))
    spec = parse_spec(SPEC)
    row = judge_values("overfit_gap", spec, [0.0] * len(seeds), list(differences), True)
    record = {"experiment": "x", "section": "4.2", "claim": "x", "reference": "a", "ablated": "b",
              "comparisons": [{**row.__dict__, "paper_spec": SPEC, "seeds": seeds,
                               "censored": {"reference": [False] * len(seeds),
                                            "ablated": [False] * len(seeds)}}]}  # fmt: skip
    if plan:
        record["plan"] = plan
    return record


def test_a_claim_short_of_its_planned_seeds_gets_no_verdict_and_keeps_its_tests_in_the_family() -> None:
    short = claim_of([0.02, 0.03, 0.025, 0.028, 0.022], plan={"done": 5, "planned": 16})
    done = claim_of([0.02, 0.03, 0.025, 0.028, 0.022] * 3 + [0.024], plan={"done": 16, "planned": 16})
    adjust([short, done])
    assert short["comparisons"][0]["verdict"] == Outcome.PENDING
    assert short["comparisons"][0]["seeds_planned"] == [5, 16, None]
    assert done["comparisons"][0]["verdict"] == Outcome.REPRODUCED
    assert done["comparisons"][0]["family_size"] == 2  # the pending claim's test counts in m (a direction: one test)
    assert decide(1.0, 0.0, 1.0, 1.0, complete=False, converged=False) is Outcome.PENDING


def test_leaving_a_seed_out_recomputes_the_row_as_if_it_had_never_run() -> None:
    d = [0.02, 0.05, -0.01, 0.03, 0.04, 0.01, 0.02, 0.06, 0.0, 0.03, 0.02]
    row = claim_of(d)["comparisons"][0]
    alone = without_seed(row, 4)
    direct = judge_values("overfit_gap", parse_spec(SPEC), [0.0] * 10, d[:3] + d[4:], True)
    assert alone["seeds"] == [1, 2, 3, 5, 6, 7, 8, 9, 10, 11]
    assert (alone["delta"], alone["p"], alone["p_perm"]) == (direct.delta, direct.p, direct.p_perm)


def test_the_seeds_whose_absence_flips_a_verdict_are_named_and_only_they() -> None:
    # a family of one row (two tests), borderline: some seeds carry the detection, others do not
    d = [0.012, 0.002, 0.009, -0.004, 0.011, 0.001, 0.008, 0.010, -0.009, 0.013, -0.006]  # p 0.10 on all 11
    claims = [claim_of(d, plan={"done": 11, "planned": 11})]
    adjust(claims)
    leave_one_out(claims)
    row = claims[0]["comparisons"][0]
    by_hand = {}
    for i in range(len(d)):
        rest = np.array(d[:i] + d[i + 1 :])
        p = 2 * stats.t.sf(abs(rest.mean()) / (rest.std(ddof=1) / math.sqrt(len(rest))), len(rest) - 1)
        p_holm = holm([p, math.nan])[0]  # the row's only test with a size to reject (a direction has no p_paper)
        verdict = decide(rest.mean(), p_holm, math.nan, 1.0)
        if verdict != row["verdict"]:
            by_hand[str(i + 1)] = str(verdict)
    assert row["leave_one_out"] == {"seeds": 11, "flips": by_hand}
    assert by_hand, "the example must be borderline: some seed's absence flips it"


def test_the_pre_registration_line_says_what_changed_after_the_runs(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip

    git("init", "-q")
    (tmp_path / "plan.yaml").write_text("seeds: 16\n")
    (tmp_path / "budget.yaml").write_text("lr: 0.02\n")
    git("add", "."), git("commit", "-qm", "plan")
    plan_commit = git("rev-parse", "HEAD")
    (tmp_path / "plan.yaml").write_text("# a comment is no change\nseeds: 16\n")
    git("commit", "-qam", "comment")
    run_commit = git("rev-parse", "HEAD")
    (tmp_path / "budget.yaml").write_text("lr: 0.01\n")
    git("commit", "-qam", "a new rate after the runs")
    files = {"plan": ("plan.yaml", ["new seeds"]), "budget": ("budget.yaml", ["new seeds"])}
    text = preregistration.line(files, {"new seeds": {run_commit}}, root=tmp_path)
    assert f"plan (plan.yaml) at {plan_commit[:7]}" in text.split("**Changed")[0]  # the comment did not move it
    assert "**Changed after the runs**: budget (budget.yaml)" in text and "after the first new seeds run" in text


ROOT = Path(__file__).resolve().parents[2]


def test_a_report_on_the_committed_pilot_says_pending_lists_its_machines_and_checks_its_pre_registration(
    tmp_path: Path,
) -> None:
    from alexnet.claims.report import report

    out = tmp_path / "towers"
    report([ROOT / "experiments" / "runs" / "ablate_towers" / "programme"], out)
    text = (out / "report.md").read_text()
    claim = json.loads((out / "claim.json").read_text())
    done = claim["plan"]["done"]  # the pilot's 5, and the new seeds whose two runs are committed
    assert claim["plan"]["planned"] == 11 and done >= 5 and claim["plan"]["seeds_done"][:5] == [11, 12, 13, 14, 15]
    if done < 11:
        assert f"**pending** ({done} of 11 planned seeds: no verdict yet)" in text
    assert "not recorded (10 runs)" in text  # the pilot ran before runs recorded their CPU
    # the time is the runs' own, summed: a sweep's wall clock misses every segment of a sweep that was stopped
    summaries = sorted((ROOT / "experiments" / "runs" / "ablate_towers" / "programme").glob("*/summary.json"))
    hours = sum(json.loads(s.read_text())["wall_seconds"] for s in summaries) / 3600
    assert f"Run time: {hours:.2f} h, the sum of the {len(summaries)} runs' own wall time" in text
    assert "Whole sweep" not in text
    prereg = next(line for line in text.splitlines() if line.startswith("Pre-registration"))
    known = subprocess.run(["git", "cat-file", "-e", "a8f896d^{commit}"], cwd=ROOT).returncode == 0
    if known:  # a checkout with its history: the pilot ran at a8f896d, after its budget and claim were last changed
        assert "the first pilot run at a8f896d" in prereg and "Changed after" not in prereg
        assert "claim block (conf/claim/ablate_towers.yaml) at 7910a14" in prereg
    else:
        assert "not checked" in prereg


def test_a_reports_run_time_says_which_runs_count_every_start(tmp_path: Path) -> None:
    """Runs that record their starts count each one; runs recorded before (the pilot's) count only their last."""
    from alexnet.claims.report import report

    runs = tmp_path / "programme"
    shutil.copytree(ROOT / "experiments" / "runs" / "ablate_towers" / "programme", runs)
    summaries = sorted(runs.glob("*_seed1[0-9][0-9]/summary.json"))  # the plan's new seeds
    for i, path in enumerate(summaries):
        summary = json.loads(path.read_text())
        path.write_text(json.dumps({**summary, "starts": 2 if i == 0 else 1}))
    report([runs], tmp_path / "towers")
    text = (tmp_path / "towers" / "report.md").read_text()
    others = len(list(runs.glob("*/summary.json"))) - len(summaries)
    assert (
        f"(every start counted for {len(summaries)} runs, 1 of them resumed; the other {others}, recorded before "
        "starts were counted, count their last segment if resumed)" in text
    )


def test_a_row_judged_under_a_rule_changed_after_its_runs_says_what_the_first_rule_gave() -> None:
    from alexnet.claims.history import first_rule_note, load

    changes = load(ROOT / "experiments")
    every_run = next(c for c in changes if c.get("first_rule") == "every_run_within_band")
    runs = [{"converged": True}, {"converged": False}, {"converged": True}]
    claim = {"experiment": every_run["claims"][0], "convergence": {"runs": runs}}
    note = first_rule_note(claim, {"metric": "test/top1_err", "verdict": "reproduced"}, changes)
    expected = f"under the rule before {every_run['commit']} ({every_run['date']}): not converged (1 of 3 runs "
    assert note == expected + "outside the band alone)"
    claim["convergence"]["runs"] = [{"converged": True}] * 3  # every run in the band: the first rule agrees
    assert first_rule_note(claim, {"metric": "test/top1_err", "verdict": "reproduced"}, changes) == ""
    assert first_rule_note({"experiment": "ablate_towers"}, {"metric": "x", "verdict": "excluded"}, changes) == ""
    # every change is dated, names its commit and says how the claim was handled
    assert all({"date", "commit", "rule", "was", "now", "claims", "handled"} <= set(c) for c in changes)
