"""Seconds per GCG step on smollm2-135m, flipbench's GCG against nanoGCG 0.3.0.

One item, a prompt of about 200 tokens (filler context), n_adv adversarial tokens
and, per search width:
  (a) flipbench GCG with the full-attention-only objective (L = m_full, make full
      attention answer wrongly: the single-mode work nanoGCG does),
  (b) flipbench GCG with the flip objective (sparse at k_attack + full hinge),
  nanoGCG, run in its own venv (`benchmarks/nanogcg_step.py`) on the same weights,
      prompt tokens, width, and the wrong answer as its target string.
The machine is shared and has 2 cores, so the three are interleaved, round after
round, and each is reported as the median step over all rounds; the first step of
every run is a warm-up and is dropped. `nproc` and the load average are printed.

    python benchmarks/gcg_step.py [--widths 64,256] [--rounds 3] [--steps 3] [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gcg_prompt import K_ATTACK, bench_prompt, nanogcg_spec  # noqa: E402
from nanogcg_step import DEFAULT_WORKDIR, NanoGCG  # noqa: E402

from attacks.gcg import FullAttentionObjective, GCGConfig, GCGSearch  # noqa: E402

def ours(prompt, width: int, steps: int, sparse: bool, batch_size: int, n_adv: int = 3) -> dict:
    """Step times of `steps` flipbench GCG steps (setup excluded)."""
    target, prepared = prompt
    target.clear_prefix_caches()
    config = GCGConfig(n_adv=n_adv, k_attack=K_ATTACK, search_width=width, batch_size=batch_size)
    search = GCGSearch(target, prepared, config, rng_seed=0,
                       objective=None if sparse else FullAttentionObjective())
    times, scored, full = [], [], []
    for _ in range(steps):
        t = time.perf_counter()
        search.step()
        times.append(time.perf_counter() - t)
        scored.append(search.n_scored)
        full.append(search.n_full)
    return {"step_seconds": times, "scored": scored, "scored_full": full}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="64,256")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="timed steps per run (after one warm-up step)")
    p.add_argument("--batch-size", type=int, default=64, help="flipbench candidates per forward")
    p.add_argument("--prompt-tokens", type=int, default=200)
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--threads", type=int, help="torch threads for both sides (default: torch's own); "
                   "1 keeps a shared machine's other jobs from oversubscribing the cores")
    p.add_argument("--json", type=Path, help="also write every measured step here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    widths = [int(w) for w in args.widths.split(",")]

    nano = NanoGCG(args.workdir)
    nano.ensure_venv()
    model, tok, prompt = bench_prompt(args.prompt_tokens)
    target, prepared = prompt
    n_tokens = len(prepared.prompt_ids([0, 0, 0]))
    print(f"nproc {os.cpu_count()}, torch threads {torch.get_num_threads()}, load {os.getloadavg()}, "
          f"prompt {n_tokens} tokens, nanoGCG env {nano.versions()}", file=sys.stderr)

    runs = {(w, name): [] for w in widths for name in ("a", "b", "nanogcg")}
    checks = {}
    for r in range(args.rounds):
        for w in widths:
            for name in ("nanogcg", "a", "b"):
                if name == "nanogcg":
                    out = nano.run(nanogcg_spec(nano, prompt, w, args.steps + 1))
                    probe = torch.tensor(out.pop("probe_logits"))
                    with torch.no_grad():
                        ref = model(input_ids=torch.tensor([nanogcg_spec(nano, prompt, w, 1)["probe_ids"]])).logits[0, -1]
                    checks = {"max_abs_logit_diff": float((probe - ref).abs().max()), "same_tokens": out["same_tokens"],
                              "nanogcg_prompt_tokens": out["prompt_tokens"]}
                else:
                    out = ours(prompt, w, args.steps + 1, sparse=name == "b", batch_size=min(args.batch_size, w))
                runs[(w, name)].append(out)
                print(f"round {r} width {w} {name}: {[round(s, 2) for s in out['step_seconds']]} "
                      f"load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)

    def median(w, name):
        return statistics.median(s for out in runs[(w, name)] for s in out["step_seconds"][1:])

    print(f"\nnproc {os.cpu_count()}; torch threads {torch.get_num_threads()}; load average after the runs {tuple(round(x, 2) for x in os.getloadavg())}; "
          f"prompt {n_tokens} tokens; model check {checks}\n")
    print("| width | nanoGCG s/step | (a) full-only s/step | (a)/nanoGCG | (b) flip s/step | (b)/nanoGCG |")
    print("|---:|---:|---:|---:|---:|---:|")
    for w in widths:
        n, a, b = median(w, "nanogcg"), median(w, "a"), median(w, "b")
        print(f"| {w} | {n:.2f} | {a:.2f} | {a / n:.2f} | {b:.2f} | {b / n:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({f"{w}/{name}": v for (w, name), v in runs.items()}, indent=1))


if __name__ == "__main__":
    main()
