"""`python -m harness.run`: attack every item of a suite, sweep k, store and report flip rates.

Per item: build the prompt (context + adversarial slot + question), score it
without adversarial tokens (the natural flip and the seed's "can the model answer
at all" check), run the attack at k_attack, then score the adversarial prompt
under full attention and every k of the sweep; outcomes are classified by
`tasks.outcomes.classify` at `--full-margin`. One row per item
(`harness.results.ResultRow`) is appended as soon as it is done; rerunning the
same command resumes.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path

from tqdm.auto import tqdm

from attacks import FULL, Target, get_attack
from sparse import SparseConfig, make_settings
from sparse.geometry import answer_geometry, k_for_density
from tasks import SuiteError, build_context, load_suite, needle_token_span, needs_tokenizer
from tasks.needle import DEFAULT_DEPTHS
from tasks.outcomes import classify, confident, draw_class

from harness.cli import command
from harness.errors import UsageError
from harness.config import RunConfig, resolve
from harness.pictures import picture
from harness.results import (ATTACKED, NO_ATTACK, SKIP_FULL_WRONG, SKIPPED, VERIFIED, ResultRow, outcome_maps,
                      verification)
from harness.results.store import RunStore
from harness.backends.wandb_logger import WandbLogger


def item_seed(seed: int, item_id: str) -> int:
    """Per-item seed independent of item order, so resumed and sliced runs agree."""
    return (seed * 1_000_003 + zlib.crc32(item_id.encode())) % (2**31)


def _versions() -> dict:
    import torch
    import transformers

    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("flipbench")
    except PackageNotFoundError:
        own = None
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "flipbench": own}


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def result_config(cfg: RunConfig, attack_cfg) -> dict:
    """manifest.json's config: the options that decide the rows, and the attack's whole config."""
    from dataclasses import asdict

    return {**cfg.result_config(), "attack_params": asdict(attack_cfg)}


def draw_counts(draws: list[dict]) -> dict:
    """Per-draw classes of an attack as counts: sparse-only flips, full attention also
    not right, both right (`tasks.outcomes.draw_class` on the answer classes)."""
    counts = {"n": len(draws), "sparse_only": 0, "full_wrong": 0, "both_right": 0}
    for d in draws:
        counts[draw_class(d["full"], d["sparse"])] += 1
    return counts


def minimal_k_record(target: Target, prepared, row: ResultRow, margin: float) -> dict:
    """The k a researcher using STREAM as intended would pick (the seed's binary search for
    the smallest k reproducing full attention's next two tokens) on the clean prompt and,
    when attacked, on the adversarial one; and whether the adversarial prompt flips at the
    clean prompt's k (k calibrated on clean data, then used on the attacked prompt)."""
    record = {"clean": target.minimal_k(prepared, [])}
    if row.adv_ids is not None:
        record["adversarial"] = target.minimal_k(prepared, row.adv_ids)
        at_clean = target.score(prepared, [row.adv_ids], record["clean"])[0]
        outcome = classify(row.scores[FULL], at_clean, margin)
        record.update(flip_at_clean_k=outcome.flip, strict_at_clean_k=outcome.strict)
    return record


def item_context(cfg: RunConfig, tokenizer, item) -> str:
    """The context text shown before `item`'s question: none for items that carry their own
    (the needle suite's), else the run's context builder, seeded per item."""
    if item.group is not None:
        return ""
    return build_context(cfg.context, tokenizer, cfg.context_tokens, seed=item_seed(cfg.seed, item.id))


def densities_to_ks(target: Target, prepared, n_adv: int, densities) -> dict[str, int]:
    """{str(density): the k giving that density at the answer position} for `prepared` with
    `n_adv` adversarial tokens, under `target.sparse`'s method."""
    prompt_len = len(prepared.prompt_ids([0] * n_adv))
    region = target.region_length(prepared, n_adv)
    return {str(d): k_for_density(target.sparse, d, prompt_len, region) for d in densities}


def run_item(target: Target, spec, attack_cfg, item, cfg: RunConfig, progress) -> tuple[ResultRow, list[dict]]:
    """Score, attack and sweep one item; returns its row and the attack's trace."""
    start = time.perf_counter()
    seed = item_seed(cfg.seed, item.id)
    margin = cfg.full_margin
    context = item_context(cfg, target.tokenizer, item)
    prepared = natural_prepared = target.prepare(item, context)
    ks, density_ks = cfg.k_sweep, None
    if cfg.density_sweep is not None:
        density_ks = densities_to_ks(target, prepared, getattr(attack_cfg, "n_adv", 0), cfg.density_sweep)
        ks = sorted(set(ks) | set(density_ks.values()))
    needle = None if item.needle_span is None else needle_token_span(target.tokenizer, item, context)
    natural_shares, adversarial_shares, natural_heatmaps, adversarial_heatmaps = {}, {}, {}, {}
    natural, natural_attribution = target.traced_sweep(prepared, [], ks, needle, shares=natural_shares,
                                                       heatmaps=natural_heatmaps)
    natural_flipped, natural_classes = outcome_maps(natural, margin)
    row = ResultRow(item_id=item.id, question=item.question, answer=item.answer, status=ATTACKED, skip_reason=None,
                    natural=natural, natural_flipped=natural_flipped, attack=cfg.attack,
                    k_attack=cfg.k_attack, natural_outcomes=natural_classes, density_ks=density_ks,
                    confident=confident(natural[FULL], margin))
    if needle is not None:
        row.needle = {"depth": item.depth, "group": item.group, "token_span": list(needle)}
    elif item.group is not None:  # an absent-needle question: its context holds no answer
        row.needle = {"depth": None, "group": item.group, "token_span": None, "absent": True}
    row.attribution = {"natural": natural_attribution}
    trace: list[dict] = []
    adv_ids: list[int] = []
    if not row.confident:
        row.status, row.skip_reason = SKIPPED, SKIP_FULL_WRONG
    else:
        result = spec.run(target, prepared, attack_cfg, seed, progress=progress)
        placed = result.prepared or prepared  # `far` puts its tokens elsewhere in the prompt
        scores = natural
        if result.adv_ids and result.prepared is None:
            scores, row.attribution["adversarial"] = target.traced_sweep(prepared, result.adv_ids, ks, needle,
                                                                        shares=adversarial_shares,
                                                                        heatmaps=adversarial_heatmaps)
        elif result.adv_ids:  # the needle span moved with the context: no attribution, only the shares
            scores = target.traced_sweep(placed, result.adv_ids, ks, shares=adversarial_shares,
                                         heatmaps=adversarial_heatmaps)[0]
        flipped, classes = outcome_maps(scores, margin)
        adv_ids = result.adv_ids
        row.adv_ids, row.adv_text, row.steps = result.adv_ids, result.adv_text, result.steps
        row.success = cfg.attack != NO_ATTACK and flipped[str(cfg.k_attack)]  # the rule rows are read with
        row.scores, row.flipped, row.outcomes = scores, flipped, classes
        row.draws = draw_counts(result.draws)
        trace = result.trace
        prepared = placed
    if cfg.minimal_k:
        row.minimal_k = minimal_k_record(target, prepared, row, margin)
    row.answer_blocks, row.density = answer_geometry(len(prepared.prompt_ids(adv_ids)), target.sparse, ks,
                                                     target.region_length(prepared, len(adv_ids)))
    if row.success:
        row.verified_status, row.monotone = verification(row.scores, ks, cfg.k_attack, row.density)
        row.verified = row.verified_status == VERIFIED
    flipped = any((row.flipped or {}).values())
    if flipped and adv_ids:  # the flip page's picture (harness.pictures): the attacked prompt's
        row.picture = picture(target, prepared, adv_ids, needle if prepared is natural_prepared else None,
                              "adversarial", adversarial_shares, cfg.k_attack, adversarial_heatmaps)
    elif flipped or any(row.natural_flipped.values()):  # or the clean prompt's
        row.picture = picture(target, natural_prepared, [], needle, "natural", natural_shares, cfg.k_attack,
                              natural_heatmaps)
    row.timing = {"seconds": round(time.perf_counter() - start, 3)}
    return row, trace


def _ci(low: float, high: float) -> str:
    return f"[{low:.3f}, {high:.3f}]"


def _direction_line(name: str, table: dict) -> str:
    yes, no, balanced = table["yes"], table["no"], table["balanced"]
    rate = "-" if balanced["rate"] is None else f"{balanced['rate']:.3f} {_ci(balanced['low'], balanced['high'])}"
    return (f"{name} flips by gold answer: yes->no/neither {yes['count']}/{yes['n']}, "
            f"no->yes/neither {no['count']}/{no['n']}; balanced flip rate {rate}")


def format_table(summary: dict) -> str:
    """The summary as a plain-text table: flip rate with its Wilson and cluster intervals,
    its strict / breakdown split (they add up to the flips), the natural flip rate and the
    density per k; then attack success, directions, densities and per-draw rates."""
    natural = {e["k"]: e for e in summary["natural_per_k"]}
    classes = summary.get("outcomes_per_k")
    density = {e["k"]: e["density"] for e in summary.get("density_per_k", [])}
    head = f"{'k':>4}  {'density':>7}  {'flip rate':>9}  {'Wilson 95%':>15}  {'cluster 95%':>15}"
    if classes:
        head += f"  {'strict':>6}  {'breakdown':>9}"
    lines = [head + f"  {'natural':>7}  {'n':>4}"]
    for i, e in enumerate(summary["per_k"]):
        d = density.get(e["k"])
        line = f"{e['k']:>4}  {'-' if d is None else f'{d:.3f}':>7}  {e['flip_rate']:>9.3f}  " \
               f"{_ci(e['ci_low'], e['ci_high']):>15}  {_ci(e['cluster_low'], e['cluster_high']):>15}"
        if classes:
            line += f"  {classes['strict'][i]['count']:>6}  {classes['breakdown'][i]['count']:>9}"
        mark = "  <- k_attack" if e["k"] == summary["k_attack"] else ""
        lines.append(line + f"  {natural[e['k']]['flip_rate']:>7.3f}  {e['n']:>4}{mark}")
    n = summary["n_attacked"]
    success = summary["success"]
    verified = f"verified {summary['n_verified']}"
    if "n_unverifiable" in summary:
        verified += f", unverifiable {summary['n_unverifiable']}, monotone {summary['n_monotone']}"
    lines.append(f"attack success: {summary['n_success']}/{n} {_ci(success['ci_low'], success['ci_high'])} Wilson, "
                 f"{_ci(success['cluster_low'], success['cluster_high'])} over {success['clusters']} contexts "
                 f"({verified}); skipped: {summary['n_skipped']} of {summary['n_items']} items")
    draws = summary.get("draws")
    if draws and draws["n"]:  # natural runs (--attack none) draw nothing
        lines.append(f"per draw ({draws['n']} insertions): sparse-only flip {draws['sparse_only']['rate']:.3f}, "
                     f"full attention also not right {draws['full_wrong']['rate']:.3f}, "
                     f"both right {draws['both_right']['rate']:.3f}")
    for name, table in summary["direction"].items():
        lines.append(_direction_line(f"{name} (k={summary['k_attack']})", table))
    for e in summary.get("per_density", []):
        nat = e["natural"]
        lines.append(f"density {e['density']:.3f} (median k {e['k_median']}, achieved {e['density_achieved'] or 0:.3f}): "
                     f"flip rate {e['flip_rate']:.3f} {_ci(e['ci_low'], e['ci_high'])}, cluster "
                     f"{_ci(e['cluster_low'], e['cluster_high'])}, strict {e['strict']['count']} + breakdown "
                     f"{e['breakdown']['count']}; natural {nat['flip_rate']:.3f} "
                     f"{_ci(nat['cluster_low'], nat['cluster_high'])} ({nat['strict']['count']} + "
                     f"{nat['breakdown']['count']}), n {e['n']}")
    margins = summary.get("full_margin_of_counted")
    if margins:
        lines.append(f"full attention P(a) - P(ā) on counted items: min {margins['min']:.3f}, median "
                     f"{margins['median']:.3f}, {margins['below_0.2']}/{margins['n']} below 0.2")
    searched = summary.get("minimal_k")
    if searched:
        flips = searched["flip_at_clean_k"]
        lines.append(f"minimal k (the seed paper's binary search, next 2 tokens): median {searched['median_clean']} "
                     f"clean, {searched['median_adversarial']} adversarial; flips at the clean prompt's k: "
                     f"{flips['count']}/{flips['n']} [{flips['ci_low']:.3f}, {flips['ci_high']:.3f}]")
    lines.append("density: what the answer position keeps of what it could see (key blocks for block-sparse "
                 "methods, keys for kv-cache methods; mean over items); cluster intervals resample contexts; a flip "
                 "is a strict flip or a breakdown (docs/results-schema.md)")
    return "\n".join(lines)


def _items(cfg: RunConfig, tokenizer) -> list:
    """The suite's items; generated suites (needle) are sized with the model's tokenizer."""
    try:
        return load_suite(cfg.suite, cfg.limit, tokenizer=tokenizer, context_tokens=cfg.context_tokens,
                          depths=cfg.depth or DEFAULT_DEPTHS, seed=cfg.seed, absent=cfg.absent,
                          balance=cfg.balance if cfg.balance is not None else cfg.suite == "needle")
    except SuiteError as exc:
        raise UsageError(str(exc)) from None


def _attack(cfg: RunConfig):
    """The attack's spec and config, or a UsageError naming the bad option."""
    spec = get_attack(cfg.attack)
    try:
        return spec, spec.make_config(**cfg.attack_values())
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def sparse_config(cfg: RunConfig) -> SparseConfig:
    """The sparse attention of a run: what all methods share, and the method's own settings."""
    return SparseConfig(method=cfg.method, k=cfg.k_attack, block_q=cfg.block_q, block_k=cfg.block_k,
                        dense_layers=cfg.dense_layers, seed=cfg.seed, sink_blocks=cfg.sink_blocks,
                        local_blocks=cfg.local_blocks, settings=make_settings(cfg.method, cfg.method_options))


def _target(cfg: RunConfig, model, tokenizer) -> Target:
    """The scoring gateway of a run (one per process that scores items)."""
    return Target(model, tokenizer, sparse_config(cfg), batch_size=cfg.batch_size)


def make_item_worker(cfg: RunConfig):
    """item -> (row, trace) in a process of its own (a Ray actor of `--workers`): loads the model once."""
    from harness.models import load_model
    from harness.config import import_plugin

    for plugin in cfg.plugin:  # the actor's process has not imported the user's plugins
        import_plugin(plugin)
    spec, attack_cfg = _attack(cfg)
    model, tokenizer = load_model(cfg.model)
    target = _target(cfg, model, tokenizer)

    def work(item):
        with tqdm(disable=True) as bar:
            return run_item(target, spec, attack_cfg, item, cfg, bar)

    return work


def _rows(todo: list, target: Target, spec, attack_cfg, cfg: RunConfig):
    """(row, trace) per item, in item order: in this process, or on `--workers` Ray actors."""
    if cfg.workers == 1 and cfg.ray_address is None:
        for item in todo:
            with tqdm(total=getattr(attack_cfg, "steps", None), desc=f"{item.id} {cfg.attack}", unit="step",
                      leave=False) as bar:
                yield run_item(target, spec, attack_cfg, item, cfg, bar)
        return
    from harness.workers import RayItemPool

    plugins = [str(Path(p).resolve()) if p.endswith(".py") else p for p in cfg.plugin]
    with RayItemPool(cfg.replace(plugin=plugins), cfg.workers, address=cfg.ray_address,
                     factory=make_item_worker) as pool:
        yield from pool.imap(todo)


def run(cfg: RunConfig) -> dict:
    from harness.models import load_model, model_fingerprint

    spec, attack_cfg = _attack(cfg)
    items = None if needs_tokenizer(cfg.suite) else _items(cfg, None)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = Path(cfg.out or f"runs/{stamp}-{cfg.model.replace('/', '_')}-{cfg.attack}")
    config = result_config(cfg, attack_cfg)
    store = RunStore(out)
    store.check_resumable(config)  # before the slow model load
    print(f"loading model {cfg.model} ...", file=sys.stderr)
    model, tokenizer = load_model(cfg.model)
    if items is None:
        items = _items(cfg, tokenizer)
    target = _target(cfg, model, tokenizer)
    vocabulary = target.vocabulary_report()
    print(f"attack vocabulary: {vocabulary['pool']} ids (excluded: "
          + ", ".join(f"{n} {kind}" for kind, n in vocabulary["excluded"].items()) + ")", file=sys.stderr)
    manifest = {"config": config, "model": model_fingerprint(cfg.model), "versions": _versions(),
                "git_commit": _git_commit(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "attack_vocabulary": vocabulary}
    rows = store.open(manifest)
    done = {r.item_id for r in rows}
    if done:
        print(f"resuming {out}: {len(done)} of {len(items)} items already done", file=sys.stderr)
    logger = WandbLogger(cfg.wandb, cfg.wandb_project, manifest, out)
    todo = [item for item in items if item.id not in done]
    summary = store.write_summary(rows, cfg.k_attack, cfg.k_sweep, cfg.density_sweep)
    for row, trace in tqdm(_rows(todo, target, spec, attack_cfg, cfg), total=len(todo), desc="items", unit="item"):
        store.append(row)
        rows.append(row)
        summary = store.write_summary(rows, cfg.k_attack, cfg.k_sweep, cfg.density_sweep)
        logger.log_item(row, trace, summary)
    logger.finish(summary, rows)
    print(format_table(summary))
    print(f"results: {store.results_path}\nsummary: {store.summary_path}\nmanifest: {store.manifest_path}")
    return summary


def main(argv=None) -> int:
    def body():
        run(resolve(argv))

    return command("harness.run", body,
                   interrupted="interrupted: finished items are saved; rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
