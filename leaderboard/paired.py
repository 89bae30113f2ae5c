"""Paired comparisons of entries measured on the same items: McNemar's exact test.

Two sparse methods run on the same prompts give paired outcomes per item; their flip
rates' intervals can overlap while one method flips strictly more of the *same*
items. McNemar's exact test uses only the discordant items (b: flipped under A only,
c: under B only): under the null each is equally likely, so the two-sided p-value is
2 * P(Binomial(b + c, 1/2) <= min(b, c)), capped at 1. Entries are *comparable* when
they hold the same items (the same (seed, item id) pairs, all with rows) on the same
model, suite and context; otherwise nothing is claimed. The test itself is
`harness.results.intervals.mcnemar_exact`, shared with `harness.results.compare`.
"""

from __future__ import annotations

from harness.results.intervals import mcnemar_exact

# Config fields that must agree for two entries to share their prompts.
PROMPT_KEYS = ("model", "suite", "context", "context_tokens", "n_adv", "depth", "full_margin")


def _flags(record: dict, name: str) -> dict | None:
    items = record.get("_items")
    return None if items is None else {key: flags[name] for key, flags in items.items()}


def comparable(a: dict, b: dict) -> bool:
    if a.get("_items") is None or b.get("_items") is None or set(a["_items"]) != set(b["_items"]):
        return False
    return all(a["config"].get(k) == b["config"].get(k) for k in PROMPT_KEYS)


def compare(a: dict, b: dict, name: str) -> dict:
    """A against B on their common items: rate difference and McNemar p for outcome `name`."""
    fa, fb = _flags(a, name), _flags(b, name)
    known = [key for key in fa if fa[key] is not None and fb[key] is not None]
    only_a = sum(1 for key in known if fa[key] and not fb[key])
    only_b = sum(1 for key in known if fb[key] and not fa[key])
    n = len(known)
    diff = (sum(fa[k] for k in known) - sum(fb[k] for k in known)) / n if n else None
    return {"vs": b["label"], "diff": diff, "b": only_a, "c": only_b, "n": n, "p": mcnemar_exact(only_a, only_b)}


def add_paired(records: list[dict]) -> None:
    """Give every ranked record `paired`: its flip and strict-flip comparison with the best-ranked
    other comparable entry (None when no entry shares its items)."""
    for r in records:
        others = [o for o in records if o is not r and o["rank"] is not None and comparable(r, o)]
        if not others:
            r["paired"] = None
            continue
        best = min(others, key=lambda o: o["rank"])
        r["paired"] = {"flip": compare(r, best, "flip"), "strict": compare(r, best, "strict")}
