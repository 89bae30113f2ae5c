"""Print the Markdown tables of docs/replication.md from the run directories in docs/runs/.

    .venv/bin/python docs/runs/tables.py needle RUN_DIR          # per depth and k: accuracy, natural flips, attribution
    .venv/bin/python docs/runs/tables.py sink RUN_A RUN_B        # the same items without / with a reserved sink
    .venv/bin/python docs/runs/tables.py outcomes RUN_DIR [MARGIN...]   # strict flips, breakdowns, verified, per k
    .venv/bin/python docs/runs/tables.py grid OUT_DIR FIXED_RUN ADAPTIVE_RUN [FIXED_RUN ADAPTIVE_RUN ...]
        # depth x length: natural strict flips / breakdowns of fixed-k STREAM against
        # stream-density, one pair of runs per context length; heatmaps to OUT_DIR
    .venv/bin/python docs/runs/tables.py fidelity RUN_DIR        # docs/science.md's fidelity table: means,
        # first / last tenth of the text, per-text means, total kept blocks per layer and head
    .venv/bin/python docs/runs/tables.py protocol RUN_A RUN_B ...  # protocol v1: natural flips per method
        # and density (Wilson, cluster intervals, directions), each method against the first (Holm)
    .venv/bin/python docs/runs/tables.py minimal-k RUN_DIR       # the k STREAM's binary search picks, clean
        # and adversarial, and whether the attacked prompt flips at the clean prompt's k
    .venv/bin/python docs/runs/tables.py transfer ATTACK_CELL NULL_CELL   # per target method: how often the
        # attack's tokens and the null's insertions (same source, same items) flip it, paired (Holm)
    .venv/bin/python docs/runs/tables.py pooled ATTACK_CELL NULL_CELL [ATTACK_CELL NULL_CELL ...]   # attack
        # success against its null per source and pooled over sources (contexts resampled)
    .venv/bin/python docs/runs/tables.py pooled-transfer ATTACK_CELL NULL_CELL [...]   # transfer per target,
        # pooled over sources, each source's own method left out
    .venv/bin/python docs/runs/tables.py directions DENSITY CELL [CELL ...]   # per attacked cell: flips by
        # the question's answer (yes / no), natural and attacked, draws used, the k each item is read at

Every number is recomputed from results.jsonl (harness.results.read_rows, the one
reader); intervals are Wilson 95% (harness.results.intervals.wilson). Outcome classes at another
full-attention margin are reclassified from the stored scores (tasks.outcomes.classify).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from harness.results import read_rows  # noqa: E402
from harness.results.intervals import wilson  # noqa: E402
from tasks.outcomes import classify  # noqa: E402


def bad_input(message: str) -> None:
    """One line on stderr and exit 2, like every flipbench command given bad input."""
    print(message, file=sys.stderr)
    sys.exit(2)


def ci(count: int, n: int) -> str:
    if n == 0:
        return "-"
    low, high = wilson(count, n)
    return f"{count}/{n} [{low:.2f}, {high:.2f}]"


def rows_of(run: str):
    return read_rows(Path(run) / "results.jsonl").rows


def config_of(run: str) -> dict:
    return json.loads((Path(run) / "manifest.json").read_text())["config"]


def ks_of(run: str) -> list[int]:
    return config_of(run)["k_sweep"]


def needle(run: str) -> None:
    rows, ks = rows_of(run), ks_of(run)
    depths = sorted({r.needle["depth"] for r in rows} - {None})  # absent-needle items count in "all" only
    print("| depth | full attention correct | " + " | ".join(f"k={k} natural strict / breakdown" for k in ks) + " |")
    print("|---:|---:|" + "---|" * len(ks))
    for d in depths + [None]:
        sub = [r for r in rows if d is None or r.needle["depth"] == d]
        ok = [r for r in sub if r.counted]
        cells = [f"{ci(sum(r.natural_outcomes[str(k)]['strict'] for r in ok), len(ok))} / "
                 f"{ci(sum(r.natural_outcomes[str(k)]['breakdown'] for r in ok), len(ok))}" for k in ks]
        print(f"| {'all' if d is None else d} | {ci(len(ok), len(sub))} | " + " | ".join(cells) + " |")
    attacked = [r for r in rows if r.counted and r.scores is not None and r.adv_ids]
    if attacked:
        print()
        print("| depth | attacked items | " + " | ".join(f"k={k} attacked strict / breakdown" for k in ks) + " |")
        print("|---:|---:|" + "---|" * len(ks))
        for d in depths + [None]:
            sub = [r for r in attacked if d is None or r.needle["depth"] == d]
            cells = [f"{ci(sum(r.outcomes[str(k)]['strict'] for r in sub), len(sub))} / "
                     f"{ci(sum(r.outcomes[str(k)]['breakdown'] for r in sub), len(sub))}" for k in ks]
            print(f"| {'all' if d is None else d} | {len(sub)} | " + " | ".join(cells) + " |")
        print()
        print("| k | attacked: flip | strict | breakdown | verified / unverifiable (k_attack only) |")
        print("|---:|---|---|---|---|")
        for k in ks:
            n = len(attacked)
            verified = f"{sum(r.verified_status == 'verified' for r in attacked)} / " \
                       f"{sum(r.verified_status == 'unverifiable' for r in attacked)}" if k == attacked[0].k_attack else ""
            print(f"| {k} | {ci(sum(r.flipped[str(k)] for r in attacked), n)} | "
                  f"{ci(sum(r.outcomes[str(k)]['strict'] for r in attacked), n)} | "
                  f"{ci(sum(r.outcomes[str(k)]['breakdown'] for r in attacked), n)} | {verified} |")
    print()
    print("| k | retained attention mass, natural flip (n) | no flip (n) | needle kept, share of heads: flip | no flip |")
    print("|---:|---|---|---|---|")
    ok = [r for r in rows if r.counted and r.attribution and r.needle.get("token_span")]
    for k in ks:
        groups = {True: [], False: []}
        for r in ok:
            groups[bool(r.natural_flipped[str(k)])].append(r.attribution["natural"][str(k)])
        cells = []
        for flag in (True, False):
            recs = groups[flag]
            mass = sum(1 - sum(a["dropped_mass"]) / len(a["dropped_mass"]) for a in recs) / len(recs) if recs else None
            cells.append("-" if mass is None else f"{mass:.3f} ({len(recs)})")
        for flag in (True, False):
            recs = groups[flag]
            kept = sum(sum(a["needle_kept"]) / len(a["needle_kept"]) for a in recs) / len(recs) if recs else None
            cells.append("-" if kept is None else f"{kept:.2f}")
        print(f"| {k} | " + " | ".join(cells) + " |")
    layers = ok[0].attribution["natural"]["layers"] if ok else []
    if layers:
        k = ks[1] if len(ks) > 1 else ks[0]
        print()
        print(f"Needle kept by layer at k={k} (share of heads keeping every needle block, mean over items):")
        print()
        print("| layer | " + " | ".join(map(str, layers)) + " |")
        print("|---|" + "---:|" * len(layers))
        for flag, name in ((True, "natural flip"), (False, "no flip")):
            recs = [r.attribution["natural"][str(k)]["needle_kept"] for r in ok if bool(r.natural_flipped[str(k)]) == flag]
            if recs:
                means = [sum(v[i] for v in recs) / len(recs) for i in range(len(layers))]
                print(f"| {name} (n={len(recs)}) | " + " | ".join(f"{m:.2f}" for m in means) + " |")


def sink(run_a: str, run_b: str) -> None:
    a, b = {r.item_id: r for r in rows_of(run_a)}, {r.item_id: r for r in rows_of(run_b)}
    common = [i for i in a if i in b and a[i].counted and b[i].counted]
    print(f"{len(common)} items answered correctly by full attention in both runs.")
    print()
    print("| k | blocks kept (A / B) | breakdown A | breakdown B | strict A | strict B | mean P(yes)+P(no) A | B |")
    print("|---:|---|---|---|---|---|---:|---:|")
    for k in ks_of(run_a):
        ra, rb = [a[i] for i in common], [b[i] for i in common]
        n = len(common)
        blocks = (f"{sum(r.density[str(k)] * r.answer_blocks for r in ra) / n:.1f} / "
                  f"{sum(r.density[str(k)] * r.answer_blocks for r in rb) / n:.1f}") if ra[0].density else "-"
        print(f"| {k} | {blocks} | {ci(sum(r.natural_outcomes[str(k)]['breakdown'] for r in ra), n)} | "
              f"{ci(sum(r.natural_outcomes[str(k)]['breakdown'] for r in rb), n)} | "
              f"{ci(sum(r.natural_outcomes[str(k)]['strict'] for r in ra), n)} | "
              f"{ci(sum(r.natural_outcomes[str(k)]['strict'] for r in rb), n)} | "
              f"{sum(r.natural[str(k)].mass for r in ra) / n:.3f} | {sum(r.natural[str(k)].mass for r in rb) / n:.3f} |")


def outcomes(run: str, margins: list[float]) -> None:
    rows, ks = rows_of(run), ks_of(run)
    attacked = [r for r in rows if r.counted]
    print(f"{len(attacked)} of {len(rows)} items answered correctly by full attention without adversarial tokens; "
          f"answer position at a median of {sorted(r.answer_blocks for r in attacked)[len(attacked) // 2]} "
          "key blocks.")
    for margin in margins:
        print()
        print(f"Full-attention margin {margin} (P(a) - P(ā) under full attention with the adversarial tokens):")
        print()
        print("| k | density | flip | strict flip | breakdown | natural strict | natural breakdown |")
        print("|---:|---:|---|---|---|---|---|")
        n = len(attacked)
        for k in ks:
            adv = [classify(r.scores["full"], r.scores[str(k)], margin) for r in attacked]
            nat = [classify(r.natural["full"], r.natural[str(k)], margin) for r in attacked]
            dens = sum(r.density[str(k)] for r in attacked) / n
            print(f"| {k} | {dens:.3f} | {ci(sum(o.flip and o.confident for o in adv), n)} | "
                  f"{ci(sum(o.strict for o in adv), n)} | {ci(sum(o.breakdown for o in adv), n)} | "
                  f"{ci(sum(o.strict for o in nat), n)} | {ci(sum(o.breakdown for o in nat), n)} |")
    succ = [r for r in attacked if r.success]
    print()
    print(f"Attack successes: {len(succ)}/{len(attacked)}; verified {sum(r.verified_status == 'verified' for r in succ)}, "
          f"not verified {sum(r.verified_status == 'not verified' for r in succ)}, unverifiable "
          f"{sum(r.verified_status == 'unverifiable' for r in succ)}; monotone {sum(bool(r.monotone) for r in succ)}.")


def _kept_ratio(fixed, adaptive) -> float:
    """Mean over items of total kept blocks (adaptive / fixed) over the prompt's query blocks."""
    from harness.results import with_added_defaults
    from sparse import SparseConfig, make_settings
    from sparse.density_adaptive import total_kept

    cf, ca = config_of(fixed), with_added_defaults(config_of(adaptive))  # second-release density -> its setting
    fixed_cfg = SparseConfig(method=cf["method"], k=cf["k_attack"], block_q=cf["block_q"], block_k=cf["block_k"])
    adaptive_cfg = SparseConfig(method=ca["method"], k=ca["k_attack"], block_q=ca["block_q"], block_k=ca["block_k"],
                                settings=make_settings(ca["method"], ca["method_options"]))
    ratios = [total_kept(adaptive_cfg, ca["method"], r.answer_blocks) / total_kept(fixed_cfg, cf["method"], r.answer_blocks)
              for r in rows_of(fixed)]
    return sum(ratios) / len(ratios)


def _paired_wrong(pairs) -> None:
    """McNemar exact test on "wrong" (a flip: strict flip or breakdown) per length and
    pooled, on the items full attention answers in both runs of a pair."""
    from harness.results.intervals import mcnemar_exact

    def wrong(r, k):
        return r.natural_flipped[k]

    print()
    print("| context tokens | paired items | wrong: fixed | wrong: adaptive | discordant fixed-only : adaptive-only "
          "| McNemar exact p |")
    print("|---:|---:|---|---|---|---:|")
    total = [0, 0, 0, 0, 0]
    for fixed, adaptive in pairs:
        kf, ka = str(config_of(fixed)["k_attack"]), str(config_of(adaptive)["k_attack"])
        f = {r.item_id: r for r in rows_of(fixed) if r.counted}
        a = {r.item_id: r for r in rows_of(adaptive) if r.counted}
        ids = sorted(set(f) & set(a))
        counts = [len(ids), sum(wrong(f[i], kf) for i in ids), sum(wrong(a[i], ka) for i in ids),
                  sum(wrong(f[i], kf) and not wrong(a[i], ka) for i in ids),
                  sum(wrong(a[i], ka) and not wrong(f[i], kf) for i in ids)]
        total = [t + c for t, c in zip(total, counts)]
        n, wf, wa, b, c = counts
        print(f"| {config_of(fixed)['context_tokens']} | {n} | {ci(wf, n)} | {ci(wa, n)} | {b} : {c} | "
              f"{mcnemar_exact(b, c):.3g} |")
    n, wf, wa, b, c = total
    print(f"| pooled | {n} | {ci(wf, n)} | {ci(wa, n)} | {b} : {c} | {mcnemar_exact(b, c):.3g} |")


def method_labels(runs: list[str]) -> dict:
    """Each run's method name, plus `key=value` for the method settings in which runs of the
    same method differ (snapkv and snapkv window_size=8 are two rows, not one)."""
    configs = {run: config_of(run) for run in runs}
    labels = {}
    for run, cfg in configs.items():
        same = [configs[r].get("method_options") or {} for r in runs if configs[r]["method"] == cfg["method"]]
        mine = cfg.get("method_options") or {}
        differing = sorted(k for k in mine if any(o.get(k) != mine[k] for o in same))
        labels[run] = " ".join([cfg["method"]] + [f"{k}={mine[k]}" for k in differing])
    if len(set(labels.values())) < len(runs):
        raise SystemExit("tables.py protocol: two runs with the same method and settings; give each once")
    return labels


def protocol(runs: list[str]) -> None:
    """Benchmark protocol v1 (docs/replication.md): natural flips per method and density with
    Wilson and cluster intervals, strict / breakdown, direction and balanced rate; then every
    method against the first at each density on the items both count (McNemar, Holm over all)."""
    from harness.results.intervals import cluster_bootstrap, cluster_of, direction_table, holm, paired_difference

    def at(r, d):
        return r.density_ks.get(str(d)) if r.density_ks else None

    densities = sorted({float(d) for run in runs for d in (config_of(run).get("density_sweep") or [])})
    print("| method | density (achieved) | n (contexts) | flip rate, Wilson | cluster 95% | strict + breakdown | "
          "yes->not yes | no->not no | balanced |")
    print("|---|---:|---:|---|---|---|---|---|---|")
    tables = {}
    labels = method_labels(runs)
    for run in runs:
        method = labels[run]
        rows = [r for r in rows_of(run) if r.counted]
        tables[method] = {r.item_id: r for r in rows}
        for d in densities:
            sub = [r for r in rows if at(r, d) is not None]
            ks = [str(at(r, d)) for r in sub]
            flags = [r.natural_flipped[k] for r, k in zip(sub, ks)]
            strict = sum(r.natural_outcomes[k]["strict"] for r, k in zip(sub, ks))
            breakdown = sum(r.natural_outcomes[k]["breakdown"] for r, k in zip(sub, ks))
            achieved = sum(r.density[k] for r, k in zip(sub, ks)) / len(sub)
            interval = cluster_bootstrap(flags, [cluster_of(r) for r in sub])
            table = direction_table([(f, r.answer, cluster_of(r)) for f, r in zip(flags, sub)])
            yes, no, bal = table["yes"], table["no"], table["balanced"]
            print(f"| {method} | {d} ({achieved:.3f}) | {len(sub)} ({interval.clusters}) | {ci(sum(flags), len(sub))} | "
                  f"[{interval.low:.2f}, {interval.high:.2f}] | {strict} + {breakdown} | {yes['count']}/{yes['n']} | "
                  f"{no['count']}/{no['n']} | {bal['rate']:.2f} [{bal['low']:.2f}, {bal['high']:.2f}] |")
    first, *others = list(tables)
    tests = []
    for other in others:
        for d in densities:
            ids = [i for i in tables[first] if i in tables[other] and at(tables[first][i], d) is not None
                   and at(tables[other][i], d) is not None]
            a = [tables[first][i].natural_flipped[str(at(tables[first][i], d))] for i in ids]
            b = [tables[other][i].natural_flipped[str(at(tables[other][i], d))] for i in ids]
            tests.append((other, d, paired_difference(a, b, [cluster_of(tables[first][i]) for i in ids])))
    adjusted = holm([t.p for _, _, t in tests])
    print()
    print(f"| {first} vs | density | paired n (contexts) | difference, cluster 95% | discordant {first}-only : other-only "
          "| McNemar p | Holm p |")
    print("|---|---:|---:|---|---|---:|---:|")
    for (other, d, t), p in zip(tests, adjusted):
        print(f"| {other} | {d} | {t.n} ({t.clusters}) | {t.diff:+.3f} [{t.low:+.2f}, {t.high:+.2f}] | {t.b10} : {t.b01} | "
              f"{t.p:.3g} | {p:.3g} |")


def grid(out: str, runs: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(zip(runs[0::2], runs[1::2]))
    cells = {}  # (method label, length, depth) -> (strict, breakdown, n)
    labels = []
    lengths = []
    print("| context tokens | method | full attention correct | "
          "strict flips | breakdowns | density at the answer | total kept blocks (adaptive / fixed) |")
    print("|---:|---|---|---|---|---:|---:|")
    for fixed, adaptive in pairs:
        length = config_of(fixed)["context_tokens"]
        lengths.append(length)
        ratio = _kept_ratio(fixed, adaptive)
        for run in (fixed, adaptive):
            cfg = config_of(run)
            k = str(cfg["k_attack"])
            label = cfg["method"] + (f" k={k}" if cfg.get("density") is None else f" rho~matched, k_min={k}")
            if label not in labels:
                labels.append(label)
            rows = rows_of(run)
            ok = [r for r in rows if r.counted]
            for d in sorted({r.needle["depth"] for r in rows}):
                sub = [r for r in ok if r.needle["depth"] == d]
                cells[label, length, d] = (sum(r.natural_outcomes[k]["strict"] for r in sub),
                                           sum(r.natural_outcomes[k]["breakdown"] for r in sub), len(sub))
            dens = sum(r.density[k] for r in ok) / len(ok)
            print(f"| {length} | {cfg['method']}" + (f" rho={cfg['density']}" if cfg.get("density") else f" k={k}") +
                  f" | {ci(len(ok), len(rows))} | {ci(sum(r.natural_outcomes[k]['strict'] for r in ok), len(ok))} | "
                  f"{ci(sum(r.natural_outcomes[k]['breakdown'] for r in ok), len(ok))} | {dens:.3f} | "
                  f"{ratio if run == adaptive else 1.0:.3f} |")
    _paired_wrong(pairs)
    depths = sorted({d for (_, _, d) in cells})
    print()
    print("Per cell (natural strict flips / breakdowns over the items full attention answers):")
    print()
    print("| method | context tokens | " + " | ".join(f"depth {d}" for d in depths) + " |")
    print("|---|---:|" + "---|" * len(depths))
    for label in labels:
        for length in lengths:
            row = [cells.get((label, length, d)) for d in depths]
            print(f"| {label} | {length} | " + " | ".join("-" if c is None else f"{c[0]}/{c[2]} / {c[1]}/{c[2]}"
                                                           for c in row) + " |")
    Path(out).mkdir(parents=True, exist_ok=True)
    for kind, index in (("strict", 0), ("breakdown", 1)):
        fig, axes = plt.subplots(1, len(labels), figsize=(5.0 * len(labels), 3.4), squeeze=False)
        fig.subplots_adjust(wspace=0.35)
        for ax, label in zip(axes[0], labels):
            grid_values = [[(c[index] / c[2] if (c := cells.get((label, length, d))) and c[2] else float("nan"))
                            for d in depths] for length in lengths]
            image = ax.imshow(grid_values, vmin=0, vmax=1, cmap="magma_r", aspect="auto", origin="lower")
            for i, length in enumerate(lengths):
                for j, d in enumerate(depths):
                    c = cells.get((label, length, d))
                    if c:
                        ax.text(j, i, f"{c[index]}/{c[2]}", ha="center", va="center", fontsize=8,
                                bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0})
            ax.set_xticks(range(len(depths)), [str(d) for d in depths])
            ax.set_yticks(range(len(lengths)), [str(n) for n in lengths])
            ax.set_xlabel("needle depth")
            ax.set_ylabel("context tokens")
            ax.set_title(label, fontsize=9)
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label=f"natural {kind} rate")
        fig.suptitle(f"qwen2.5-1.5b needle: natural {kind} rate", fontsize=10)
        fig.savefig(Path(out) / f"grid-{kind}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
    print()
    print(f"heatmaps: {Path(out) / 'grid-strict.png'}, {Path(out) / 'grid-breakdown.png'}")


def fidelity(run: str) -> None:
    from sparse import SparseConfig, make_settings
    from sparse.density_adaptive import total_kept

    data = json.loads((Path(run) / "fidelity.json").read_text())
    cfg, edges = data["config"], data["bin_edges"]
    first = [i for i in range(len(edges) - 1) if edges[i + 1] <= 0.1 + 1e-9]  # bins inside the first tenth
    n_qblocks = -(-cfg["tokens"] // cfg["block_size"])
    print(f"T = {cfg['tokens']}, {len(data['texts'])} texts, b = {cfg['block_size']}; "
          f"full attention keeps {n_qblocks * (n_qblocks + 1) // 2} blocks per layer and head")
    print()
    print("| mode | kept blocks | density kept (first / last tenth) | cosine, mean [per text] | cosine first / last "
          "tenth | top-1, mean [per text] | top-1 first / last tenth | KL mean |")
    print("|---|---:|---|---|---|---|---|---:|")
    for m in data["modes"]:
        settings = make_settings(m["method"], {} if m["density_param"] is None else {"density": m["density_param"]})
        sc = SparseConfig(method=m["method"], k=m["k"], block_q=cfg["block_size"], block_k=cfg["block_size"],
                          settings=settings)
        name = f"{m['method']} k={m['k']}" + (f", rho={m['density_param']:g}" if m["density_param"] else "")

        def head(metric):
            v = m[metric]
            return sum(v["binned"][i] for i in first) / len(first), v["last_tenth"]

        def mean(metric):
            v = m[metric]
            return f"{v['mean']:.3f} [" + ", ".join(f"{x:.3f}" for x in v["per_text"]) + "]"

        (d0, d1), (c0, c1), (t0, t1) = head("density"), head("cosine"), head("top1")
        print(f"| {name} | {total_kept(sc, m['method'], n_qblocks)} | {d0:.3f} / {d1:.3f} | {mean('cosine')} | "
              f"{c0:.3f} / {c1:.3f} | {mean('top1')} | {t0:.3f} / {t1:.3f} | {m['kl']['mean']:.2f} |")
    print()
    print("forward seconds per text: " + "; ".join(f"{k} " + ", ".join(f"{x:.0f}" for x in v)
                                                  for k, v in data["forward_seconds"].items()))


def minimal_k(run: str) -> None:
    rows = [r for r in rows_of(run) if r.counted and r.minimal_k]
    print("| item | answer blocks | clean k (density) | adversarial k | attack at k_attack | flips at the clean k |")
    print("|---|---:|---:|---:|---|---|")
    for r in rows:
        m, n = r.minimal_k, r.answer_blocks
        flip = "yes (strict)" if m.get("strict_at_clean_k") else ("yes (breakdown)" if m.get("flip_at_clean_k") else "no")
        print(f"| {r.item_id} | {n} | {m['clean']} ({m['clean'] / n:.3f}) | {m.get('adversarial', '-')} | "
              f"{'success' if r.success else 'failed'} | {flip if 'flip_at_clean_k' in m else '-'} |")
    flips = sum(bool(r.minimal_k.get("flip_at_clean_k")) for r in rows)
    strict = sum(bool(r.minimal_k.get("strict_at_clean_k")) for r in rows)
    attacked = [r for r in rows if r.success]
    print()
    print(f"answered by full attention: {len(rows)}; flips at the clean prompt's k: {ci(flips, len(rows))} "
          f"(strict {ci(strict, len(rows))}); among the {len(attacked)} successful attacks: "
          f"{ci(sum(bool(r.minimal_k.get('flip_at_clean_k')) for r in attacked), len(attacked))}")
    clean = sorted(r.minimal_k["clean"] for r in rows)
    adv = sorted(r.minimal_k["adversarial"] for r in rows if "adversarial" in r.minimal_k)
    moved = sum(r.minimal_k.get("adversarial", 0) > r.minimal_k["clean"] for r in rows)
    print(f"median k: clean {clean[len(clean) // 2]}, adversarial {adv[len(adv) // 2] if adv else '-'}; "
          f"adversarial k larger than clean on {moved}/{len(rows)}")


def transfer_records(cell: str, leave_out: str | None = None) -> dict:
    """target label -> item id -> (flipped, cluster), over the items confident under the target;
    every target of the method `leave_out` is left out, whatever its settings."""
    from leaderboard.transfer import FLIPS, read_transfer, short_labels

    lines = read_transfer(Path(cell) / "transfer.jsonl")
    short = short_labels(lines, "target")  # a method's settings only where two of it are targets
    out = {}
    for r in lines:
        if r["confident"] and r["target_name"] != leave_out:
            out.setdefault(short[r["target"]], {})[r["item_id"]] = (r["outcome"] in FLIPS, r["cluster"])
    return out


def transfer(attack_cell: str, null_cell: str) -> None:
    """A board's transfer records (transfer.jsonl) of an attacked cell against its null's: per
    target, flips among the items confident in both, cluster intervals, the paired difference
    (McNemar, Holm over the targets)."""
    from harness.results.intervals import cluster_bootstrap, holm, paired_difference

    attack, null = transfer_records(attack_cell), transfer_records(null_cell)
    names = (config_of(attack_cell)["attack"], config_of(null_cell)["attack"])
    targets = sorted(set(attack) & set(null), key=lambda t: (t != "full", t))
    tests = []
    for t in targets:
        ids = sorted(set(attack[t]) & set(null[t]))
        a, b = [attack[t][i][0] for i in ids], [null[t][i][0] for i in ids]
        clusters = [attack[t][i][1] or i for i in ids]
        tests.append((t, ids, a, b, clusters, paired_difference(a, b, clusters)))
    adjusted = holm([x[-1].p for x in tests])
    print(f"| target | n (contexts) | {names[0]}: flips, cluster 95% | {names[1]}: flips, cluster 95% | "
          f"difference, cluster 95% | discordant {names[0]}-only : {names[1]}-only | McNemar p | Holm p |")
    print("|---|---:|---|---|---|---|---:|---:|")
    for (t, ids, a, b, clusters, test), p in zip(tests, adjusted):
        ia, ib = cluster_bootstrap(a, clusters), cluster_bootstrap(b, clusters)
        print(f"| {t} | {len(ids)} ({ia.clusters}) | {sum(a)} [{ia.low:.2f}, {ia.high:.2f}] | "
              f"{sum(b)} [{ib.low:.2f}, {ib.high:.2f}] | {test.diff:+.3f} [{test.low:+.2f}, {test.high:+.2f}] | "
              f"{test.b10} : {test.b01} | {test.p:.3g} | {p:.3g} |")


def pooled(cells: list[str]) -> None:
    """Attack success of several sources against their nulls (pairs ATTACK_CELL NULL_CELL), on
    the items each pair counts in both, per source and pooled. The sources attack the same
    contexts, so the pooled interval resamples contexts with every source's items in them; no
    McNemar p for the pool, whose pairs are not independent."""
    from harness.results import SKIPPED
    from harness.results.intervals import paired_difference

    if len(cells) < 2 or len(cells) % 2:
        bad_input("tables.py pooled: give pairs ATTACK_CELL NULL_CELL")
    print("| source | n (contexts) | attack | null | difference, cluster 95% | discordant attack-only : null-only | McNemar p |")
    print("|---|---:|---|---|---|---|---:|")
    a_all, b_all, c_all = [], [], []
    for attack_cell, null_cell in zip(cells[::2], cells[1::2]):
        attack = {r.item_id: r for r in rows_of(attack_cell) if r.status != SKIPPED}
        null = {r.item_id: r for r in rows_of(null_cell) if r.status != SKIPPED}
        ids = sorted(set(attack) & set(null))
        a, b = [bool(attack[i].success) for i in ids], [bool(null[i].success) for i in ids]
        clusters = [(attack[i].needle or {}).get("group") or i for i in ids]
        test = paired_difference(a, b, clusters)
        cfg = config_of(attack_cell)
        print(f"| {cfg['method']} ({cfg['attack']} vs {config_of(null_cell)['attack']}) | {len(ids)} ({test.clusters}) | "
              f"{sum(a)} | {sum(b)} | {test.diff:+.3f} [{test.low:+.2f}, {test.high:+.2f}] | {test.b10} : {test.b01} | "
              f"{test.p:.3g} |")
        a_all, b_all, c_all = a_all + a, b_all + b, c_all + clusters
    test = paired_difference(a_all, b_all, c_all)
    print(f"| pooled | {len(a_all)} ({test.clusters}) | {sum(a_all)} | {sum(b_all)} | {test.diff:+.3f} "
          f"[{test.low:+.2f}, {test.high:+.2f}] | {test.b10} : {test.b01} | - |")


def pooled_transfer(cells: list[str]) -> None:
    """Transfer pooled over sources (pairs ATTACK_CELL NULL_CELL): per target, each source's
    tokens against its null's on the items confident in both, the source's own method left out
    under all its settings (that is its attack success, not transfer). The sources share
    contexts, so intervals resample contexts with every source's items in them, and there is no
    McNemar p; beside the 95% interval, a simultaneous one over the targets (Bonferroni: level
    1 - 0.05 / targets)."""
    from harness.results.intervals import paired_difference

    if len(cells) < 2 or len(cells) % 2:
        bad_input("tables.py pooled-transfer: give pairs ATTACK_CELL NULL_CELL")
    pooled = {}
    for attack_cell, null_cell in zip(cells[::2], cells[1::2]):
        source = config_of(attack_cell)["method"]
        attack, null = transfer_records(attack_cell, source), transfer_records(null_cell, source)
        for t in set(attack) & set(null):
            ids = sorted(set(attack[t]) & set(null[t]))
            if not ids:
                continue
            flips_a, flips_b, clusters, sources = pooled.setdefault(t, ([], [], [], set()))
            flips_a += [attack[t][i][0] for i in ids]
            flips_b += [null[t][i][0] for i in ids]
            clusters += [attack[t][i][1] or i for i in ids]
            sources.add(source)
    targets = sorted(pooled, key=lambda t: (t != "full", t))
    level = 1 - 0.05 / len(targets)
    print(f"| target | pairs (contexts) | sources | attack flips | null flips | difference, cluster 95% | "
          f"simultaneous {100 * level:.2f}% |")
    print("|---|---:|---:|---:|---:|---|---|")
    for t in targets:
        a, b, clusters, sources = pooled[t]
        test = paired_difference(a, b, clusters, n_boot=20000)
        wide = paired_difference(a, b, clusters, n_boot=20000, level=level)
        print(f"| {t} | {len(a)} ({test.clusters}) | {len(sources)} | {sum(a)} | {sum(b)} | "
              f"{test.diff:+.3f} [{test.low:+.2f}, {test.high:+.2f}] | [{wide.low:+.2f}, {wide.high:+.2f}] |")


def directions(density: float, cells: list[str]) -> None:
    """Which questions an attacked cell flips, by the answer full attention gets right (yes /
    no), naturally and after the attack, both at the attack's k; the draws its searches used;
    and at which k the leaderboard reads each item at `density` (the swept k whose recorded
    density is nearest, `leaderboard.aggregate.k_at_density`)."""
    from collections import Counter

    from leaderboard.aggregate import k_at_density

    for cell in cells:
        if not (Path(cell) / "results.jsonl").is_file() or not (Path(cell) / "manifest.json").is_file():
            bad_input(f"tables.py directions: {cell} is not a run directory (results.jsonl and manifest.json)")
    print(f"| cell | n (contexts) | yes / no items | natural flips yes / no | attack flips yes / no | "
          f"strict + breakdown | mean draws: all / flipped | items read at k (density {density:g}) |")
    print("|---|---:|---|---|---|---|---|---|")
    for cell in cells:
        rows = [r for r in rows_of(cell) if r.counted]
        if not rows:
            bad_input(f"tables.py directions: {cell} has no counted items")
        cfg = config_of(cell)
        k = str(cfg["k_attack"])
        contexts = len({(r.needle or {}).get("group") or r.item_id for r in rows})
        by = {a: [r for r in rows if r.answer == a] for a in ("yes", "no")}
        hit = [r for r in rows if r.flipped and r.flipped.get(k)]
        natural = [sum(bool(r.natural_flipped.get(k)) for r in by[a]) for a in ("yes", "no")]
        attacked = [sum(r.answer == a for r in hit) for a in ("yes", "no")]
        classes = Counter((r.outcomes or {}).get(k, {}).get("class") for r in hit)
        flipped = [r.steps for r in hit]
        reads = Counter(k_at_density(r, density) for r in rows)
        read_text = ", ".join(f"k={kk}: {n}" for kk, n in sorted(reads.items(), key=lambda x: (x[0] is None, x[0])))
        mean_flipped = f"{sum(flipped) / len(flipped):.1f}" if flipped else "-"
        print(f"| {cfg['method']} {cfg['attack']} k={k} | {len(rows)} ({contexts}) | {len(by['yes'])} / {len(by['no'])} | "
              f"{natural[0]} / {natural[1]} | {attacked[0]} / {attacked[1]} | "
              f"{classes['strict']} + {classes['breakdown']} | "
              f"{sum(r.steps for r in rows) / len(rows):.1f} / {mean_flipped} of {cfg['steps']} | {read_text} |")


if __name__ == "__main__":
    kind, *args = sys.argv[1:]
    if kind == "protocol":
        protocol(args)
        sys.exit(0)
    if kind == "needle":
        needle(args[0])
    elif kind == "sink":
        sink(args[0], args[1])
    elif kind == "outcomes":
        outcomes(args[0], [float(m) for m in args[1:]] or [0.0])
    elif kind == "grid":
        grid(args[0], args[1:])
    elif kind == "fidelity":
        fidelity(args[0])
    elif kind == "minimal-k":
        minimal_k(args[0])
    elif kind == "transfer":
        transfer(args[0], args[1])
    elif kind == "pooled":
        pooled(args)
    elif kind == "pooled-transfer":
        pooled_transfer(args)
    elif kind == "directions":
        if len(args) < 2:
            bad_input("tables.py directions: give DENSITY CELL [CELL ...]")
        try:
            density = float(args[0])
        except ValueError:
            bad_input(f"tables.py directions: DENSITY must be a number, got {args[0]!r}")
        directions(density, args[1:])
    else:
        bad_input(f"unknown table {kind!r}: needle, sink, outcomes, grid, fidelity, minimal-k, protocol, transfer, "
                 "pooled, pooled-transfer or directions")
