"""Prefix-forward throughput on a real model: full attention (SDPA) against sparse attention (gather, flex kernels).

One sequence, no KV cache, no gradients, float32: the forward a scorer runs over a
long prefix (`model(ids, use_cache=False, logits_to_keep=1)`), on a KJV text (see
harness.experiments.fidelity). Each (T, mode) runs in a fresh subprocess, so its peak memory is
its own: the RSS high-water mark (VmHWM) is reset after loading and warm-up
(`/proc/self/clear_refs`) and read after the timed forwards. Sparse modes run each kernel
of `--kernels`: "gather" (the default on CPU) and "flex" (FlexAttention, compiled once per
shape before timing with a direct call at the model's shapes, compile time reported apart;
the timed forward is checked not to recompile).

`--check-allocations T` also profiles one forward per mode at that T with
torch.profiler's memory events and reports the largest single allocation, against
the [heads, T, T] float32 score tensor of eager attention (run as a positive control):
the profiler sees the buffers that the compiled kernel allocates too.

    python benchmarks/prefix_forward.py [--model qwen2.5-0.5b] [--lengths 1024,2048,4096,8192] [--k 8,16]
        [--kernels gather,flex]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _largest_allocation(fn) -> tuple[int, str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.events() if e.cpu_memory_usage > 0]
    top = max(events, key=lambda e: e.cpu_memory_usage)
    return int(top.cpu_memory_usage), top.name


@torch.no_grad()
def child(spec: dict) -> dict:
    """One (T, mode) measurement in this process; returns a JSON-ready dict."""
    from harness.experiments.fidelity import text_ids
    from harness.models import load_model
    from sparse import SparseConfig, select_blocks, sparse_attention
    from sparse.flex import flex_block_sparse_attention

    model, tok = load_model(spec["model"])
    T, mode = spec["tokens"], spec["mode"]
    ids = text_ids(spec["source"], tok, T, seed=0)
    cfg = None
    if mode.startswith("stream"):  # "stream k=8 gather"
        _, k_spec, kernel = mode.split()
        cfg = SparseConfig(method="stream", k=int(k_spec.split("=")[1]), block_q=spec["block"], block_k=spec["block"],
                           dense_layers=spec["dense_layers"])
    model.set_attn_implementation("eager" if mode == "eager" else "sdpa")
    compile_s = 0.0
    if cfg is not None and kernel == "flex":  # compile FlexAttention for this shape outside the timed forward
        c = model.config
        hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        g = torch.Generator().manual_seed(0)
        # [B, T, H, D] transposed to [B, H, T, D]: the strides the model's projections produce
        q = torch.randn(1, T, c.num_attention_heads, hd, generator=g).transpose(1, 2)
        k, v = (torch.randn(1, T, c.num_key_value_heads, hd, generator=g).transpose(1, 2) for _ in range(2))
        t0 = time.perf_counter()
        flex_block_sparse_attention(q, k, v, select_blocks(q, k, cfg), cfg, scaling=hd**-0.5)
        compile_s = time.perf_counter() - t0
    model(input_ids=ids[:, :64], use_cache=False, logits_to_keep=1)  # allocator and thread-pool warm-up

    def forward():
        if cfg is None:
            return model(input_ids=ids, use_cache=False, logits_to_keep=1)
        with sparse_attention(model, cfg, kernel=kernel):
            return model(input_ids=ids, use_cache=False, logits_to_keep=1)

    if spec.get("check"):
        size, op = _largest_allocation(forward)
        return {"largest_allocation_bytes": size, "op": op}
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    rss_before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        forward()
        times.append(time.perf_counter() - t0)
    return {"seconds": min(times), "tokens_per_s": T / min(times), "compile_s": compile_s,
            "rss_before_mib": rss_before / 1024, "peak_rss_mib": _status_kib("VmHWM") / 1024,
            "recompiled": counters["stats"]["unique_graphs"] != graphs}


def _mode_name(mode: str) -> str:
    """"stream k=8 gather" -> "stream k=8 (gather)"."""
    method, k, kernel = mode.split()
    return f"{method} {k} ({kernel})"


def run_child(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--lengths", default="1024,2048,4096,8192")
    parser.add_argument("--k", default="8,16", help="STREAM k values")
    parser.add_argument("--kernels", default="gather,flex", help="sparse attention kernels to time")
    parser.add_argument("--block", type=int, default=8, help="b_q = b_k")
    parser.add_argument("--dense-layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="timed forwards per configuration (best taken)")
    parser.add_argument("--source", default="kjv", help="text source of harness.experiments.fidelity (kjv, filler, haystack)")
    parser.add_argument("--check-allocations", type=int, default=0, metavar="T",
                        help="also profile the largest single allocation per mode at this T (0: skip)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    lengths = [int(x) for x in args.lengths.split(",") if x]  # "" skips the timed table
    unknown = set(args.kernels.split(",")) - {"gather", "flex"}
    if unknown:
        parser.error(f"--kernels takes gather and/or flex (CPU kernels), got {', '.join(sorted(unknown))}")
    modes = ["full"] + [f"stream k={k} {kernel}" for k in args.k.split(",") for kernel in args.kernels.split(",")]
    base = {"model": args.model, "block": args.block, "dense_layers": args.dense_layers, "repeats": args.repeats,
            "source": args.source}
    print(f"model {args.model}, torch {torch.__version__}, threads {torch.get_num_threads()}, b = {args.block}, "
          f"{args.dense_layers} dense layers, float32, best of {args.repeats}; fresh process per row\n")
    print("| T | attention | forward (s) | tokens/s | vs full | peak RSS (MiB) | RSS before (MiB) | "
          "peak growth (MiB) | flex compile (s) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for T in lengths:
        full_s = None
        for mode in modes:
            r = run_child({**base, "tokens": T, "mode": mode})
            full_s = r["seconds"] if mode == "full" else full_s
            name = "full (SDPA)" if mode == "full" else _mode_name(mode)
            compile_s = f"{r['compile_s']:.1f}" if mode.endswith("flex") else "-"
            note = " (recompiled while timed)" if r["recompiled"] else ""
            print(f"| {T} | {name} | {r['seconds']:.2f} | {r['tokens_per_s']:.0f} | {full_s / r['seconds']:.2f}x "
                  f"| {r['peak_rss_mib']:.0f} | {r['rss_before_mib']:.0f} | "
                  f"{r['peak_rss_mib'] - r['rss_before_mib']:.0f} | {compile_s}{note} |", flush=True)
    if args.check_allocations:
        T = args.check_allocations
        print(f"\nLargest single allocation during one forward at T = {T} (torch.profiler memory events):\n")
        print("| attention | largest allocation (MiB) | by op |")
        print("|---|---:|---|")
        for mode in ["eager", "full", *modes[1:]]:
            r = run_child({**base, "tokens": T, "mode": mode, "check": True})
            name = {"eager": "full (eager: materialises [heads, T, T] scores)", "full": "full (SDPA)"}.get(mode) \
                or _mode_name(mode)
            print(f"| {name} | {r['largest_allocation_bytes'] / 2**20:.1f} | {r['op']} |", flush=True)


if __name__ == "__main__":
    main()
