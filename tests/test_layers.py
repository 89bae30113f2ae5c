"""The one-way import rule of docs/design.md, checked on every module of every package:
leaderboard, benchmarks -> harness -> attacks -> {tasks, sparse} -> plugins; tasks and
sparse import neither each other nor anything above them, and plugins imports nothing
of the project. No two modules of one package import each other, directly or through
others. Also: the leaderboard and the results contract import no torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("plugins", "sparse", "tasks", "attacks", "harness", "leaderboard", "benchmarks")
# What each package may import from the project (itself always allowed).
ALLOWED = {
    "plugins": set(),
    "sparse": {"plugins"},
    "tasks": {"plugins"},
    "attacks": {"tasks", "sparse", "plugins"},
    "harness": {"attacks", "tasks", "sparse", "plugins"},
    "leaderboard": {"harness", "tasks", "plugins"},
    "benchmarks": {"harness", "attacks", "tasks", "sparse", "plugins"},
}


def project_imports(path: Path) -> set[str]:
    """Top-level project packages imported anywhere in a file (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names if name.split(".")[0] in PACKAGES}
    return found


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for imported in project_imports(path) - ALLOWED[package] - {package}:
            bad.append(f"{path.relative_to(ROOT)} imports {imported}")
    return bad


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_flow_one_way(package):
    assert violations(package) == []


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The rule is not vacuous: a tasks module importing attacks is caught, lazily or not."""
    fake = tmp_path / "tasks"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from attacks.target import Target\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations("tasks") == ["tasks/bad.py imports attacks"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """Imports under `if TYPE_CHECKING:`, which never run and so cannot form a cycle."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {n for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def module_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports, at module level or in a function.

    `from a import b` points at module a.b if there is one, else at a; relative imports are
    resolved against the importing module's package. In a directory without __init__.py (the
    benchmarks scripts, run with their directory on sys.path) a bare `import x` of a sibling
    file x.py counts too."""
    paths = {_module_name(path): path for path in sorted((ROOT / package).rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]  # relative imports' base
        siblings = set() if (path.parent / "__init__.py").exists() else {p.stem for p in path.parent.glob("*.py")}
        skipped = _type_checking_only(tree)
        targets = set()
        for node in ast.walk(tree):
            if node in skipped:
                continue
            if isinstance(node, ast.Import):
                level, candidates = 0, [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                level = node.level
                base = here[:len(here) - level + 1] if level else []
                module = ".".join(base + (node.module.split(".") if node.module else []))
                candidates = [f"{module}.{alias.name}" for alias in node.names]
            else:
                continue
            for candidate in candidates:
                if level == 0 and candidate.split(".")[0] in siblings:
                    candidate = ".".join(here + [candidate])
                while candidate and candidate not in paths:  # an attribute, not a module: the module above it
                    candidate = candidate.rpartition(".")[0]
                if candidate:
                    targets.add(candidate)
        graph[name] = targets - {name}
    return graph


def import_cycles(package: str) -> list[str]:
    """Each group of modules that import one another (a strongly connected component), as
    "a <-> b <-> c" in sorted order."""
    graph = module_graph(package)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node):  # Tarjan's algorithm; the graphs are small, so recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(" <-> ".join(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_within_a_package(package):
    assert import_cycles(package) == []


@pytest.mark.parametrize("files,cycles", [
    ({"__init__.py": "", "a.py": "from .b import f\n", "b.py": "def f():\n    from tasks.a import g\n"},
     ["tasks.a <-> tasks.b"]),
    ({"a.py": "import b\n", "b.py": "def f():\n    from a import g\n"},  # scripts importing siblings
     ["tasks.a <-> tasks.b"]),
    ({"__init__.py": "", "a.py": "from . import b\n",
      "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\n"}, []),
], ids=["package", "scripts", "type-checking-only"])
def test_the_checker_sees_a_planted_cycle(tmp_path, monkeypatch, files, cycles):
    fake = tmp_path / "tasks"
    fake.mkdir()
    for name, text in files.items():
        (fake / name).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert import_cycles("tasks") == cycles


TORCH_FREE = ["leaderboard.cli", "harness.results"] + sorted(
    f"harness.results.{p.stem}" for p in (ROOT / "harness" / "results").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_imports_without_torch(module):
    """The results package (schema, stats, store, report, compare, frame) and the leaderboard
    read run directories without a model: none of them may pull torch in."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
