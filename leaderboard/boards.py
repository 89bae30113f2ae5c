"""Boards: one ranking per (suite, attack) at each density, with rank bands and null rows.

Flip rates of different suites, or of attacked and unattacked prompts, answer different
questions, so one list mixing them ranks nothing. A board holds the entries (model x
method x settings) of one suite under one attack ("natural": attack none) and ranks them
at each of its densities (equal compute). Its intervals are cluster-bootstrap intervals
(items sharing a context move together); an entry whose interval overlaps the best
entry's shares its rank band ("1-3"), since the data do not order them. Every other
entry carries its paired difference to the best on the items both answered, with
McNemar's exact p, Holm-adjusted over the comparisons of that table.

Null controls say what chance does at the same budget: the methods drop-one, random and
random-evict, and the attacks filler and far (random tokens in place of a searched
attack). They are reference rows below the ranking, never ranked; an attack null sits
on every attacked board of its suite. A model enters a suite's boards only when full
attention answers at least `min_accuracy` of the suite's items: below that the
benchmark would measure a model that does not know the answers.
"""

from __future__ import annotations

import re

from harness.results import with_added_defaults
from harness.results.board_rules import MIN_ACCURACY
from harness.results.intervals import holm, paired_difference
from tasks.outcomes import FULL

from .aggregate import RESERVATION_KEYS, at_density

NULL_METHODS = ("drop-one", "random", "random-evict")
NULL_ATTACKS = ("filler", "far")
NATURAL = "none"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def settings_text(config: dict) -> str:
    """The entry's settings besides model and method: block sizes, dense layers, context, reserved blocks, options."""
    config = with_added_defaults(config)
    parts = [f"b{config['block_q']}×{config['block_k']}", f"dense {config['dense_layers']}",
             f"ctx {config['context_tokens']}"]
    parts += [f"{k.split('_')[0]} {config[k]}" for k in RESERVATION_KEYS if config[k]]
    parts += [f"{name} {value}" for name, value in sorted(config["method_options"].items())]
    return " · ".join(parts)


def role_of(config: dict) -> str:
    if config["attack"] in NULL_ATTACKS:
        return "null attack"
    return "null method" if config["method"] in NULL_METHODS else "ranked"


def identities(pooled: list[dict]) -> list[dict]:
    """Who each entry is, with a unique slug for its page."""
    out, used = [], set()
    for p in pooled:
        config = p["config"]
        settings = settings_text(config)
        name = slug(f"{config.get('suite')}-{config['attack']}-{config['model']}-{config['method']}-{settings}")
        while name in used:
            name += "_"
        used.add(name)
        out.append({"slug": name, "model": str(config["model"]), "method": str(config["method"]),
                    "settings": settings, "suite": config.get("suite"), "attack": config["attack"],
                    "role": role_of(config)})
    return out


def model_accuracy(pooled: list[dict]) -> dict[tuple, dict]:
    """{(suite, model): accuracy record}: the share of the suite's items whose natural
    full-attention class is correct, over every run of that model on the suite (an item
    once). Entries read from W&B (no rows) do not measure it."""
    seen: dict[tuple, dict[str, bool]] = {}
    for p in pooled:
        if p["_all"] is None:
            continue
        key = (p["config"].get("suite"), str(p["config"]["model"]))
        items = seen.setdefault(key, {})
        for row in p["_all"].row:
            full = (row.natural or {}).get(FULL)
            if full is not None:
                items.setdefault(row.item_id, full.correct)
    return {key: {"n": len(items), "correct": sum(items.values()),
                  "accuracy": sum(items.values()) / len(items) if items else None} for key, items in seen.items()}


def _cell(ident: dict, read: dict) -> dict:
    """One entry at one density: what the headline table and the curves show."""
    cell = {**ident, "comparable": read["comparable"], "density": read["density"], "rank": None, "band": None,
            "paired": None}
    if not read["comparable"]:
        return cell
    adv, nat = read["adversarial"], read["natural"]
    clustered = read["items"] is not None
    cell.update({
        "k_median": read["k_median"], "n": adv["n"], "flips": adv["n_flipped"], "flip_rate": adv["flip_rate"],
        "low": adv["cluster_low"] if clustered else adv["ci_low"],
        "high": adv["cluster_high"] if clustered else adv["ci_high"],
        "interval": "cluster" if clustered else "wilson", "clusters": adv.get("clusters"),
        "strict": adv["strict"]["count"] if "strict" in adv else None,
        "breakdown": adv["breakdown"]["count"] if "breakdown" in adv else None,
        "natural_flips": nat["n_flipped"], "natural_rate": nat["flip_rate"],
        "natural_low": nat["cluster_low"] if clustered else nat["ci_low"],
        "natural_high": nat["cluster_high"] if clustered else nat["ci_high"],
    })
    return cell


def _sort_key(cell: dict) -> tuple:
    return (cell["flip_rate"], cell["high"], -cell["n"], cell["model"], cell["method"], cell["settings"])


def _overlap(a: dict, b: dict) -> bool:
    return a["low"] <= b["high"] and b["low"] <= a["high"]


def assign_bands(ranked: list[dict]) -> None:
    """Rank 1..n in order; a band is a leader and the entries right after it whose intervals
    overlap the leader's (the first band: every entry the data do not separate from the best)."""
    i = 0
    while i < len(ranked):
        j = i + 1
        while j < len(ranked) and _overlap(ranked[i], ranked[j]):
            j += 1
        band = str(i + 1) if j == i + 1 else f"{i + 1}-{j}"
        for position in range(i, j):
            ranked[position]["rank"], ranked[position]["band"] = position + 1, band
        i = j


def _paired(items: dict, best_items: dict, best: dict) -> dict | None:
    """Flip rate here minus the best's on the items both answered (paired, clustered by context)."""
    common = sorted(set(items) & set(best_items), key=str)
    if not common:
        return None
    diff = paired_difference([items[key]["flip"] for key in common], [best_items[key]["flip"] for key in common],
                             [items[key]["cluster"] for key in common])
    return {"vs": best["slug"], "vs_label": f"{best['model']} · {best['method']}", **diff.to_dict()}


def _table(members: list[tuple[dict, dict]], density: float, tolerance: float) -> dict:
    """The ranking at one density: ranked rows, reference (null) rows, entries not comparable there."""
    cells = [(_cell(ident, read), read) for ident, read in members]
    ranked = [(c, r) for c, r in cells if c["role"] == "ranked" and c["comparable"] and c["n"] > 0]
    ranked.sort(key=lambda cr: _sort_key(cr[0]))
    references = [c for c, _ in cells if c["role"] != "ranked"]
    not_comparable = [c for c, _ in cells if c["role"] == "ranked" and not (c["comparable"] and c["n"] > 0)]
    assign_bands([c for c, _ in ranked])
    if ranked and ranked[0][1]["items"] is not None:
        best, best_read = ranked[0]
        compared = [(c, r) for c, r in ranked[1:]] + [(c, r) for c, r in cells if c["role"] != "ranked"]
        for c, r in compared:
            if c["comparable"] and r["items"] is not None:
                c["paired"] = _paired(r["items"], best_read["items"], best)
        with_p = [c for c, _ in compared if c["paired"] is not None]
        for c, p in zip(with_p, holm([c["paired"]["p"] for c in with_p])):
            c["paired"]["p_holm"] = p
    note = None
    if not any(c["comparable"] for c, _ in cells):
        reached = sorted((abs(c["density"] - density), c["density"], c["method"]) for c, _ in cells
                         if c["density"] is not None)
        closest = f" (closest: {reached[0][2]} at {reached[0][1]:.3f})" if reached else ""
        note = f"no entry reaches density {density} ± {tolerance}{closest}"
    return {"density": density, "ranked": [c for c, _ in ranked], "references": references,
            "not_comparable": not_comparable, "note": note}


def board_members(idents: list[dict]) -> dict[tuple, list[int]]:
    """{(suite, attack): entry indices}; attack nulls join every attacked board of their suite
    (or a board of their own when the suite has none)."""
    boards: dict[tuple, list[int]] = {}
    for i, ident in enumerate(idents):
        if ident["attack"] not in NULL_ATTACKS:
            boards.setdefault((ident["suite"], ident["attack"]), []).append(i)
    hosts = list(boards)
    for i, ident in enumerate(idents):
        if ident["attack"] in NULL_ATTACKS:
            mine = [key for key in hosts if key[0] == ident["suite"] and key[1] != NATURAL]
            for key in mine or [(ident["suite"], ident["attack"])]:
                boards.setdefault(key, []).append(i)
    return dict(sorted(boards.items(), key=lambda kv: (str(kv[0][0]), kv[0][1] != NATURAL, kv[0][1])))


def build_boards(pooled: list[dict], idents: list[dict], reads: dict[tuple, dict], densities: list[float],
                 tolerance: float, min_accuracy: float = MIN_ACCURACY) -> list[dict]:
    """Every board; `reads[(entry index, density)]` is `aggregate.at_density` of that entry."""
    accuracy = model_accuracy(pooled)
    boards = []
    for (suite, attack), indices in board_members(idents).items():
        models = []
        for model in sorted({idents[i]["model"] for i in indices}):
            acc = accuracy.get((suite, model), {"n": 0, "correct": 0, "accuracy": None})
            models.append({"model": model, **acc, "admitted": acc["accuracy"] is None or acc["accuracy"] >= min_accuracy})
        admitted = {m["model"] for m in models if m["admitted"]}
        members = [i for i in indices if idents[i]["model"] in admitted]
        tables = [_table([(idents[i], reads[(i, d)]) for i in members], d, tolerance) for d in densities]
        if indices and not members:  # "no entry reaches density d" would blame the density
            for table in tables:
                table["note"] = f"no model passes the {min_accuracy:.0%} bar on this suite: nothing to rank"
        shared = {idents[i]["settings"] for i in members}
        for table in tables:
            for cell in table["ranked"] + table["references"] + table["not_comparable"]:
                cell["show_settings"] = len(shared) > 1
        boards.append({"slug": slug(f"{suite}-{attack}"), "suite": suite, "attack": attack,
                       "natural": attack == NATURAL, "min_accuracy": min_accuracy, "models": models,
                       "settings": shared.pop() if len(shared) == 1 else None,
                       "entries": [idents[i]["slug"] for i in members], "tables": tables})
    return boards
