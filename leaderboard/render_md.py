"""leaderboard.md: one Markdown table to paste into a paper or a README.

Rates are fractions with three decimals and Wilson 95% intervals in brackets;
the caption under the table says what every column means, so the table can be
read without this repository.
"""

from __future__ import annotations

from . import fmt

HEADER = ["Rank", "Model", "Method", "Attack", "Blocks (q×k)", "Dense layers", "Context tokens", "k", "Density",
          "Flip rate [95% CI]", "Flipped/n", "Strict flips [95% CI]", "Breakdowns [95% CI]", "Natural flip rate",
          "Natural strict / breakdown", "Attack success", "Median steps", "Paired: flip rate vs best comparable",
          "Flip rate by k"]
ALIGN = ["---:", "---", "---", "---", "---", "---:", "---:", "---:", "---:", "---", "---:", "---", "---", "---:",
         "---", "---:", "---:", "---", "---"]


def escape(text) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def cells(r: dict) -> list[str]:
    natural = f"{fmt.rate((r['natural_strict'] or {}).get('rate'))} / " \
              f"{fmt.rate((r['natural_breakdown'] or {}).get('rate'))}" if r["natural_strict"] else "n/a"
    return ["n.c." if r["rank"] is None else str(r["rank"]), escape(r["model"]), escape(r["method"]), escape(r["attack"]), fmt.blocks(r),
            str(r["dense_layers"]), str(r["context_tokens"]), fmt.DASH if r["ref_k"] is None else str(r["ref_k"]), fmt.rate(r["density"]),
            fmt.rate_ci(r), fmt.count(r["n_flipped"], r["n"]), fmt.proportion(r["strict"]),
            fmt.proportion(r["breakdown"]), fmt.rate(r["natural_flip_rate"]), natural,
            fmt.rate(r["attack_success_rate"]), fmt.steps(r["median_steps_to_flip"]), escape(fmt.paired(r)),
            fmt.sweep(r)]


def ref_k_phrase(board: dict) -> str:
    if board.get("ref_density") is not None:
        return (f"density {board['ref_density']} ± {board['density_tolerance']} (each item at the k nearest it; "
                "n.c.: not comparable there, not ranked)")
    return "each entry's attack k (k_attack)" if board["ref_k"] is None else f"k = {board['ref_k']} (equal k, not equal compute)"


def render(board: dict) -> str:
    records = board["entries"]
    lines = [f"# {board['title']}", "",
             f"Ranked by flip rate at {ref_k_phrase(board)}: lower is more robust (fewer answers flipped "
             "by the same attack budget).", "",
             "| " + " | ".join(HEADER) + " |", "|" + "|".join(ALIGN) + "|"]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in records]
    lines += [
        "",
        "*Flip*: full attention answers correctly and sparse attention at k does not (the correct answer is "
        "no longer the most probable of correct, wrong and neither), on the same prompt with the attack's "
        "adversarial tokens; every flip is a strict flip or a breakdown. *n*: items full attention answers "
        "correctly by the run's --full-margin without adversarial tokens (the others are skipped). *k*: the "
        "reference k (at a reference density: the median of the items' k). *Flip rate*: flipped/n, with a "
        "Wilson 95% interval. *Natural flip rate*: the same without adversarial tokens. *Attack success*: share of items "
        "where the attack found a flip at its own k (k_attack). *Median steps*: candidates/steps until the first "
        "flip, over successful items. *Flip rate by k*: k: flip rate over the k sweep. *Density*: mean kept / "
        "causal key blocks at the answer position at the items' k. *Strict flips*: the wrong answer is the most "
        "probable; *breakdowns*: neither answer is (docs/results-schema.md). *Paired*: difference in flip rate "
        "to the best-ranked entry measured on the same items (same model, suite, context and seeds), McNemar's "
        "exact p-value and the discordant items (flipped here only : there only); *not comparable* when no "
        "other entry shares the items. Overlapping intervals and p >= 0.05 mean the data do not separate "
        "the two entries.",
        "",
        f"Built by `python -m leaderboard build` from {sum(len(r['runs']) for r in records)} run(s) "
        f"on {board['generated']}.",
    ]
    return "\n".join(lines) + "\n"
