"""`python -m harness.results.compare RUN_A RUN_B [RUN_C ...] [--k K | --density D] [--json]`:
runs on the same items, each against the first, paired item by item.

An attack and its nulls (`filler`, `far`) run on the same items flip partly the same
items; comparing their rates' intervals ignores that pairing and the items sharing a
context (`row.needle["group"]`). Here rows are paired by item id (items counted in both
runs), rates get Wilson and cluster-bootstrap intervals, the difference first - other a
cluster-bootstrap interval, and McNemar's exact p is Holm-adjusted over the comparisons
of the call (harness.results.intervals). McNemar's test treats items as independent: with
needle groups, the cluster interval of the difference is the one to trust. Compared:
attack success by default, the flip at k with --k, or the flip at each item's k for a
density with --density.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.cli import command
from harness.errors import UsageError
from .intervals import cluster_bootstrap, cluster_of, holm, paired_difference, wilson
from .schema import ResultRow, RowError, read_rows


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _read_run(run_dir: Path) -> tuple[dict, list[ResultRow]]:
    """The manifest's config and the rows of a run directory, read as harness.results.report does."""
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a directory")
    try:
        config = json.loads((run_dir / "manifest.json").read_text())["config"]
        read = read_rows(run_dir / "results.jsonl")
    except FileNotFoundError as exc:
        raise UsageError(f"{run_dir} is not a run directory ({Path(exc.filename).name} missing)") from None
    except (json.JSONDecodeError, KeyError, RowError) as exc:
        raise UsageError(f"{run_dir} has an unreadable result ({exc})") from None
    if read.torn:
        print(f"harness.results.compare: warning: {run_dir}: {read.torn}", file=sys.stderr)
    return config, read.rows


def _measure(k: int | None, density: float | None):
    """(name, flag(row) -> bool | None): what is compared; None when an item has no flag for it."""
    if k is not None:
        return f"flip at k={k}", lambda r: None if str(k) not in (r.flipped or {}) else bool(r.flipped[str(k)])
    if density is not None:
        def at_density(r: ResultRow):
            item_k = (r.density_ks or {}).get(str(density))
            return None if item_k is None else bool((r.flipped or {}).get(str(item_k), False))
        return f"flip at density {density:g}", at_density
    return "attack success", lambda r: r.success


def _check_measure(run_dir: Path, config: dict, flags: dict, k: int | None, density: float | None) -> None:
    """An unknown k or density: no attacked row of the run records a flag for it."""
    if flags or (k is None and density is None):
        return
    if k is not None:
        raise UsageError(f"{run_dir} records no flip at k={k} (k_sweep {config.get('k_sweep')})")
    raise UsageError(f"{run_dir} records no k for density {density:g} (density_sweep {config.get('density_sweep')})")


def _rate(flags: list[bool], clusters: list[str], n_boot: int, seed: int) -> dict:
    low, high = wilson(sum(flags), len(flags))
    interval = cluster_bootstrap(flags, clusters, n_boot, seed)
    return {"rate": interval.rate, "count": sum(flags), "n": len(flags), "wilson_low": low, "wilson_high": high,
            "cluster_low": interval.low, "cluster_high": interval.high}


def compare_runs(run_dirs: list[Path], k: int | None = None, density: float | None = None,
                 n_boot: int = 2000, seed: int = 0, robust_only: bool = False) -> dict:
    """Every run after the first against the first on their common counted items (see the module
    doc); `robust_only` keeps the items whose clean prompt does not flip at the first run's
    k_attack, so an attack is not credited with flips sparsity makes without it."""
    if len(run_dirs) < 2:
        raise UsageError("give at least two run directories")
    if k is not None and density is not None:
        raise UsageError("give --k or --density, not both")
    name, flag = _measure(k, density)
    runs = []
    for run_dir in run_dirs:
        config, rows = _read_run(run_dir)
        flags = {r.item_id: (flag(r), cluster_of(r)) for r in rows if r.counted}
        flags = {item: v for item, v in flags.items() if v[0] is not None}
        _check_measure(run_dir, config, flags, k, density)
        runs.append({"run": str(run_dir), "attack": config.get("attack"), "flags": flags,
                     "fragile": {r.item_id for r in rows if (r.natural_flipped or {}).get(str(r.k_attack))}})
    first = runs[0]
    if robust_only:
        first["flags"] = {i: v for i, v in first["flags"].items() if i not in first["fragile"]}
    comparisons = []
    for other in runs[1:]:
        items = [item for item in first["flags"] if item in other["flags"]]
        if not items:
            raise UsageError(f"{first['run']} and {other['run']} have no counted item in common"
                             + ("" if k is None and density is None else f" with a {name}"))
        a = [first["flags"][i][0] for i in items]
        b = [other["flags"][i][0] for i in items]
        clusters = [first["flags"][i][1] for i in items]
        diff = paired_difference(a, b, clusters, n_boot, seed)
        comparisons.append({"run": other["run"], "attack": other["attack"], "n": diff.n, "clusters": diff.clusters,
                            "first": _rate(a, clusters, n_boot, seed), "other": _rate(b, clusters, n_boot, seed),
                            "diff": diff.diff, "diff_low": diff.low, "diff_high": diff.high,
                            "b10": diff.b10, "b01": diff.b01, "p": diff.p})
    for entry, adjusted in zip(comparisons, holm([c["p"] for c in comparisons])):
        entry["p_holm"] = adjusted
    return {"measure": name + (" (items not flipped without the attack)" if robust_only else ""),
            "first": {"run": first["run"], "attack": first["attack"]},
            "n_boot": n_boot, "seed": seed, "comparisons": comparisons}


def _ci(low: float, high: float) -> str:
    return f"[{low:.3f}, {high:.3f}]"


def _rate_cell(rate: dict) -> str:
    return (f"{rate['count']}/{rate['n']} = {rate['rate']:.3f} W{_ci(rate['wilson_low'], rate['wilson_high'])} "
            f"C{_ci(rate['cluster_low'], rate['cluster_high'])}")


def format_table(result: dict) -> str:
    """A plain-text table of `compare_runs`' result, one line per comparison."""
    first = result["first"]
    lines = [f"{result['measure']}: each run against {first['run']} (attack {first['attack']}), on the items "
             "counted in both",
             "W: Wilson 95%, C: cluster bootstrap 95% (clusters: needle groups, else items); diff = first - run; "
             "b10 = first only, b01 = run only; p: exact McNemar, Holm-adjusted over the comparisons",
             ""]
    header = ["run", "attack", "n", "clusters", "first", "run rate", "diff [C]", "b10:b01", "p", "p holm"]
    cells = [header]
    for c in result["comparisons"]:
        cells.append([c["run"], str(c["attack"]), str(c["n"]), str(c["clusters"]), _rate_cell(c["first"]),
                      _rate_cell(c["other"]), f"{c['diff']:+.3f} {_ci(c['diff_low'], c['diff_high'])}",
                      f"{c['b10']}:{c['b01']}", f"{c['p']:.4g}", f"{c['p_holm']:.4g}"])
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = _Parser(prog="python -m harness.results.compare",
                     description="Compare runs on the same items, each against the first, paired item by item.")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--k", type=int, help="compare the flip at this k of the sweep (default: attack success)")
    what.add_argument("--density", type=float, help="compare the flip at each item's k for this density")
    parser.add_argument("--robust-only", dest="robust_only", action="store_true",
                        help="only items whose clean prompt does not flip at the first run's k_attack")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def body():
        args = parser.parse_args(argv)
        result = compare_runs(args.runs, args.k, args.density, robust_only=args.robust_only)
        print(json.dumps(result, indent=2) if args.json else format_table(result))

    return command("harness.results.compare", body)


if __name__ == "__main__":
    sys.exit(main())
