"""The package's structure: no import circle among src/alexnet's modules; the wings keep to their rules (model/ a
leaf, claims/ reading only the run record, so that src/compare.py never loads torch); the package's __init__ is lazy;
and the data store and layout modules (what src/prepare.py and the loader workers need) import without Lightning."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "alexnet"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's modules that `path` imports, at any depth of its code (a function-level import closes a
    circle as surely as one at the top). `from alexnet.x import y` counts as alexnet.x.y when y is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            }
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(f) for f in files}
    return {module_name(f): imported_modules(f, module_name(f), known) for f in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (depth-first search, colouring the modules on the path)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "on path"
        path.append(module)
        for other in sorted(graph[module]):
            if state.get(other) == "on path":
                return path[path.index(other) :] + [other]
            if other not in state and (cycle := visit(other)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_search_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_function_level_and_submodule_imports(tmp_path: Path) -> None:
    graph = import_graph()
    assert "alexnet.errors" in graph["alexnet.train.build"]  # from alexnet.errors import ...
    assert graph["alexnet.errors"] == set()  # the leaf every module may import
    code = tmp_path / "alexnet" / "m.py"
    code.parent.mkdir()
    code.write_text("def f():\n    from alexnet.model import towers\n    import alexnet.model.net\n")
    known = {"alexnet.model.towers", "alexnet.model.net", "alexnet"}
    assert imported_modules(code, "alexnet.m", known) == {"alexnet.model.towers", "alexnet.model.net"}


def test_no_import_circle_in_the_package() -> None:
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", ["alexnet.data.store", "alexnet.data.layout", "alexnet.errors"])
def test_data_store_and_layout_import_without_lightning(module: str) -> None:
    code = f"import {module}, sys; assert 'lightning' not in sys.modules, 'lightning imported'"
    proc = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(SRC)}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def wing(module: str) -> str:
    """alexnet.train.build -> train; a root leaf (alexnet.errors) -> errors."""
    return module.split(".")[1] if module.count(".") >= 1 else ""


ROOT_LEAVES = {
    "alexnet.errors",
    "alexnet.streams",
    "alexnet.record",
    "alexnet.files",
    "alexnet.geometry",
    "alexnet.legacy",
    "alexnet.wandb_access",
}


def test_the_model_wing_imports_nothing_of_training_claims_or_data() -> None:
    graph = import_graph()
    for module, imports in graph.items():
        if wing(module) == "model":
            outside = {m for m in imports if wing(m) in ("train", "claims", "jobs", "data")}
            assert not outside, f"{module} imports {sorted(outside)}"


def test_the_claims_wing_imports_only_the_run_record_and_itself() -> None:
    graph = import_graph()
    for module, imports in graph.items():
        if wing(module) == "claims":
            outside = {
                m
                for m in imports
                if wing(m) != "claims" and m not in ROOT_LEAVES - {"alexnet.streams", "alexnet.errors"}
            }
            assert not outside, f"{module} imports {sorted(outside)}"


def test_the_root_leaves_import_no_wing() -> None:
    graph = import_graph()
    for leaf in ROOT_LEAVES:
        assert graph[leaf] <= ROOT_LEAVES, f"{leaf} imports {sorted(graph[leaf] - ROOT_LEAVES)}"


@pytest.mark.parametrize(
    "code",
    [
        "import alexnet",  # lazy: AlexNet and the rest load on first use
        "import alexnet.claims.index, alexnet.claims.report, alexnet.claims.judge, alexnet.claims.plan",
        "import runpy, sys; sys.argv = ['compare.py', '--help']; runpy.run_path('src/compare.py', run_name='x')",
    ],
)
def test_reading_runs_and_judging_claims_loads_neither_torch_nor_lightning(code: str) -> None:
    check = f"{code}\nimport sys; assert not {{'torch', 'lightning'}} & set(sys.modules), 'torch or lightning imported'"
    proc = subprocess.run([sys.executable, "-c", check], env={"PYTHONPATH": str(SRC)}, capture_output=True, text=True,
                          cwd=SRC.parent)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_alexnet_names_still_load_from_the_package() -> None:
    code = "import alexnet; assert alexnet.AlexNet.__name__ == 'AlexNet' and callable(alexnet.build_net)"
    proc = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(SRC)}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
