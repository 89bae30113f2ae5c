"""Greedy Coordinate Gradient (Zou et al. 2023) aimed at sparse attention.

Objective, minimised over the adversarial ids x:

    L(x) = m_sparse(x) + full_weight * relu(tau - m_full(x))
    m(x) = log P(correct set | prompt(x)) - log P(wrong set | prompt(x))

P(set) is the summed next-token probability of an answer set, m_sparse under
sparse attention at k_attack, m_full under full attention on the same prompt.
Why these terms: the harness judges an answer by P(a) > P(ā) over the *sets*, so
the sign of a margin is exactly the verdict (m_sparse < 0: sparse attention answers
wrongly), and a log ratio has useful gradients at any confidence, unlike a
probability. The hinge keeps full attention right with slack tau and is flat once
it is: then its gradient is zero, the full-attention backward is skipped, and the
search spends its effort on the sparse side.

Two margins, one meaning each: `full_margin` is the run's counting margin (the
harness's `--full-margin`, a difference of probabilities P(a) - P(ā) that full
attention must keep for a flip to count, default 0); `hinge_margin` is the hinge's
log-ratio target. The hinge aims at tau = max(hinge_margin, log((1+m)/(1-m))) with
m = full_margin, the smallest log-ratio that can satisfy the counting margin, so
the search never relaxes before a candidate could count. Success is decided by
`tasks.outcomes.classify` at full_margin on `Target.score` of a batch of one (what
the harness's sweep computes), so the attack and the results file always agree.

One step:
1. Token gradient at x: the adversarial slot is a one-hot [n_adv, V] times the
   embedding matrix, fed as `inputs_embeds` after the prefix KV cache, logits at
   the answer position only, backward to the one-hot only. Under sparse attention
   `select_blocks` runs under no_grad, so the selection of the current x is held
   fixed for the step while gradients flow through `block_sparse_attention`.
2. Candidates: `search_width` copies of x, each with `n_replace` positions set to
   one of the `topk` allowed tokens of most negative gradient there, drawn from a
   torch.Generator seeded by rng_seed. Duplicates and candidates scored before are
   dropped (their margins are remembered).
3. Scoring: m_sparse for every candidate, batched from the block-aligned prefix
   cache. m_full only in increasing order of m_sparse until the best L found is
   <= the next m_sparse, a lower bound on L (the hinge is >= 0), or `full_checks`
   candidates: while full attention is comfortably right the argmin of L is exact
   after one small forward, and most candidates never get a full-attention pass.
   Full attention has no block selection, so its cache holds the whole prefix and
   its forwards start at x.
4. Move: with `buffer_size` 0, x becomes the step's best candidate even when it is
   worse than x (Zou et al.; escapes local minima, remembered margins make revisits
   free); with n >= 1, x is the best of the n best kept (greedy). The best
   candidate so far is tracked either way, and is the result when nothing flips.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from tasks.outcomes import classify

from .config import AttackConfig, SettingError
from .registry import AttackResult, register_attack
from .target import FULL, PreparedItem, Target


@dataclass(frozen=True)
class GCGConfig(AttackConfig):
    label: ClassVar[str] = "gcg"
    search_width: int = 64
    topk: int = 256
    n_replace: int = 1
    buffer_size: int = 0  # 0: x moves to each step's best (escapes local minima); n: x = best of n kept
    full_weight: float = 1.0  # lambda: weight of the full-attention hinge
    hinge_margin: float = 0.2  # tau: log-ratio the hinge asks full attention to keep, P(a)/P(ā) >= e^tau
    full_checks: int = 4  # most candidates per step scored under full attention

    def __post_init__(self):
        super().__post_init__()
        for name, minimum in (("search_width", 1), ("topk", 1), ("n_replace", 1), ("buffer_size", 0),
                              ("full_checks", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise SettingError("gcg", name, f"must be an integer >= {minimum}, got {value!r}")
        if self.n_replace > self.n_adv:
            raise SettingError("gcg", "n_replace", f"({self.n_replace}) must be <= n_adv ({self.n_adv})")
        for name in ("full_weight", "hinge_margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise SettingError("gcg", name, f"must be a finite number >= 0, got {value!r}")

    @property
    def tau(self) -> float:
        """The hinge's log-ratio target: at least `hinge_margin`, and at least the log-ratio
        that P(a) - P(ā) >= full_margin needs when P(a) + P(ā) = 1, so the hinge never stops
        pushing before full attention is confident enough to count."""
        return max(self.hinge_margin, math.log((1 + self.full_margin) / (1 - self.full_margin)))


@dataclass(frozen=True)
class Entry:
    """A scored candidate; `loss` is inf (unknown, at least `margin_sparse`) when the
    full-attention margin was never needed."""

    ids: tuple[int, ...]
    loss: float
    margin_sparse: float | None
    margin_full: float | None


class FlipObjective:
    """L = m_sparse + full_weight * relu(tau - m_full): wrong under sparse attention at
    k_attack, right under full attention (the attack's goal)."""

    def __init__(self, config: GCGConfig):
        self.config = config

    def loss(self, ms: float, mf: float) -> float:
        return ms + self.config.full_weight * max(0.0, self.config.tau - mf)

    def gradient(self, search: "GCGSearch", ids: torch.Tensor, entry: Entry) -> torch.Tensor:
        """dL/d one-hot; the hinge's backward only while the hinge is active."""
        grad = search.token_gradient(ids, self.config.k_attack)[0]
        if self.config.full_weight > 0 and entry.margin_full < self.config.tau:
            grad = grad - self.config.full_weight * search.token_gradient(ids, FULL)[0]
        return grad

    def evaluate(self, search: "GCGSearch", cands: torch.Tensor) -> list[Entry]:
        """m_sparse for every candidate; m_full in increasing order of m_sparse until the best
        L found is <= the next m_sparse (a lower bound on L: the hinge is >= 0), so the argmin
        of L is exact, or until `full_checks` are scored (then it is the argmin over those).
        The first full-attention forward takes one candidate, each later one as many as were
        scored before: one row suffices while the hinge is flat."""
        ms = search.margins(cands, self.config.k_attack).tolist()
        order = sorted(range(len(ms)), key=lambda i: ms[i])
        rows = cands.tolist()
        done: list[Entry] = []
        best = math.inf
        pos = 0
        limit = min(len(order), self.config.full_checks)
        while pos < limit and best > ms[order[pos]]:
            chunk = order[pos : min(pos + max(1, pos), limit)]
            mf = search.margins(cands[chunk], FULL).tolist()
            for i, f in zip(chunk, mf):
                entry = Entry(tuple(rows[i]), self.loss(ms[i], f), ms[i], f)
                done.append(entry)
                best = min(best, entry.loss)
            pos += len(chunk)
        search.n_full = pos
        for i in order[pos:]:
            search.seen[tuple(rows[i])] = Entry(tuple(rows[i]), math.inf, ms[i], None)
        return done

    def may_flip(self, entry: Entry) -> bool:
        return entry.margin_sparse < 0 < entry.margin_full


class FullAttentionObjective:
    """L = m_full (make full attention answer wrongly): the single-mode objective nanoGCG
    optimises; the step benchmark compares the two implementations with it."""

    def loss(self, ms, mf: float) -> float:
        return mf

    def gradient(self, search: "GCGSearch", ids: torch.Tensor, entry: Entry) -> torch.Tensor:
        return search.token_gradient(ids, FULL)[0]

    def evaluate(self, search: "GCGSearch", cands: torch.Tensor) -> list[Entry]:
        search.n_full = len(cands)
        mf = search.margins(cands, FULL).tolist()
        return [Entry(tuple(c), m, None, m) for c, m in zip(cands.tolist(), mf)]

    def may_flip(self, entry: Entry) -> bool:
        return False


class GCGSearch:
    """The state of one GCG optimisation of one item; `step()` runs one step.

    Every forward goes through `Target.answer_logits` (its prefix caches included);
    what is minimised is the `objective` (default `FlipObjective`).
    """

    def __init__(self, target: Target, prepared: PreparedItem, config: GCGConfig, rng_seed: int,
                 objective=None):
        self.target, self.prepared, self.config = target, prepared, config
        self.objective = FlipObjective(config) if objective is None else objective
        self.gen = torch.Generator().manual_seed(rng_seed)
        self.vocab = target.vocabulary(config.ascii_only)
        self._grad_for = None  # (ids, gradient) of the last x
        self.seen: dict[tuple[int, ...], Entry] = {}
        self.flip: Entry | None = None
        self.draws: list[dict] = []  # answer classes of the candidates verified by `_check_flips`
        self.n_full = 0  # candidates of the last step scored under full attention
        init = self.vocab[torch.randint(len(self.vocab), (max(1, config.buffer_size), config.n_adv),
                                        generator=self.gen)]
        self.buffer = sorted(self._evaluate(init), key=lambda e: e.loss)[: max(1, config.buffer_size)]
        self.n_scored = len(init)  # candidates of the last step scored at all
        self.x = self.best = self.buffer[0]

    # -- forwards ----------------------------------------------------------------------

    def margins(self, cands: torch.Tensor, mode) -> torch.Tensor:
        """Margins [N] of candidate rows under `mode`, `batch_size` rows per forward, in
        inference mode. Full attention caches the whole prefix (no block boundary to keep)."""
        out = []
        for chunk in cands.split(self.config.batch_size):
            with torch.inference_mode():
                logits = self.target.answer_logits(self.prepared, mode, adv_ids=chunk, whole_prefix=mode == FULL)
            out.append(self.target.margins(self.prepared, logits))
        return torch.cat(out).cpu()

    def token_gradient(self, x: torch.Tensor, mode) -> tuple[torch.Tensor, float]:
        """(d margin / d one-hot [n_adv, V], margin) at adversarial ids `x` under `mode`.

        Under sparse attention `select_blocks` runs without gradients, so the selection
        of x is held fixed while gradients flow through the block-sparse attention."""
        weight = self.target.model.get_input_embeddings().weight
        one_hot = torch.zeros(len(x), weight.shape[0], dtype=weight.dtype, device=self.target.device)
        one_hot[torch.arange(len(x)), x.to(self.target.device)] = 1
        one_hot.requires_grad_(True)
        logits = self.target.answer_logits(self.prepared, mode, adv_embeds=(one_hot @ weight)[None],
                                           whole_prefix=mode == FULL)
        margin = self.target.margins(self.prepared, logits)[0]
        (grad,) = torch.autograd.grad(margin, one_hot)
        return grad.cpu(), margin.item()

    # -- objective ---------------------------------------------------------------------

    def _objective_gradient(self, x: tuple[int, ...]) -> torch.Tensor:
        """dL/d one-hot at x; reused while x stays."""
        if self._grad_for is not None and self._grad_for[0] == x:
            return self._grad_for[1]
        grad = self.objective.gradient(self, torch.tensor(x, dtype=torch.long), self.seen[x])
        self._grad_for = (x, grad)
        return grad

    def _evaluate(self, cands: torch.Tensor) -> list[Entry]:
        """Score new candidates with the objective; returns those whose loss is known."""
        done = self.objective.evaluate(self, cands)
        self.seen.update((e.ids, e) for e in done)
        self._check_flips(done)
        return done

    def _check_flips(self, entries: list[Entry]) -> None:
        """Keep the lowest-loss candidate that the harness's own scoring calls a success
        (`tasks.outcomes.classify` at the run's full_margin). Each candidate verified is
        recorded in `draws`: these are the only ones GCG scores as `Score`s under both modes
        (the rest have margins only, which cannot tell a wrong answer from no answer)."""
        if self.flip is not None:
            return
        for e in sorted(entries, key=lambda e: e.loss):
            if self.objective.may_flip(e):
                adv = torch.tensor([e.ids])
                full = self.target.score(self.prepared, adv, FULL)[0]
                sparse = self.target.score(self.prepared, adv, self.config.k_attack)[0]
                self.draws.append({"full": full.answer_class, "sparse": sparse.answer_class})
                if classify(full, sparse, self.config.full_margin).success:
                    self.flip = e
                    return

    # -- one step ----------------------------------------------------------------------

    def sample(self, x: tuple[int, ...], grad: torch.Tensor) -> torch.Tensor:
        """`search_width` candidates from the top-k gradient substitutions (allowed ids only)."""
        cfg = self.config
        k = min(cfg.topk, len(self.vocab))
        top = self.vocab[(-grad[:, self.vocab]).topk(k, dim=1).indices]  # [n_adv, k]
        pos = torch.rand((cfg.search_width, cfg.n_adv), generator=self.gen).argsort(-1)[:, : cfg.n_replace]
        pick = torch.randint(k, (cfg.search_width, cfg.n_replace), generator=self.gen)
        cands = torch.tensor(x).repeat(cfg.search_width, 1)
        cands.scatter_(1, pos, top[pos, pick])
        return cands

    def step(self) -> Entry | None:
        """One GCG step from x; returns a confirmed flip, if any."""
        cfg = self.config
        cands = self.sample(self.x.ids, self._objective_gradient(self.x.ids))
        fresh, keep, known = set(), [], []
        for i, row in enumerate(cands.tolist()):
            key = tuple(row)
            if key in self.seen:
                known.append(self.seen[key])
            elif key not in fresh:
                fresh.add(key)
                keep.append(i)
        self.n_scored, self.n_full = len(keep), 0
        entries = self._evaluate(cands[keep]) if keep else []
        scored = [e for e in entries + known if math.isfinite(e.loss)]
        if scored:
            step_best = min(scored, key=lambda e: e.loss)
            self.best = min(self.best, step_best, key=lambda e: e.loss)
            if cfg.buffer_size == 0:
                self.x = step_best
            else:
                self.buffer = sorted(self.buffer + entries, key=lambda e: e.loss)[: cfg.buffer_size]
                self.x = self.buffer[0]
        return self.flip

    def record(self, step: int, start: float) -> dict:
        b = self.best
        return {"step": step, "loss": b.loss, "margin_sparse": b.margin_sparse, "margin_full": b.margin_full,
                "best_text": self.target.tokenizer.decode(list(b.ids)), "seconds": time.perf_counter() - start,
                "x_loss": self.x.loss, "scored": self.n_scored, "scored_full": self.n_full}


@register_attack("gcg", GCGConfig)
def gcg(target: Target, prepared: PreparedItem, config: GCGConfig, rng_seed: int, progress=None) -> AttackResult:
    """GCG towards a flip at k_attack; stops at the first confirmed flip.

    `trace[0]` is the initial candidate, then one record per step of the best
    candidate so far; `seconds` there is the time since the attack started.
    `draws` holds only the candidates verified under both modes (those whose margins
    say sparse wrong, full right), not every candidate scored: per-draw rates of GCG
    are not comparable with random search's.
    """
    start = time.perf_counter()
    search = GCGSearch(target, prepared, config, rng_seed)
    trace = [search.record(0, start)]
    step = 0
    while search.flip is None and step < config.steps:
        step += 1
        search.step()
        trace.append(search.record(step, start))
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{search.best.loss:.3f}")
    found = search.flip or search.best
    ids = list(found.ids)
    return AttackResult(adv_ids=ids, adv_text=target.tokenizer.decode(ids), steps=step,
                        success=search.flip is not None, seconds=time.perf_counter() - start, trace=trace,
                        draws=search.draws)
