"""leaderboard.md: one Markdown table to paste into a paper or a README.

Rates are fractions with three decimals and Wilson 95% intervals in brackets;
the caption under the table says what every column means, so the table can be
read without this repository.
"""

from __future__ import annotations

from . import fmt

HEADER = ["Rank", "Model", "Method", "Attack", "Blocks (q×k)", "Dense layers", "Context tokens", "k",
          "Flip rate [95% CI]", "Flipped/n", "Natural flip rate", "Attack success", "Median steps",
          "Flip rate by k"]
ALIGN = ["---:", "---", "---", "---", "---", "---:", "---:", "---:", "---", "---:", "---:", "---:", "---:", "---"]


def escape(text) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def cells(r: dict) -> list[str]:
    return [str(r["rank"]), escape(r["model"]), escape(r["method"]), escape(r["attack"]), fmt.blocks(r),
            str(r["dense_layers"]), str(r["context_tokens"]), str(r["ref_k"]), fmt.rate_ci(r),
            fmt.count(r["n_flipped"], r["n"]), fmt.rate(r["natural_flip_rate"]), fmt.rate(r["attack_success_rate"]),
            fmt.steps(r["median_steps_to_flip"]), fmt.sweep(r)]


def ref_k_phrase(board: dict) -> str:
    return "each entry's attack k (k_attack)" if board["ref_k"] is None else f"k = {board['ref_k']}"


def render(board: dict) -> str:
    records = board["entries"]
    lines = [f"# {board['title']}", "",
             f"Ranked by flip rate at {ref_k_phrase(board)}: lower is more robust (fewer answers flipped "
             "by the same attack budget).", "",
             "| " + " | ".join(HEADER) + " |", "|" + "|".join(ALIGN) + "|"]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in records]
    lines += [
        "",
        "*Flip*: full attention answers correctly and sparse attention at k answers wrongly, on the same "
        "prompt with the attack's adversarial tokens. *n*: items full attention answers correctly without "
        "adversarial tokens (the others are skipped). *Flip rate*: flipped/n at the k column, with a Wilson 95% "
        "interval. *Natural flip rate*: the same without adversarial tokens. *Attack success*: share of items "
        "where the attack found a flip at its own k (k_attack). *Median steps*: candidates/steps until the first "
        "flip, over successful items. *Flip rate by k*: k: flip rate over the k sweep.",
        "",
        f"Built by `python -m leaderboard build` from {sum(len(r['runs']) for r in records)} run(s) "
        f"on {board['generated']}.",
    ]
    return "\n".join(lines) + "\n"
