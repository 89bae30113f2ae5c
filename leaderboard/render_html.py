"""index.html and entries/<slug>.html: the boards as pages.

The index answers one question per board: at equal compute (density), which method and
model keep their answers? Each ranking table has eight columns and fits a 1280-pixel
window; everything else about an entry is one click away on its own page. Tables are
rendered server-side (they read without JavaScript); the script only sorts the ranked
rows (click a header, again to reverse). Reference rows (null controls) stay below.
"""

from __future__ import annotations

import html

from . import fmt

E = html.escape


def _num(x) -> str:
    return "" if x is None else repr(x)


def _bar(low: float, high: float, x: float) -> str:
    return (f'<span class="ci" aria-hidden="true"><span class="ci-band" style="left:{low*100:.1f}%;'
            f'width:{max(high-low, 0.004)*100:.1f}%"></span><span class="ci-point" style="left:{x*100:.1f}%">'
            "</span></span>")


def _rate_cell(cell: dict) -> str:
    text = f'<span class="rate">{cell["flip_rate"]:.3f}</span> <span class="bounds">' \
           f'[{cell["low"]:.3f}, {cell["high"]:.3f}]</span> <span class="count">{cell["flips"]}/{cell["n"]}</span>'
    return text + _bar(cell["low"], cell["high"], cell["flip_rate"])


def _method_cell(cell: dict, prefix: str) -> str:
    """The method, linked to the entry's page; its settings when they differ within the board."""
    null = {"null method": " <em>(null)</em>", "null attack": f" <em>+ {E(cell['attack'])} (null)</em>"}
    settings = f'<span class="settings">{E(cell["settings"])}</span>' if cell.get("show_settings") else ""
    return (f'<a href="{prefix}entries/{E(cell["slug"])}.html">{E(cell["method"])}</a>{null.get(cell["role"], "")}'
            f"{settings}")


COLUMNS = [  # header, tooltip, sort type, cell -> (html, sort value)
    ("Rank", "Rank band: entries whose intervals overlap share a band (1-3)", "num",
     lambda c, p: (E(c["band"] or "ref"), _num(c["rank"]))),
    ("Model", "Model", "text", lambda c, p: (E(c["model"]), c["model"])),
    ("Method", "Sparse method and settings (link: the entry's page)", "text",
     lambda c, p: (_method_cell(c, p), c["method"])),
    ("Density", "Achieved mean density (kept / causal key blocks at the answer position)", "num",
     lambda c, p: (fmt.rate(c["density"]), _num(c["density"]))),
    ("Flip rate [95% CI]", "Flips / n with its cluster-bootstrap 95% interval (contexts resampled)", "num",
     lambda c, p: (_rate_cell(c), _num(c["flip_rate"]))),
    ("Strict / breakdown", "Flips that give the wrong answer / that answer neither; they add up to the flips",
     "num", lambda c, p: (fmt.split(c), _num(c["strict"]))),
    ("Natural", "Flip rate without adversarial tokens, cluster 95% interval", "num",
     lambda c, p: (fmt.natural(c), _num(c["natural_rate"]))),
    ("Δ vs best (Holm p)", "Paired difference to the best entry on the items both answered, cluster 95% "
     "interval, Holm-adjusted exact McNemar p", "num", lambda c, p: (E(fmt.paired(c)), _num(fmt.diff(c)))),
]

STYLE = """
:root { color-scheme: light; --fg:#1d232b; --muted:#5b6673; --line:#d9dee5; --accent:#2563eb; --band:#93b4f5; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
       margin: 20px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 4px; }
h3 { font-size: 15px; margin: 16px 0 4px; }
p.lede, .muted, .note { color: var(--muted); max-width: 75em; }
p.note { margin: 4px 0; font-style: italic; }
nav ul { margin: 4px 0 0; padding-left: 18px; columns: 2; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 5px 7px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f4f6f9; font-weight: 600; user-select: none; line-height: 1.25; }
td.num, th.num { text-align: right; }
th[data-type] { cursor: pointer; }
th[data-type]:hover, th[data-type]:focus { background: #e6ebf2; outline: none; }
th[data-type]::after { content: " ↕"; color: #a0a8b3; font-weight: 400; }
th[aria-sort="ascending"]::after { content: " ▲"; color: var(--accent); }
th[aria-sort="descending"]::after { content: " ▼"; color: var(--accent); }
tbody.refs td { background: #fbfaf5; color: #44403c; }
tbody.refs tr.caption td { font-weight: 600; font-size: 12.5px; background: #f3f1e8; }
td { font-variant-numeric: tabular-nums; }
table.board td, table.board th { white-space: nowrap; }
table.board td.method, table.board td.wraps { white-space: normal; }  /* long settings and paired tests wrap */
table.board td.wraps { min-width: 9em; }
.rate { font-weight: 600; } .bounds, .count { color: var(--muted); }
.settings { display: block; color: var(--muted); font-size: 11.5px; }
.ci { display: block; position: relative; height: 5px; margin-top: 3px; background: #eceff3; border-radius: 3px; }
.ci-band { position: absolute; top: 0; height: 5px; background: var(--band); border-radius: 3px; }
.ci-point { position: absolute; top: -2px; width: 2px; height: 9px; margin-left: -1px; background: var(--accent); }
figure { display: inline-block; margin: 8px 16px 8px 0; max-width: 100%; vertical-align: top; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12.5px; }
ul.plain { margin: 4px 0; padding-left: 18px; color: var(--muted); }
code { font-size: 12.5px; white-space: pre-wrap; word-break: break-all; }
dl { margin: 0; } dt { font-weight: 600; } dd { margin: 0 0 6px 0; }
.models span { margin-right: 14px; }
div.scroll { max-width: 100%; overflow-x: auto; }  /* a wide matrix scrolls inside, never the page */
table.transfer { font-size: 12.5px; }
table.transfer td .bounds { display: block; font-size: 11px; white-space: nowrap; }
"""

SCRIPT = """
(function () {
  Array.prototype.forEach.call(document.querySelectorAll('table.board'), function (table) {
    var tbody = table.tBodies[0], state = { col: -1, dir: 1 };
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
          return va === null ? 1 : -1;
        }
        if (va < vb) { return -dir; }
        if (va > vb) { return dir; }
        return rankOf(a) - rankOf(b);
      });
      rows.forEach(function (row) { tbody.appendChild(row); });
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
        if (h.hasAttribute('data-type')) { h.setAttribute('aria-sort', 'none'); }
      });
      th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      if (!th.hasAttribute('data-type')) { return; }
      th.addEventListener('click', function () { sortBy(th); });
      th.addEventListener('keydown', function (ev) {
        if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); sortBy(th); }
      });
    });
  });
})();
"""


def page(title: str, body: str, script: bool = False) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{E(title)}</title><style>{STYLE}</style></head><body>{body}"
            + (f"<script>{SCRIPT}</script>" if script else "") + "</body></html>\n")


def _row(cell: dict, prefix: str) -> str:
    cells = []
    for i, (_, _, kind, render) in enumerate(COLUMNS):
        inner, key = render(cell, prefix)
        cls = ' class="method"' if i == 2 else ' class="num wraps"' if i >= len(COLUMNS) - 2 else \
            ' class="num"' if kind == "num" and i > 0 else ""
        sort = "" if key is None else f' data-sort="{E(key)}"'
        cells.append(f"<td{cls}{sort}>{inner}</td>")
    return f'<tr data-rank="{_num(cell["rank"])}" data-entry="{E(cell["slug"])}">{"".join(cells)}</tr>'


def ranking_table(table: dict, prefix: str = "") -> str:
    """One density of a board: the ranked rows (sortable), then the null controls as reference rows."""
    if table["note"]:
        return f'<p class="note">{E(table["note"])}.</p>'
    head = []
    for i, (name, tip, kind, _) in enumerate(COLUMNS):
        cls = ' class="num"' if kind == "num" and i > 0 and i != 2 else ""
        head.append(f'<th scope="col" title="{E(tip)}"{cls} data-type="{kind}" tabindex="0" '
                    f'aria-sort="{"ascending" if i == 0 else "none"}">{E(name)}</th>')
    body = "".join(_row(c, prefix) for c in table["ranked"])
    refs = [c for c in table["references"] if c["comparable"]]
    out = [f'<table class="board" data-density="{table["density"]}"><thead><tr>{"".join(head)}</tr></thead>'
           f"<tbody>{body}</tbody>"]
    if refs:
        out.append(f'<tbody class="refs"><tr class="caption"><td colspan="{len(COLUMNS)}">Null controls '
                   "(reference rows, not ranked)</td></tr>" + "".join(_row(c, prefix) for c in refs) + "</tbody>")
    out.append("</table>")
    off = [c for c in table["not_comparable"] + table["references"] if not c["comparable"]]
    if off:
        parts = [f'<a href="{prefix}entries/{E(c["slug"])}.html">{E(name)}</a> ({fmt.reach(c)})'
                 for c, name in zip(off, fmt.off_names(off))]
        out.append(f'<p class="note">Not comparable at density {table["density"]}: {", ".join(parts)}.</p>')
    return "".join(out)


def _models(board: dict) -> str:
    parts = []
    for m in board["models"]:
        if m["accuracy"] is None:
            parts.append(f"<span>{E(m['model'])}: full-attention accuracy not measured (no rows)</span>")
            continue
        text = f"{E(m['model'])}: full attention right on {m['correct']}/{m['n']} = {m['accuracy']:.0%}"
        if not m["admitted"]:
            text = f"<strong>skipped</strong> {text} (under the {board['min_accuracy']:.0%} bar)"
        parts.append(f"<span>{text}</span>")
    return f'<p class="models">{"".join(parts)}</p>'


def _transfer(board: dict) -> str:
    transfer = board.get("transfer")
    if not transfer:
        return ""
    short = transfer["short"]
    head = "".join(f'<th title="{E(t)}">{E(short[t])}</th>' for t in transfer["targets"])
    rows = []
    for s in transfer["sources"]:
        cells = []
        for t in transfer["targets"]:
            c = transfer["cells"].get(s, {}).get(t)
            cells.append("<td>—</td>" if c is None else
                         f'<td class="num">{c["flips"]}/{c["n"]}<span class="bounds">{c["low"]:.2f}–'
                         f'{c["high"]:.2f}</span></td>')
        rows.append(f'<tr><th scope="row" title="{E(s)}">{E(short[s])}</th>{"".join(cells)}</tr>')
    image = board["plots"]["transfer"]
    return (f"<h3>Transfer: attacks found against a source method, scored under each target</h3>"
            f'<p class="muted">Cell: flips / confident items (full attention right on the clean prompt), cluster '
            f"95% interval over contexts (below the count). A method's settings are in its header's tooltip "
            f"and on its entry page. From {E(', '.join(transfer['files']))}.</p>"
            f'<div class="scroll"><table class="transfer"><thead><tr><th>source \\ target</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>'
            f'<figure><img src="{E(image)}" alt="transfer matrix heatmap"></figure>')


def board_title(board: dict) -> str:
    return f"{board['suite']} · " + ("natural (no attack)" if board["natural"] else f"attack: {board['attack']}")


def _board(board: dict, tolerance: float) -> str:
    out = [f'<section class="board" id="board-{E(board["slug"])}"><h2>{E(board_title(board))}</h2>', _models(board)]
    if board["settings"]:
        out.append(f'<p class="muted">Every entry here: {E(board["settings"])}.</p>')
    for table in board["tables"]:
        out.append(f"<h3>Density {table['density']} ± {tolerance}</h3>{ranking_table(table)}")
    curves = "".join(f'<figure><img src="{E(c["path"])}" alt="flip rate against density, {E(c["model"])}">'
                     f"<figcaption>{E(c['model'])}: flip rate against density, cluster 95% bands</figcaption>"
                     "</figure>" for c in board["plots"]["curves"])
    if curves:
        out.append(f"<h3>Curves</h3>{curves}")
    out.append(_transfer(board))
    return "".join(out) + "</section>"


def render_index(site: dict) -> str:
    nav = "".join(f'<li><a href="#board-{E(b["slug"])}">{E(board_title(b))}</a></li>' for b in site["boards"])
    notes = [f"<li>skipped {E(s['run'])}: {E(s['reason'])}</li>" for s in site["skipped"]]
    notes += [f"<li>{E(w)}</li>" for w in site["warnings"]]
    body = (f"<h1>{E(site['title'])}</h1>"
            f'<p class="lede">At equal compute (density), which sparse method and which model keep their answers, '
            f"naturally and under attack? One board per suite and attack; in each, entries are ranked by flip rate "
            f"(lower keeps more answers) at densities {', '.join(map(str, site['densities']))} "
            f"(± {site['density_tolerance']}). Entries whose cluster intervals overlap share a rank band; null "
            f"controls are reference rows. {len(site['entries'])} entries from {site['n_runs']} runs, built "
            f"{E(site['generated'])}.</p><nav><strong>Boards</strong><ul>{nav}</ul></nav>"
            + "".join(_board(b, site["density_tolerance"]) for b in site["boards"])
            + (f'<section><h2>Warnings</h2><ul class="plain">{"".join(notes)}</ul></section>' if notes else ""))
    return page(site["title"], body, script=True)


def _interval(record: dict) -> str:
    return (f"{record['n_flipped']}/{record['n']} = {record['flip_rate']:.3f}, Wilson [{record['ci_low']:.3f}, "
            f"{record['ci_high']:.3f}], cluster [{record['cluster_low']:.3f}, {record['cluster_high']:.3f}] "
            f"over {record['clusters']} contexts")


def _directions(record: dict) -> str:
    table = record["direction"]
    parts = [f"{d['direction']} {d['count']}/{d['n']}" for d in (table.get("yes"), table.get("no")) if d]
    balanced = table.get("balanced") or {}
    if balanced.get("rate") is not None:
        parts.append(f"balanced {balanced['rate']:.3f}")
    return "; ".join(parts)


def _density_rows(entry: dict) -> str:
    rows = []
    for d in entry["densities"]:
        if not d["comparable"]:
            reached = "no recorded density" if d["achieved"] is None else f"its items reach {d['achieved']:.3f}"
            rows.append(f"<tr><td>{d['density']}</td><td colspan=\"5\">not comparable ({reached})</td></tr>")
            continue
        adv, nat = d["adversarial"], d["natural"]
        if "cluster_low" not in adv:  # a W&B entry: counts only
            rows.append(f"<tr><td>{d['density']}</td><td>{fmt.rate(d['achieved'])}</td><td>{d['k_median']}</td>"
                        f"<td>{adv['n_flipped']}/{adv['n']} Wilson [{adv['ci_low']:.3f}, {adv['ci_high']:.3f}]</td>"
                        f"<td>—</td><td>{nat['n_flipped']}/{nat['n']}</td></tr>")
            continue
        rows.append(f"<tr><td>{d['density']}</td><td>{fmt.rate(d['achieved'])}</td><td>{d['k_median']}</td>"
                    f"<td>{E(_interval(adv))}<br><span class=\"muted\">strict {E(fmt.proportion(adv['strict']))}; "
                    f"breakdown {E(fmt.proportion(adv['breakdown']))}</span></td>"
                    f"<td>{E(_directions(adv))}</td><td>{E(_interval(nat))}</td></tr>")
    return ("<table><thead><tr><th>density</th><th>achieved</th><th>median k</th><th>flips (attacked prompt)</th>"
            f"<th>directions</th><th>natural flips</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _sweep(entry: dict) -> str:
    natural = {e["k"]: e for e in entry["natural_k_sweep"]}
    rows = "".join(f"<tr><td>{e['k']}</td><td>{fmt.rate(entry['density_per_k'].get(str(e['k'])))}</td>"
                   f"<td>{e['n_flipped']}/{e['n']} = {e['flip_rate']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]</td>"
                   f"<td>{natural[e['k']]['flip_rate']:.3f}</td></tr>" for e in entry["k_sweep"])
    return ("<table><thead><tr><th>k</th><th>mean density</th><th>flip rate (Wilson 95%)</th><th>natural</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>")


def _flip_list(entry: dict) -> str:
    if not entry["flips"]:
        return '<p class="muted">No item flipped at the board\'s densities.</p>'
    items = []
    for f in entry["flips"]:
        name = E(f["item_id"]) if f["page"] is None else f'<a href="../{E(f["page"])}">{E(f["item_id"])}</a>'
        items.append(f"<li>{name} (seed {E(str(f['seed']))}, gold {E(f['answer'])}) at density {f['density']} "
                     f"(k = {f['k']}): attacked {E(str(f['class']))}, natural {E(str(f['natural_class']))}</li>")
    return ('<p class="muted">Linked items have a flip page (their rows hold a picture).</p>'
            f'<ul class="plain flips">{"".join(items)}</ul>')


def render_entry(entry: dict, boards: list[dict]) -> str:
    """entries/<slug>.html."""
    on = [b for b in boards if entry["slug"] in b["entries"]]
    links = ", ".join(f'<a href="../index.html#board-{E(b["slug"])}">{E(board_title(b))}</a>' for b in on)
    draws = entry["draws"]
    attack = (f"success {entry['n_success']}/{entry['n']} at k = {entry['k_attack']}; median steps to first flip "
              f"{fmt.steps(entry['median_steps_to_flip'])}")
    if draws:
        attack += (f"; per draw ({draws['n']} insertions): sparse-only flip {draws['sparse_only']['rate']:.3f}, "
                   f"full attention also not right {draws['full_wrong']['rate']:.3f}, both right "
                   f"{draws['both_right']['rate']:.3f}")
    margins = entry["margins"]
    margin = "—" if not margins else (f"min {margins['min']:.3f}, median {margins['median']:.3f}, "
                                      f"{margins['below_0.2']} of {margins['n']} below 0.2")
    body = (f'<p><a href="../index.html">← boards</a></p><h1>{E(entry["model"])} · {E(entry["method"])}</h1>'
            f'<p class="lede">{E(entry["settings"])} · suite {E(str(entry["suite"]))} · attack {E(entry["attack"])} '
            f"· {E(entry['role'])}. On: {links or 'no board'}.</p><dl>"
            f"<dt>Items</dt><dd>n = {entry['n']} counted (full attention right) of {entry['n_items']} "
            f"({entry['n_skipped']} skipped), {entry['contexts']} contexts</dd>"
            f"<dt>Full attention's margin P(a) - P(ā) on the counted items</dt><dd>{E(margin)}</dd>"
            f"<dt>Attack</dt><dd>{E(attack)}</dd>"
            f"<dt>Runs</dt><dd>{'<br>'.join(E(r) for r in entry['runs'])}</dd>"
            f"<dt>Command (seeds {E(', '.join(map(str, entry['seeds'])))})</dt><dd><code>{E(entry['command'])}</code>"
            "</dd></dl><h2>At the board's densities</h2>" + _density_rows(entry)
            + "<h2>Over the k sweep</h2>" + _sweep(entry) + "<h2>Flipped items</h2>" + _flip_list(entry))
    return page(f"{entry['model']} · {entry['method']} · {entry['suite']} · {entry['attack']}", body)
