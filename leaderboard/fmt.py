"""How numbers are written in the Markdown and HTML tables, so both read the same."""

from __future__ import annotations

DASH = "—"


def rate(x) -> str:
    return DASH if x is None else f"{x:.3f}"


def rate_ci(record: dict, prefix: str = "") -> str:
    """'0.250 [0.089, 0.532]' for flip_rate/ci_low/ci_high (or natural_* with prefix='natural_')."""
    x = record.get(prefix + "flip_rate")
    if x is None:
        return DASH
    return f"{x:.3f} [{record[prefix + 'ci_low']:.3f}, {record[prefix + 'ci_high']:.3f}]"


def proportion(entry: dict | None) -> str:
    """'0.250 [0.089, 0.532] (3/12)' for a stats.proportion entry; n/a for runs without outcome classes."""
    if entry is None:
        return "n/a"
    return f"{entry['rate']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}] ({entry['count']}/{entry['n']})"


def paired(record: dict, name: str = "flip") -> str:
    """'+0.250 vs <label> (p = 0.039, 1:8)', or 'not comparable' without an entry on the same items."""
    if record.get("paired") is None:
        return "not comparable"
    c = record["paired"][name]
    if c["diff"] is None:
        return "n/a"
    return f"{c['diff']:+.3f} vs {c['vs']} (p = {c['p']:.3g}, {c['b']}:{c['c']})"


def count(n_flipped, n) -> str:
    return DASH if n_flipped is None else f"{n_flipped}/{n}"


def steps(x) -> str:
    if x is None:
        return DASH
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def blocks(record: dict) -> str:
    return f"{record['block_q']}×{record['block_k']}"


def sweep(record: dict) -> str:
    """'2: 0.400, 4: 0.250, 8: 0.050' (flip rate at every k of the sweep)."""
    return ", ".join(f"{e['k']}: {e['flip_rate']:.3f}" for e in record["k_sweep"])
