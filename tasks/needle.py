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

**Absent needles** (`absent` per context): questions about a person the context never
mentions, asked about an attribute the context does state for others ("Is Hugo's lamp
green?" beside "Maria's lamp is green."). The asked fact is not in the context, so the
answer is "no"; without them "no" would only ever be answered against a contradicting
needle. They carry no needle span or depth, and come after the group's needle items.

**Balance.** A present needle is asked about its stated value (yes) or about another
value of its attribute (no). With `balance` on (the harness default for this suite) the
number of yes questions per group is half the group's items (alternating the odd one
between groups), and which needles get them rotates with the group, so yes and no are
equally frequent overall and at every depth, absent items included. With it off, needle
j of group g asks yes when g + j is even (the first release's rule; the depth in the
middle then always has the other answer). Everything is drawn from one
`random.Random(seed)`: the same seed and tokenizer give byte-identical items, and with
`absent=0, balance=False` exactly the items of the first release.

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
MAX_ABSENT = 8  # absent people per context; the context names at most 2 * len(depths) + distractors others


def yes_needles(group: int, n_needles: int, absent: int, balance: bool) -> set[int]:
    """Indices of the group's needles asked about their stated value (answer yes)."""
    if not balance:
        return {j for j in range(n_needles) if (group + j) % 2 == 0}
    n_items = n_needles + absent
    n_yes = min(n_needles, (n_items + group % 2) // 2)
    return {(group + t) % n_needles for t in range(n_yes)}


def _check(n_items: int, context_tokens: int, depths, absent: int = 0) -> tuple[float, ...]:
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
    if isinstance(absent, bool) or not isinstance(absent, int) or not 0 <= absent <= MAX_ABSENT:
        raise ValueError(f"needle: absent must be an integer in [0, {MAX_ABSENT}] (absent-needle questions per "
                         f"context), got {absent!r}")
    return depths


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False))


def _group(tokenizer, rng: random.Random, group: int, context_tokens: int, depths, seed: int, absent: int = 0,
           balance: bool = False) -> list[TaskItem]:
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
    yes_set = yes_needles(group, len(depths), absent, balance)
    for j, ((name, attribute, value), depth) in enumerate(zip(facts, depths)):
        start = context.index(needles[j])
        yes = j in yes_set
        asked = value if yes else rng.choice([v for v in attribute.values if v != value])
        items.append(TaskItem(
            id=f"needle-{seed}-{context_tokens}-g{group:03d}-d{depth:g}",
            question=attribute.question.format(name=name, value=asked), answer="yes" if yes else "no",
            context=context, needle_span=(start, start + len(needles[j])), depth=depth,
            group=f"needle-{seed}-{context_tokens}-g{group:03d}",
        ))
    mentioned = set(targets) | set(others[:n_distractors])
    strangers = [p for p in people if p not in mentioned and p not in context]
    for i, name in enumerate(strangers[:absent]):
        attribute = facts[i % len(facts)][1]  # an attribute the context states, for other people
        items.append(TaskItem(
            id=f"needle-{seed}-{context_tokens}-g{group:03d}-absent{i}",
            question=attribute.question.format(name=name, value=rng.choice(attribute.values)), answer="no",
            context=context, group=f"needle-{seed}-{context_tokens}-g{group:03d}",
        ))
    return items


def needle_items(tokenizer, n_items: int, context_tokens: int = 256, depths=DEFAULT_DEPTHS,
                 seed: int = 0, absent: int = 0, balance: bool = False) -> list[TaskItem]:
    """`n_items` needle questions (in total), in groups of one shared context per
    `len(depths) + absent` items, each context about `context_tokens` tokens long."""
    depths = _check(n_items, context_tokens, depths, absent)
    if tokenizer is None:
        raise ValueError("needle: the suite is sized in tokens and needs the model's tokenizer")
    rng = random.Random(seed)
    items: list[TaskItem] = []
    group = 0
    while len(items) < n_items:
        items.extend(_group(tokenizer, rng, group, context_tokens, depths, seed, absent, balance))
        group += 1
    return items[:n_items]
