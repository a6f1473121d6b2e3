"""src/compare.py puts a claim's report into W&B beside its runs (alexnet.claims.wandb_report), read back from the
offline run's own files: the run record (project, group, job type), the summary, the tables and the images."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT

TOWERS = ROOT / "experiments" / "runs" / "ablate_towers" / "programme"  # the committed pilot: 5 seeds, two arms


def wandb_records(run_file: Path) -> list[Any]:
    """The protobuf records of an offline W&B run's `run-<id>.wandb`: LevelDB's log format (a 7-byte file header,
    32 KiB blocks, each record or piece of one behind a 7-byte header: CRC, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data, block = run_file.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, pieces, records = 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zeros to the block's end
            pos += block - pos % block
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        pieces = chunk if kind in (1, 2) else pieces + chunk  # full or first: a record starts; middle, last: goes on
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            records.append(record)
    return records


def summary_of(records: list[Any]) -> dict[str, Any]:
    """The run's summary as its updates leave it (a top-level key, or a nested one as a path)."""
    summary: dict[str, Any] = {}
    for record in records:
        if record.WhichOneof("record_type") != "summary":
            continue
        for item in record.summary.update:
            path = list(item.nested_key) or [item.key]
            node = summary
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = json.loads(item.value_json)
    return summary


@pytest.mark.slow
def test_compare_logs_the_claims_verdict_seeds_and_figures_into_its_experiments_wandb_group(
    tmp_path: Path, run_cli
) -> None:
    out = tmp_path / "towers"
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}  # auto: offline, as the pilot's runs were
    proc = run_cli("compare.py", str(TOWERS), "--out", str(out), env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = (out / "wandb").glob("offline-run-*")
    assert f"logged the claim to W&B, group ablate_towers: {folder}" in proc.stdout
    records = wandb_records(next(folder.glob("run-*.wandb")))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    # beside the runs: their project and their group (logger.wandb.group is ${experiment_name})
    assert (run.project, run.run_group, run.job_type, run.display_name) == (
        "alexnet-2012", "ablate_towers", "claim", "claim-ablate_towers")  # fmt: skip

    claim = json.loads((out / "claim.json").read_text())
    row = {**claim["comparisons"][0], **claim["comparisons"][0]["alone"]}  # as report.md decides it: this claim
    summary = summary_of(records)
    assert summary["verdict"] == row["verdict"] and summary["metric"] == "test/top1_err"
    assert (summary["delta"], summary["low"], summary["high"]) == (row["delta"], row["low"], row["high"])
    readme_row = next(r for r in (ROOT / "README.md").read_text().splitlines() if r.startswith("| §3.2 Two towers"))
    assert summary["shown"] == readme_row.split(" | ")[2]  # what the README's results table shows for §3.2
    # report.md's verdict, in the claim's own family (a report outside experiments/ has no table to join)
    own = [r for r in (out / "report.md").read_text().splitlines() if r.startswith("| test/top1_err |")][-1]
    assert summary["verdict_text"] == own.split(" | ")[9].replace("**", "")

    files = folder / "files"
    tables = {p.name.split("_")[0]: json.loads(p.read_text()) for p in (files / "media" / "table").glob("*.json")}
    verdicts = [dict(zip(tables["verdicts"]["columns"], r, strict=True)) for r in tables["verdicts"]["data"]]
    analysed = claim["comparisons"][0]["seeds"]
    assert [(v["metric"], v["measured Δ"], v["outcome"], v["seeds"]) for v in verdicts] == [
        ("test/top1_err", summary["shown"].split(" [")[0], row["verdict"], len(analysed))]  # fmt: skip
    seeds = [dict(zip(tables["seeds"]["columns"], r, strict=True)) for r in tables["seeds"]["data"]]
    judged = [s for s in seeds if s["verdict row"]]
    plan = yaml.safe_load((ROOT / "experiments" / "plan.yaml").read_text())["sweeps"]["ablate_towers"]
    # in seed order, as report.md lists them (the sweep's folders sort as text: seed 121 before seed 13)
    assert [s["seed"] for s in judged] == analysed == sorted(analysed) and analysed[:5] == [11, 12, 13, 14, 15]
    assert set(analysed) <= set(plan["analysed_seeds"])  # the pilot, then the plan's new seeds finished so far
    assert [s["two (reference)"] for s in judged] == claim["comparisons"][0]["reference"]
    for s in judged:
        assert math.isclose(s["difference"], s["one (ablated)"] - s["two (reference)"], abs_tol=1e-12)
    assert {s["metric"] for s in seeds if not s["verdict row"]} == {r["metric"] for r in claim["reported"]}

    images = {p.name.split("_")[0] for p in (files / "media" / "images").glob("*.png")}
    assert images == {"forest", "learning"}  # the forest plot and the report's learning curves
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in (files / "media" / "images").glob("*.png"))
    assert not (out / "forest.png").exists()  # the report's folder keeps its own files

    # regenerated, the report continues the same W&B run
    again = run_cli("compare.py", str(TOWERS), "--out", str(out), env=env, timeout=300)
    assert again.returncode == 0 and {p.name[-8:] for p in (out / "wandb").glob("offline-run-*")} == {folder.name[-8:]}


@pytest.mark.parametrize("requested, env, online_run, expected", [
    ("auto", {}, False, "offline"), ("auto", {}, True, "online"),
    ("auto", {"WANDB_MODE": "disabled"}, True, "disabled"), ("offline", {}, True, "offline"),
    ("online", {}, False, "online"),
])  # fmt: skip
def test_the_claims_wandb_mode_follows_the_runs_offline_first(
    requested, env, online_run, expected, tmp_path, monkeypatch
):
    from alexnet.claims.runs import Run
    from alexnet.claims.wandb_report import choose_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    run_dir = tmp_path / "run"
    (run_dir / "wandb" / ("run-20260101_000000-abc" if online_run else "offline-run-20260101_000000-abc")).mkdir(
        parents=True)  # fmt: skip
    run = Run(path=run_dir, cfg={}, summary={"seed": 1}, arm="lrn", metrics={})
    assert choose_mode(requested, [run]) == expected


@pytest.mark.slow
def test_compare_asked_for_wandb_online_without_a_route_says_so_and_keeps_the_report(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "towers"
    env = {**os.environ, "WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": "https://wandb.invalid"}
    proc = run_cli("compare.py", str(TOWERS), "--out", str(out), "--wandb", "online", env=env, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "--wandb online: the W&B server https://wandb.invalid cannot be reached" in proc.stderr
    assert "--wandb offline" in proc.stderr
    assert (out / "report.md").is_file() and (out / "claim.json").is_file()  # the analysis is not lost
    assert not (out / "wandb").exists() or not any((out / "wandb").glob("*run-*"))
