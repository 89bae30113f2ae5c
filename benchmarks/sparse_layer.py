"""One sparse layer at GCG's shapes: STREAM selection and block-sparse attention, per path.

The shapes of benchmarks/gcg_step.py's candidate forwards on smollm2-135m (9 query heads,
3 KV heads, head dim 64, a 205-token prompt of which the last 29 positions are
recomputed): for each batch size, the best of several calls of
  - `select_blocks` scoring candidates from the dense block-score table (the short-sequence
    path) against gathering candidate key blocks (the long-sequence path),
  - `block_sparse_attention` forward (inference) and forward + backward, through the
    masked per-KV-head path against the gather path.
The paths are forced by the size budget `CHUNK_ELEMENTS`, as the tests do.

    python benchmarks/sparse_layer.py [--batches 1,64,256] [--threads N]
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


def best_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def measure(batch: int, repeats: int) -> dict:
    g = torch.Generator().manual_seed(batch)
    q = torch.randn(batch, HEADS, QUERIES, DIM, generator=g)
    k, v = (torch.randn(batch, KV_HEADS, KEYS, DIM, generator=g) for _ in range(2))
    cfg = SparseConfig(method="stream", k=4, block_q=8, block_k=8)
    offset = KEYS - QUERIES
    out = {}
    budget = layout.CHUNK_ELEMENTS
    for name, elements in (("table", budget), ("gather", 0)):
        layout.CHUNK_ELEMENTS = elements
        with torch.inference_mode():
            out[f"select {name}"] = best_ms(lambda: select_blocks(q, k, cfg, offset), repeats)
    layout.CHUNK_ELEMENTS = budget
    with torch.inference_mode():
        sel = select_blocks(q, k, cfg, offset)
    grads = [t.clone().requires_grad_(True) for t in (q, k, v)]
    for name, fn in (("masked", attention._masked_attention), ("gather", attention._gathered_attention)):
        lay = layout.make_layout(q, k, cfg, offset)
        with torch.inference_mode():
            out[f"forward {name}"] = best_ms(lambda: fn(q, k, v, sel, lay, None, DIM**-0.5), repeats)
        out[f"fwd+bwd {name}"] = best_ms(lambda: fn(*grads, sel, lay, None, DIM**-0.5).sum().backward(), repeats)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="1,64,256")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}; "
          f"Hq={HEADS}, Hkv={KV_HEADS}, D={DIM}, keys {KEYS}, queries {QUERIES}, k=4, b=8; ms, best of {args.repeats}\n")
    cols = ["select table", "select gather", "forward masked", "forward gather", "fwd+bwd masked", "fwd+bwd gather"]
    print("| batch | " + " | ".join(cols) + " |")
    print("|---:|" + "---:|" * len(cols))
    for batch in (int(b) for b in args.batches.split(",")):
        r = measure(batch, args.repeats)
        print(f"| {batch} | " + " | ".join(f"{r[c]:.1f}" for c in cols) + " |", flush=True)


if __name__ == "__main__":
    main()
