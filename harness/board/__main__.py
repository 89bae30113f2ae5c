"""`python -m harness.board BOARD.yaml [--executor local|ray] [--workers N] [--contexts N]`: run a board in
one pass per model (harness/board/runner.py), then print where its cells are. With
`--transfer-to RUN ...`: add the board's transfer records to attacked runs made elsewhere
(harness/board/backfill.py) instead."""

from __future__ import annotations

import argparse
import sys

from harness.cli import command
from harness.errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parse(argv):
    p = _Parser(prog="python -m harness.board",
                description="Score every cell of a board file (models x methods x attacks at the board's "
                            "densities) in one pass per model, sharing prefixes; writes ordinary run "
                            "directories that `python -m leaderboard build` reads.")
    p.add_argument("board", help="board file (YAML, see docs/leaderboard.md)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: this process; ray: contexts sharded over Ray actors (needs the ray extra)")
    p.add_argument("--workers", type=int, default=2, help="Ray actors for --executor ray, each loading the model")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (default: start a local one)")
    p.add_argument("--contexts", type=int, default=None, metavar="N",
                   help="score only the suite's first N contexts in this pass (a budget: the cells keep the "
                        "board's limit, so a later pass continues from there)")
    p.add_argument("--dry-run", action="store_true", help="print every cell's harness.run command and stop")
    p.add_argument("--transfer-to", nargs="+", metavar="RUN", default=None,
                   help="instead of the board's cells: re-score the adversarial tokens of these attacked run "
                        "directories under every method of the board (at its attack's density) into their "
                        "transfer.jsonl, as a board pass would")
    args = p.parse_args(argv)
    if args.workers < 1:
        raise UsageError(f"--workers must be an integer >= 1, got {args.workers}")
    if args.contexts is not None and args.contexts < 1:
        raise UsageError(f"--contexts must be an integer >= 1, got {args.contexts}")
    if args.transfer_to and (args.dry_run or args.executor != "local" or args.contexts is not None):
        raise UsageError("--transfer-to re-scores whole runs in this process: it takes neither --dry-run, "
                         "--executor ray nor --contexts")
    return args


def accuracy_lines(board, plans) -> list[str]:
    """Per model: how many of the scored items full attention answers right, against the
    leaderboard's bar (`leaderboard.boards.model_accuracy` over the same rows), so a board
    whose model will be listed as skipped says so when it ends, not when it is built."""
    from harness.results.board_rules import MIN_ACCURACY
    from tasks.outcomes import FULL

    right: dict[str, dict[str, bool]] = {}
    for plan in plans:
        for row in plan.rows:
            right.setdefault(plan.cell.model, {}).setdefault(row.item_id, row.natural[FULL].correct)
    lines = []
    for model, items in right.items():
        correct = sum(items.values())
        below = correct / len(items) < MIN_ACCURACY  # as the leaderboard admits a model
        lines.append(f"{model} on {board.suite}: full attention right on {correct}/{len(items)} items "
                     f"({correct / len(items):.0%}); the leaderboard's bar is {MIN_ACCURACY:.0%}"
                     + (": below it, the board lists this model as skipped" if below else ""))
    return lines


def build_command(board) -> str:
    """The `leaderboard build` command that reads this board's cells at the board's densities."""
    from harness.results.board_rules import DEFAULT_DENSITIES

    densities = "" if tuple(board.densities) == DEFAULT_DENSITIES else \
        " --densities " + ",".join(f"{d:g}" for d in board.densities)
    return f"python -m leaderboard build {board.out} --out {board.out}/leaderboard{densities}"


def main(argv=None) -> int:
    def body():
        from harness.board.runner import run_board
        from harness.board.spec import load_board

        args = parse(sys.argv[1:] if argv is None else argv)
        board = load_board(args.board)
        if args.transfer_to:
            from harness.board.backfill import backfill

            for run_dir, n in backfill(board, args.transfer_to):
                print(f"{run_dir}: transfer records for {n} items")
            return
        if args.dry_run:
            for cell in board.cells():
                print(f"{cell.out}: python -m harness.run {' '.join(cell.argv)} --k-attack <k at density "
                      f"{board.attack_density(cell.attack)}>")
            return
        plans = run_board(board, args.executor, args.workers, args.ray_address, args.contexts)
        for plan in plans:
            print(f"{plan.cell.out}: {len(plan.rows)} rows")
        for line in accuracy_lines(board, plans):
            print(line)
        print(f"build the board: {build_command(board)}")

    return command("harness.board", body,
                   interrupted="interrupted: finished items are saved; rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
