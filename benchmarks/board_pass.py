"""One-pass board run against the same cells run one after another.

Runs every cell of a board file alone (`python -m harness.run` with the cell's command, as
`harness.board --dry-run` lists them), then the whole board in one pass
(`python -m harness.board`), each in a fresh process into a scratch directory, and prints
a Markdown table: wall seconds, peak RSS of the process (ru_maxrss), and the ratio. The
rows of both are compared: the one-pass cells must equal the separate runs (timing aside).

    python benchmarks/board_pass.py BOARD.yaml [--scratch /tmp/board-pass]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS GiB) of one child process."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}")
    return time.perf_counter() - start, usage.ru_maxrss / 2**20  # KiB -> GiB


def rows(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "timing"}
            for line in (path / "results.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("board")
    parser.add_argument("--scratch", default="/tmp/board-pass")
    args = parser.parse_args()
    scratch = Path(args.scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    board = yaml.safe_load(Path(args.board).read_text())
    board["out"] = str(scratch / "one-pass")
    board_path = scratch / "board.yaml"
    scratch.mkdir(parents=True)
    board_path.write_text(yaml.safe_dump(board))
    one_s, one_gib = timed([sys.executable, "-m", "harness.board", str(board_path)])
    cells = json.loads((scratch / "one-pass" / "board-cells.json").read_text())
    separate_s, separate_gib = 0.0, 0.0
    for name, command in sorted(cells.items()):
        argv = shlex.split(command)[3:]
        argv[argv.index("--out") + 1] = str(scratch / "separate" / name)
        seconds, gib = timed([sys.executable, "-m", "harness.run", *argv])
        separate_s += seconds
        separate_gib = max(separate_gib, gib)
        same = rows(scratch / "separate" / name) == rows(scratch / "one-pass" / name)
        print(f"{name}: {seconds:.0f} s, rows {'equal' if same else 'DIFFER'}", file=sys.stderr)
        if not same:
            raise SystemExit(f"cell {name}: the one-pass rows differ from the separate run's")
    n_items = sum(len(rows(scratch / "one-pass" / name)) for name in cells)
    print(f"board {args.board}: {len(cells)} cells, {n_items} rows, threads {os.environ.get('OMP_NUM_THREADS', 'all')}\n")
    print("| run | wall (s) | peak RSS (GiB) |")
    print("|---|---:|---:|")
    print(f"| {len(cells)} cells one after another | {separate_s:.0f} | {separate_gib:.2f} |")
    print(f"| one pass (`python -m harness.board`) | {one_s:.0f} | {one_gib:.2f} |")
    print(f"\nratio: {separate_s / one_s:.2f}x fewer seconds in one pass; rows equal in every cell")


if __name__ == "__main__":
    main()
