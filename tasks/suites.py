"""Loading task suites: built-in names, JSONL/CSV/YAML files, and `datasets` datasets.

Files are validated on load: a problem names the file, the line (YAML: the item
number and its line) and the field, so a 2,000-line suite with one typo fails
at once, not halfway through an experiment.
"""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import yaml

from plugins import Registry, unknown_name_message

from .items import ACCEPTED, TaskItem, normalise_answer
from .needle import DEFAULT_DEPTHS, needle_items

BUILTIN = {"seed4": "seed4.jsonl", "facts": "facts.jsonl"}
FORMATS = (".jsonl", ".csv", ".yaml", ".yml")
REQUIRED = ("question", "answer")


class SuiteError(ValueError):
    """A suite that cannot be used; the message says where and why."""


GENERATED = ("needle",)  # built from the model's tokenizer: see tasks/needle.py
NEEDLE_DEFAULT_ITEMS = 48  # 16 per default depth


# Built-in suite name -> its file under tasks/data (None: generated). No entry point group:
# a generated suite needs its own options, so plugins give suite files or hf: datasets instead.
SUITES: Registry[str | None] = Registry("suite")
for _name, _file in {**BUILTIN, **dict.fromkeys(GENERATED)}.items():
    SUITES.register(_name, _file)


def available_suites() -> list[str]:
    return SUITES.names()


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _item(record, where: str, index: int, prefix: str) -> TaskItem:
    """A validated item from one record; `where` locates it in error messages."""
    if not isinstance(record, dict):
        raise SuiteError(f"{where}: expected a mapping with fields 'question' and 'answer', "
                         f"got {type(record).__name__}")
    for field in REQUIRED:
        if field not in record:
            raise SuiteError(f"{where}: missing field '{field}'")
    if _blank(record["question"]):
        raise SuiteError(f"{where}: field 'question' is empty")
    answer = normalise_answer(record["answer"])
    if answer is None:
        raise SuiteError(f"{where}: field 'answer' must be one of {ACCEPTED} (any case), got {record['answer']!r}")
    item_id = record.get("id")
    item_id = f"{prefix}-{index:03d}" if _blank(item_id) else str(item_id).strip()
    context = record.get("context")
    return TaskItem(id=item_id, question=str(record["question"]).strip(), answer=answer,
                    context=None if _blank(context) else str(context))


def _records_jsonl(path: Path):
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SuiteError(f"{path}, line {lineno}: cannot parse JSON ({exc.msg}, column {exc.colno})") from None
            yield f"{path}, line {lineno}", record


def _records_csv(path: Path):
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        try:
            fields = reader.fieldnames
            if not fields:
                return
            for field in REQUIRED:
                if field not in fields:
                    raise SuiteError(f"{path}, line 1: missing field '{field}' in the header {fields}")
            for row in reader:
                if None in row:
                    raise SuiteError(f"{path}, line {reader.line_num}: more values than header fields")
                if not any(value and value.strip() for value in row.values()):
                    continue  # a blank line
                # A short row leaves fields as None, which reads as a missing field.
                yield f"{path}, line {reader.line_num}", {k: v for k, v in row.items() if v is not None}
        except csv.Error as exc:
            raise SuiteError(f"{path}, line {reader.line_num}: cannot parse CSV ({exc})") from None


def _records_yaml(path: Path):
    text = path.read_text(encoding="utf-8-sig")
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise SuiteError(f"{path}{line}: cannot parse YAML ({getattr(exc, 'problem', None) or exc})") from None
    if data is None:
        return
    if isinstance(data, dict) and "items" in data:
        data = data["items"]
        root = next(value for key, value in root.value if key.value == "items")
    if not isinstance(data, list):
        raise SuiteError(f"{path}: expected a list of items (or a mapping with a list under 'items')")
    for index, (record, node) in enumerate(zip(data, root.value)):
        yield f"{path}, item {index + 1} (line {node.start_mark.line + 1})", record


READERS = {".jsonl": _records_jsonl, ".csv": _records_csv, ".yaml": _records_yaml, ".yml": _records_yaml}


def load_file(path: str | Path, prefix: str | None = None) -> list[TaskItem]:
    """Validated items of a JSONL/CSV/YAML suite file; ids default to `<prefix>-<index:03d>`."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise SuiteError(f"{path}: unsupported suite format {path.suffix!r}; use {', '.join(FORMATS)}")
    prefix = prefix or path.stem
    try:
        items = [_item(record, where, index, prefix) for index, (where, record) in enumerate(reader(path))]
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read ({exc.strerror})") from None
    if not items:
        raise SuiteError(f"{path}: the suite is empty (no items)")
    _check_ids(items, str(path))
    return items


def _check_ids(items: list[TaskItem], where: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise SuiteError(f"{where}: duplicate item id {item.id!r}")
        seen.add(item.id)


def load_hf(spec: str, limit: int | None = None) -> list[TaskItem]:
    """`hf:<name>[:<config>]:<split>` with BoolQ fields: question, passage (context), answer or label."""
    parts = spec[len("hf:"):].split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise SuiteError(f"{spec}: expected hf:<name>[:<config>]:<split>, e.g. hf:google/boolq:validation")
    name, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    try:
        import datasets

        data = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # offline, unknown name, bad split: all end in one clear message
        first = (str(exc).splitlines() or [""])[0]
        raise SuiteError(f"{spec}: cannot load the dataset ({type(exc).__name__}: {first})") from None
    prefix = name.rstrip("/").split("/")[-1]
    items = []
    for index, row in enumerate(data):
        if limit is not None and index >= limit:
            break
        record = {"question": row.get("question"), "context": row.get("passage")}
        for field in ("answer", "label"):
            if field in row:
                record["answer"] = row[field]
                break
        question = record["question"]
        if isinstance(question, str) and question.strip():
            question = question.strip()  # BoolQ questions are lower case without a question mark
            record["question"] = question[0].upper() + question[1:] + ("" if question.endswith("?") else "?")
        if "id" in row:
            record["id"] = row["id"]
        items.append(_item(record, f"{spec}, row {index + 1}", index, prefix))
    if not items:
        raise SuiteError(f"{spec}: the dataset split is empty")
    _check_ids(items, spec)
    return items


def needs_tokenizer(name_or_path: str) -> bool:
    """Whether `load_suite` needs the model's tokenizer for this suite (generated suites)."""
    return str(name_or_path) in GENERATED


def load_suite(name_or_path: str, limit: int | None = None, *, tokenizer=None, context_tokens: int = 256,
               depths=DEFAULT_DEPTHS, seed: int = 0, absent: int = 0, balance: bool = False) -> list[TaskItem]:
    """Items of a built-in suite, a suite file, or an `hf:` dataset; only the first `limit` if given.

    `needle` is generated: it needs `tokenizer` and uses `context_tokens`, `depths`,
    `seed`, `absent` and `balance` (`limit` items in all, 48 by default)."""
    if limit is not None and limit < 1:
        raise SuiteError(f"limit must be >= 1, got {limit}")
    name = str(name_or_path)
    if name == "needle":
        try:
            return needle_items(tokenizer, limit or NEEDLE_DEFAULT_ITEMS, context_tokens, depths, seed, absent, balance)
        except ValueError as exc:
            raise SuiteError(str(exc)) from None
    if name in SUITES:
        items = load_file(Path(str(resources.files("tasks") / "data" / SUITES.get(name))), prefix=name)
    elif name.startswith("hf:"):
        items = load_hf(name, limit)
    elif Path(name).is_file():
        items = load_file(Path(name))
    else:
        raise _no_such_suite(name)
    return items[:limit] if limit is not None else items


def check_suite(name_or_path: str) -> None:
    """Raise the SuiteError `load_suite` would, without a tokenizer or the Hub: a board checks
    its suite before it spends a model load (a suite file is read and validated in full)."""
    name = str(name_or_path)
    if name in GENERATED or name in SUITES or name.startswith("hf:"):
        return
    if not Path(name).is_file():
        raise _no_such_suite(name)
    load_file(Path(name))


def _no_such_suite(name: str) -> SuiteError:
    if Path(name).suffix.lower() in FORMATS:
        return SuiteError(f"{name}: no such suite file")
    return SuiteError(f"{unknown_name_message('suite', name, available_suites())}; "
                      f"or give a {'/'.join(FORMATS)} file or hf:<name>[:<config>]:<split>")
