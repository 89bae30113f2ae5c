"""One layer at long context per loop chunk budget: block selection and the gather kernel.

Random queries, keys and values at Qwen2.5-0.5B's head layout (14 query heads, 2 KV heads,
head dim 64), batch 1, b_q = b_k = 8, inference. For each sequence length, the best of
`--repeats` calls in milliseconds of
  - `select_blocks` per method,
  - `block_sparse_attention` (the gather kernel) over STREAM's selection,
per `LOOP_CHUNK_ELEMENTS` budget (elements per intermediate tensor of the loops over query
blocks), the calls of one row interleaved so that a varying machine load hits every budget
alike; every budget is checked to return the same selection and output. Dense causal SDPA
and the FlexAttention kernel over the same selection are timed once per length for scale.
Why: the chunk size decides whether intermediate tensors are reused from the allocator's
heap, in cache, or freshly mapped and page-faulted on every step. `--gcg-batches` adds the
short shapes of GCG's candidate forwards (smollm2-135m: 9/3 heads, d = 64, a 205-token
prompt whose last 29 positions are recomputed, k = 4), where a budget change must not cost.

    python benchmarks/loop_chunks.py [--tokens 2048,4096,8192] [--methods stream,stream-density,oracle]
        [--budgets 24,21] [--k 8] [--density 0.03] [--gcg-batches 64,256] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

import sparse.attention as attention
import sparse.layout as layout
from sparse import SparseConfig, block_sparse_attention, flex_block_sparse_attention, make_settings, select_blocks

HEADS, KV_HEADS, DIM = 14, 2, 64
GCG_HEADS, GCG_KV_HEADS, GCG_KEYS, GCG_QUERIES = 9, 3, 205, 29


def set_budget(elements: int) -> None:
    layout.LOOP_CHUNK_ELEMENTS = attention.LOOP_CHUNK_ELEMENTS = elements


def best_per_budget(fn, budgets: list[int], repeats: int) -> tuple[dict, bool]:
    """Best seconds of `fn()` per budget (log2 of elements) and whether all budgets agree."""
    times, results = {b: [] for b in budgets}, {}
    saved = layout.LOOP_CHUNK_ELEMENTS
    try:
        for _ in range(repeats):
            for b in budgets:
                set_budget(1 << b)
                t0 = time.perf_counter()
                results[b] = fn()
                times[b].append(time.perf_counter() - t0)
    finally:
        set_budget(saved)
    first = results[budgets[0]]
    same = all(torch.allclose(first.float(), r.float(), atol=1e-5) for r in results.values())
    return {b: min(t) for b, t in times.items()}, same


def seconds(fn) -> float:
    fn()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="2048,4096,8192")
    parser.add_argument("--methods", default="stream,stream-density,oracle")
    parser.add_argument("--budgets", default="24,21", help="log2 of LOOP_CHUNK_ELEMENTS, comma separated")
    parser.add_argument("--k", type=int, default=8, help="k, or k_min of stream-density")
    parser.add_argument("--density", type=float, default=0.03, help="rho of stream-density")
    parser.add_argument("--gcg-batches", default="", help="also time GCG's short shapes at these batch sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        budgets = [int(b) for b in args.budgets.split(",")]
    except ValueError:
        parser.error(f"--budgets must be comma-separated integers (log2 of elements), got {args.budgets!r}")
    if not budgets or min(budgets) < 10 or max(budgets) > 30:
        parser.error(f"--budgets must lie in 10..30 (2^10 to 2^30 elements), got {args.budgets!r}")
    print(f"threads {torch.get_num_threads()}, k = {args.k}, heads {HEADS}/{KV_HEADS}, head dim {DIM}; "
          f"milliseconds per layer (best of {args.repeats})")
    print("| tokens | step | " + " | ".join(f"2^{b} elements" for b in budgets) + " | same result |")
    print("|---:|---|" + "---:|" * len(budgets) + "---|")

    def row(label, name, fn):
        times, same = best_per_budget(fn, budgets, args.repeats)
        print(f"| {label} | {name} | " + " | ".join(f"{1e3 * times[b]:.1f}" for b in budgets)
              + f" | {'yes' if same else 'NO'} |", flush=True)

    for batch in [int(b) for b in args.gcg_batches.split(",") if b]:
        g = torch.Generator().manual_seed(batch)
        q = torch.randn(batch, GCG_HEADS, GCG_QUERIES, DIM, generator=g)
        k, v = (torch.randn(batch, GCG_KV_HEADS, GCG_KEYS, DIM, generator=g) for _ in range(2))
        offset = GCG_KEYS - GCG_QUERIES
        for method in ("stream", "window"):
            cfg = SparseConfig(method=method, k=4, block_q=8, block_k=8)
            row(f"GCG batch {batch}", f"select {method}", lambda cfg=cfg: select_blocks(q, k, cfg, offset))
            sel = select_blocks(q, k, cfg, offset)
            with torch.inference_mode():
                row(f"GCG batch {batch}", f"gather attention ({method})",
                    lambda cfg=cfg, sel=sel: block_sparse_attention(q, k, v, sel, cfg, offset))
    for tokens in [int(t) for t in args.tokens.split(",") if t]:
        g = torch.Generator().manual_seed(tokens)
        q = torch.randn(1, HEADS, tokens, DIM, generator=g)
        k, v = (torch.randn(1, KV_HEADS, tokens, DIM, generator=g) for _ in range(2))

        for method in args.methods.split(","):
            settings = make_settings(method, {"density": args.density} if method == "stream-density" else {})
            cfg = SparseConfig(method=method, k=args.k, block_q=8, block_k=8, settings=settings)
            row(tokens, f"select {method}", lambda cfg=cfg: select_blocks(q, k, cfg))
        cfg = SparseConfig(method="stream", k=args.k, block_q=8, block_k=8)
        sel = select_blocks(q, k, cfg)
        with torch.inference_mode():
            row(tokens, "gather attention (stream)", lambda: block_sparse_attention(q, k, v, sel, cfg))
            sdpa = seconds(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                                       enable_gqa=True))
            flex = seconds(lambda: flex_block_sparse_attention(q, k, v, sel, cfg))
        print(f"| {tokens} | for scale: dense SDPA {1e3 * sdpa:.1f}, flex kernel (stream) {1e3 * flex:.1f} | | | |",
              flush=True)


if __name__ == "__main__":
    main()
