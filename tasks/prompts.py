"""Prompt assembly at the token-id level: prefix + adversarial ids + suffix.

The prompt is rendered once (with the tokenizer's chat template, or a plain
fallback) around a marker where the adversarial tokens go. The text before the
marker (template head and context) and after it (question and template tail)
are tokenised separately: every candidate then shares the same prefix ids (its
KV cache is reused), and the adversarial ids are inserted as ids, never
re-tokenised together with their neighbours.

The slot is before the question by default (`slot="question"`); `slot="context"`
puts it after the template head and before the context, for the `far` null
(`attacks.nulls`) that asks whether the same tokens matter far from the question.
"""

from __future__ import annotations

from dataclasses import dataclass

from .contexts import SEPARATOR
from .items import TaskItem

ADV_MARKER = "\u2063<<FLIPBENCH_ADV>>\u2063"  # invisible separators: no template or text contains it
INSTRUCTION = " Answer with yes or no."
PLAIN_TEMPLATE = "{context}{marker}Question: {question}" + INSTRUCTION + "\nAnswer:"
SLOTS = ("question", "context")


@dataclass(frozen=True)
class PromptParts:
    """Token ids around the adversarial position: prefix_ids + adversarial ids + suffix_ids."""

    prefix_ids: list[int]
    suffix_ids: list[int]


def _context(context_text: str, passage: str | None) -> str:
    """Context then passage, each followed by a blank line, so the adversarial tokens start fresh."""
    parts = [text.rstrip() for text in (context_text, passage) if text and text.strip()]
    return "".join(part + SEPARATOR for part in parts)


def _bos_id(tokenizer) -> int | None:
    """The BOS id if the tokenizer adds one on its own when encoding (the plain template keeps it)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None
    with_special = tokenizer.encode("a", add_special_tokens=True)
    without = tokenizer.encode("a", add_special_tokens=False)
    return bos if with_special[:1] == [bos] and without[:1] != [bos] else None


def render(tokenizer, item: TaskItem, context_text: str = "", slot: str = "question") -> str:
    """The prompt text with `ADV_MARKER` where the adversarial tokens go: before the
    question (`slot="question"`) or before the context (`slot="context"`)."""
    if slot not in SLOTS:
        raise ValueError(f"slot must be one of {SLOTS}, got {slot!r}")
    question = item.question.strip() if isinstance(item.question, str) else ""
    if not question:
        raise ValueError(f"item {item.id!r}: empty question")
    context = _context(context_text, item.context)
    # The marker joins the context on the side of the slot; the template is the same either way.
    context, marker = (context, ADV_MARKER) if slot == "question" else (ADV_MARKER + context, "")
    if getattr(tokenizer, "chat_template", None):
        content = context + marker + question + INSTRUCTION
        text = tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                             tokenize=False, add_generation_prompt=True)
    else:
        text = PLAIN_TEMPLATE.format(context=context, marker=marker, question=question)
    if text.count(ADV_MARKER) != 1:
        raise ValueError("the chat template dropped or repeated the adversarial marker; cannot split the prompt")
    return text


def _bos_prefix(tokenizer) -> list[int]:
    """[BOS] when the plain template is used and the tokenizer adds one on its own."""
    if getattr(tokenizer, "chat_template", None):
        return []
    bos = _bos_id(tokenizer)
    return [] if bos is None else [bos]


def build_prompt(tokenizer, item: TaskItem, context_text: str = "", slot: str = "question") -> PromptParts:
    """Prefix (template head + context) and suffix (question + template tail) token ids;
    with `slot="context"` the context moves from the prefix to the start of the suffix."""
    text = render(tokenizer, item, context_text, slot)
    head, tail = text.split(ADV_MARKER)
    prefix = _bos_prefix(tokenizer) + (tokenizer.encode(head, add_special_tokens=False) if head else [])
    return PromptParts(prefix_ids=list(prefix), suffix_ids=list(tokenizer.encode(tail, add_special_tokens=False)))


def needle_token_span(tokenizer, item: TaskItem, context_text: str = "") -> tuple[int, int] | None:
    """[start, end) positions in `build_prompt(...).prefix_ids` of the tokens that hold the
    item's needle sentence (any token overlapping it), or None for an item without one."""
    if item.needle_span is None:
        return None
    head = render(tokenizer, item, context_text).split(ADV_MARKER)[0]
    offset = head.index(item.context.rstrip())
    a, b = offset + item.needle_span[0], offset + item.needle_span[1]
    encoded = tokenizer(head, add_special_tokens=False, return_offsets_mapping=True)
    hits = [i for i, (s, e) in enumerate(encoded["offset_mapping"]) if s < b and e > a]
    shift = len(_bos_prefix(tokenizer))
    return hits[0] + shift, hits[-1] + 1 + shift
