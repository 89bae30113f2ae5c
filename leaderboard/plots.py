"""plots/*.png: each board's flip rate against density, and its transfer matrix (matplotlib, Agg).

A curve per entry (method and settings) with its cluster-bootstrap band, at the achieved
density of each of the board's densities, in the style of KVPress's benchmark plots: the
question is how fast a method loses answers as it keeps less. One figure per model
that answers the suite (models are not compared on one axis: their items differ), null
controls dashed. matplotlib is imported here only, so the rest of the leaderboard stays
quick to import.
"""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve_points(board: dict, model: str) -> dict[str, list[dict]]:
    """{entry slug: comparable cells of `model`, in density order}."""
    lines: dict[str, list[dict]] = {}
    for table in board["tables"]:
        for cell in table["ranked"] + table["references"]:
            if cell["model"] == model and cell["comparable"]:
                lines.setdefault(cell["slug"], []).append(cell)
    return lines


def _curve(board: dict, model: str, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    cmap = plt.get_cmap("tab10")
    for i, (name, cells) in enumerate(sorted(curve_points(board, model).items())):
        color = cmap(i % cmap.N)
        x = [c["density"] for c in cells]
        null = cells[0]["role"] != "ranked"
        ax.fill_between(x, [c["low"] for c in cells], [c["high"] for c in cells], color=color, alpha=0.15,
                        linewidth=0)
        label = f"{cells[0]['method']}" + (f" ({cells[0]['attack']} null)" if cells[0]["role"] == "null attack"
                                           else " (null)" if null else "")
        ax.plot(x, [c["flip_rate"] for c in cells], marker="o", color=color, linestyle="--" if null else "-",
                label=f"{label}, n={cells[0]['n']}")
    ax.set_xlabel("density (kept / causal key blocks at the answer position)")
    ax.set_ylabel("flip rate (cluster 95% band)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(left=0)
    ax.set_title(f"{board['suite']} · {'natural' if board['natural'] else 'attack ' + board['attack']} · {model}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _heatmap(board: dict, path: Path) -> None:
    plt = _pyplot()
    transfer = board["transfer"]
    sources, targets = transfer["sources"], transfer["targets"]
    fig, ax = plt.subplots(figsize=(1.6 + 0.8 * len(targets), 1.2 + 0.7 * len(sources)), dpi=110)
    values = [[(transfer["cells"].get(s, {}).get(t) or {}).get("rate", float("nan")) for t in targets]
              for s in sources]
    image = ax.imshow(values, vmin=0, vmax=1, cmap="Reds")
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            cell = transfer["cells"].get(s, {}).get(t)
            if cell:
                ax.text(j, i, f"{cell['flips']}/{cell['n']}", ha="center", va="center", fontsize=9,
                        color="white" if cell["rate"] > 0.6 else "black")
    short = transfer["short"]
    ax.set_xticks(range(len(targets)), [short[t] for t in targets], rotation=30, ha="right")
    ax.set_yticks(range(len(sources)), [short[s] for s in sources])
    ax.set_xlabel("target (scored under)")
    ax.set_ylabel("source (attacked)")
    ax.set_title(f"transfer: {board['suite']} · {board['attack']}", fontsize=10)
    fig.colorbar(image, ax=ax, label="flip rate", shrink=0.8)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def write_plots(boards: list[dict], out_dir: Path) -> list[Path]:
    """plots/<board>_<model>.png per board and admitted model with a comparable point, and
    plots/<board>_transfer.png per board with a transfer matrix; sets board["plots"]."""
    from .boards import slug

    plot_dir = out_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    for old in plot_dir.glob("*.png"):  # our own plots of a previous build (a board may have gone)
        old.unlink()
    written = []
    for board in boards:
        board["plots"] = {"curves": [], "transfer": None}
        for model in [m["model"] for m in board["models"] if m["admitted"]]:
            if not curve_points(board, model):
                continue
            path = plot_dir / f"{board['slug']}_{slug(model)}.png"
            _curve(board, model, path)
            board["plots"]["curves"].append({"model": model, "path": f"plots/{path.name}"})
            written.append(path)
        if board.get("transfer"):
            path = plot_dir / f"{board['slug']}_transfer.png"
            _heatmap(board, path)
            board["plots"]["transfer"] = f"plots/{path.name}"
            written.append(path)
    return written
