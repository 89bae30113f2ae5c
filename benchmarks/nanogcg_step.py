"""Seconds per step of nanoGCG 0.3.0, the reference GCG, on the same model and prompt.

nanoGCG pins `transformers<=4.47.1`, so it runs in its own virtual environment
under the benchmark's temp directory (created on first use: torch==2.13.0 from the
local CPU wheel first, then nanogcg and the old transformers from PyPI). The
flipbench model cache is written by transformers 5, whose config and tokenizer
files 4.47 misreads (it would silently fall back to rope_theta 10000), so a cleaned
copy with the same weights is written next to the venv.

This file is both the driver (`NanoGCG`, imported by `benchmarks/gcg_step.py`) and
the worker it runs inside that venv (`--worker SPEC.json`, standard library, torch,
transformers and nanogcg only). Step times are the intervals between nanoGCG's
calls of `compute_token_gradient`, one per step, so loading and setup are excluded.

    python benchmarks/nanogcg_step.py --width 64 --steps 3   # nanoGCG alone
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NANOGCG = "nanogcg==0.3.0"
OLD_TRANSFORMERS = "transformers<=4.47.1"
TORCH = "torch==2.13.0"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "flipbench-bench"


class NanoGCG:
    """nanoGCG in its own venv under `workdir`, timed on a model directory."""

    def __init__(self, workdir: Path = DEFAULT_WORKDIR, log=sys.stderr):
        self.workdir = Path(workdir)
        self.venv = self.workdir / "nanogcg-venv"
        self.log = log

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def ensure_venv(self) -> None:
        probe = "import nanogcg, transformers, torch; print(transformers.__version__, torch.__version__)"
        if self.python.exists():
            done = subprocess.run([self.python, "-c", probe], capture_output=True, text=True)
            if done.returncode == 0:
                return
        self.workdir.mkdir(parents=True, exist_ok=True)
        print(f"creating {self.venv} (torch, {NANOGCG}, {OLD_TRANSFORMERS}) ...", file=self.log)
        subprocess.run(["python3", "-m", "venv", str(self.venv)], check=True)
        pip = [str(self.python), "-m", "pip", "install", "--quiet"]
        subprocess.run(pip + [TORCH], check=True)  # first, so nanogcg's dependency resolves to the local wheel
        subprocess.run(pip + [NANOGCG, OLD_TRANSFORMERS, TORCH], check=True)

    def versions(self) -> dict:
        code = ("import json, importlib.metadata as m; "
                "print(json.dumps({p: m.version(p) for p in ('nanogcg', 'transformers', 'torch')}))")
        return json.loads(subprocess.run([self.python, "-c", code], capture_output=True, text=True, check=True).stdout)

    def model_copy(self, source: Path) -> Path:
        """A copy of a transformers-5 model dir that transformers 4.47 reads correctly."""
        source = Path(source)
        out = self.workdir / f"{source.name}-tf4"
        out.mkdir(parents=True, exist_ok=True)
        config = json.loads((source / "config.json").read_text())
        rope = config.pop("rope_parameters", None) or {}
        if rope.get("rope_type", "default") != "default":
            raise SystemExit(f"{source}: rope type {rope['rope_type']!r} has no transformers-4.47 equivalent here")
        if "rope_theta" in rope:
            config["rope_theta"] = rope["rope_theta"]
        config["torch_dtype"] = config.pop("dtype", "float32")
        (out / "config.json").write_text(json.dumps(config, indent=2))
        tok_cfg = json.loads((source / "tokenizer_config.json").read_text())
        tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        for key in ("backend", "is_local", "local_files_only"):
            tok_cfg.pop(key, None)
        (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2))
        for name in ("model.safetensors", "tokenizer.json", "generation_config.json"):
            link = out / name
            if (source / name).exists() and not link.exists():
                link.symlink_to((source / name).resolve())
        return out

    def run(self, spec: dict) -> dict:
        """Run the worker on `spec` (see `worker`); returns its JSON answer."""
        path = self.workdir / f"spec-{os.getpid()}.json"
        path.write_text(json.dumps(spec))
        done = subprocess.run([self.python, str(Path(__file__).resolve()), "--worker", str(path)],
                              capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if done.returncode != 0:
            raise RuntimeError(f"nanoGCG worker failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def worker(spec_path: str) -> None:
    """Inside the nanoGCG venv: time `nanogcg.run` on the spec's prompt.

    spec: model_dir, prefix_ids, suffix_ids (the prompt around the adversarial slot),
    optim_str_init, target, search_width, steps, threads; and probe_ids, whose
    last-position logits are returned so the driver can check the model is the same.
    """
    import nanogcg
    import nanogcg.gcg as impl
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], torch_dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    with torch.no_grad():
        probe = model(input_ids=torch.tensor([spec["probe_ids"]])).logits[0, -1]
    # The prompt is given already templated: an empty chat template makes nanoGCG use
    # it verbatim, and no BOS token stops it from stripping the first token.
    tok.chat_template = None
    tok.bos_token = None
    before, after = tok.decode(spec["prefix_ids"]), tok.decode(spec["suffix_ids"])
    same = (tok(before)["input_ids"] == spec["prefix_ids"]
            and tok(after, add_special_tokens=False)["input_ids"] == spec["suffix_ids"])
    stamps, widths = [], []
    original, original_filter = impl.GCG.compute_token_gradient, impl.filter_ids

    def counted_filter(ids, tokenizer):
        kept = original_filter(ids, tokenizer)
        widths.append(len(kept))
        return kept

    impl.filter_ids = counted_filter

    def stamped(self, *args, **kwargs):
        stamps.append(time.perf_counter())
        return original(self, *args, **kwargs)

    impl.GCG.compute_token_gradient = stamped
    config = nanogcg.GCGConfig(num_steps=spec["steps"], optim_str_init=spec["optim_str_init"],
                               search_width=spec["search_width"], verbosity="WARNING")
    result = nanogcg.run(model, tok, before + "{optim_str}" + after, spec["target"], config)
    stamps.append(time.perf_counter())
    print(json.dumps({"step_seconds": [b - a for a, b in zip(stamps, stamps[1:])], "scored": widths,
                      "same_tokens": same,
                      "probe_logits": probe.tolist(), "best_loss": result.best_loss,
                      "prompt_tokens": len(tok(before)["input_ids"]) + len(tok(after, add_special_tokens=False)["input_ids"])}))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return
    from gcg_prompt import bench_prompt, nanogcg_spec  # the flipbench side; benchmarks/ is on sys.path

    nano = NanoGCG(args.workdir)
    nano.ensure_venv()
    model, tok, prompt = bench_prompt()
    out = nano.run(nanogcg_spec(nano, prompt, args.width, args.steps + 1))
    print(json.dumps({k: v for k, v in out.items() if k != "probe_logits"}, indent=1))


if __name__ == "__main__":
    main()
