"""Each report checks its own pre-registration (#29): when the claim's plan, budget and claim block (with its
convergence rule) were last changed, against the commits its runs ran from, read from git and the runs' summary.json.

A file counts as changed only where what it says changed (its parsed YAML), not its comments or layout, so that a
comment's edit is not taken for a change of the protocol."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from alexnet.legacy import upgrade
from alexnet.record import PROJECT_ROOT


def _git(*args: str, root: Path = PROJECT_ROOT) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def last_change(path: str, root: Path = PROJECT_ROOT, was: tuple[str, str] | None = None) -> tuple[str, str] | None:
    """(commit, date) of the last commit that changed what `path` (a YAML file, relative to the repository) says;
    None where git has no history of it. `was`: (an earlier file, its key) that said the same before `path` existed
    (a claim block moved from conf/experiment/NAME.yaml's `claim:` to conf/claim/NAME.yaml)."""
    paths = [path, *([was[0]] if was else [])]
    log = _git("log", "--format=%H %cs", "--", *paths, root=root).splitlines()

    def said(commit: str) -> Any:
        for where, key in [(path, None), *([was] if was else [])]:
            try:  # under today's import paths: a class that moved wings is no change of what the file says
                text = yaml.safe_load(_git("show", f"{commit}:{where}", root=root))
            except subprocess.CalledProcessError:  # not there at that commit
                continue
            return upgrade(text.get(key) if key and isinstance(text, dict) else text)
        return None

    for i, line in enumerate(log):
        commit, day = line.split()
        if i + 1 == len(log) or said(commit) != said(log[i + 1].split()[0]):
            return commit, day
    return None


def before(change: str, run: str, root: Path = PROJECT_ROOT) -> bool:
    """The change is in the history of the commit the run ran from (the same commit included)."""
    return subprocess.run(["git", "merge-base", "--is-ancestor", change, run], cwd=root).returncode == 0


def first_commit(commits: set[str], root: Path = PROJECT_ROOT) -> str:
    """The oldest of the commits some runs ran from (by commit time)."""
    return min(commits, key=lambda c: int(_git("show", "-s", "--format=%ct", c, root=root)))


def line(files: dict[str, tuple], runs: dict[str, set[str]], root: Path = PROJECT_ROOT) -> str:
    """One sentence: each protocol file (what -> (path, the groups of runs it judges[, was])) with its last change, set
    against the first run of each group (e.g. the pilot and the new seeds: group -> the commits its runs ran from):
    'fixed before the runs it judges' or 'changed after the runs: ...'."""
    try:
        first = {g: first_commit(commits, root) for g, commits in runs.items() if commits}
        dates = {c: _git("show", "-s", "--format=%cs", c, root=root) for c in first.values()}
        changes = {what: last_change(spec[0], root, *spec[2:]) for what, spec in files.items()}
    except (OSError, subprocess.CalledProcessError, ValueError):
        return "Pre-registration: not checked (no git history of these runs here)."
    after, fixed = [], []
    for what, change in changes.items():
        groups = [g for g in files[what][1] if g in first]
        if change is None or not groups:
            continue
        late = [g for g in groups if not before(change[0], first[g], root)]
        text = f"{what} ({files[what][0]}) at {change[0][:7]} ({change[1]})"
        (after if late else fixed).append(text + (f", after the first {' and '.join(late)} run" if late else ""))
    firsts = "; ".join(f"the first {g} run at {c[:7]} ({dates[c]})" for g, c in first.items())
    head = f"Pre-registration ({firsts}): fixed before the runs they judge: {', '.join(fixed) or 'nothing'}."
    return head + (f" **Changed after the runs**: {'; '.join(after)}." if after else "")
