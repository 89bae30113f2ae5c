"""Yes/no task suites, answer token sets, context builders and prompt assembly."""

from .answers import AnswerSets, answer_token_sets
from .contexts import available_contexts, build_context
from .items import TaskItem
from .prompts import PromptParts, build_prompt
from .needle import needle_items
from .prompts import needle_token_span
from .suites import SuiteError, available_suites, check_suite, load_suite, needs_tokenizer

__all__ = [
    "AnswerSets",
    "PromptParts",
    "SuiteError",
    "TaskItem",
    "answer_token_sets",
    "available_contexts",
    "available_suites",
    "build_context",
    "build_prompt",
    "check_suite",
    "load_suite",
    "needle_items",
    "needle_token_span",
    "needs_tokenizer",
]
