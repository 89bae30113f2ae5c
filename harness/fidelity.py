"""`python -m harness.fidelity`: how faithful sparse attention is at every position of a long text.

The seed (section 4, Figure 3) reports that under STREAM the cosine similarity of the
output stays high while the top-1 token match drops, and (section 4.2) that retrieval
degrades toward the end of long texts. This measures both, teacher-forced: one forward
per attention mode per text, then at every position t, full attention against each
sparse method and k:

- `cosine`: cosine similarity of the final hidden states (the model's output before
  the LM head), the seed's "cosine similarity of the output";
- `kl`: KL(full || sparse) of the next-token distributions;
- `top1`: the argmax tokens agree; `top5`: overlap of the top-5 sets (0..1);
- `density`: kept / causal key blocks of the query block holding t, averaged over
  sparse layers and heads, from the selections actually used.

Logits are never materialised for the whole text ([T, vocab] is 5 GB for Qwen at
T = 8192): the LM head runs on chunks of positions for both modes at once. Results
are binned by relative position (JSON and one PNG per metric); texts are drawn from
the filler/haystack pools (deterministic by seed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sparse import SparseConfig, available_sparse_methods, get_sparse_method, sparse_attention
from tasks import build_context

from .errors import UsageError

METRICS = ("cosine", "kl", "top1", "top5", "density")
CHUNK = 256  # positions per LM-head chunk


@torch.no_grad()
def final_hidden(model, ids: torch.Tensor, cfg: SparseConfig | None, kernel: str) -> tuple[torch.Tensor, dict]:
    """Final hidden states [T, H] of one text and, for a sparse mode, its selections per layer."""
    body = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    if cfg is None:
        return body(input_ids=ids).last_hidden_state[0], {}
    with sparse_attention(model, cfg, kernel=kernel) as ctl:
        ctl.record = True
        hidden = body(input_ids=ids).last_hidden_state[0]
        return hidden, dict(ctl.selections)


def kept_density(selections: dict, cfg: SparseConfig, n_tokens: int) -> torch.Tensor:
    """Per position: kept / causal key blocks of its query block, mean over layers and heads."""
    per_layer = []
    for sel in selections.values():
        kept = (sel[0] >= 0).sum(-1).float()  # [H, n_qblocks]
        qb = torch.arange(sel.shape[2])
        causal = (torch.clamp((qb + 1) * cfg.block_q - 1, max=n_tokens - 1) // cfg.block_k + 1).float()
        per_layer.append((kept / causal).mean(0))
    block_density = torch.stack(per_layer).mean(0)
    return block_density.repeat_interleave(cfg.block_q)[:n_tokens]


@torch.no_grad()
def compare(model, full: torch.Tensor, sparse: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-position metrics of two runs' final hidden states [T, H], LM head in chunks."""
    head = model.get_output_embeddings()
    out = {name: [] for name in ("cosine", "kl", "top1", "top5")}
    for start in range(0, full.shape[0], CHUNK):
        f, s = full[start : start + CHUNK], sparse[start : start + CHUNK]
        out["cosine"].append(torch.nn.functional.cosine_similarity(f, s, dim=-1))
        lf, ls = head(f).float().log_softmax(-1), head(s).float().log_softmax(-1)
        out["kl"].append((lf.exp() * (lf - ls)).sum(-1).clamp_min(0))
        out["top1"].append((lf.argmax(-1) == ls.argmax(-1)).float())
        tf, ts = lf.topk(5, dim=-1).indices, ls.topk(5, dim=-1).indices
        out["top5"].append((tf[:, :, None] == ts[:, None, :]).any(-1).float().mean(-1))
    return {name: torch.cat(values) for name, values in out.items()}


def binned(values: torch.Tensor, bins: int) -> list[float]:
    """Means of `values` over `bins` equal slices of relative position."""
    edges = [round(i * len(values) / bins) for i in range(bins + 1)]
    return [float(values[a:b].mean()) if b > a else math.nan for a, b in zip(edges, edges[1:])]


def modes(methods: list[str], ks: list[int], densities: list[float]) -> list[tuple[str, int, float | None]]:
    """(method, k, density) to measure: fixed-k methods at every k; density methods at every
    density with k as the floor."""
    out = []
    for method in methods:
        for k in ks:
            for density in (densities if get_sparse_method(method).uses_density else [None]):
                out.append((method, k, density))
    return out


def run(args) -> dict:
    from harness.models import load_model, model_fingerprint

    model, tok = load_model(args.model)
    config = {k: v for k, v in vars(args).items() if k not in ("wandb", "wandb_project")} | {"out": str(args.out)}
    results = {"config": config, "model": model_fingerprint(args.model), "modes": []}
    per_mode: dict[tuple, dict[str, list]] = {}
    plan = modes(args.methods, args.k, args.density)
    bar = tqdm(total=args.texts * (1 + len(plan)), desc="forwards", unit="forward")
    for text in range(args.texts):
        context = build_context(args.context, tok, args.tokens + 8, seed=args.seed + text)
        ids = torch.tensor([tok.encode(context, add_special_tokens=False)[: args.tokens]])
        if ids.shape[1] < args.tokens:
            raise UsageError(f"text {text} has only {ids.shape[1]} tokens")
        full, _ = final_hidden(model, ids, None, args.kernel)
        bar.update(1)
        for method, k, density in plan:
            cfg = SparseConfig(method=method, k=k, block_q=args.block_size, block_k=args.block_size,
                               dense_layers=args.dense_layers, seed=args.seed, density=density)
            hidden, selections = final_hidden(model, ids, cfg, args.kernel)
            metrics = compare(model, full, hidden)
            metrics["density"] = kept_density(selections, cfg, ids.shape[1])
            store = per_mode.setdefault((method, k, density), {m: [] for m in METRICS})
            for name in METRICS:
                store[name].append(metrics[name])
            bar.update(1)
    bar.close()
    for (method, k, density), store in per_mode.items():
        entry = {"method": method, "k": k, "density_param": density}
        for name in METRICS:
            values = torch.stack(store[name]).mean(0)  # mean over texts, per position
            entry[name] = {"mean": float(values.mean()), "binned": binned(values, args.bins),
                           "last_tenth": float(values[-len(values) // 10 :].mean())}
        results["modes"].append(entry)
    return results


def plot(results: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    bins = results["config"]["bins"]
    centers = [(i + 0.5) / bins for i in range(bins)]
    for name in METRICS:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for m in results["modes"]:
            label = f"{m['method']} k={m['k']}" + (f" rho={m['density_param']}" if m["density_param"] else "")
            ax.plot(centers, m[name]["binned"], marker=".", label=label)
        ax.set_xlabel("relative position in the text")
        ax.set_ylabel(name)
        ax.set_title(f"{results['config']['model']}, T={results['config']['tokens']}: {name} against full attention")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def build_parser() -> argparse.ArgumentParser:
    def numbers(cast):
        return lambda text: [cast(x) for x in text.split(",") if x.strip()]

    p = argparse.ArgumentParser(prog="python -m harness.fidelity", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="qwen2.5-0.5b")
    p.add_argument("--methods", type=lambda t: [x for x in t.split(",") if x], default=["stream", "oracle", "window"])
    p.add_argument("--k", type=numbers(int), default=[8, 16])
    p.add_argument("--density", type=numbers(float), default=[],
                   help="densities for position-adaptive methods such as stream-density (k is their floor)")
    p.add_argument("--tokens", type=int, default=1024, help="text length T")
    p.add_argument("--texts", type=int, default=2)
    p.add_argument("--context", choices=["filler", "haystack"], default="filler")
    p.add_argument("--block-size", dest="block_size", type=int, default=8)
    p.add_argument("--dense-layers", dest="dense_layers", type=int, default=2)
    p.add_argument("--kernel", choices=["gather", "flex"], default="flex")
    p.add_argument("--bins", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--wandb", choices=["auto", "online", "offline", "disabled"], default="disabled",
                   help="log the table and plots to W&B (auto: online with WANDB_API_KEY, else offline)")
    p.add_argument("--wandb-project", dest="wandb_project", default="flipbench")
    return p


def log_wandb(results: dict, plots: list[Path], args) -> None:
    """The per-mode summary as a table and the curves as images; a failure only warns."""
    import os
    import warnings

    mode = args.wandb
    if mode == "auto":
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    try:
        import wandb

        run = wandb.init(project=args.wandb_project, mode=mode, dir=str(args.out), job_type="fidelity",
                         config=results["config"] | {"model_info": results["model"]})
        columns = ["method", "k", "density_param"] + [f"{m}_mean" for m in METRICS]
        table = wandb.Table(columns=columns, data=[[m["method"], m["k"], m["density_param"]]
                                                   + [m[name]["mean"] for name in METRICS] for m in results["modes"]])
        run.log({"fidelity": table, **{f"plot/{p.stem}": wandb.Image(str(p)) for p in plots}})
        run.finish()
    except Exception as exc:  # noqa: BLE001 - logging must never cost the results on disk
        warnings.warn(f"W&B logging failed ({type(exc).__name__}: {exc}); results on disk are unaffected",
                      stacklevel=2)


def validate(args) -> None:
    unknown = [m for m in args.methods if m not in available_sparse_methods()]
    if unknown:
        raise UsageError(f"unknown sparse method(s) {', '.join(unknown)}; known: {', '.join(available_sparse_methods())}")
    if not args.methods or not args.k or any(k < 1 for k in args.k):
        raise UsageError(f"--methods and --k need at least one value, k >= 1 (got {args.methods}, {args.k})")
    if any(not 0 < d <= 1 for d in args.density):
        raise UsageError(f"--density values must lie in (0, 1], got {args.density}")
    if args.tokens < 4 * args.block_size or args.texts < 1 or args.bins < 1 or args.tokens < args.bins:
        raise UsageError("--tokens must cover at least 4 blocks and one position per bin; --texts and --bins >= 1")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        validate(args)
        results = run(args)
    except UsageError as exc:
        print(f"harness.fidelity: error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fidelity.json").write_text(json.dumps(results, indent=2) + "\n")
    plots = plot(results, args.out)
    if args.wandb != "disabled":
        log_wandb(results, plots, args)
    print("| method | k | density param | cosine | KL | top-1 | top-5 | kept density | top-1 last 10% |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in results["modes"]:
        print(f"| {m['method']} | {m['k']} | {m['density_param'] or '-'} | {m['cosine']['mean']:.4f} | "
              f"{m['kl']['mean']:.4f} | {m['top1']['mean']:.3f} | {m['top5']['mean']:.3f} | "
              f"{m['density']['mean']:.3f} | {m['top1']['last_tenth']:.3f} |")
    print(f"written: {args.out / 'fidelity.json'} and {len(METRICS)} PNG plots", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
