"""The needle suite: yes/no questions whose answer is one sentence of a long context.

Sparse attention's failure mode (seed, sections 4.2 and 5) is dropping the key block
that holds the information. A needle item makes that measurable on answers a model
knows: the context is neutral filler prose with *distractor facts* about other
people (same attributes, other values), and one *needle* sentence states the fact
asked about ("Boris's lamp is green." / "Is Boris's lamp green?"). Only the needle
answers the question, and its exact position is known (character span, and token
span once tokenised), so a flip can be traced to the blocks a method dropped.

Items come in *groups* that share one context with one needle per requested depth
(different people), so a depth sweep costs one prefix forward per attention mode.
Items are ordered group by group, depth by depth, so `--limit` keeps every depth.
Half the questions ask about the stated value (yes), half about another value of the
same attribute (no), balanced within every depth. Everything is drawn from one
`random.Random(seed)`: the same seed and tokenizer give byte-identical items.

Precision (SmolLM2 tokenizer, 3 or 5 depths, 20 seeds): a context is within -7..+10 tokens of
`context_tokens`; a needle starts on a sentence boundary, so its realised depth (tokens
before it / context tokens) is within 0.11 of the requested one at 128 tokens and 0.03 at
512 (`item.depth` is the requested depth).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .contexts import SEPARATOR, sentences
from .items import TaskItem

NAMES = (
    "Boris", "Maria", "Kenji", "Amara", "Lukas", "Priya", "Tomas", "Ingrid", "Omar", "Sofia", "Dmitri", "Aisha",
    "Pablo", "Hana", "Felix", "Leila", "Marco", "Yuki", "Anton", "Nadia", "Oscar", "Elena", "Rafael", "Greta",
    "Ivan", "Chloe", "Hugo", "Zara", "Milan", "Freya", "Tariq", "Clara", "Viktor", "Esme", "Jonas", "Mei",
    "Emil", "Rosa", "Nikolai", "Alma", "Sven", "Lucia", "Arjun", "Ida", "Bruno", "Selma", "Kofi", "Vera",
)
COLOURS = ("red", "green", "blue", "yellow", "black", "white", "orange", "purple")


@dataclass(frozen=True)
class Attribute:
    """One kind of fact: how it is stated, how it is asked, and its possible values."""

    name: str
    statement: str  # "{name}" and "{value}" placeholders
    question: str
    values: tuple[str, ...]


ATTRIBUTES = tuple(
    Attribute(obj, "{name}'s " + obj + " is {value}.", "Is {name}'s " + obj + " {value}?", COLOURS)
    for obj in ("lamp", "car", "scarf", "bicycle", "umbrella", "door", "kettle", "sofa")
) + (
    Attribute("city", "{name} lives in {value}.", "Does {name} live in {value}?",
              ("Paris", "Tokyo", "Cairo", "Lima", "Oslo", "Delhi", "Rome", "Boston")),
    Attribute("instrument", "{name} plays the {value}.", "Does {name} play the {value}?",
              ("piano", "violin", "guitar", "drums", "flute", "cello", "trumpet", "harp")),
    Attribute("fruit", "{name}'s favourite fruit is the {value}.", "Is {name}'s favourite fruit the {value}?",
              ("apple", "banana", "cherry", "mango", "pear", "plum", "lemon", "peach")),
)
DEFAULT_DEPTHS = (0.1, 0.5, 0.9)
DISTRACTORS_PER_100_TOKENS = 1.0
MIN_CONTEXT_TOKENS = 64


def _check(n_items: int, context_tokens: int, depths) -> tuple[float, ...]:
    depths = tuple(float(d) for d in depths)
    if not depths:
        raise ValueError("needle: give at least one depth, e.g. 0.1,0.5,0.9")
    bad = [d for d in depths if not 0.0 <= d <= 1.0]
    if bad:
        raise ValueError(f"needle: depths must lie in [0, 1] (0 = start of the context, 1 = end), got {bad}")
    if len(set(depths)) != len(depths):
        raise ValueError(f"needle: depths must be distinct, got {list(depths)}")
    if context_tokens < MIN_CONTEXT_TOKENS:
        raise ValueError(f"needle: context_tokens must be >= {MIN_CONTEXT_TOKENS} to hold filler, distractors "
                         f"and needles, got {context_tokens}")
    if n_items < 1:
        raise ValueError(f"needle: n_items must be >= 1, got {n_items}")
    if len(depths) > len(NAMES) // 2:
        raise ValueError(f"needle: at most {len(NAMES) // 2} depths per context")
    return depths


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False))


def _group(tokenizer, rng: random.Random, group: int, context_tokens: int, depths, seed: int) -> list[TaskItem]:
    """One shared context with a needle at every depth, and one question per needle."""
    people = rng.sample(NAMES, len(NAMES))
    targets, others = people[: len(depths)], people[len(depths):]
    facts = []  # (name, attribute, stated value) of each needle
    for name in targets:
        attribute = rng.choice(ATTRIBUTES)
        facts.append((name, attribute, rng.choice(attribute.values)))
    # Distractors: other people, the needles' attributes first (so the asked attribute
    # appears with other values), never a target person.
    n_distractors = max(len(depths), round(context_tokens * DISTRACTORS_PER_100_TOKENS / 100))
    distractors = []
    for i in range(n_distractors):
        attribute = facts[i % len(facts)][1] if i < 2 * len(facts) else rng.choice(ATTRIBUTES)
        distractors.append(attribute.statement.format(name=others[i % len(others)], value=rng.choice(attribute.values)))
    needles = [a.statement.format(name=n, value=v) for n, a, v in facts]
    budget = context_tokens - sum(_n_tokens(tokenizer, " " + s) for s in needles + distractors)
    pool = list(sentences("filler"))
    rng.shuffle(pool)
    filler, used = [], 0
    for sentence in pool * (1 + context_tokens // 200):
        n = _n_tokens(tokenizer, " " + sentence)
        if used + n - budget > budget - used:  # adding it would overshoot more than stopping undershoots
            break
        filler.append(sentence)
        used += n
    body = filler[:]
    for d in distractors:  # spread distractors over the filler at seeded positions
        body.insert(rng.randrange(len(body) + 1), d)
    # Needles at their depths by token position of the body built so far.
    lengths = [_n_tokens(tokenizer, " " + s) for s in body]
    total = sum(lengths)
    boundaries = [sum(lengths[:i]) for i in range(len(body) + 1)]  # tokens before sentence i
    slots = [min(range(len(boundaries)), key=lambda i: abs(boundaries[i] - depth * total)) for depth in depths]
    placed = sorted(zip(slots, range(len(depths))), key=lambda p: (p[0], p[1]))
    for shift, (slot, j) in enumerate(placed):
        body.insert(slot + shift, needles[j])
    context = " ".join(body) + SEPARATOR
    items = []
    for j, ((name, attribute, value), depth) in enumerate(zip(facts, depths)):
        start = context.index(needles[j])
        yes = (group + j) % 2 == 0
        asked = value if yes else rng.choice([v for v in attribute.values if v != value])
        items.append(TaskItem(
            id=f"needle-{seed}-{context_tokens}-g{group:03d}-d{depth:g}",
            question=attribute.question.format(name=name, value=asked), answer="yes" if yes else "no",
            context=context, needle_span=(start, start + len(needles[j])), depth=depth,
            group=f"needle-{seed}-{context_tokens}-g{group:03d}",
        ))
    return items


def needle_items(tokenizer, n_items: int, context_tokens: int = 256, depths=DEFAULT_DEPTHS,
                 seed: int = 0) -> list[TaskItem]:
    """`n_items` needle questions (in total), in groups of one shared context per
    `len(depths)` items, each context about `context_tokens` tokens long."""
    depths = _check(n_items, context_tokens, depths)
    if tokenizer is None:
        raise ValueError("needle: the suite is sized in tokens and needs the model's tokenizer")
    rng = random.Random(seed)
    items: list[TaskItem] = []
    group = 0
    while len(items) < n_items:
        items.extend(_group(tokenizer, rng, group, context_tokens, depths, seed))
        group += 1
    return items[:n_items]
