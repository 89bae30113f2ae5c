"""Cost of every registered sparse method: one sparse layer's selection and its whole
attention call, at a matched density, on qwen2.5-1.5b's attention shapes.

Prints a Markdown table: per method and sequence length T, the selection time (block
selection, or a kv-cache method's token scoring and keep set), the time of the layer's
attention call (selection included, gather kernel), and the peak RSS growth over the
inputs of a fresh subprocess doing that call (sampled every 2 ms). The budget is the k
giving `--density` at the last position (`sparse.geometry.k_for_density`); kv-cache methods
compress all but the last `--question` tokens (the prompt's question stays dense).

    python benchmarks/method_cost.py [--lengths 256,2048,8192] [--methods stream,snapkv]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

def child_source() -> str:
    """The measuring subprocess (a fresh interpreter: RSS growth is the call's own)."""
    return r"""
import json, sys, threading, time, types, torch
from sparse import SparseConfig, get_sparse_method, make_settings, select_blocks
from sparse.geometry import k_for_density
from sparse.hf import SparseController

def rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096

args = json.loads(sys.argv[1])
T, Hq, Hkv, D, b = args["T"], args["heads"], args["kv_heads"], args["head_dim"], args["block"]
spec = get_sparse_method(args["method"])
settings = make_settings(args["method"], args["settings"])
cfg = SparseConfig(method=args["method"], block_q=b, block_k=b, dense_layers=0, settings=settings)
region = T - args["question"] if spec.is_kv else None
k = k_for_density(cfg, args["density"], T, region)
cfg = cfg.replace(k=k)
g = torch.Generator().manual_seed(0)
q = torch.randn(1, Hq, T, D, generator=g)
key, value = (torch.randn(1, Hkv, T, D, generator=g) for _ in range(2))
module = types.SimpleNamespace(layer_idx=0, config=types.SimpleNamespace(num_hidden_layers=28))
ctl = SparseController(cfg=cfg, region=region)

def select():
    if spec.is_kv:
        from sparse.kv_cache import compressed_region
        compressed_region(cfg, 0, 28, q, key, value, region, None, D ** -0.5)
    else:
        select_blocks(q, key, cfg)

def call():
    ctl.attention(module, q, key, value, None, D ** -0.5)

base, peak, done = rss_bytes(), [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss_bytes())
        time.sleep(0.002)
sampler = threading.Thread(target=sample); sampler.start()
with torch.no_grad():
    call()
done.set(); sampler.join()
peak_mib = (max(peak[0], rss_bytes()) - base) / 2**20
def best(fn):
    times = []
    for _ in range(args["repeats"]):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return min(times)
with torch.no_grad():
    out = {"k": k, "select_s": best(select), "call_s": best(call), "peak_mib": peak_mib}
print(json.dumps(out))
"""


def main() -> None:
    from sparse import available_sparse_methods, get_sparse_method

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="256,2048,8192")
    parser.add_argument("--methods", default=None, help="comma-separated (default: every registered method)")
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--heads", type=int, default=12, help="query heads (qwen2.5-1.5b: 12)")
    parser.add_argument("--kv-heads", type=int, default=2, help="KV heads (qwen2.5-1.5b: 2)")
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--block", type=int, default=8, help="block size (the harness default)")
    parser.add_argument("--question", type=int, default=32, help="tokens after a kv method's compressed region")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    methods = args.methods.split(",") if args.methods else [m for m in available_sparse_methods()
                                                            if m not in ("stream-density",)]
    import torch

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, heads {args.heads}/{args.kv_heads} "
          f"(query/KV), head_dim {args.head_dim}, block {args.block}, density {args.density}, one layer, "
          f"best of {args.repeats}\n")
    print("| method | family | T | k | selection (s) | attention call (s) | peak RSS (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for method in methods:
        family = "kv-cache" if get_sparse_method(method).is_kv else "prefill"
        for T in (int(x) for x in args.lengths.split(",")):
            job = {"method": method, "settings": {}, "T": T, "heads": args.heads, "kv_heads": args.kv_heads,
                   "head_dim": args.head_dim, "block": args.block, "density": args.density,
                   "question": args.question, "repeats": args.repeats}
            done = subprocess.run([sys.executable, "-c", child_source(), json.dumps(job)], capture_output=True,
                                  text=True)
            if done.returncode != 0:
                print(f"| {method} | {family} | {T} | - | failed: {done.stderr.strip().splitlines()[-1]} | | |",
                      flush=True)
                continue
            r = json.loads(done.stdout)
            print(f"| {method} | {family} | {T} | {r['k']} | {r['select_s']:.4f} | {r['call_s']:.4f} | "
                  f"{r['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
