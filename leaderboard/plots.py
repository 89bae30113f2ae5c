"""plots/*.png: flip rate against k with Wilson 95% bands (matplotlib, Agg backend).

One figure with a line per entry (the whole leaderboard), and one figure per
model (its methods and attacks side by side). k is on a log2 axis because
sweeps double it. matplotlib is imported here only, so the rest of the
leaderboard stays quick to import.
"""

from __future__ import annotations

import re
from pathlib import Path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _figure(records: list[dict], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=120)
    cmap = plt.get_cmap("tab10" if len(records) <= 10 else "tab20")
    ks = sorted({e["k"] for r in records for e in r["k_sweep"]})
    for i, r in enumerate(records):
        sweep = r["k_sweep"]
        x = [e["k"] for e in sweep]
        color = cmap(i % cmap.N)
        ax.fill_between(x, [e["ci_low"] for e in sweep], [e["ci_high"] for e in sweep], color=color, alpha=0.15,
                        linewidth=0)
        ax.plot(x, [e["flip_rate"] for e in sweep], marker="o", color=color,
                label=f"#{r['rank']} {r['label']} (n={r['n']})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.minorticks_off()
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("k (key blocks kept per query block)")
    ax.set_ylabel("flip rate (Wilson 95% band)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=8, frameon=False,
              ncol=1 if len(records) <= 6 else 2)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def write_plots(records: list[dict], out_dir: Path) -> list[Path]:
    """Write plots/all_entries.png and plots/model_<name>.png; returns the written paths."""
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = [plot_dir / "all_entries.png"]
    _figure(records, "Flip rate against k, all entries", written[0])
    models: dict[str, list[dict]] = {}
    for r in records:
        models.setdefault(str(r["model"]), []).append(r)
    used = set()
    for model, group in models.items():
        name = _slug(model)
        while name in used:
            name += "_"
        used.add(name)
        path = plot_dir / f"model_{name}.png"
        _figure(group, f"Flip rate against k, {model}", path)
        written.append(path)
    return written
