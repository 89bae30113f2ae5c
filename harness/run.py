"""`python -m harness.run`: attack every item of a suite, sweep k, store and report flip rates.

Per item: build the prompt (context + adversarial slot + question), score it
without adversarial tokens (the natural flip and the seed's "can the model answer
at all" check), run the attack at k_attack, then score the adversarial prompt
under full attention and every k of the sweep. One JSON row per item is appended
as soon as it is done; rerunning the same command resumes.
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
from sparse import SparseConfig
from tasks import SuiteError, build_context, load_suite

from .options import NOT_RESULT_KEYS, UsageError, resolve
from .store import RunStore
from .wandb_log import WandbLogger

SKIP_FULL_WRONG = "full attention answers wrongly without adversarial tokens"


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


def result_config(opts: dict, attack_cfg) -> dict:
    from dataclasses import asdict

    config = {k: v for k, v in opts.items() if k not in NOT_RESULT_KEYS}
    config["attack_params"] = asdict(attack_cfg)
    return config


def run_item(target: Target, spec, attack_cfg, item, opts: dict, progress) -> dict:
    start = time.perf_counter()
    seed = item_seed(opts["seed"], item.id)
    ks = opts["k_sweep"]
    context = build_context(opts["context"], target.tokenizer, opts["context_tokens"], seed=seed)
    prepared = target.prepare(item, context)
    natural = target.sweep(prepared, [], ks)
    row = {
        "item_id": item.id, "question": item.question, "answer": item.answer,
        "status": "attacked", "skip_reason": None,
        "natural": {m: s.to_dict() for m, s in natural.items()},
        "natural_flipped": {str(k): natural[FULL].correct and not natural[str(k)].correct for k in ks},
        "attack": opts["attack"], "k_attack": opts["k_attack"],
        "adv_ids": None, "adv_text": None, "steps": 0, "success": False, "verified": False,
        "scores": None, "flipped": None,
    }
    if not natural[FULL].correct:
        row.update(status="skipped", skip_reason=SKIP_FULL_WRONG)
    else:
        result = spec.run(target, prepared, attack_cfg, seed, progress=progress)
        scores = target.sweep(prepared, result.adv_ids, ks)
        flipped = {str(k): scores[FULL].correct and not scores[str(k)].correct for k in ks}
        row.update(
            adv_ids=result.adv_ids, adv_text=result.adv_text, steps=result.steps,
            success=result.success and flipped[str(opts["k_attack"])],
            scores={m: s.to_dict() for m, s in scores.items()}, flipped=flipped,
        )
        row["verified"] = row["success"] and scores[str(max(ks))].correct
        row["_trace"] = result.trace
    row["timing"] = {"seconds": round(time.perf_counter() - start, 3)}
    return row


def format_table(summary: dict) -> str:
    natural = {e["k"]: e for e in summary["natural_per_k"]}
    lines = [f"{'k':>4}  {'flip rate':>9}  {'95% CI':>15}  {'natural':>7}  {'n':>4}"]
    for e in summary["per_k"]:
        mark = "  <- k_attack" if e["k"] == summary["k_attack"] else ""
        lines.append(f"{e['k']:>4}  {e['flip_rate']:>9.3f}  [{e['ci_low']:.3f}, {e['ci_high']:.3f}]  "
                     f"{natural[e['k']]['flip_rate']:>7.3f}  {e['n']:>4}{mark}")
    n = summary["n_attacked"]
    lines.append(f"attack success: {summary['n_success']}/{n} (verified {summary['n_verified']}), "
                 f"skipped: {summary['n_skipped']} of {summary['n_items']} items")
    return "\n".join(lines)


def run(opts: dict) -> dict:
    from harness.models import load_model, model_fingerprint

    spec = get_attack(opts["attack"])
    try:
        attack_cfg = spec.make_config(**opts)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        items = load_suite(opts["suite"], opts["limit"])
    except SuiteError as exc:
        raise UsageError(str(exc)) from None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = Path(opts["out"] or f"runs/{stamp}-{opts['model'].replace('/', '_')}-{opts['attack']}")
    config = result_config(opts, attack_cfg)
    store = RunStore(out)
    store.check_resumable(config)  # before the slow model load
    print(f"loading model {opts['model']} ...", file=sys.stderr)
    model, tokenizer = load_model(opts["model"])
    manifest = {"config": config, "model": model_fingerprint(opts["model"]), "versions": _versions(),
                "git_commit": _git_commit(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    rows = store.open(manifest)
    done = {r["item_id"] for r in rows}
    if done:
        print(f"resuming {out}: {len(done)} of {len(items)} items already done", file=sys.stderr)
    sparse_cfg = SparseConfig(method=opts["method"], k=opts["k_attack"], block_q=opts["block_q"],
                              block_k=opts["block_k"], dense_layers=opts["dense_layers"], seed=opts["seed"])
    target = Target(model, tokenizer, sparse_cfg, batch_size=opts["batch_size"])
    logger = WandbLogger(opts["wandb"], opts["wandb_project"], manifest, out)
    todo = [item for item in items if item.id not in done]
    summary = store.write_summary(rows, opts["k_attack"], opts["k_sweep"])
    for item in tqdm(todo, desc="items", unit="item"):
        with tqdm(total=attack_cfg.steps, desc=f"{item.id} {opts['attack']}", unit="step", leave=False) as bar:
            row = run_item(target, spec, attack_cfg, item, opts, bar)
        trace = row.pop("_trace", [])
        store.append(row)
        rows.append(row)
        summary = store.write_summary(rows, opts["k_attack"], opts["k_sweep"])
        logger.log_item(row, trace, summary)
    logger.finish(summary, rows)
    print(format_table(summary))
    print(f"results: {store.results_path}\nsummary: {store.summary_path}\nmanifest: {store.manifest_path}")
    return summary


def main(argv=None) -> int:
    from harness.models import ModelLoadError

    try:
        run(resolve(argv))
    except (UsageError, ModelLoadError) as exc:
        print(f"harness.run: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished items are saved; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
