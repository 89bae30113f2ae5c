"""`python -m leaderboard build RUN_DIR_OR_GLOB... --out DIR`: read runs, rank entries, write every format.

User mistakes (no runs, conflicting runs, W&B unreachable, unwritable --out)
end with one line on stderr and exit status 2; unusable runs are skipped with a
warning that names them. Progress goes to stderr, so stdout stays empty.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from harness.cli import command

from .aggregate import rank
from .errors import LeaderboardError
from .runs import load_runs

DEFAULT_TITLE = "Sparse attention robustness leaderboard"
OUTPUTS = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "index.html")
# Compare at equal compute: a tenth of the causal key blocks at the answer, ± 0.025.
DEFAULT_DENSITY = 0.1
DEFAULT_TOLERANCE = 0.025


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise LeaderboardError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m leaderboard",
                     description="Rank sparse attention methods by the flip rate an attack achieves against them.")
    sub = parser.add_subparsers(dest="command", metavar="build", required=True)
    b = sub.add_parser("build", help="build the leaderboard from run directories and/or a W&B project",
                       description="Group runs by (model, method, attack, block sizes, dense layers, context "
                       "tokens), pool runs of one entry, rank by flip rate at the reference k, and write "
                       "leaderboard.md/.csv/.json, index.html and plots/*.png.")
    b.add_argument("runs", nargs="*", metavar="RUN_DIR_OR_GLOB",
                   help="run directories (written by harness.run), folders holding runs, or glob patterns")
    b.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory (created if missing)")
    b.add_argument("--ref-density", dest="ref_density", type=float, default=None, metavar="D",
                   help=f"rank by flip rate at this density, kept / causal key blocks at the answer position "
                        f"(default {DEFAULT_DENSITY}); entries that cannot be read there are shown, not ranked")
    b.add_argument("--density-tolerance", dest="tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="T",
                   help=f"how far an item's achieved density may be from --ref-density (default {DEFAULT_TOLERANCE})")
    b.add_argument("--ref-k", dest="ref_k", type=int, default=None, metavar="K",
                   help="rank at equal k instead of equal density (not equal compute across methods)")
    b.add_argument("--title", default=DEFAULT_TITLE, metavar="TEXT", help=f"page and table title (default: {DEFAULT_TITLE!r})")
    b.add_argument("--from-wandb", dest="from_wandb", metavar="ENTITY/PROJECT", default=None,
                   help="also read finished runs of this W&B project (online; uses their summary counts)")
    return parser


def _log(message: str) -> None:
    print(f"leaderboard: {message}", file=sys.stderr, flush=True)


def _write_outputs(board: dict, out: Path) -> list[Path]:
    from . import plots, render_data, render_html, render_md

    out.mkdir(parents=True, exist_ok=True)
    (out / "leaderboard.md").write_text(render_md.render(board), encoding="utf-8")
    render_data.write_csv(board["entries"], out / "leaderboard.csv")
    render_data.write_json(board, out / "leaderboard.json")
    (out / "index.html").write_text(render_html.render(board), encoding="utf-8")
    plot_dir = out / "plots"
    if plot_dir.is_dir():  # drop our own plots of a previous build (a model may have gone)
        for old in list(plot_dir.glob("model_*.png")) + list(plot_dir.glob("all_entries.png")):
            old.unlink()
    return [out / name for name in OUTPUTS] + plots.write_plots(board["entries"], out)


def build(runs: list[str], out: Path, ref_k: int | None = None, title: str = DEFAULT_TITLE,
          from_wandb: str | None = None, ref_density: float | None = None,
          tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Read, rank and write; returns the board (what leaderboard.json holds). Raises LeaderboardError.

    Entries are ranked at `ref_density` (default DEFAULT_DENSITY), or at `ref_k` when that is given instead."""
    if not runs and not from_wandb:
        raise LeaderboardError("no runs given: name run directories or glob patterns, or --from-wandb ENTITY/PROJECT")
    if ref_k is not None and ref_k < 1:
        raise LeaderboardError(f"--ref-k must be a positive integer, got {ref_k}")
    if ref_k is not None and ref_density is not None:
        raise LeaderboardError("give --ref-density or --ref-k, not both")
    if ref_k is None and ref_density is None:
        ref_density = DEFAULT_DENSITY
    if ref_density is not None and not 0 < ref_density <= 1:
        raise LeaderboardError(f"--ref-density must be in (0, 1], got {ref_density}")
    if not 0 <= tolerance < 1:
        raise LeaderboardError(f"--density-tolerance must be in [0, 1), got {tolerance}")
    if from_wandb:
        from .wandb_source import check_project

        check_project(from_wandb)  # fail on a malformed name before reading anything
    loaded = load_runs(runs)
    if from_wandb:
        from .wandb_source import load_wandb

        _log(f"reading W&B project {from_wandb} ...")
        remote = load_wandb(from_wandb)
        loaded.runs += remote.runs
        loaded.skipped += remote.skipped
        loaded.warnings += remote.warnings
    for message in loaded.warnings:
        _log(f"warning: {message}")
    for name, reason in loaded.skipped:
        _log(f"warning: skipped {name}: {reason}")
    if not loaded.runs:
        if loaded.skipped:
            raise LeaderboardError(f"no usable runs: all {len(loaded.skipped)} run(s) found were skipped "
                                   "(see the warnings above)")
        raise LeaderboardError(f"no runs found in {' '.join(runs) or 'the W&B project'}")
    warnings: list[str] = []
    records = rank(loaded.runs, ref_k, warnings, ref_density, tolerance)
    for message in warnings:
        _log(f"warning: {message}")
    _log(f"{len(loaded.runs)} run(s) -> {len(records)} entr{'y' if len(records) == 1 else 'ies'}"
         + (f", {len(loaded.skipped)} skipped" if loaded.skipped else ""))
    board = {
        "title": title,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ref_k": ref_k,
        "ref_density": ref_density,
        "density_tolerance": tolerance if ref_density is not None else None,
        "ranking": ("ascending flip rate at ref_density (each item at the k nearest it; entries off it by more "
                    "than density_tolerance are not comparable and not ranked)" if ref_density is not None else
                    "ascending flip rate at ref_k (null: each entry's k_attack); lower is more robust"),
        "entries": records,
        "skipped": [{"run": name, "reason": reason} for name, reason in loaded.skipped],
        "warnings": loaded.warnings + warnings,
    }
    try:
        written = _write_outputs(board, out)
    except OSError as exc:
        raise LeaderboardError(f"cannot write to {exc.filename or out}: {exc.strerror or exc}") from None
    for path in written:
        _log(f"wrote {path}")
    return board


def main(argv: list[str] | None = None) -> int:
    def body():
        args = build_parser().parse_args(argv)
        build(args.runs, args.out, ref_k=args.ref_k, title=args.title, from_wandb=args.from_wandb,
              ref_density=args.ref_density, tolerance=args.tolerance)

    return command("leaderboard", body, errors=(LeaderboardError,))
