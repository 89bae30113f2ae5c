"""`python -m harness.report RUN [--item ID --html [--out FILE]]`: a run's report, or the picture of one flip.

Without --item it prints the run's summary table (`harness.results.report`). With --item
and --html it writes one self-contained page for that item: the prompt's tokens coloured
by the share of (sparse layer, head) pairs that keep each token's key for the answer
position, the needle and the adversarial tokens marked, P(yes) / P(no) under full and
sparse attention, the attention mass each sparse layer drops at the answer position, and
one head's block selection (query block x key block). The numbers come from the row's
`picture` (harness.pictures, written for flipped items) and `attribution`; the
leaderboard links the same page from an entry's page. No torch: the page only reads rows.
"""

from __future__ import annotations

import argparse
import difflib
import html
import sys
from pathlib import Path

from tasks.outcomes import FULL

from harness.cli import command
from harness.errors import UsageError
from harness.results import ResultRow, RowError, read_rows
from harness.results import report as run_report

E = html.escape

STYLE = """
body { font: 14px/1.45 system-ui, "DejaVu Sans", sans-serif; color: #1d232b; margin: 24px; max-width: 1200px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 20px 0 6px; }
p.lede, .muted { color: #5b6673; }
table { border-collapse: collapse; } th, td { padding: 4px 10px; border-bottom: 1px solid #d9dee5; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.tokens { font: 12.5px/1.9 ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap; word-break: break-all;
          border: 1px solid #d9dee5; padding: 8px; border-radius: 4px; }
.tok { border-radius: 2px; }
.tok.needle { outline: 2px solid #15803d; } .tok.adv { outline: 2px solid #b91c1c; }
.tok.answer { outline: 2px dashed #1d4ed8; }
.legend span { display: inline-block; padding: 0 6px; margin-right: 8px; }
svg text { font-size: 10px; fill: #5b6673; }
"""


def _span(values) -> range:
    return range(values[0], values[1]) if values else range(0)


def _colour(share: float) -> str:
    """White (no pair keeps the key) to blue (every pair keeps it)."""
    return f"rgba(37, 99, 235, {0.08 + 0.72 * share:.2f})" if share > 0 else "transparent"


def _tokens(picture: dict, k: str) -> str:
    kept = picture["kept"][k]
    needle, adversarial = _span(picture.get("needle_span")), _span(picture.get("adversarial_span"))
    last = len(picture["tokens"]) - 1
    out = []
    for i, token in enumerate(picture["tokens"]):
        classes = ["tok"] + (["needle"] if i in needle else []) + (["adv"] if i in adversarial else []) \
            + (["answer"] if i == last else [])
        out.append(f'<span class="{" ".join(classes)}" style="background:{_colour(kept[i])}" '
                   f'title="token {i}: kept by {kept[i]:.0%} of (layer, head) pairs">{E(token)}</span>')
    return f'<div class="tokens" data-k="{E(k)}">{"".join(out)}</div>'


def _p_yes_no(score, answer: str) -> tuple[float, float]:
    return (score.p_correct, score.p_wrong) if answer == "yes" else (score.p_wrong, score.p_correct)


def _scores_table(row: ResultRow, prompt: str) -> str:
    scores = (row.scores if prompt == "adversarial" else row.natural) or {}
    outcomes = (row.outcomes if prompt == "adversarial" else row.natural_outcomes) or {}
    lines = ["<table><thead><tr><th>attention</th><th>P(yes)</th><th>P(no)</th><th>outcome</th></tr></thead><tbody>"]
    for mode in sorted(scores, key=lambda m: (m != FULL, int(m) if m.isdigit() else 0)):
        p_yes, p_no = _p_yes_no(scores[mode], row.answer)
        name = "full" if mode == FULL else f"sparse, k = {mode}" + (
            f" (density {row.density[mode]:.3f})" if row.density and mode in row.density else "")
        outcome = "right" if mode == FULL and scores[mode].correct else (outcomes.get(mode) or {}).get("class", "")
        lines.append(f'<tr><td>{E(name)}</td><td class="num">{p_yes:.3f}</td><td class="num">{p_no:.3f}</td>'
                     f"<td>{E(str(outcome or ''))}</td></tr>")
    return "".join(lines) + "</tbody></table>"


def _dropped_mass(row: ResultRow, prompt: str, k: str) -> str:
    """Bars: the share of the answer position's attention each sparse layer drops at k."""
    record = (row.attribution or {}).get(prompt) or {}
    if k not in record:
        return '<p class="muted">No attribution recorded at this k.</p>'
    layers, mass = record["layers"], record[k]["dropped_mass"]
    width, bar = 560, 14
    parts = [f'<svg class="dropped" width="{width}" height="{bar * len(layers) + 20}" role="img" '
             f'aria-label="dropped attention mass per layer at k = {E(k)}">']
    for i, (layer, value) in enumerate(zip(layers, mass)):
        y = 4 + i * bar
        parts.append(f'<text x="52" y="{y + 10}" text-anchor="end">layer {layer}</text>'
                     f'<rect x="58" y="{y}" width="{value * (width - 110):.1f}" height="{bar - 3}" fill="#c2410c">'
                     f"<title>layer {layer}: {value:.3f} of the attention mass dropped</title></rect>"
                     f'<text x="{62 + value * (width - 110):.1f}" y="{y + 10}">{value:.2f}</text>')
    return "".join(parts) + "</svg>"


def _selection(selection: dict) -> str:
    """The seed paper's Figure 2: one head's kept key blocks (columns) for each query block (rows)."""
    blocks = selection["blocks"]
    cell = max(3, min(12, 480 // max(1, len(blocks))))
    size = cell * len(blocks)
    parts = [f'<svg class="selection" width="{size + 40}" height="{size + 30}" role="img" '
             f'aria-label="block selection of layer {selection["layer"]} head {selection["head"]}">'
             f'<text x="0" y="{size + 24}">query block ↓ · key block →</text>']
    for q, row in enumerate(blocks):
        for kb, kept in enumerate(row):
            if kb > q:
                continue
            parts.append(f'<rect x="{kb * cell}" y="{q * cell}" width="{cell - 1}" height="{cell - 1}" '
                         f'fill="{"#1d4ed8" if kept else "#e5e9f0"}"/>')
    return "".join(parts) + "</svg>"


def flip_page(row: ResultRow, run: str, back: str | None = None) -> str:
    """The page of one item whose row holds a `picture`."""
    picture = row.picture
    prompt = picture["prompt"]
    ks = list(picture["kept"])
    sections = []
    for k in ks:
        sections.append(f'<h2>Tokens kept at k = {E(k)}</h2>{_tokens(picture, k)}'
                        f"<h2>Attention mass dropped at the answer position, k = {E(k)}</h2>"
                        f"{_dropped_mass(row, prompt, k)}")
    selection = picture.get("selection")
    if selection:
        sections.append(f'<h2>Block selection: layer {selection["layer"]}, head {selection["head"]}, '
                        f'k = {E(str(selection["k"]))}</h2>{_selection(selection)}')
    link = f'<p><a href="{E(back)}">← entry</a></p>' if back else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>flip {E(row.item_id)}</title><style>{STYLE}</style></head><body>{link}"
        f"<h1>{E(row.item_id)}: {E(row.question)}</h1>"
        f'<p class="lede">Gold answer <strong>{E(row.answer)}</strong>; {E(prompt)} prompt'
        f'{": adversarial tokens " + E(repr(row.adv_text)) if row.adv_text else ""}; run {E(run)}.</p>'
        '<p class="legend"><span class="tok needle">needle</span><span class="tok adv">adversarial tokens</span>'
        '<span class="tok answer">answer position</span><span style="background:rgba(37,99,235,0.8);color:#fff">'
        "key kept by every (sparse layer, head)</span><span>not kept</span></p>"
        f"<h2>Answer probabilities ({E(prompt)} prompt)</h2>{_scores_table(row, prompt)}"
        f'{"".join(sections)}</body></html>\n'
    )


def item_row(run_dir: Path, item_id: str) -> ResultRow:
    """The row of `item_id` in a run; UsageError when the run or the item is missing or has no picture."""
    try:
        rows = read_rows(run_dir / "results.jsonl").rows
    except FileNotFoundError:
        raise UsageError(f"{run_dir} is not a run directory (no results.jsonl)") from None
    except RowError as exc:
        raise UsageError(f"{run_dir} has an unreadable result ({exc})") from None
    row = next((r for r in rows if r.item_id == item_id), None)
    if row is None:
        close = difflib.get_close_matches(item_id, [r.item_id for r in rows], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"{run_dir} has no item {item_id!r}{hint} {_pictured(rows)}")
    if not row.picture:
        raise UsageError(f"item {item_id!r} of {run_dir} has no picture (pictures are recorded for flipped items "
                         f"by runs of this release); {_pictured(rows)}")
    return row


def _pictured(rows: list[ResultRow]) -> str:
    """Which items of a run have a flip page, so a user who guessed an id can pick one."""
    ids = [r.item_id for r in rows if r.picture]
    if not ids:
        return "(none of its items has a picture)"
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    return f"(items with a picture: {', '.join(ids[:3])}{more})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--item", metavar="ID", help="the item whose flip page to write")
    parser.add_argument("--html", action="store_true", help="write the item's flip page as HTML")
    parser.add_argument("--out", type=Path, metavar="FILE", help="where to write the page (default: stdout)")
    args = parser.parse_args(argv)

    def body():
        if args.item is None:
            if args.html or args.out:
                raise UsageError("--html and --out need --item ID")
            return run_report.main([str(args.run_dir)])
        if not args.html:
            raise UsageError("--item needs --html (the flip page is HTML)")
        page = flip_page(item_row(args.run_dir, args.item), str(args.run_dir))
        if args.out is None:
            sys.stdout.write(page)
        else:
            try:
                args.out.write_text(page, encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None

    return command("harness.report", body)


if __name__ == "__main__":
    sys.exit(main())
