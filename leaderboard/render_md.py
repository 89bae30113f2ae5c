"""leaderboard.md: the boards as Markdown tables, ready for a paper or a README.

Eight columns per table, the same as the page; a caption defines them, so a table can be
read without this repository. Reference rows (null controls) follow the ranked rows.
"""

from __future__ import annotations

from . import fmt
from .render_html import board_title

HEADER = ["Rank", "Model", "Method", "Density", "Flip rate [95% CI] flips/n", "Strict / breakdown", "Natural",
          "Δ vs best (Holm p)"]
ALIGN = ["---", "---", "---", "---:", "---", "---:", "---", "---"]
ROLE = {"ranked": "", "null method": " (null)"}


def escape(text) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def cells(c: dict) -> list[str]:
    method = c["method"] + ROLE.get(c["role"], f" + {c['attack']} (null)")
    if c.get("show_settings"):
        method += f", {c['settings']}"
    return [c["band"] or "ref", escape(c["model"]), escape(method), fmt.rate(c["density"]),
            fmt.flip_rate(c), fmt.split(c), fmt.natural(c), escape(fmt.paired(c))]


def table(t: dict) -> list[str]:
    if t["note"]:
        return [f"*{t['note']}.*"]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(ALIGN) + "|"]
    lines += ["| " + " | ".join(cells(c)) + " |" for c in t["ranked"] + [r for r in t["references"] if r["comparable"]]]
    off = [c for c in t["not_comparable"] + t["references"] if not c["comparable"]]
    if off:
        lines += ["", "Not comparable here: " + ", ".join(
            f"{escape(name)} ({fmt.reach(c)})" for c, name in zip(off, fmt.off_names(off)))]
    return lines


def models_line(board: dict) -> str:
    parts = []
    for m in board["models"]:
        if m["accuracy"] is None:
            parts.append(f"{m['model']}: accuracy not measured")
        else:
            parts.append(("skipped " if not m["admitted"] else "") +
                         f"{m['model']}: full attention right on {m['correct']}/{m['n']} = {m['accuracy']:.0%}")
    return f"Models (bar {board['min_accuracy']:.0%}): " + "; ".join(parts) + "."


def render(site: dict) -> str:
    lines = [f"# {site['title']}", "",
             f"One board per suite and attack, entries ranked by flip rate (lower keeps more answers) at each "
             f"density ± {site['density_tolerance']}.", ""]
    for board in site["boards"]:
        lines += [f"## {board_title(board)}", "", models_line(board), ""]
        if board["settings"]:
            lines += [f"Every entry here: {board['settings']}.", ""]
        for t in board["tables"]:
            lines += [f"### Density {t['density']}", "", *table(t), ""]
    lines += [
        "*Rank*: entries whose cluster 95% intervals overlap the band leader's share its band (1-3); *ref*: a null "
        "control (methods drop-one, random, random-evict; attacks filler, far), shown for reference, never ranked. "
        "*Density*: mean kept / causal key blocks at the answer position, each item at the k nearest the board's "
        "density. *Flip*: full attention answers right and sparse attention does not (the correct answer is no "
        "longer the most probable of correct, wrong and neither); n counts the items full attention answers right. "
        "*Flip rate*: flips/n with a cluster-bootstrap 95% interval (contexts resampled). *Strict / breakdown*: "
        "flips that give the wrong answer / answer neither; they add up to the flips. *Natural*: the flip rate "
        "without adversarial tokens. *Δ vs best*: paired difference in flip rate to the best entry on the items "
        "both answered, cluster 95% interval, exact McNemar p Holm-adjusted over the table's comparisons, "
        "discordant items (here only : best only). Every other number is on the entry's page (index.html).",
        "",
        f"Built by `python -m leaderboard build` from {site['n_runs']} run(s) on {site['generated']}.",
    ]
    return "\n".join(lines) + "\n"
