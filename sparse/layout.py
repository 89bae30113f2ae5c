"""Block geometry and block scoring shared by every selection method.

Positions are absolute: query block i covers key positions [i*b_q, (i+1)*b_q) and
key block j covers [j*b_k, (j+1)*b_k). With a cached prefix the queries start at
`q_offset`, so the first query block present is `q_offset // b_q`; a cache cut at a
multiple of `b_q` therefore yields exactly the same blocks as the uncached pass.

The *diagonal* block of a query block is the key block holding its last position;
the causal candidates are key blocks 0..diagonal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import SparseConfig

# Largest tensor built in one piece (the dense block-score table of short sequences, the
# token mask of the masked attention path): bounds memory whatever the sequence length.
CHUNK_ELEMENTS = 1 << 24
# Elements per intermediate tensor of the loops over chunks of query blocks (selection,
# gather kernels). Smaller than CHUNK_ELEMENTS because tensors that the allocator reuses
# from its heap, in cache, beat fresh page-faulted mappings: on a 2-core CPU STREAM's
# selection is 3.7x and the gather kernel 2.6x faster at 8k tokens, and GCG's short
# shapes are no slower (benchmarks/loop_chunks.py, docs/performance.md). Not tuned on GPUs.
LOOP_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class BlockLayout:
    kv_len: int
    q_offset: int
    block_q: int
    block_k: int

    @property
    def q_len(self) -> int:
        return self.kv_len - self.q_offset

    @property
    def first_qblock(self) -> int:
        return self.q_offset // self.block_q

    @property
    def n_qblocks(self) -> int:
        return math.ceil(self.kv_len / self.block_q) - self.first_qblock

    @property
    def n_kblocks(self) -> int:
        return math.ceil(self.kv_len / self.block_k)

    @property
    def q_pad_front(self) -> int:
        """Query slots before `q_offset` inside the first present query block."""
        return self.q_offset - self.first_qblock * self.block_q

    def diagonal(self, device=None) -> torch.Tensor:
        """LongTensor[n_qblocks]: key block holding each query block's last position."""
        qb = torch.arange(self.first_qblock, self.first_qblock + self.n_qblocks, device=device)
        last = torch.clamp((qb + 1) * self.block_q - 1, max=self.kv_len - 1)
        return last // self.block_k

    def query_positions(self, device=None) -> torch.Tensor:
        """LongTensor[n_qblocks, block_q] absolute positions, -1 where no query exists."""
        qb = torch.arange(self.first_qblock, self.first_qblock + self.n_qblocks, device=device)
        pos = qb[:, None] * self.block_q + torch.arange(self.block_q, device=device)
        return torch.where((pos >= self.q_offset) & (pos < self.kv_len), pos, torch.full_like(pos, -1))

    def key_positions(self, device=None) -> torch.Tensor:
        """LongTensor[n_kblocks, block_k] absolute positions (may exceed kv_len - 1 at the end)."""
        return torch.arange(self.n_kblocks * self.block_k, device=device).view(self.n_kblocks, self.block_k)


def reserved_mask(cfg: SparseConfig, diag: torch.Tensor, n_kblocks: int) -> torch.Tensor:
    """Bool [len(diag), n_kblocks]: the blocks each query block keeps outside any search:
    the first `sink_blocks`, the `local_blocks` ending at its diagonal, and the diagonal."""
    kb = torch.arange(n_kblocks, device=diag.device)[None, :]
    d = diag[:, None]
    sink = kb < cfg.sink_blocks
    local = (kb > d - max(cfg.local_blocks, 1)) & (kb <= d)
    return (sink | local) & (kb <= d)


def make_layout(query: torch.Tensor, key: torch.Tensor, cfg: SparseConfig, q_offset: int) -> BlockLayout:
    if query.dim() != 4 or key.dim() != 4:
        raise ValueError("query and key must be [batch, heads, seq, head_dim] tensors")
    q_len, kv_len = query.shape[2], key.shape[2]
    if q_offset < 0 or q_offset + q_len != kv_len:
        raise ValueError(
            f"queries must be the last tokens of the key sequence: q_offset ({q_offset}) + "
            f"query length ({q_len}) != key length ({kv_len})"
        )
    if q_len == 0:
        raise ValueError("empty query: nothing to attend from")
    if query.shape[1] % key.shape[1] != 0:
        raise ValueError(f"query heads ({query.shape[1]}) must be a multiple of key heads ({key.shape[1]})")
    return BlockLayout(kv_len=kv_len, q_offset=q_offset, block_q=cfg.block_q, block_k=cfg.block_k)


def checked_layout(query: torch.Tensor, key: torch.Tensor, selection: torch.Tensor, cfg: SparseConfig,
                   q_offset: int = 0) -> BlockLayout:
    """The layout of an attention call, after checking that `selection` covers its
    (batch, query heads, query blocks); every attention kernel starts here."""
    lay = make_layout(query, key, cfg, q_offset)
    expected = (query.shape[0], query.shape[1], lay.n_qblocks)
    if tuple(selection.shape[:3]) != expected:
        raise ValueError(f"selection shape {tuple(selection.shape)} does not match (batch, heads, query blocks) = "
                         f"{expected}")
    return lay


def to_blocks(x: torch.Tensor, block: int, n_blocks: int, pad_front: int = 0) -> torch.Tensor:
    """[B, H, T, D] -> [B, H, n_blocks, block, D], zero padded at the front and the end."""
    pad_back = n_blocks * block - pad_front - x.shape[2]
    x = torch.nn.functional.pad(x, (0, 0, pad_front, pad_back))
    return x.view(x.shape[0], x.shape[1], n_blocks, block, x.shape[3])


class SelectionContext:
    """Everything a selection method needs for one layer's forward.

    Methods use `block_scores` to score arbitrary candidate key blocks per query
    block (what STREAM does), or `dense_block_scores` plus `keep_top` for methods
    that may afford an O(T^2 / b^2) block-score matrix (oracle, random, window).
    The score of a (query block, key block) pair is the maximum of q.k over its
    query/key pairs that are causal and not padding: one dominant key is enough for
    a block to matter, which is what a sparse tracer must not drop.
    """

    def __init__(self, query, key, cfg: SparseConfig, q_offset: int = 0, key_padding_mask=None):
        self.cfg = cfg
        self.layout = make_layout(query, key, cfg, q_offset)
        lay = self.layout
        self.batch, self.q_heads, _, self.head_dim = query.shape
        self.kv_heads = key.shape[1]
        self.group = self.q_heads // self.kv_heads
        self.device = query.device
        self.qblocks = to_blocks(query.detach(), lay.block_q, lay.n_qblocks, lay.q_pad_front)
        self.kblocks = to_blocks(key.detach(), lay.block_k, lay.n_kblocks)
        self.qpos = lay.query_positions(self.device)  # [nqb, bq]
        self.kpos = lay.key_positions(self.device)  # [nkb, bk]
        kvalid = (self.kpos < lay.kv_len).expand(self.batch, -1, -1)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (self.batch, lay.kv_len):
                raise ValueError(
                    f"key_padding_mask must be [batch, kv_len] = {(self.batch, lay.kv_len)}, "
                    f"got {tuple(key_padding_mask.shape)}"
                )
            padded = torch.nn.functional.pad(key_padding_mask.bool(), (0, lay.n_kblocks * lay.block_k - lay.kv_len))
            kvalid = kvalid & padded.view(self.batch, lay.n_kblocks, lay.block_k)
        self.kvalid = kvalid  # [B, nkb, bk]
        self.diag = lay.diagonal(self.device)  # [nqb]
        self._table = None  # see _score_table
        self._bias = None  # see _key_bias

    @property
    def width(self) -> int:
        """Selection width of a fixed-k method: what the longest query block keeps."""
        return self.cfg.kept(self.layout.n_kblocks)

    def chunk_rows(self, per_block_elements: int) -> int:
        """Query blocks per chunk so that intermediate tensors stay under LOOP_CHUNK_ELEMENTS."""
        return max(1, LOOP_CHUNK_ELEMENTS // max(1, per_block_elements * self.batch * self.q_heads))

    def chunks(self, per_block_elements: int):
        """Slices of query blocks whose intermediate tensors stay under LOOP_CHUNK_ELEMENTS."""
        step = self.chunk_rows(per_block_elements)
        for start in range(0, self.layout.n_qblocks, step):
            yield slice(start, min(start + step, self.layout.n_qblocks))

    def block_scores(self, rows: slice, cand: torch.Tensor) -> torch.Tensor:
        """Scores of candidate key blocks `cand` [B, Hq, C, M] for query blocks `rows`.

        Returns float [B, Hq, C, M]; -inf where a candidate is out of range or has no
        causal, non-padding key for any query of the block.
        """
        B, Hq, C, M = cand.shape
        lay = self.layout
        nkb, bk = lay.n_kblocks, lay.block_k
        inside = (cand >= 0) & (cand < nkb)
        safe = cand.clamp(0, nkb - 1)
        table = self._score_table()
        if table is not None:  # short sequences: index the exact table instead of gathering keys
            return table[:, :, rows].gather(-1, safe).masked_fill(~inside, float("-inf"))
        # index_select on flat views: several times faster than advanced indexing here.
        batch = torch.arange(B, device=self.device)
        kv_head = torch.arange(Hq, device=self.device) // self.group
        flat = ((batch[:, None] * self.kv_heads + kv_head[None, :]) * nkb)[:, :, None, None] + safe
        keys = self.kblocks.reshape(-1, bk, self.head_dim).index_select(0, flat.reshape(-1))
        q = self.qblocks[:, :, rows]  # [B, Hq, C, bq, D]
        scores = q @ keys.view(B, Hq, C, M * bk, self.head_dim).transpose(-1, -2)  # [B, Hq, C, bq, M * bk]
        scores = scores.view(B, Hq, C, -1, M, bk)
        bias = self._key_bias(scores.dtype).index_select(0, (batch[:, None, None, None] * nkb + safe).reshape(-1))
        scores += bias.view(B, Hq, C, 1, M, bk)  # -inf on padding keys
        qpos = self.qpos[rows]  # [C, bq]
        # Only a candidate ending after a row's first query holds keys later than a query.
        first_query = torch.where(qpos >= 0, qpos, torch.full_like(qpos, lay.kv_len)).amin(-1)  # [C]
        if bool((inside & (safe * bk + bk - 1 > first_query[:, None])).any()):
            kpos = safe[..., None] * bk + torch.arange(bk, device=self.device)  # [B, Hq, C, M, bk]
            scores.masked_fill_(kpos[:, :, :, None] > qpos[None, None, :, :, None, None], float("-inf"))
        scores = scores.amax(dim=-1).masked_fill(qpos[None, None, :, :, None] < 0, float("-inf")).amax(dim=-2)
        return scores.masked_fill(~inside, float("-inf"))

    def _key_bias(self, dtype) -> torch.Tensor:
        """[B * n_kblocks, b_k]: 0 on real keys, -inf on padding and past the sequence end."""
        if self._bias is None or self._bias.dtype != dtype:
            bias = torch.zeros(self.kvalid.shape, dtype=dtype, device=self.device)
            self._bias = bias.masked_fill(~self.kvalid, float("-inf")).view(-1, self.layout.block_k)
        return self._bias

    def _score_table(self) -> torch.Tensor | None:
        """Every (query block, key block) score, computed once per context when its dense
        score tensor fits one chunk (K shared by each KV head's query group: no gather);
        None for longer sequences, which score candidates by gathering their blocks."""
        lay = self.layout
        dense = self.batch * self.q_heads * lay.n_qblocks * lay.block_q * lay.n_kblocks * lay.block_k
        if dense > CHUNK_ELEMENTS:
            return None
        if self._table is None:
            self._table = self.dense_block_scores(slice(0, lay.n_qblocks))
        return self._table

    def dense_block_scores(self, rows: slice) -> torch.Tensor:
        """Exact block scores [B, Hq, C, n_kblocks] for query blocks `rows` (O(T) per block)."""
        lay = self.layout
        q = self.qblocks[:, :, rows]  # [B, Hq, C, bq, D]
        B, Hq, C, bq, D = q.shape
        q = q.reshape(B, self.kv_heads, self.group * C * bq, D)
        keys = self.kblocks.reshape(B, self.kv_heads, lay.n_kblocks * lay.block_k, D)
        scores = (q @ keys.transpose(-1, -2)).view(B, Hq, C, bq, lay.n_kblocks, lay.block_k)
        qpos = self.qpos[rows]
        ok = (self.kpos[None, None, :, :] <= qpos[:, :, None, None]) & (qpos[:, :, None, None] >= 0)
        ok = ok[None, None] & self.kvalid[:, None, None, None]
        scores = scores.masked_fill(~ok, float("-inf"))
        return scores.amax(dim=5).amax(dim=3)  # the contiguous axis first: 3x faster than both at once

    def keep_top(self, rows: slice, scores: torch.Tensor) -> torch.Tensor:
        """Turn block scores [B?, H?, C, n_kblocks] into a selection [B, Hq, C, width].

        Keeps the reserved blocks (diagonal, sink, local), then the highest-scoring
        causal blocks, `cfg.kept(diagonal + 1)` in all; non-causal blocks are never
        kept. Ascending, -1 padded.
        """
        width = self.width
        diag = self.diag[rows]
        kb = torch.arange(self.layout.n_kblocks, device=self.device)
        causal = kb[None, :] <= diag[:, None]  # [C, nkb]
        s = scores.float().expand(self.batch, self.q_heads, -1, -1)
        s = torch.where(torch.isneginf(s), torch.full_like(s, torch.finfo(s.dtype).min), s)
        s = s.masked_fill(~causal, float("-inf"))
        s = s.masked_fill(reserved_mask(self.cfg, diag, self.layout.n_kblocks), float("inf"))
        top = s.topk(width, dim=-1).indices
        n_keep = self.cfg.kept(diag + 1)  # [C]
        rank = torch.arange(width, device=self.device)
        top = torch.where(rank[None, :] < n_keep[:, None], top, torch.full_like(top, -1))
        return sort_selection(top)


def kept_key_mask(kept_blocks: torch.Tensor, block_k: int, kv_len: int) -> torch.Tensor:
    """Bool [B, H, kv_len]: the keys inside the kept blocks [B, H, width] (-1 = padding)."""
    kept = torch.zeros(*kept_blocks.shape[:2], -(-kv_len // block_k) + 1, dtype=torch.bool, device=kept_blocks.device)
    kept.scatter_(-1, torch.where(kept_blocks >= 0, kept_blocks, torch.full_like(kept_blocks, kept.shape[-1] - 1)),
                  True)
    return kept[..., :-1].repeat_interleave(block_k, dim=-1)[..., :kv_len]


def sort_selection(sel: torch.Tensor) -> torch.Tensor:
    """Ascending block indices with the -1 padding moved to the end."""
    big = torch.iinfo(sel.dtype).max
    s = torch.where(sel < 0, torch.full_like(sel, big), sel).sort(dim=-1).values
    return torch.where(s == big, torch.full_like(s, -1), s)
