"""What an entry's own page shows: everything the headline table leaves out.

The board's table keeps eight columns so that it reads at a glance; the Wilson
intervals, the yes->no / no->yes directions, full attention's margins, the attack's
per-draw rates, the contexts, the runs, the command that reproduces them and the list
of flipped items live here, one record per entry (leaderboard.json "entries").
"""

from __future__ import annotations

from harness.results.stats import summarize

from .boards import slug

# Manifest config fields that are not harness.run flags.
NOT_FLAGS = ("attack_params", "density")


def command(config: dict) -> str:
    """The `python -m harness.run` command of a run, rebuilt from its manifest config
    (one flag per recorded option; lists comma-separated, method settings as --method-opt)."""
    parts = ["python -m harness.run"]
    for key, value in config.items():
        if key in NOT_FLAGS or value is None or key == "method_options":
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(f"{flag} {str(value).lower()}")
        elif isinstance(value, list):
            parts.append(f"{flag} {','.join(map(str, value))}")
        else:
            parts.append(f"{flag} {value}")
    parts += [f"--method-opt {name}={value}" for name, value in sorted((config.get("method_options") or {}).items())]
    return " ".join(parts)


def flip_page_name(entry_slug: str, item_id: str, seed) -> str:
    return f"flips/{entry_slug}/{slug(f'{item_id}-seed{seed}')}.html"


def _flips(entry_slug: str, reads: dict[float, dict]) -> list[dict]:
    """Items flipped (attacked or natural) at some density, with the flip page when the row holds a picture."""
    out = []
    for density, read in reads.items():
        for (seed, item_id), item in (read.get("items") or {}).items():
            if not (item["flip"] or item["natural_flip"]):
                continue
            row, k = item["row"], str(item["k"])
            out.append({"item_id": item_id, "seed": seed, "density": density, "k": item["k"],
                        "cluster": item["cluster"], "answer": row.answer,
                        "class": ((row.outcomes or {}).get(k) or {}).get("class"),
                        "natural_class": ((row.natural_outcomes or {}).get(k) or {}).get("class"),
                        "page": flip_page_name(entry_slug, item_id, seed) if row.picture else None})
    return out


def entry_detail(pooled: dict, ident: dict, reads: dict[float, dict]) -> dict:
    """The record behind entries/<slug>.html."""
    counted = [] if pooled["_items"] is None else list(pooled["_items"].row)
    summary = summarize(counted, pooled["k_attack"], pooled["k_sweep"]) if counted else {}
    densities = []
    for density, read in reads.items():
        record = {"density": density, "comparable": read["comparable"], "achieved": read["density"]}
        if read["comparable"]:
            record.update(k_median=read["k_median"], adversarial=read["adversarial"], natural=read["natural"])
        densities.append(record)
    return {
        **ident, "page": f"entries/{ident['slug']}.html", "runs": pooled["runs"], "seeds": pooled["seeds"],
        "config": pooled["config"], "command": command(pooled["config"]),
        "n": pooled["n_attacked"], "n_items": pooled["n_items"], "n_skipped": pooled["n_skipped"],
        "contexts": len({item["cluster"] for read in reads.values() for item in (read.get("items") or {}).values()}),
        "k_attack": pooled["k_attack"], "k_sweep": pooled["per_k"], "natural_k_sweep": pooled["natural_per_k"],
        "density_per_k": {str(k): d for k, d in pooled["density_per_k"].items()},
        "attack_success_rate": pooled["attack_success_rate"], "n_success": pooled["n_success"],
        "median_steps_to_flip": pooled["median_steps_to_flip"],
        "draws": summary.get("draws"), "margins": summary.get("full_margin_of_counted"),
        "densities": densities, "flips": _flips(ident["slug"], reads),
    }

