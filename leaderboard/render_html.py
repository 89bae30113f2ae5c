"""index.html: the leaderboard as one self-contained page.

No network: styles, the sorting script, the data (as JSON) and one flip-rate-
against-k plot per entry (inline SVG drawn here, no matplotlib) are all inside
the file, so it can be mailed, attached to a W&B report or opened offline. The
table is rendered server-side, so it reads without JavaScript; the script only
sorts (click a header to sort, click again to reverse).
"""

from __future__ import annotations

import html
import json
import math

from . import fmt
from .render_md import ref_k_phrase

# (header, tooltip, sort type or None, cell function -> (html, sort value))
E = html.escape


def _num(x):
    return "" if x is None else repr(x)


def _interval_cell(r: dict) -> tuple[str, str]:
    if r["flip_rate"] is None:
        return fmt.DASH, ""
    lo, hi, x = r["ci_low"], r["ci_high"], r["flip_rate"]
    bar = (f'<span class="ci" aria-hidden="true"><span class="ci-band" style="left:{lo*100:.1f}%;'
           f'width:{max(hi-lo, 0.004)*100:.1f}%"></span><span class="ci-point" style="left:{x*100:.1f}%"></span></span>')
    text = f'<span class="rate">{x:.3f}</span> <span class="bounds">[{lo:.3f}, {hi:.3f}]</span>'
    return text + bar, _num(x)


def _svg(r: dict, width: int = 210, height: int = 112) -> str:
    """Flip rate (line, band = Wilson 95%) and natural flip rate (dashed) against k, log2 x axis."""
    left, right, top, bottom = 30, 10, 8, 22
    sweep, natural = r["k_sweep"], r["natural_k_sweep"]
    ks = [e["k"] for e in sweep]
    lo_k, hi_k = math.log2(max(min(ks), 1)), math.log2(max(max(ks), 1))
    span = hi_k - lo_k

    def sx(k):
        t = 0.5 if span == 0 else (math.log2(max(k, 1)) - lo_k) / span
        return left + 8 + t * (width - left - right - 16)

    def sy(v):
        return top + (1 - v) * (height - top - bottom)

    parts = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="flip rate against k for {E(r["label"])}">',
             f'<title>{E(r["label"])}: flip rate against k (band: Wilson 95%; dashed: natural)</title>']
    for v in (0.0, 0.5, 1.0):
        y = sy(v)
        parts.append(f'<line x1="{left}" x2="{width-right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left-4}" y="{y+3:.1f}" class="tick" text-anchor="end">{v:g}</text>')
    for k in ks:
        parts.append(f'<text x="{sx(k):.1f}" y="{height-8}" class="tick" text-anchor="middle">{k}</text>')
    if r["flip_rate"] is not None:
        x = sx(r["ref_k"])
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{sy(0):.1f}" class="ref"/>')
    band = [f"{sx(e['k']):.1f},{sy(e['ci_high']):.1f}" for e in sweep]
    band += [f"{sx(e['k']):.1f},{sy(e['ci_low']):.1f}" for e in reversed(sweep)]
    if len(sweep) == 1:  # a single k: draw the interval as a bar
        e = sweep[0]
        parts.append(f'<line x1="{sx(e["k"]):.1f}" x2="{sx(e["k"]):.1f}" y1="{sy(e["ci_low"]):.1f}" '
                     f'y2="{sy(e["ci_high"]):.1f}" class="bandbar"/>')
    else:
        parts.append(f'<polygon points="{" ".join(band)}" class="band"/>')
    for cls, series in (("natural", natural), ("line", sweep)):
        points = " ".join("%.1f,%.1f" % (sx(e["k"]), sy(e["flip_rate"])) for e in series)
        parts.append(f'<polyline points="{points}" class="{cls}"/>')
    for e in sweep:
        parts.append(f'<circle cx="{sx(e["k"]):.1f}" cy="{sy(e["flip_rate"]):.1f}" r="2.6" class="dot">'
                     f'<title>k={e["k"]}: {e["flip_rate"]:.3f} [{e["ci_low"]:.3f}, {e["ci_high"]:.3f}], '
                     f'{e["n_flipped"]}/{e["n"]}</title></circle>')
    parts.append(f'<text x="{left-4}" y="{height-8}" class="axis" text-anchor="end">k</text></svg>')
    return "".join(parts)


# header, tooltip, sort type ("num"/"text"/None), cell -> (inner html, sort value)
COLUMNS = [
    ("Rank", "Rank by flip rate at the reference k (1 = most robust)", "num",
     lambda r: ("n.c." if r["rank"] is None else str(r["rank"]), _num(r["rank"]))),
    ("Model", "Model", "text", lambda r: (E(str(r["model"])), str(r["model"]))),
    ("Method", "Sparse attention method", "text", lambda r: (E(str(r["method"])), str(r["method"]))),
    ("Attack", "Attack", "text", lambda r: (E(str(r["attack"])), str(r["attack"]))),
    ("Blocks (q×k)", "Query block × key block size", "num",
     lambda r: (fmt.blocks(r), _num(r["block_q"] * 100000 + r["block_k"]))),
    ("Dense layers", "First layers kept dense", "num", lambda r: (str(r["dense_layers"]), _num(r["dense_layers"]))),
    ("Context tokens", "Context length added to the prompt", "num",
     lambda r: (str(r["context_tokens"]), _num(r["context_tokens"]))),
    ("k", "Reference k: key blocks kept per query block", "num", lambda r: (fmt.DASH if r["ref_k"] is None else str(r["ref_k"]), _num(r["ref_k"]))),
    ("Flip rate [95% CI]", "Flipped / n at the reference k, with its Wilson 95% interval", "num", _interval_cell),
    ("Flipped/n", "Items flipped at k / items full attention answers correctly (sorts by n)", "num",
     lambda r: (fmt.count(r["n_flipped"], r["n"]), _num(r["n"]))),
    ("Density", "Mean kept / causal key blocks at the answer position at k", "num",
     lambda r: (fmt.rate(r["density"]), _num(r["density"]))),
    ("Strict flips", "Sparse greedy token is a wrong answer (full attention right by the run's margin), Wilson 95%",
     "num", lambda r: (E(fmt.proportion(r["strict"])), _num((r["strict"] or {}).get("rate")))),
    ("Breakdowns", "Sparse greedy token is neither answer: the model stopped answering, Wilson 95%", "num",
     lambda r: (E(fmt.proportion(r["breakdown"])), _num((r["breakdown"] or {}).get("rate")))),
    ("Paired", "Flip-rate difference to the best-ranked entry on the same items, McNemar exact p, discordant "
     "items (here only : there only)", None, lambda r: (E(fmt.paired(r)), None)),
    ("Natural", "Natural flip rate at k: no adversarial tokens", "num",
     lambda r: (fmt.rate(r["natural_flip_rate"]), _num(r["natural_flip_rate"]))),
    ("Attack success", "Share of items where the attack found a flip at k_attack", "num",
     lambda r: (fmt.rate(r["attack_success_rate"]), _num(r["attack_success_rate"]))),
    ("Median steps", "Median steps to the first flip, over successful items", "num",
     lambda r: (fmt.steps(r["median_steps_to_flip"]), _num(r["median_steps_to_flip"]))),
    ("Flip rate against k", "Line: flip rate; band: Wilson 95%; dashed: natural; vertical: reference k", None,
     lambda r: (_svg(r), None)),
]

STYLE = """
:root { color-scheme: light; --fg:#1d232b; --muted:#5b6673; --line:#d9dee5; --accent:#2563eb; --band:#93b4f5; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
       margin: 24px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
p.lede { margin: 0 0 16px; color: var(--muted); max-width: 70em; }
.wrap { overflow-x: auto; }
table { border-collapse: collapse; min-width: 100%; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: middle; }
td { white-space: nowrap; }
th { white-space: normal; max-width: 7.5em; line-height: 1.25; }
td.num, th.num { text-align: right; }
thead th { position: sticky; top: 0; background: #f4f6f9; font-weight: 600; user-select: none; }
th[data-type] { cursor: pointer; }
th[data-type]:hover, th[data-type]:focus { background: #e6ebf2; outline: none; }
th[data-type]::after { content: " ↕"; color: #a0a8b3; font-weight: 400; }
th[aria-sort="ascending"]::after { content: " ▲"; color: var(--accent); }
th[aria-sort="descending"]::after { content: " ▼"; color: var(--accent); }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:hover { background: #eef4ff; }
.rate { font-weight: 600; font-variant-numeric: tabular-nums; }
.bounds { color: var(--muted); font-variant-numeric: tabular-nums; }
td { font-variant-numeric: tabular-nums; }
.ci { display: block; position: relative; height: 6px; margin-top: 4px; background: #eceff3; border-radius: 3px;
      min-width: 140px; }
.ci-band { position: absolute; top: 0; height: 6px; background: var(--band); border-radius: 3px; }
.ci-point { position: absolute; top: -2px; width: 2px; height: 10px; margin-left: -1px; background: var(--accent); }
svg.plot { display: block; }
svg .grid { stroke: #e3e7ed; stroke-width: 1; }
svg .tick { font-size: 9px; fill: var(--muted); }
svg .axis { font-size: 9px; fill: var(--muted); font-style: italic; }
svg .band { fill: var(--band); opacity: 0.45; stroke: none; }
svg .bandbar { stroke: var(--band); stroke-width: 6; opacity: 0.7; }
svg .line { fill: none; stroke: var(--accent); stroke-width: 1.8; }
svg .natural { fill: none; stroke: #8a94a1; stroke-width: 1.2; stroke-dasharray: 3 3; }
svg .ref { stroke: #c2410c; stroke-width: 1; stroke-dasharray: 2 2; }
svg .dot { fill: var(--accent); }
section { margin-top: 22px; max-width: 75em; }
h2 { font-size: 16px; margin: 0 0 6px; }
dl { margin: 0; } dt { font-weight: 600; } dd { margin: 0 0 6px 0; color: var(--muted); }
ul.plain { margin: 4px 0; padding-left: 18px; color: var(--muted); }
code { font-size: 12.5px; }
"""

SCRIPT = """
(function () {
  var table = document.getElementById('leaderboard');
  var tbody = table.tBodies[0];
  var state = { col: -1, dir: 1 };
  function rankOf(row) { return parseFloat(row.getAttribute('data-rank')); }
  function valueOf(row, col, type) {
    var raw = row.cells[col].getAttribute('data-sort');
    if (raw === null || raw === '') { return null; }
    return type === 'num' ? parseFloat(raw) : raw.toLowerCase();
  }
  function sortBy(th) {
    var col = th.cellIndex, type = th.getAttribute('data-type');
    var dir = state.col === col ? -state.dir : 1;
    state = { col: col, dir: dir };
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var va = valueOf(a, col, type), vb = valueOf(b, col, type);
      if (va === null || vb === null) {
        if (va === vb) { return rankOf(a) - rankOf(b); }
        return va === null ? 1 : -1;  /* missing values stay last either way */
      }
      if (va < vb) { return -dir; }
      if (va > vb) { return dir; }
      return rankOf(a) - rankOf(b);
    });
    rows.forEach(function (row) { tbody.appendChild(row); });
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].hasAttribute('data-type')) { heads[i].setAttribute('aria-sort', 'none'); }
    }
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
  }
  var heads = table.tHead.rows[0].cells;
  for (var i = 0; i < heads.length; i++) {
    (function (th) {
      if (!th.hasAttribute('data-type')) { return; }
      th.addEventListener('click', function () { sortBy(th); });
      th.addEventListener('keydown', function (ev) {
        if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); sortBy(th); }
      });
    })(heads[i]);
  }
})();
"""


def _table(records: list[dict]) -> str:
    head = []
    for i, (name, tip, kind, _) in enumerate(COLUMNS):
        cls = ' class="num"' if kind == "num" and i > 0 else ""
        attrs = f' data-type="{kind}" tabindex="0" aria-sort="{"ascending" if i == 0 else "none"}"' if kind else ""
        head.append(f'<th scope="col" title="{E(tip)}"{cls}{attrs}>{E(name)}</th>')
    body = []
    for r in records:
        cells = []
        for i, (_, _, kind, cell) in enumerate(COLUMNS):
            inner, key = cell(r)
            cls = ' class="num"' if kind == "num" and i > 0 else ""
            sort = "" if key is None else f' data-sort="{E(key)}"'
            cells.append(f"<td{cls}{sort}>{inner}</td>")
        body.append(f'<tr data-rank="{r["rank"]}" data-label="{E(r["label"])}" '
                    f'title="{E(r["label"])}">{"".join(cells)}</tr>')
    return (f'<div class="wrap"><table id="leaderboard"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _notes(board: dict) -> str:
    runs = "".join(f"<li><strong>#{r['rank']} {E(r['label'])}</strong>: {E(', '.join(r['runs']))}</li>"
                   for r in board["entries"])
    out = ['<section><h2>How to read it</h2><dl>',
           "<dt>Flip</dt><dd>Full attention answers correctly and sparse attention at k answers wrongly, on the same "
           "prompt with the attack's adversarial tokens.</dd>",
           "<dt>n</dt><dd>Items full attention answers correctly without adversarial tokens; the others are "
           "skipped.</dd>",
           "<dt>Flip rate</dt><dd>Flipped / n at the reference k, with a Wilson 95% interval (the bar shows it on "
           "0–1). Lower is more robust: fewer answers flipped by the same attack budget.</dd>",
           "<dt>Natural</dt><dd>The flip rate without adversarial tokens.</dd>",
           "<dt>Attack success</dt><dd>Share of items where the attack found a flip at its own k (k_attack).</dd>",
           "<dt>Median steps</dt><dd>Candidates (random) or optimisation steps (gcg) until the first flip, over "
           "successful items.</dd></dl></section>",
           f"<section><h2>Runs per entry</h2><ul class=\"plain\">{runs}</ul></section>"]
    if board["skipped"] or board["warnings"]:
        items = [f"<li>skipped {E(s['run'])}: {E(s['reason'])}</li>" for s in board["skipped"]]
        items += [f"<li>{E(w)}</li>" for w in board["warnings"]]
        out.append(f'<section><h2>Warnings</h2><ul class="plain">{"".join(items)}</ul></section>')
    return "".join(out)


def render(board: dict) -> str:
    data = json.dumps(board, ensure_ascii=False).replace("</", "<\\/")
    n_runs = sum(len(r["runs"]) for r in board["entries"])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{E(board['title'])}</title><style>{STYLE}</style></head><body>"
        f"<h1>{E(board['title'])}</h1>"
        f"<p class=\"lede\">{len(board['entries'])} entries from {n_runs} runs, ranked by flip rate at "
        f"{E(ref_k_phrase(board))}: lower is more robust. Click a column header to sort; click again to reverse. "
        f"Built {E(board['generated'])}.</p>"
        f"{_table(board['entries'])}{_notes(board)}"
        f"<script type=\"application/json\" id=\"leaderboard-data\">{data}</script>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )
