"""The one-way import rule of DESIGN.md, checked on every module of every package:
leaderboard, benchmarks -> harness -> attacks -> {tasks, sparse}; tasks and sparse
import neither each other nor anything above them. Also: the leaderboard and the
results contract import no torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sparse", "tasks", "attacks", "harness", "leaderboard", "benchmarks")
# What each package may import from the project (itself always allowed).
ALLOWED = {
    "sparse": set(),
    "tasks": set(),
    "attacks": {"tasks", "sparse"},
    "harness": {"attacks", "tasks", "sparse"},
    "leaderboard": {"harness", "tasks"},
    "benchmarks": {"harness", "attacks", "tasks", "sparse"},
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


@pytest.mark.parametrize("module", ["leaderboard.cli", "harness.results", "harness.stats"])
def test_module_imports_without_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
