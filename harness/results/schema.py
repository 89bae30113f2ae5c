"""The results contract: one row of results.jsonl, and the one way to read the file.

`ResultRow` is the schema of docs/results-schema.md as a dataclass: the harness
builds rows with it, the store, the report, the W&B logger and the leaderboard
read them with it. Fields added after the first release are optional, so every
row written so far still loads (missing new fields are None).

`read_rows` is the single reader, with one policy for a torn last line (a run
killed mid-write): it is dropped and reported in `RowsRead.torn`; the store
also truncates it before appending. A broken line anywhere else is an error
naming the line, because it means the file was edited or corrupted.

No torch here: the leaderboard imports this module without a model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tasks.outcomes import FULL, Score, classify, confident

ATTACKED, SKIPPED = "attacked", "skipped"
STATUSES = (ATTACKED, SKIPPED)
SKIP_FULL_WRONG = "full attention does not answer right (by --full-margin) without adversarial tokens"
NO_ATTACK = "none"

# Options added after the first release, with the value that reproduces older runs: a
# run directory whose config lacks one of them ran with this value (resume and pooling
# compare configs with these filled in).
ADDED_OPTION_DEFAULTS = {"full_margin": 0.0, "minimal_k": False, "density_sweep": None, "depth": None,
                         "sink_blocks": 0, "local_blocks": 0, "method_options": {},
                         "absent": 0, "balance": False}


def with_added_defaults(config: dict) -> dict:
    """`config` with options it predates set to the value it ran with. Second-release
    configs kept stream-density's share in a global `density`: it is that method's
    setting now (`method_options`)."""
    config = dict(config)
    if "density" in config:
        density = config.pop("density")
        if density is not None:
            config["method_options"] = {**config.get("method_options", {}), "density": density}
    return {**ADDED_OPTION_DEFAULTS, **config}


# verified_status values: see docs/results-schema.md.
VERIFIED, NOT_VERIFIED, UNVERIFIABLE = "verified", "not verified", "unverifiable"


def outcome_maps(scores: dict[str, Score], full_margin: float) -> tuple[dict[str, bool], dict[str, dict]]:
    """({k: flip}, {k: outcome record}) of every sparse k in `scores` against its "full" score."""
    flips, classes = {}, {}
    for mode, score in scores.items():
        if mode == FULL:
            continue
        outcome = classify(scores[FULL], score, full_margin)
        flips[mode] = outcome.flip
        classes[mode] = outcome.to_dict()
    return flips, classes


def verification(scores: dict[str, Score], ks: list[int], k_attack: int, density: dict[str, float]) -> tuple[str, bool]:
    """(verified status, monotone) of a successful attack.

    Verified: right again at the largest swept k above k_attack that is still sparse
    (keeps fewer blocks than the answer position has). Without such a k the flip cannot
    be told from noise by the sweep: "unverifiable". Monotone: not right at every swept
    k <= k_attack."""
    sparse_ks = [k for k in ks if k > k_attack and density[str(k)] < 1.0]
    if not sparse_ks:
        status = UNVERIFIABLE
    else:
        status = VERIFIED if scores[str(max(sparse_ks))].correct else NOT_VERIFIED
    monotone = all(not scores[str(k)].correct for k in ks if k <= k_attack)
    return status, monotone


class RowError(ValueError):
    """A results.jsonl line that is not a valid row; the message names the line and the field."""


def _scores(data, where: str) -> dict[str, Score] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise RowError(f"{where} is not an object of scores")
    try:
        return {mode: Score.from_dict(s) for mode, s in data.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise RowError(f"{where} holds a malformed score ({exc})") from None


def _dump_scores(scores: dict[str, Score] | None) -> dict | None:
    return None if scores is None else {mode: s.to_dict() for mode, s in scores.items()}


@dataclass
class ResultRow:
    """One item of one run. Per-k maps are keyed by str(k); see docs/results-schema.md."""

    item_id: str
    question: str
    answer: str
    status: str
    skip_reason: str | None
    natural: dict[str, Score]
    natural_flipped: dict[str, bool]
    attack: str
    k_attack: int
    adv_ids: list[int] | None = None
    adv_text: str | None = None
    steps: int = 0
    success: bool = False
    verified: bool = False
    scores: dict[str, Score] | None = None
    flipped: dict[str, bool] | None = None
    # Added in the second release (None in older rows):
    natural_outcomes: dict[str, dict] | None = None
    outcomes: dict[str, dict] | None = None
    answer_blocks: int | None = None
    density: dict[str, float] | None = None
    verified_status: str | None = None
    monotone: bool | None = None
    attribution: dict | None = None
    needle: dict | None = None
    minimal_k: dict | None = None
    density_ks: dict[str, int] | None = None
    # Added in the third release: full attention answers right by --full-margin (the
    # items every rate counts), the attack's per-draw classes, the null's placement.
    confident: bool | None = None
    draws: dict | None = None
    # Added in the fourth release, on flipped items only: what the answer position saw
    # (harness.pictures; docs/results-schema.md "picture").
    picture: dict | None = None
    timing: dict = field(default_factory=dict)

    LEGACY_KEYS = ("item_id", "question", "answer", "status", "skip_reason", "natural", "natural_flipped",
                   "attack", "k_attack", "adv_ids", "adv_text", "steps", "success", "verified", "scores", "flipped")
    OPTIONAL_KEYS = ("natural_outcomes", "outcomes", "answer_blocks", "density", "verified_status", "monotone",
                     "attribution", "needle", "minimal_k", "density_ks", "confident", "draws", "picture")

    @property
    def attacked(self) -> bool:
        return self.status == ATTACKED

    @property
    def counted(self) -> bool:
        """Counted in every rate: attacked, and full attention answers right by the margin
        (rows without a full-attention score keep their stored flags and count when attacked)."""
        return self.attacked and self.confident is not False

    def classify(self, full_margin: float) -> None:
        """Set every outcome flag from the stored scores (`tasks.outcomes.classify`).

        Rows of earlier releases stored flags under other rules (a P-based flip beside
        argmax-based classes that did not partition it); reading reclassifies them, so
        strict + breakdown = flips on every row. An attack's `success` becomes "the
        adversarial prompt it returned flips at k_attack", and `verified` follows."""
        if FULL not in (self.natural or {}):
            return
        self.confident = confident(self.natural[FULL], full_margin)
        self.natural_flipped, self.natural_outcomes = outcome_maps(self.natural, full_margin)
        if self.scores is None or FULL not in self.scores:
            return
        self.flipped, self.outcomes = outcome_maps(self.scores, full_margin)
        self.success = self.attack != NO_ATTACK and self.flipped.get(str(self.k_attack), False)
        if not self.success:
            self.verified, self.verified_status, self.monotone = False, None, None
        elif self.density:  # rows of the first release lack the density: their verdict stays
            ks = sorted(int(k) for k in self.flipped)
            self.verified_status, self.monotone = verification(self.scores, ks, self.k_attack, self.density)
            self.verified = self.verified_status == VERIFIED

    def to_dict(self) -> dict:
        """The JSON object written to results.jsonl: legacy keys in their original order,
        new keys only when set, timing last."""
        out = {}
        for key in self.LEGACY_KEYS:
            value = getattr(self, key)
            out[key] = _dump_scores(value) if key in ("natural", "scores") else value
        for key in self.OPTIONAL_KEYS:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out["timing"] = self.timing
        return out

    @classmethod
    def from_dict(cls, data, where: str = "row", k_sweep: list[int] | None = None,
                  full_margin: float = 0.0) -> "ResultRow":
        """Validate and load one row, classified at `full_margin` (`classify`); RowError
        names `where` and the problem."""
        if not isinstance(data, dict):
            raise RowError(f"{where} is not a JSON object")
        for key in ("item_id", "status", "natural_flipped"):
            if key not in data:
                raise RowError(f"{where} lacks {key!r}")
        if data["status"] not in STATUSES:
            raise RowError(f"{where} has status {data['status']!r} (expected attacked or skipped)")
        if data["status"] == ATTACKED:
            for key in ("flipped", "success", "verified", "steps"):
                if key not in data:
                    raise RowError(f"{where} (attacked) lacks {key!r}")
        if k_sweep is not None:
            maps = ("natural_flipped", "flipped") if data["status"] == ATTACKED else ("natural_flipped",)
            for name in maps:
                absent = [k for k in k_sweep if str(k) not in (data[name] or {})]
                if absent:
                    raise RowError(f"{where} {name} lacks k = {', '.join(map(str, absent))} of the k_sweep")
        values = {key: data.get(key) for key in cls.LEGACY_KEYS + cls.OPTIONAL_KEYS}
        values["natural"] = _scores(data.get("natural") or {}, f"{where} natural")
        values["scores"] = _scores(data.get("scores"), f"{where} scores")
        values["steps"] = data.get("steps") or 0
        values["success"] = bool(data.get("success"))
        values["verified"] = bool(data.get("verified"))
        values["question"] = data.get("question", "")
        values["answer"] = data.get("answer", "")
        values["attack"] = data.get("attack", "")
        values["k_attack"] = data.get("k_attack")
        values["timing"] = data.get("timing") or {}
        row = cls(**values)
        row.classify(full_margin)
        return row


@dataclass
class RowsRead:
    rows: list[ResultRow]
    torn: str | None = None  # description of a dropped torn last line
    good_bytes: int = 0  # length of the complete lines (where a torn line starts)


def manifest_margin(run_dir: Path) -> float:
    """The run's --full-margin from its manifest.json (0.0, the first release's rule, without one)."""
    try:
        config = json.loads((Path(run_dir) / "manifest.json").read_text()).get("config") or {}
    except (OSError, ValueError, AttributeError):
        return 0.0
    margin = config.get("full_margin", 0.0) if isinstance(config, dict) else 0.0
    return float(margin) if isinstance(margin, (int, float)) and not isinstance(margin, bool) else 0.0


def read_rows(path: str | Path, k_sweep: list[int] | None = None, full_margin: float | None = None) -> RowsRead:
    """Every complete row of a results.jsonl; a torn last line is dropped and described in `torn`.

    Rows are classified on read (`ResultRow.classify`) at `full_margin`, by default the
    run's own from the manifest.json beside the file.

    Raises FileNotFoundError if the file is missing and RowError for a broken line
    that is not the last one or a row that is not valid (checked against `k_sweep`).
    """
    path = Path(path)
    data = path.read_bytes()
    rows: list[ResultRow] = []
    pos, lineno = 0, 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        lineno += 1
        raw = data[pos:] if end < 0 else data[pos:end]
        last = end < 0 or end == len(data) - 1
        if raw.strip():
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                obj = None
            if obj is None or end < 0:
                if last:
                    return RowsRead(rows, f"{path.name} line {lineno} is truncated (interrupted write?); "
                                          f"using the {len(rows)} complete rows", pos)
                raise RowError(f"{path.name} line {lineno} is not valid JSON")
            margin = manifest_margin(path.parent) if full_margin is None else full_margin
            rows.append(ResultRow.from_dict(obj, f"{path.name} line {lineno}", k_sweep, margin))
        pos = len(data) if end < 0 else end + 1
    return RowsRead(rows, None, len(data))
