"""The board files a user reruns (docs/boards, benchmarks/boards): each loads; the
commands its comment tells the user to run name existing files, itself among them; and the
attacked files that write into one directory agree on its methods, densities and options,
so every source's transfer records cover the same targets at the same settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from harness.board.spec import load_board

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted([*ROOT.glob("docs/boards/*.yaml"), *ROOT.glob("benchmarks/boards/*.yaml")])


def test_there_are_board_files():
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_board_file_loads_and_its_commands_name_it(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    board = load_board(str(path.relative_to(ROOT)))
    assert board.cells()
    named = re.findall(r"python -m harness\.board (\S+\.yaml)", path.read_text())
    assert all((ROOT / name).is_file() for name in named), named
    assert not named or str(path.relative_to(ROOT)) in named, named


def test_attacked_files_sharing_a_directory_agree_on_the_board():
    by_out: dict[str, list[dict]] = {}
    for path in FILES:
        data = yaml.safe_load(path.read_text())
        if any(attack != "none" for attack in data.get("attacks", ["none"])):
            by_out.setdefault(data["out"], []).append(data)
    shared = [files for files in by_out.values() if len(files) > 1]
    assert shared
    for files in shared:
        for key in ("models", "suite", "densities", "methods", "options"):
            assert all(data.get(key) == files[0].get(key) for data in files), key
