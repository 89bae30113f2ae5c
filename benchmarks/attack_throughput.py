"""Candidates scored per second: `Target` (prefix KV cache + batches) against naive
recomputation of the whole prompt (no cache, batch 1), full and sparse attention.

Why: an attack scores hundreds of candidates that share a long prefix; the prefix
cache and batching are what make the harness affordable. The ideal speed-up is about
prompt length / tokens recomputed per candidate (what follows the cached prefix).

    python benchmarks/attack_throughput.py [--model smollm2-135m] [--context-tokens 512]
        [--threads 1,2] [--candidates 128] [--naive 12] [--batch-size 64] [--k 4]

Each configuration scores the same candidates both ways (naive on the first
`--naive` of them) and checks that the two give the same P(correct) within 1e-4.
The first forward of each side is a warm-up (and, for Target, the prefix forward)
and is excluded: the table is steady-state throughput. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from attacks import FULL, Target  # noqa: E402
from harness.models import load_model  # noqa: E402
from sparse import SparseConfig, sparse_attention  # noqa: E402
from tasks import TaskItem, build_context  # noqa: E402

ITEM = TaskItem(id="bench-000", question="Is Rome in Belgium?", answer="no")


def naive_scores(target: Target, prepared, cands: torch.Tensor, mode) -> tuple[list[float], float]:
    """P(correct) per candidate from a full uncached forward each; (values, seconds for all but the first)."""
    cfg = target.config_for(mode)
    values, start = [], None
    for i, adv in enumerate(cands.tolist()):
        if i == 1:
            start = time.perf_counter()
        ids = torch.tensor([prepared.prompt_ids(adv)])
        with torch.no_grad():
            if cfg is None:
                logits = target.model(input_ids=ids, logits_to_keep=1).logits[:, -1]
            else:
                with sparse_attention(target.model, cfg):
                    logits = target.model(input_ids=ids, logits_to_keep=1).logits[:, -1]
        values.append(target.answer_probs(logits, prepared)[0].item())
    return values, time.perf_counter() - start


def target_scores(target: Target, prepared, cands: torch.Tensor, mode) -> tuple[list[float], float]:
    """P(correct) per candidate through Target; the first batch (prefix forward, warm-up) is untimed."""
    first = target.score(prepared, cands[: target.batch_size], mode)
    start = time.perf_counter()
    rest = target.score(prepared, cands[target.batch_size :], mode)
    return [s.p_correct for s in first + rest], time.perf_counter() - start


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--context-tokens", type=int, default=512)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--candidates", type=int, default=128)
    p.add_argument("--naive", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--k", type=int, default=4)
    args = p.parse_args(argv)
    if args.candidates <= args.batch_size:
        p.error("--candidates must exceed --batch-size (the first batch is a warm-up)")
    model, tok = load_model(args.model)
    target = Target(model, tok, SparseConfig(k=args.k), batch_size=args.batch_size)
    prepared = target.prepare(ITEM, build_context("filler", tok, args.context_tokens, seed=0))
    n_prompt = len(prepared.prompt_ids([0, 0, 0]))
    recomputed = n_prompt - prepared.cut
    cands = torch.randint(100, len(tok) - 100, (args.candidates, 3), generator=torch.Generator().manual_seed(0))
    print(f"model {args.model}, prompt {n_prompt} tokens ({recomputed} recomputed per candidate after the "
          f"cached prefix: ideal speed-up {n_prompt / recomputed:.1f}x), STREAM k={args.k}, b=8, "
          f"Target batch {args.batch_size}, nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}\n")
    print("| threads | mode | Target cand/s | naive cand/s | speed-up | max abs diff P(correct) |")
    print("|---:|---|---:|---:|---:|---:|")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for mode in (FULL, args.k):
            target.clear_prefix_caches()
            fast, fast_s = target_scores(target, prepared, cands, mode)
            slow, slow_s = naive_scores(target, prepared, cands[: args.naive], mode)
            diff = max(abs(a - b) for a, b in zip(fast, slow))
            fast_rate = (len(cands) - target.batch_size) / fast_s
            slow_rate = (args.naive - 1) / slow_s
            name = "full" if mode == FULL else f"sparse k={mode}"
            print(f"| {threads} | {name} | {fast_rate:.1f} | {slow_rate:.2f} | {fast_rate / slow_rate:.1f}x | "
                  f"{diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
