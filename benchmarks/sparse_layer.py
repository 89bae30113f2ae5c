"""One sparse layer: block selection (STREAM unless `--method`) and block-sparse attention, per path.

GCG rows: the shapes of benchmarks/gcg_step.py's candidate forwards on smollm2-135m (9 query
heads, 3 KV heads, head dim 64, a 205-token prompt of which the last 29 positions are
recomputed), per batch size. For each, the best of several calls of
  - `select_blocks` scoring candidates from the dense block-score table (the short-sequence
    path) against gathering candidate key blocks (the long-sequence path),
  - `block_sparse_attention` forward (inference) and forward + backward, through the
    masked per-KV-head path and the two gather kernels: per query head ("q-head") and per KV
    head over the union of the query group's blocks ("kv-head", union included).
`--long` adds whole-sequence rows at Qwen2.5's head layout (12 query heads, 2 KV heads,
head dim 128), batch 1, gather kernels only (the masked path would build a T x T mask).
"union/W" is the mean union width of a query group over the selection width, and "rule" the
kernel `_gathered_attention` picks from it. The selection paths are forced by the size budget
`CHUNK_ELEMENTS`, the attention paths by calling them directly; the calls of one row are
interleaved so that a varying machine load hits all paths alike.

    python benchmarks/sparse_layer.py [--batches 1,64,256] [--long 2048,4096] [--method stream] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import sparse.attention as attention
import sparse.layout as layout
from sparse import SparseConfig, select_blocks

HEADS, KV_HEADS, DIM, KEYS, QUERIES = 9, 3, 64, 205, 29
LONG_HEADS, LONG_KV_HEADS, LONG_DIM = 12, 2, 128
COLS = ["select table", "select gather", "forward masked", "forward q-head", "forward kv-head", "fwd+bwd masked",
        "fwd+bwd q-head", "fwd+bwd kv-head"]


def _per_kv_head(q, k, v, sel, lay, padding, scale):
    return attention._gather_per_kv_head(q, k, v, *attention._group_unions(sel, k.shape[1]), lay, padding, scale)


KERNELS = {"masked": attention._masked_attention, "q-head": attention._gather_per_query_head, "kv-head": _per_kv_head}


def best_ms(fns: dict, repeats: int) -> dict:
    """Best time in ms of each function, the calls interleaved, after one untimed round."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * min(t) for name, t in times.items()}


def union_stats(sel, kv_heads: int) -> dict:
    """Mean union width over the selection width, and which gather kernel the rule picks."""
    _, _, n_union = attention._group_unions(sel, kv_heads)
    picked = "kv-head" if attention._shared_unions(sel, kv_heads) is not None else "q-head"
    return {"union/W": f"{float(n_union.float().mean()) / sel.shape[-1]:.2f}", "rule": picked}


def attention_times(q, k, v, sel, cfg, offset, kernels, repeats) -> dict:
    lay = layout.make_layout(q, k, cfg, offset)
    scale = q.shape[-1] ** -0.5
    grads = [t.clone().requires_grad_(True) for t in (q, k, v)]
    with torch.inference_mode():
        out = best_ms({f"forward {n}": (lambda f=KERNELS[n]: f(q, k, v, sel, lay, None, scale)) for n in kernels},
                      repeats)
    out |= best_ms({f"fwd+bwd {n}": (lambda f=KERNELS[n]: f(*grads, sel, lay, None, scale).sum().backward())
                    for n in kernels}, repeats)
    return out | union_stats(sel, k.shape[1])


def measure(batch: int, method: str, repeats: int) -> dict:
    g = torch.Generator().manual_seed(batch)
    q = torch.randn(batch, HEADS, QUERIES, DIM, generator=g)
    k, v = (torch.randn(batch, KV_HEADS, KEYS, DIM, generator=g) for _ in range(2))
    cfg = SparseConfig(method=method, k=4, block_q=8, block_k=8)
    offset = KEYS - QUERIES
    budget = layout.CHUNK_ELEMENTS
    out = {}
    for name, elements in (("table", budget), ("gather", 0)):
        layout.CHUNK_ELEMENTS = elements
        with torch.inference_mode():
            out |= best_ms({f"select {name}": lambda: select_blocks(q, k, cfg, offset)}, repeats)
    layout.CHUNK_ELEMENTS = budget
    with torch.inference_mode():
        sel = select_blocks(q, k, cfg, offset)
    return out | attention_times(q, k, v, sel, cfg, offset, ("masked", "q-head", "kv-head"), repeats)


def measure_long(length: int, method: str, repeats: int) -> dict:
    g = torch.Generator().manual_seed(length)
    q = torch.randn(1, LONG_HEADS, length, LONG_DIM, generator=g)
    k, v = (torch.randn(1, LONG_KV_HEADS, length, LONG_DIM, generator=g) for _ in range(2))
    cfg = SparseConfig(method=method, k=8, block_q=8, block_k=8)
    with torch.inference_mode():
        sel = select_blocks(q, k, cfg)
    return attention_times(q, k, v, sel, cfg, 0, ("q-head", "kv-head"), repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="1,64,256")
    p.add_argument("--long", default="", help="comma-separated sequence lengths for the long rows")
    p.add_argument("--method", default="stream", help="selection method (e.g. window: blocks shared by all heads)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}; "
          f"method {args.method}; ms, best of {args.repeats}\n")
    cols = ["union/W", "rule"] + COLS
    print("| shape | " + " | ".join(cols) + " |")
    print("|---|---:|---|" + "---:|" * len(COLS))
    rows = [(f"GCG Hq={HEADS} Hkv={KV_HEADS} D={DIM}, batch {b}, {QUERIES}/{KEYS} tokens, k=4 b=8",
             lambda b=int(b): measure(b, args.method, args.repeats)) for b in args.batches.split(",") if b]
    rows += [(f"Hq={LONG_HEADS} Hkv={LONG_KV_HEADS} D={LONG_DIM}, batch 1, T={t}, k=8 b=8",
              lambda t=int(t): measure_long(t, args.method, args.repeats)) for t in args.long.split(",") if t]
    for label, run in rows:
        r = run()
        cells = [r[c] if isinstance(r.get(c), str) else f"{r[c]:.{2 if r[c] < 10 else 1}f}" if c in r else "-"
                 for c in cols]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
