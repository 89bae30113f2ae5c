"""Scaling of STREAM selection and block-sparse attention against dense SDPA.

Prints a Markdown table: for each sequence length T, STREAM selection time and the
peak RSS growth over the inputs (sampled every 2 ms) of a fresh subprocess doing
only the selection, block-sparse attention time at k = 5% of the blocks with the
differentiable gather kernel and the FlexAttention kernel (compiled once per
shape, compile time excluded), and dense causal SDPA time (skipped where its
T x T scores would not fit the memory budget).

    python benchmarks/sparse_scaling.py [--lengths 2048,4096,8192,16384,32768]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from sparse import SparseConfig, block_sparse_attention, flex_block_sparse_attention, select_blocks

CHILD = """
import json, sys, threading, time, torch
from sparse import SparseConfig, select_blocks

def rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096

T, H, D, b, k = (int(x) for x in sys.argv[1:6])
g = torch.Generator().manual_seed(0)
q = torch.randn(1, H, T, D, generator=g); key = torch.randn(1, H, T, D, generator=g)
base, peak, done = rss_bytes(), [0], threading.Event()

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss_bytes())
        time.sleep(0.002)

sampler = threading.Thread(target=sample); sampler.start()
t = time.perf_counter()
select_blocks(q, key, SparseConfig(method="stream", k=k, block_q=b, block_k=b))
seconds = time.perf_counter() - t
done.set(); sampler.join()
print(json.dumps({"seconds": seconds, "peak_mib": (max(peak[0], rss_bytes()) - base) / 2**20}))
"""


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="2048,4096,8192,16384,32768")
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--k", type=int, default=8, help="k for the selection timing")
    parser.add_argument("--density", type=float, default=0.05, help="fraction of blocks kept for the attention timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dense-max-gib", type=float, default=8.0, help="skip dense SDPA above this score size")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    H, D, b = args.heads, args.head_dim, args.block
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, heads {H}, head_dim {D}, "
          f"block {b}, selection k {args.k}, attention density {args.density:.0%}, best of {args.repeats}\n")
    print("| T | STREAM select (s) | select peak RSS (MiB) | k (5%) | gather attn (s) | flex attn (s) | dense SDPA (s) | SDPA / flex |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for T in lengths:
        child = [json.loads(subprocess.run(
            [sys.executable, "-c", CHILD, str(T), str(H), str(D), str(b), str(args.k)],
            capture_output=True, text=True, check=True).stdout) for _ in range(args.repeats)]
        sel_s = min(c["seconds"] for c in child)
        sel_mib = max(c["peak_mib"] for c in child)
        g = torch.Generator().manual_seed(1)
        q, key, val = (torch.randn(1, H, T, D, generator=g) for _ in range(3))
        k_attn = max(1, round(args.density * T / b))
        cfg = SparseConfig(method="stream", k=k_attn, block_q=b, block_k=b)
        sel = select_blocks(q, key, cfg)
        with torch.no_grad():
            attn_s = best_of(lambda: block_sparse_attention(q, key, val, sel, cfg), args.repeats)
            flex_block_sparse_attention(q, key, val, sel, cfg)  # compile for this shape
            flex_s = best_of(lambda: flex_block_sparse_attention(q, key, val, sel, cfg), args.repeats)
            dense_gib = H * T * T * 4 / 2**30
            dense_s = None
            if dense_gib <= args.dense_max_gib:
                dense_s = best_of(lambda: torch.nn.functional.scaled_dot_product_attention(q, key, val, is_causal=True), args.repeats)
        speed = f"{dense_s / flex_s:.1f}x" if dense_s else "-"
        dense_txt = f"{dense_s:.3f}" if dense_s else "skipped"
        print(f"| {T} | {sel_s:.3f} | {sel_mib:.0f} | {k_attn} | {attn_s:.3f} | {flex_s:.3f} | {dense_txt} | {speed} |",
              flush=True)
        rows.append((T, sel_s, sel_mib))
    by_t = {T: (s, m) for T, s, m in rows}
    if 4096 in by_t and 32768 in by_t:
        (s4, m4), (s32, m32) = by_t[4096], by_t[32768]
        print(f"\nselection time(32k)/time(4k) = {s32 / s4:.1f} (target <= 12); "
              f"peak memory(32k)/memory(4k) = {m32 / max(m4, 1e-9):.1f} (target <= 10)")


if __name__ == "__main__":
    main()
