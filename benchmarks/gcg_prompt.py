"""The prompt both sides of benchmarks/gcg_step.py time GCG on, and its nanoGCG spec.

A module of its own so that gcg_step.py (which drives nanoGCG) and nanogcg_step.py
(whose standalone mode needs the same prompt) share it without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from attacks import Target
from sparse import SparseConfig
from tasks import TaskItem, build_context

if TYPE_CHECKING:
    from nanogcg_step import NanoGCG

MODEL = "smollm2-135m"
ITEM = TaskItem(id="bench-000", question="Is Rome in Belgium?", answer="no")
K_ATTACK = 4


def bench_prompt(prompt_tokens: int = 200, n_adv: int = 3):
    """(model, tokenizer, (target, prepared)) with the whole prompt about `prompt_tokens` long."""
    from harness.models import load_model

    model, tok = load_model(MODEL)
    target = Target(model, tok, SparseConfig(k=K_ATTACK))
    bare = target.prepare(ITEM, "")
    overhead = len(bare.prefix_ids) + len(bare.suffix_ids) + n_adv
    prepared = target.prepare(ITEM, build_context("filler", tok, max(0, prompt_tokens - overhead), seed=0))
    return model, tok, (target, prepared)


def nanogcg_spec(nano: NanoGCG, prompt, width: int, steps: int, n_adv: int = 3) -> dict:
    target, prepared = prompt
    tok = target.tokenizer
    wrong = tok.decode([prepared.wrong_ids[0]])
    return {
        "model_dir": str(nano.model_copy(Path(target.model.name_or_path))),
        "prefix_ids": prepared.prefix_ids, "suffix_ids": prepared.suffix_ids,
        "optim_str_init": " ".join(["x"] * n_adv), "target": wrong,
        "search_width": width, "steps": steps, "threads": torch.get_num_threads(),
        "probe_ids": prepared.prompt_ids([tok.encode(" x", add_special_tokens=False)[0]] * n_adv),
    }
