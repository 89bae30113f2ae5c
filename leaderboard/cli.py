"""`python -m leaderboard build RUN_DIR_OR_GLOB... --out DIR`: read runs, build the boards, write every format.

User mistakes (no runs, conflicting runs, a malformed transfer file, a bad density, W&B
unreachable, unwritable --out) end with one line on stderr and exit status 2; unusable
runs are skipped with a warning that names them. Progress goes to stderr, so stdout
stays empty.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from harness.cli import command
from harness.results.board_rules import DEFAULT_DENSITIES

from .aggregate import at_density, entries
from .boards import MIN_ACCURACY, NULL_ATTACKS, build_boards, identities
from .errors import LeaderboardError
from .runs import load_runs

DEFAULT_TITLE = "flipbench boards: which sparse attention keeps its answers"
OUTPUTS = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "index.html")
# Compare at equal compute: DEFAULT_DENSITIES (harness.results.board_rules) of the causal key
# blocks at the answer, ± 0.025.
DEFAULT_TOLERANCE = 0.025


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise LeaderboardError(message)


def densities_arg(text: str) -> list[float]:
    """'0.05,0.1,0.2' -> [0.05, 0.1, 0.2]; each in (0, 1], no repeats."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise LeaderboardError(f"--densities expects comma-separated numbers in (0, 1], got {text!r}") from None
    bad = [v for v in values if not 0 < v <= 1]
    if bad or len(set(values)) != len(values):
        raise LeaderboardError(f"--densities expects distinct densities in (0, 1], got {text!r}")
    return sorted(values)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m leaderboard",
                     description="Boards of sparse attention methods: how often their yes/no answers flip.")
    sub = parser.add_subparsers(dest="command", metavar="build", required=True)
    b = sub.add_parser("build", help="build the boards from run directories and/or a W&B project",
                       description="One board per (suite, attack); entries (model x method x settings) ranked "
                       "by flip rate at each density; writes index.html, entries/, flips/, "
                       "leaderboard.md/.csv/.json and plots/*.png.")
    b.add_argument("runs", nargs="*", metavar="RUN_DIR_OR_GLOB",
                   help="run directories (written by harness.run), folders holding runs, or glob patterns")
    b.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory (created if missing)")
    b.add_argument("--densities", type=str, default=",".join(map(str, DEFAULT_DENSITIES)), metavar="D,D,...",
                   help="densities to compare at: kept / causal key blocks at the answer position "
                        f"(default {','.join(map(str, DEFAULT_DENSITIES))})")
    b.add_argument("--density-tolerance", dest="tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="T",
                   help=f"how far an item's achieved density may be from a board density (default {DEFAULT_TOLERANCE})")
    b.add_argument("--min-accuracy", dest="min_accuracy", type=float, default=MIN_ACCURACY, metavar="A",
                   help=f"share of a suite's items full attention must answer right for a model to enter its "
                        f"boards (default {MIN_ACCURACY})")
    b.add_argument("--title", default=DEFAULT_TITLE, metavar="TEXT", help="page and document title")
    b.add_argument("--from-wandb", dest="from_wandb", metavar="ENTITY/PROJECT", default=None,
                   help="also read finished runs of this W&B project (online; uses their summary counts)")
    return parser


def _log(message: str) -> None:
    print(f"leaderboard: {message}", file=sys.stderr, flush=True)


def _load(runs: list[str], from_wandb: str | None):
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
    return loaded


def _board_warnings(boards: list[dict], tolerance: float) -> list[str]:
    from .render_html import board_title

    out = []
    for board in boards:
        for m in board["models"]:
            if not m["admitted"]:
                out.append(f"{board_title(board)}: {m['model']} skipped, full attention right on only "
                           f"{m['correct']}/{m['n']} = {m['accuracy']:.0%} of the items (bar "
                           f"{board['min_accuracy']:.0%})")
        for table in board["tables"]:
            if table["note"]:
                out.append(f"{board_title(board)}: {table['note']}")
            for c in table["not_comparable"]:
                reached = "no recorded density" if c["density"] is None else f"its items reach {c['density']:.3f}"
                out.append(f"{board_title(board)}: {c['model']} · {c['method']} not comparable at density "
                           f"{table['density']} ± {tolerance} ({reached})")
    return list(dict.fromkeys(out))  # a board-wide note (no model passes the bar) once, not per density


def _write(site: dict, details: list[dict], flip_rows: dict, out: Path) -> list[Path]:
    from tqdm.auto import tqdm

    from harness.report import flip_page

    from . import plots, render_data, render_html, render_md

    out.mkdir(parents=True, exist_ok=True)
    written = plots.write_plots(site["boards"], out)
    (out / "leaderboard.md").write_text(render_md.render(site), encoding="utf-8")
    render_data.write_csv(site, out / "leaderboard.csv")
    render_data.write_json(site, out / "leaderboard.json")
    (out / "index.html").write_text(render_html.render_index(site), encoding="utf-8")
    written += [out / name for name in OUTPUTS]
    (out / "entries").mkdir(exist_ok=True)
    for detail in details:
        path = out / detail["page"]
        path.write_text(render_html.render_entry(detail, site["boards"]), encoding="utf-8")
        written.append(path)
    pages = tqdm(flip_rows.items(), desc="flip pages", unit="page", disable=None)  # a bar on a terminal only
    for name, (row, run, entry_slug) in pages:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(flip_page(row, run, back=f"../../entries/{entry_slug}.html"), encoding="utf-8")
        written.append(path)
    return written


def build(runs: list[str], out: Path, title: str = DEFAULT_TITLE, from_wandb: str | None = None,
          densities: list[float] = DEFAULT_DENSITIES, tolerance: float = DEFAULT_TOLERANCE,
          min_accuracy: float = MIN_ACCURACY) -> dict:
    """Read, build the boards and write; returns what leaderboard.json holds. Raises LeaderboardError."""
    from .entries import entry_detail, flip_page_name

    if not runs and not from_wandb:
        raise LeaderboardError("no runs given: name run directories or glob patterns, or --from-wandb ENTITY/PROJECT")
    if not 0 <= tolerance < 1:
        raise LeaderboardError(f"--density-tolerance must be in [0, 1), got {tolerance}")
    if not 0 <= min_accuracy <= 1:
        raise LeaderboardError(f"--min-accuracy must be in [0, 1], got {min_accuracy}")
    loaded = _load(runs, from_wandb)
    warnings: list[str] = []
    pooled = entries(loaded.runs, warnings)
    idents = identities(pooled)
    reads = {(i, d): at_density(p, d, tolerance) for i, p in enumerate(pooled) for d in densities}
    boards = build_boards(pooled, idents, reads, list(densities), tolerance, min_accuracy)
    _attach_transfer(boards, pooled, idents)
    warnings += _board_warnings(boards, tolerance)
    for message in warnings:
        _log(f"warning: {message}")
    details = [entry_detail(p, ident, {d: reads[(i, d)] for d in densities})
               for i, (p, ident) in enumerate(zip(pooled, idents))]
    flip_rows = {}
    for (i, _), read in reads.items():
        for (seed, item_id), item in (read.get("items") or {}).items():
            if item["row"].picture and (item["flip"] or item["natural_flip"]):
                flip_rows[flip_page_name(idents[i]["slug"], item_id, seed)] = (item["row"], item["run"],
                                                                              idents[i]["slug"])
    _log(f"{len(loaded.runs)} run(s) -> {len(pooled)} entr{'y' if len(pooled) == 1 else 'ies'} on "
         f"{len(boards)} board(s)" + (f", {len(loaded.skipped)} skipped" if loaded.skipped else ""))
    site = {
        "title": title,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "densities": list(densities),
        "density_tolerance": tolerance,
        "min_accuracy": min_accuracy,
        "n_runs": len(loaded.runs),
        "boards": boards,
        "entries": details,
        "skipped": [{"run": name, "reason": reason} for name, reason in loaded.skipped],
        "warnings": loaded.warnings + warnings,
    }
    try:
        written = _write(site, details, flip_rows, out)
    except OSError as exc:
        raise LeaderboardError(f"cannot write to {exc.filename or out}: {exc.strerror or exc}") from None
    _log(f"wrote {len(written)} files to {out}")
    return site


def _attach_transfer(boards: list[dict], pooled: list[dict], idents: list[dict]) -> None:
    """board["transfer"]: the matrix of the transfer.jsonl files of an attacked board's runs."""
    from .transfer import board_transfer

    by_slug = {ident["slug"]: (ident, p) for ident, p in zip(idents, pooled)}
    for board in boards:
        board["transfer"] = None
        if board["natural"]:
            continue
        members = [by_slug[s] for s in board["entries"]]
        rows = {row.item_id: row for _, p in members if p["_all"] is not None for row in p["_all"].row}
        runs = [(name, ident["attack"] if ident["attack"] in NULL_ATTACKS else None)
                for ident, p in members for name in p["runs"]]
        board["transfer"] = board_transfer(runs, rows)


def main(argv: list[str] | None = None) -> int:
    def body():
        args = build_parser().parse_args(argv)
        build(args.runs, args.out, title=args.title, from_wandb=args.from_wandb,
              densities=densities_arg(args.densities), tolerance=args.tolerance, min_accuracy=args.min_accuracy)

    return command("leaderboard", body, errors=(LeaderboardError,))
