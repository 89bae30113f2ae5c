"""`python -m harness.results.report RUN_DIR`: a run in the format of the seed paper's Table 1.

Vanilla probs: P(correct) under full attention without adversarial tokens.
Sparse probs: the same prompt under sparse attention at k_attack. Then, with the
adversarial tokens, P(correct) / P(wrong) at each k of the sweep (largest first);
a flip (full right, sparse wrong) is bold. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tasks.outcomes import BREAKDOWN, OTHER, OUTCOME_NAMES, STRICT

from harness.cli import command
from harness.errors import UsageError
from .schema import FULL, SKIPPED, ResultRow, RowError, read_rows


def _cell(score, flipped: bool) -> str:
    if score is None:
        return ""
    text = f"{score.p_correct:.3f} / {score.p_wrong:.3f}"
    if score.answer_class == OTHER:
        text += " (neither)"
    return f"**{text}**" if flipped else text


def _verdict(row: ResultRow) -> str:
    if not row.success:
        return "attack failed"
    parts = [row.verified_status or ("verified" if row.verified else "not verified")]
    if row.monotone is not None:
        parts.append("monotone" if row.monotone else "not monotone")
    cls = ((row.outcomes or {}).get(str(row.k_attack)) or {}).get("class")
    if cls in (STRICT, BREAKDOWN):
        parts.insert(0, OUTCOME_NAMES[cls])
    return ", ".join(parts)


def _escape(text: str | None) -> str:
    if text is None:
        return ""
    return repr(text)[1:-1].replace("|", "\\|").replace("`", "'")


def _needle_lines(rows: list[ResultRow], k: int) -> list[str]:
    """For needle items that flip at k: the sparse layers where no head kept the needle's blocks."""
    out = []
    for r in rows:
        if not r.needle or not r.needle.get("token_span") or not r.attribution:  # absent needles have no span
            continue
        for prompt, flags in (("natural", r.natural_flipped), ("adversarial", r.flipped)):
            record = r.attribution.get(prompt, {})
            if (flags or {}).get(str(k)) and str(k) in record:
                kept = record[str(k)]["needle_kept"]
                dropped = [layer for layer, share in zip(record["layers"], kept) if share == 0]
                out.append(f"- {_escape(r.question)} (depth {r.needle['depth']}, {prompt} flip at k={k}): needle "
                           f"dropped by every head in {len(dropped)} of {len(kept)} sparse layers"
                           + (f" ({', '.join(map(str, dropped))})" if dropped else ""))
    return ["", f"Needle items flipped at k={k}: where the needle's key blocks were dropped", ""] + out if out else []


def _natural_table(rows: list[ResultRow], cfg: dict) -> list[str]:
    """A run without an attack (`--attack none`): full attention and sparse attention on the clean
    prompt, one column per density of a `--density-sweep` run (each item at its own k) or per k,
    and each item's outcome at k_attack; no adversarial columns, no attack verdict."""
    sweep = cfg.get("density_sweep")
    columns = [(f"density {d}", lambda r, d=d: str((r.density_ks or {}).get(str(d)))) for d in sweep] if sweep \
        else [(f"k={k}", lambda r, k=k: str(k)) for k in sorted(cfg["k_sweep"], reverse=True)]
    header = ["Question", "Full attention"] + [name for name, _ in columns] + [f"Outcome (k={cfg['k_attack']})"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [_escape(r.question) + f" ({r.answer})", _cell(r.natural[FULL], False)]
        cells += [_cell(r.natural.get(key(r)), r.natural_flipped.get(key(r), False)) for _, key in columns]
        if r.status == SKIPPED:
            cells.append(f"skipped: {r.skip_reason}")
        else:
            cls = ((r.natural_outcomes or {}).get(str(r.k_attack)) or {}).get("class")
            cells.append(OUTCOME_NAMES.get(cls, "kept"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + ["", "Cells: P(correct) / P(wrong) of the answer token sets on the prompt without adversarial "
                    "tokens" + (", each item at the k giving that density" if sweep else "") + ". Bold marks a "
                    "flip (full attention right, sparse not: the correct answer is no longer the most probable "
                    "of correct, wrong and neither); (neither) marks a score whose most probable answer is "
                    "neither yes nor no. Outcome: kept, strict flip (the wrong answer is most probable) or "
                    "breakdown (neither is), as defined in docs/results-schema.md; strict + breakdown = flips."]


def _setup(cfg: dict, adv: str = "") -> str:
    """The run's set-up sentence, shared by natural and attacked reports (`adv`: the attack's
    insertion size, empty for natural runs)."""
    context = cfg["context"] if cfg["context"] == "none" else f"{cfg['context']} ({cfg['context_tokens']} tokens)"
    return (f"b_q={cfg['block_q']}, b_k={cfg['block_k']}, dense layers={cfg['dense_layers']}, {adv}"
            f"context={context}, seed={cfg['seed']}, suite={cfg['suite']}, full margin={cfg.get('full_margin', 0.0)}.")


def render(run_dir: Path) -> str:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    cfg = manifest["config"]
    read = read_rows(run_dir / "results.jsonl")
    if read.torn:
        print(f"harness.results.report: warning: {read.torn}", file=sys.stderr)
    if cfg["attack"] == "none":
        return "\n".join([f"Run `{run_dir}`: model `{cfg['model']}`, method `{cfg['method']}`, no attack, "
                          + _setup(cfg), ""] + _natural_table(read.rows, cfg)
                         + _needle_lines(read.rows, cfg["k_attack"]))
    k_attack = cfg["k_attack"]
    ks = sorted(cfg["k_sweep"], reverse=True)
    header = ["Question", "Vanilla probs", f"Sparse probs (k={k_attack})"]
    header += ["Full (adv)"] + [f"k={k}" + (" (attack)" if k == k_attack else "") for k in ks]
    header += ["Adv tokens", "Steps", "Outcome"]
    lines = [
        f"Run `{run_dir}`: model `{cfg['model']}`, method `{cfg['method']}`, attack `{cfg['attack']}`, "
        f"k_attack={k_attack}, " + _setup(cfg, f"n_adv={cfg['n_adv']}, "),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in read.rows:
        cells = [_escape(r.question) + f" ({r.answer})", f"{r.natural[FULL].p_correct:.3f}",
                 _cell(r.natural.get(str(k_attack)), r.natural_flipped.get(str(k_attack), False))]
        if r.status == SKIPPED:
            cells += [""] * (len(ks) + 1) + [f"skipped: {r.skip_reason}", "", ""]
        else:
            cells += [_cell(r.scores[FULL], False)]
            cells += [_cell(r.scores.get(str(k)), r.flipped.get(str(k), False)) for k in ks]
            cells += [f"`{_escape(r.adv_text)}`", str(r.steps), _verdict(r)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _needle_lines(read.rows, k_attack)
    lines.append("")
    lines.append("Vanilla: P(correct) under full attention without adversarial tokens. Other cells: "
                 "P(correct) / P(wrong) of the answer token sets; Full (adv) and k=... use the adversarial "
                 "tokens. Bold marks a flip (full attention right, sparse not: the correct answer is no longer "
                 "the most probable of correct, wrong and neither); a bold Sparse probs cell is a natural flip; "
                 "(neither) marks a score whose most probable answer is neither yes nor no. Outcome: strict "
                 "flip (the wrong answer is most probable) or breakdown (neither is), verified status and "
                 "monotonicity as defined in docs/results-schema.md; strict + breakdown = flips.")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.results.report", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)

    def body():
        try:
            print(render(args.run_dir))
        except FileNotFoundError as exc:
            raise UsageError(f"{args.run_dir} is not a run directory ({exc.filename} missing)") from None
        except (json.JSONDecodeError, KeyError, RowError) as exc:
            raise UsageError(f"{args.run_dir} has an unreadable result ({exc})") from None

    return command("harness.results.report", body)


if __name__ == "__main__":
    sys.exit(main())
