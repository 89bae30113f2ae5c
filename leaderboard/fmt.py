"""How numbers are written in the Markdown and HTML tables, so both read the same."""

from __future__ import annotations

DASH = "—"


def rate(x) -> str:
    return DASH if x is None else f"{x:.3f}"


def proportion(entry: dict | None) -> str:
    """'0.250 [0.089, 0.532] (3/12)' for a stats.proportion entry; n/a for runs without outcome classes."""
    if entry is None:
        return "n/a"
    return f"{entry['rate']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}] ({entry['count']}/{entry['n']})"


def flip_rate(cell: dict) -> str:
    """'0.250 [0.089, 0.532] 3/12': flip rate, its interval, flips / n."""
    return f"{cell['flip_rate']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}] {cell['flips']}/{cell['n']}"


def split(cell: dict) -> str:
    """'2 / 1': strict flips / breakdowns (n/a for rows written before outcome classes)."""
    return "n/a" if cell["strict"] is None else f"{cell['strict']} / {cell['breakdown']}"


def natural(cell: dict) -> str:
    return f"{cell['natural_rate']:.3f} [{cell['natural_low']:.3f}, {cell['natural_high']:.3f}]"


def diff(cell: dict) -> float | None:
    return None if cell["paired"] is None else cell["paired"]["diff"]


def paired(cell: dict) -> str:
    """'+0.250 [0.05, 0.44], p = 0.039 (8:1, n 31)'; 'best' for the best entry, — without shared items."""
    if cell["rank"] == 1:
        return "best"
    c = cell["paired"]
    if c is None:
        return DASH
    return f"{c['diff']:+.3f} [{c['low']:+.2f}, {c['high']:+.2f}], p = {c['p_holm']:.2g} ({c['b10']}:{c['b01']}, n {c['n']})"


def steps(x) -> str:
    if x is None:
        return DASH
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def off_names(off: list[dict]) -> list[str]:
    """'model · method' of each entry not comparable at a density, with its settings where two
    entries of one model and method are listed (SnapKV with two windows)."""
    names = [(c["model"], c["method"]) for c in off]
    return [f"{c['model']} · {c['method']}" + (f" · {c['settings']}" if names.count((c["model"], c["method"])) > 1
                                                else "") for c in off]


def reach(cell: dict) -> str:
    return "no recorded density" if cell["density"] is None else f"reaches {cell['density']:.3f}"
