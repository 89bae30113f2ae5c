"""The scoring oracle every attack calls (TextAttack's "goal function"), and the only
code that runs the model on a prompt.

A prompt is `prefix + adversarial ids + suffix` (see `tasks.build_prompt`). The
prefix is long (template head + context) and identical for every candidate, so it
is run once per attention mode and its KV cache is reused. The cache is cut at a
multiple of `block_q`: the query blocks after the cut are then exactly the blocks
of the uncached pass, so sparse selections are identical with and without the
cache (except where a method draws per forward by design: MInference's estimate from
the current queries, the random nulls' noise; a candidate's selection never depends
on its batch position). Each mode (full attention, or sparse at some k) has its own prefix cache
because sparse attention changes the prefix's hidden states too; kv-cache methods
are the exception: the prefix lies in their compressed region, whose prefill is
dense, so they continue the full-attention prefix (with its per-layer queries,
which their scorers read).

Prefix caches are owned here, keyed by (prefix ids, mode) in a bounded LRU: items
that share a context (a needle suite asks several questions about one context)
share one prefix forward per mode, and GCG uses the same caches as the verdicts.
A sparse mode's key is its whole `SparseConfig`, so `sparse` may be replaced between
calls (the one-pass board runner does) and every method reuses the full prefix.

Candidates of equal length are scored in batches, logits only at the answer
position, in the model's dtype (float32 on CPU). Batched full-attention inference
attends to one shared copy of the prefix (`attacks.prefix_attention`) instead of a
transformers cache repeated per candidate.
"""

from __future__ import annotations

import hashlib
import inspect
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
from transformers import DynamicCache

from sparse import SparseConfig, dropped_attention_mass, get_sparse_method, settings_of, sparse_attention, span_kept
from sparse.geometry import causal_blocks, smallest_agreeing_k
from sparse.kv_cache import dense_attention_with
from tasks import AnswerSets, TaskItem, answer_token_sets, build_prompt
from tasks.outcomes import FULL, Score, token_class

from .prefix_attention import shared_prefix_attention
from .vocab import attack_vocabulary, vocabulary_exclusions


@dataclass(frozen=True)
class Mode:
    """An attention mode: full attention (`k` None) or sparse attention keeping k blocks."""

    k: int | None = None

    def __post_init__(self):
        if self.k is not None and (isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1):
            raise ValueError(f"a sparse mode needs an integer k >= 1, got {self.k!r}")

    @property
    def is_full(self) -> bool:
        return self.k is None

    @property
    def key(self) -> str:
        """The key of this mode in results rows: "full" or str(k)."""
        return FULL if self.k is None else str(self.k)

    @classmethod
    def of(cls, mode) -> "Mode":
        """A Mode from a Mode, "full", or an int k."""
        if isinstance(mode, Mode):
            return mode
        if mode == FULL:
            return cls(None)
        return cls(int(mode))


@dataclass
class PreparedItem:
    """One item's token ids and answer sets; `cut` prefix tokens go in the KV cache.

    `context_text` and `slot` are what `Target.prepare` was given, so an attack can
    prepare the same prompt with the slot elsewhere (the `far` null) or read its context.
    """

    item: TaskItem
    prefix_ids: list[int]
    suffix_ids: list[int]
    correct_ids: tuple[int, ...]
    wrong_ids: tuple[int, ...]
    cut: int  # a multiple of block_q
    context_text: str = ""
    slot: str = "question"
    region_tail: int = 0  # suffix tokens before the question (the context, with slot="context")

    def prompt_ids(self, adv_ids) -> list[int]:
        return list(self.prefix_ids) + list(adv_ids) + list(self.suffix_ids)


def _join_selections(prefix: torch.Tensor | None, rest: torch.Tensor) -> torch.Tensor:
    """A cached prefix's selection rows [1, P, Wp] followed by a forward's [N, R, W]:
    [N, P + R, max(Wp, W)], -1 padded (a method keeps fewer blocks where fewer exist)."""
    if prefix is None:
        return rest
    width = max(prefix.shape[-1], rest.shape[-1])
    prefix = torch.nn.functional.pad(prefix, (0, width - prefix.shape[-1]), value=-1)
    rest = torch.nn.functional.pad(rest, (0, width - rest.shape[-1]), value=-1)
    return torch.cat([prefix.expand(rest.shape[0], -1, -1), rest], dim=1)


def _cache_argument(model) -> str:
    """The keyword the installed transformers expects for a KV cache (`cache` from 5.24,
    `past_key_values` before), so no deprecation warning is triggered on either side."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class Target:
    """Scores adversarial candidates under full attention and under sparse attention at k.

    `sparse` fixes the method, block sizes, dense layers and seed; k varies per call.
    `max_cached_prefixes` bounds the prefix caches kept (least recently used dropped).
    """

    def __init__(self, model, tokenizer, sparse: SparseConfig, batch_size: int = 16, use_cache: bool = True,
                 max_cached_prefixes: int = 8):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_cached_prefixes < 1:
            raise ValueError(f"max_cached_prefixes must be >= 1, got {max_cached_prefixes}")
        self.model = model
        self.tokenizer = tokenizer
        self.sparse = sparse
        self.batch_size = batch_size
        self.use_cache = use_cache
        self.answers: AnswerSets = answer_token_sets(tokenizer)
        self.device = next(model.parameters()).device
        self.max_cached_prefixes = max_cached_prefixes
        self._caches: OrderedDict[tuple, list] = OrderedDict()
        self._queries: OrderedDict[tuple, list] = OrderedDict()  # full-attention prefix queries, per layer
        self._heatmaps: dict[tuple, torch.Tensor] = {}  # a sparse prefix's heatmap selection, beside its cache
        self.prefix_forwards = 0  # prefix passes actually run (cache misses)
        self._cache_kw = _cache_argument(model)
        self._vocabularies: dict[bool, torch.Tensor] = {}
        self._scores: OrderedDict[tuple, list[Score]] = OrderedDict()  # see _remembered_batch

    def vocabulary(self, ascii_only: bool = False) -> torch.Tensor:
        """The ids attacks may draw (`attacks.vocab.attack_vocabulary`), computed once."""
        if ascii_only not in self._vocabularies:
            weight = self.model.get_input_embeddings().weight
            self._vocabularies[ascii_only] = attack_vocabulary(self.tokenizer, weight, ascii_only)
        return self._vocabularies[ascii_only]

    def vocabulary_report(self) -> dict:
        """Pool size and exclusions by kind, for the run log and the manifest."""
        weight = self.model.get_input_embeddings().weight
        return {"pool": len(self.vocabulary()), "excluded": vocabulary_exclusions(self.tokenizer, weight)}

    def config_for(self, mode) -> SparseConfig | None:
        mode = Mode.of(mode)
        return None if mode.is_full else self.sparse.replace(k=mode.k)

    def attention(self, mode):
        """Context manager running the model under `mode` (full attention: nothing to switch)."""
        cfg = self.config_for(mode)
        return nullcontext() if cfg is None else sparse_attention(self.model, cfg)

    def prepare(self, item: TaskItem, context_text: str = "", slot: str = "question") -> PreparedItem:
        """Token ids of the item's prompt with the adversarial slot before the question, or
        with `slot="context"` before the context (`tasks.prompts.build_prompt`)."""
        parts = build_prompt(self.tokenizer, item, context_text, slot)
        if not parts.suffix_ids:
            raise ValueError(f"item {item.id}: the prompt has no question tokens after the adversarial slot")
        cut = (len(parts.prefix_ids) // self.sparse.block_q) * self.sparse.block_q if self.use_cache else 0
        question = parts if slot == "question" else build_prompt(self.tokenizer, item, context_text, "question")
        return PreparedItem(
            item=item,
            prefix_ids=list(parts.prefix_ids),
            suffix_ids=list(parts.suffix_ids),
            correct_ids=tuple(self.answers.correct(item.answer)),
            wrong_ids=tuple(self.answers.wrong(item.answer)),
            cut=cut,
            context_text=context_text,
            slot=slot,
            region_tail=len(parts.suffix_ids) - len(question.suffix_ids),
        )

    def compresses_kv(self) -> bool:
        """Whether `sparse` is a kv-cache method (it compresses a region of the prompt)."""
        return get_sparse_method(self.sparse.method).is_kv

    def region_length(self, prepared: PreparedItem, n_adv: int) -> int | None:
        """Prompt tokens a kv-cache method compresses (`sparse.kv_cache`): with `compress=context`
        everything before the question (template head, context, adversarial slot), with
        `compress=prompt` every token before the answer position. None for prefill methods."""
        if not self.compresses_kv():
            return None
        before_suffix = len(prepared.prefix_ids) + n_adv
        if settings_of(self.sparse).compress == "prompt":
            return before_suffix + len(prepared.suffix_ids) - 1
        return before_suffix + prepared.region_tail

    # -- prefix caches --------------------------------------------------------------------

    def _cut(self, prepared: PreparedItem, mode: Mode, whole_prefix: bool) -> int:
        if not whole_prefix:
            return prepared.cut  # kv-cache methods too: they continue the full-attention prefix
        if not mode.is_full:
            raise ValueError("only full attention may cache the whole prefix; sparse caches end on a block boundary")
        return len(prepared.prefix_ids) if self.use_cache else 0

    def clear_prefix_caches(self) -> None:
        """Forget every cached prefix and remembered score (benchmarks time the first forward
        again; a test that edits the weights starts afresh)."""
        self._caches.clear()
        self._queries.clear()
        self._heatmaps.clear()
        self.forget_scores()

    def forget_scores(self) -> None:
        """Forget the remembered scores but keep the prefix caches: a benchmark that times the
        same candidates twice forwards them twice."""
        self._scores.clear()

    def _prefix_source(self, mode: Mode) -> Mode:
        """The mode whose prefix cache a forward under `mode` continues. A kv-cache method's
        region holds the whole prefix and its prefill is dense, so the prefix's keys, values
        and queries are full attention's: every kv method shares the one full prefix."""
        return Mode(None) if not mode.is_full and self.compresses_kv() else mode

    def _prefix_queries(self, prefix: tuple[int, ...]) -> list:
        """Per-layer queries [1, Hq, P, D] of `prefix` under full attention, from one forward that
        also fills the full-attention prefix cache if it is missing."""
        if prefix in self._queries:
            self._queries.move_to_end(prefix)
            return self._queries[prefix]
        queries: dict[int, torch.Tensor] = {}
        ids = torch.tensor([prefix], device=self.device)
        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode(False), torch.no_grad(), \
                dense_attention_with(self.model, lambda layer, q, k, v, s: queries.__setitem__(layer, q)):
            self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self._cache_kw: cache})
        self.prefix_forwards += 1
        self._caches.setdefault((prefix, FULL), [(layer.keys, layer.values) for layer in cache.layers])
        self._queries[prefix] = [queries[i] for i in sorted(queries)]
        while len(self._queries) > self.max_cached_prefixes:
            self._queries.popitem(last=False)
        return self._queries[prefix]

    def _prefix_layers(self, prefix: tuple[int, ...], mode: Mode) -> list:
        """Per-layer (keys, values) of `prefix` under `mode`, computed once. Built outside
        inference mode even when called inside it, so gradient passes can reuse them."""
        # Sparse prefixes are keyed by the whole config, not only k: a board run swaps
        # `self.sparse` between methods and shares one full-attention prefix among them.
        key = (prefix, FULL if mode.is_full else self.config_for(mode))
        if key in self._caches:
            self._caches.move_to_end(key)
            return self._caches[key]
        ids = torch.tensor([prefix], device=self.device)
        cache = DynamicCache(config=self.model.config)
        heatmap: dict = {}
        with torch.inference_mode(False), torch.no_grad(), self.attention(mode) as ctl:
            if ctl is not None:  # a sparse prefix keeps its heatmap rows (whole-prompt pictures)
                ctl.observe_selection = self._heatmap_recorder(heatmap)
            self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self._cache_kw: cache})
        self.prefix_forwards += 1
        self._caches[key] = [(layer.keys, layer.values) for layer in cache.layers]
        if "blocks" in heatmap:
            self._heatmaps[key] = heatmap["blocks"]
        while len(self._caches) > self.max_cached_prefixes:
            self._heatmaps.pop(self._caches.popitem(last=False)[0], None)
        return self._caches[key]

    def heatmap_layer(self) -> int | None:
        """The sparse layer whose head-0 block selection a flip page shows (the seed's Figure 2):
        the middle one of `sparse`'s sparse layers; None when every layer is dense."""
        layers = range(self.sparse.dense_layers, self.model.config.num_hidden_layers)
        return layers[len(layers) // 2] if len(layers) else None

    def _heatmap_recorder(self, store: dict):
        """An `observe_selection` hook keeping head 0 of the heatmap layer in `store["blocks"]`."""
        wanted = self.heatmap_layer()

        def record(layer, selection):
            if layer == wanted:
                store["blocks"] = selection[:, 0]
        return record

    def _cache(self, prefix: tuple[int, ...], mode: Mode, batch: int) -> DynamicCache | None:
        """A fresh cache holding `prefix`, repeated `batch` times (None for an empty prefix)."""
        if not prefix:
            return None
        layers = self._prefix_layers(prefix, mode)
        return DynamicCache(
            ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in layers],
            config=self.model.config,
        )

    # -- the one forward ------------------------------------------------------------------

    def answer_logits(self, prepared: PreparedItem, mode, adv_ids: torch.Tensor | None = None,
                      adv_embeds: torch.Tensor | None = None, whole_prefix: bool = False,
                      observe_answer=None, heatmap: dict | None = None) -> torch.Tensor:
        """Logits [N, V] at the answer position of N prompts that differ only in the adversarial slot.

        Give the slot as ids [N, n_adv] or as input embeddings [N, n_adv, hidden] (GCG's
        one-hot times the embedding matrix; gradients flow to them, the prefix cache is
        constant). `whole_prefix` (full attention only) caches the entire prefix instead
        of stopping at a block boundary: fewer tokens per forward, as GCG's full-attention
        passes want; verdicts use the block-aligned cache so every mode sees the same cut.
        `observe_answer` (sparse modes only) is shown what the answer position attends to in
        every sparse layer (`sparse.SparseController.observe_answer`). A kv-cache method runs
        its sparse modes with `region_length` as region, after the full-attention prefix and its
        queries (`_prefix_source`). `heatmap` (block-sparse modes only) receives
        {"layer": `heatmap_layer()`, "blocks": LongTensor[N, n_qblocks, W]}, head 0's block
        selection in that layer over the whole prompt: the cached prefix's query blocks as its
        own forward chose them, then this forward's, -1 padded: the blocks that scored the
        prompt. The cut is block-aligned, so they are one uncached forward's for every method
        whose choice for a query block reads only that block's queries and the causal keys; not
        for minference (its estimate reads the forward's last queries) or the seeded nulls
        (random, drop-one).
        """
        if (adv_ids is None) == (adv_embeds is None):
            raise ValueError("give exactly one of adv_ids and adv_embeds")
        mode = Mode.of(mode)
        cut = self._cut(prepared, mode, whole_prefix)
        n = adv_ids.shape[0] if adv_ids is not None else adv_embeds.shape[0]
        prefix = tuple(prepared.prefix_ids[:cut])
        head = torch.tensor(prepared.prefix_ids[cut:], dtype=torch.long, device=self.device)
        tail = torch.tensor(prepared.suffix_ids, dtype=torch.long, device=self.device)
        if adv_ids is not None:
            ids = torch.cat([head.expand(n, -1), adv_ids.to(self.device), tail.expand(n, -1)], dim=1)
            if mode.is_full and prefix and not torch.is_grad_enabled() and observe_answer is None:
                # Inference under full attention: attend to one shared copy of the prefix.
                layers = self._prefix_layers(prefix, mode)
                positions = torch.arange(cut, cut + ids.shape[1], device=self.device).expand(n, -1)
                with shared_prefix_attention(self.model, layers):
                    return self.model(input_ids=ids, position_ids=positions, use_cache=False,
                                      logits_to_keep=1).logits[:, -1]
            inputs = {"input_ids": ids}
        else:
            embed = self.model.get_input_embeddings()
            with torch.no_grad():
                head_e, tail_e = embed(head), embed(tail)
            inputs = {"inputs_embeds": torch.cat([head_e.expand(n, -1, -1), adv_embeds,
                                                  tail_e.expand(n, -1, -1)], dim=1)}
        source = self._prefix_source(mode)
        queries = self._prefix_queries(prefix) if prefix and source is not mode else None
        cache = self._cache(prefix, source, n)
        if observe_answer is not None and mode.is_full:
            raise ValueError("observe_answer needs a sparse mode: full attention drops nothing")
        if heatmap is not None and (mode.is_full or self.compresses_kv()):
            raise ValueError("heatmap needs a block-sparse mode: full attention and kv-cache methods select no blocks")
        with self.attention(mode) as ctl:
            if observe_answer is not None:
                ctl.observe_answer = observe_answer
            if ctl is not None:
                ctl.region = self.region_length(prepared, (adv_ids if adv_ids is not None else adv_embeds).shape[1])
                ctl.prefix_queries = queries
                rows: dict = {}
                if heatmap is not None:
                    ctl.observe_selection = self._heatmap_recorder(rows)
            out = self.model(**inputs, use_cache=cache is not None, logits_to_keep=1, **{self._cache_kw: cache})
        if heatmap is not None and "blocks" in rows:
            earlier = self._heatmaps.get((prefix, self.config_for(mode))) if prefix else None  # set by `_cache`
            heatmap.update(layer=self.heatmap_layer(), blocks=_join_selections(earlier, rows["blocks"]))
        return out.logits[:, -1]

    # -- scoring --------------------------------------------------------------------------

    def answer_probs(self, logits: torch.Tensor, prepared: PreparedItem) -> tuple[torch.Tensor, torch.Tensor]:
        """P(correct set), P(wrong set) from last-position logits [N, vocab]."""
        probs = torch.softmax(logits.float(), dim=-1)
        return probs[:, list(prepared.correct_ids)].sum(-1), probs[:, list(prepared.wrong_ids)].sum(-1)

    def margins(self, prepared: PreparedItem, logits: torch.Tensor) -> torch.Tensor:
        """log P(correct set) - log P(wrong set) per row; the softmax normaliser cancels."""
        logits = logits.float()
        return (torch.logsumexp(logits[:, list(prepared.correct_ids)], -1)
                - torch.logsumexp(logits[:, list(prepared.wrong_ids)], -1))

    @torch.no_grad()
    def score(self, prepared: PreparedItem, adv_batch, mode) -> list[Score]:
        """Scores of every candidate (rows of `adv_batch`, equal lengths) under `mode`
        (a `Mode`, `"full"` or an int k), `batch_size` candidates per forward."""
        adv = torch.as_tensor(adv_batch, dtype=torch.long)
        if adv.dim() == 1:
            adv = adv[None]
        scores: list[Score] = []
        for chunk in adv.split(self.batch_size):
            scores += self._remembered_batch(prepared, chunk, Mode.of(mode))
        return scores

    def _remembered_batch(self, prepared: PreparedItem, chunk: torch.Tensor, mode: Mode) -> list[Score]:
        """The scores of one batch of candidates under `mode`, remembered (bounded LRU) by the
        batch's prompts and the mode's whole config. A board's cells share them: full
        attention's (every method's natural sweep scores the same prompt; an attack's seeded
        draws are the same candidates against every method), and a method's at a k (the
        transfer of tokens that several sources chose, such as the last seeded draw when none
        flipped). Keyed by the whole batch, so a remembered score is the one the same batched
        forward would give, bit for bit (every method, the seeded nulls included, is a function
        of its config and the prompt). The key is a 128-bit digest of the batch's ids, so long
        prompts cost no memory here."""
        digest = hashlib.blake2b(digest_size=16)
        for row in chunk.tolist():
            digest.update(repr(prepared.prompt_ids(row)).encode())
        key = (digest.hexdigest(), len(chunk), prepared.cut, prepared.slot, prepared.region_tail,
               prepared.correct_ids, prepared.wrong_ids, self.config_for(mode))
        if key not in self._scores:
            self._scores[key] = self.scores_of(prepared, self.answer_logits(prepared, mode, adv_ids=chunk))
            while len(self._scores) > 256:
                self._scores.popitem(last=False)
        self._scores.move_to_end(key)
        return list(self._scores[key])

    def scores_of(self, prepared: PreparedItem, logits: torch.Tensor) -> list[Score]:
        """A `Score` per row of answer-position logits [N, vocab]."""
        p_correct, p_wrong = self.answer_probs(logits, prepared)
        tokens = logits.argmax(-1).tolist()
        return [Score(pc, pw, self.tokenizer.decode([tok]), token_class(tok, prepared.correct_ids, prepared.wrong_ids))
                for pc, pw, tok in zip(p_correct.tolist(), p_wrong.tolist(), tokens)]

    @torch.no_grad()
    def greedy_tokens(self, prepared: PreparedItem, adv_ids, mode, n_tokens: int = 2) -> list[int]:
        """The next `n_tokens` greedy tokens after the prompt under `mode` (prefix caches reused)."""
        adv = torch.as_tensor([list(adv_ids)], dtype=torch.long).reshape(1, -1)
        tokens: list[int] = []
        for _ in range(n_tokens):
            step = replace(prepared, suffix_ids=list(prepared.suffix_ids) + tokens)
            tokens.append(int(self.answer_logits(step, mode, adv_ids=adv).argmax(-1)))
        return tokens

    def minimal_k(self, prepared: PreparedItem, adv_ids, n_tokens: int = 2) -> int:
        """The seed's per-prompt sparsity (section 3.2, step 3): the k its binary search
        (`sparse.geometry.smallest_agreeing_k`) finds for the next `n_tokens` greedy tokens to
        equal full attention's, in [1, causal key blocks at the last decoded position]."""
        reference = self.greedy_tokens(prepared, adv_ids, FULL, n_tokens)
        n_blocks = causal_blocks(len(prepared.prompt_ids(adv_ids)) + n_tokens - 1, self.sparse.block_k)
        return smallest_agreeing_k(lambda k: self.greedy_tokens(prepared, adv_ids, k, n_tokens) == reference,
                                   n_blocks)

    @torch.no_grad()
    def attribution(self, prepared: PreparedItem, adv_ids, ks, needle: tuple[int, int] | None = None) -> dict:
        """Where sparse attention at each k leaves the answer position's attention.

        For every sparse layer: the share of dense attention's probability mass at the
        answer position (softmax of that position's q.k over every key, with the q and k
        of the sparse run) that falls on the keys it does not see (dropped key blocks, or
        evicted region tokens), mean and max over heads; with a needle token span, the
        share of heads seeing every token of the needle.
        Returns {"layers": [...], "<k>": {"dropped_mass": [...], "dropped_mass_max": [...],
        "needle_kept": [...]}} with one value per layer, rounded to 4 decimals."""
        return self.traced_sweep(prepared, adv_ids, ks, needle, full=False)[1]

    @torch.no_grad()
    def traced_sweep(self, prepared: PreparedItem, adv_ids, ks, needle: tuple[int, int] | None = None,
                     full: bool = True, shares: dict | None = None,
                     heatmaps: dict | None = None) -> tuple[dict[str, Score], dict]:
        """`sweep` and `attribution` of one candidate in one forward per k: the traced
        forward's logits are the scores (the hook only reads the layers' inputs). A `shares`
        dict receives, per k, each prompt token's share of (sparse layer, query head) pairs
        whose answer-position query sees its key (a flip page's colours, `harness.pictures`);
        a `heatmaps` dict, per k, head 0's block selection over the whole prompt in the middle
        sparse layer (`answer_logits`'s `heatmap`; block-sparse methods only), the seed's
        Figure 2 on a flip page."""
        adv = torch.as_tensor([list(adv_ids)], dtype=torch.long).reshape(1, -1)
        scores: dict[str, Score] = {FULL: self.full_score(prepared, adv_ids)} if full else {}
        out: dict = {}
        for k in ks:
            per_layer: dict[int, tuple] = {}
            seen: list[torch.Tensor] = []

            def observe(layer, query_row, key, visible, padding, scaling):
                mass = dropped_attention_mass(query_row, key, visible, scaling, padding)[0]
                kept = None if needle is None else span_kept(visible, needle[0], needle[1])[0]
                per_layer[layer] = (mass.mean().item(), mass.max().item(),
                                    None if kept is None else kept.float().mean().item())
                seen.append(visible[0].float().mean(0))

            heatmap = {} if heatmaps is not None and not self.compresses_kv() else None
            logits = self.answer_logits(prepared, int(k), adv_ids=adv, observe_answer=observe, heatmap=heatmap)
            scores[str(k)] = self.scores_of(prepared, logits)[0]
            if heatmap:
                heatmaps[str(k)] = heatmap
            if shares is not None:
                shares[str(k)] = [round(v, 4) for v in torch.stack(seen).mean(0).tolist()]
            layers = sorted(per_layer)
            out["layers"] = layers
            out[str(k)] = {"dropped_mass": [round(per_layer[i][0], 4) for i in layers],
                           "dropped_mass_max": [round(per_layer[i][1], 4) for i in layers]}
            if needle is not None:
                out[str(k)]["needle_kept"] = [round(per_layer[i][2], 4) for i in layers]
        return scores, out

    def full_score(self, prepared: PreparedItem, adv_ids) -> Score:
        """Full attention's score of one prompt (remembered like every batch, `_remembered_batch`)."""
        return self.score(prepared, [list(adv_ids)], FULL)[0]

    def sweep(self, prepared: PreparedItem, adv_ids, ks) -> dict[str, Score]:
        """{"full": Score, "<k>": Score, ...} for one candidate."""
        adv = torch.as_tensor([list(adv_ids)], dtype=torch.long).reshape(1, -1)
        out = {FULL: self.full_score(prepared, adv_ids)}
        for k in ks:
            out[str(k)] = self.score(prepared, adv, int(k))[0]
        return out

