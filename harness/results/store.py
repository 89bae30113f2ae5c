"""The run directory: manifest, append-only results and summary (docs/results-schema.md).

Rows are flushed and fsynced one item at a time, so an interrupted run loses no
finished item; a torn last line (killed mid-write) is dropped by `results.read_rows`
and cut off here before new rows are appended. Resuming requires an equal config,
so rows of two different experiments never mix, and an exclusive lock on `.lock` keeps
two processes from appending the same items to one directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, a second writer is not detected
    fcntl = None

from harness.errors import UsageError
from .schema import ResultRow, RowError, read_rows, with_added_defaults
from .stats import summarize


class RunStore:
    def __init__(self, out: str | Path):
        self.dir = Path(out)
        self.manifest_path = self.dir / "manifest.json"
        self.results_path = self.dir / "results.jsonl"
        self.summary_path = self.dir / "summary.json"

    def open(self, manifest: dict) -> list[dict]:
        """Create the run directory, or resume it; returns the rows already done."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        if self.manifest_path.exists():
            old = self.check_resumable(manifest["config"])
            self._record_wider_limit(old, manifest["config"].get("limit"))
            return self._read_rows()
        if self.results_path.exists() and self.results_path.stat().st_size:
            raise UsageError(f"{self.results_path} exists without a manifest; refusing to mix runs")
        _write_json_atomic(self.manifest_path, manifest)
        self.results_path.touch()
        return []

    def _lock(self) -> None:
        """Hold `<dir>/.lock` for this store's life: a second process resuming the same
        directory would score and append the same items again."""
        if fcntl is None:
            return
        self._lock_file = open(self.dir / ".lock", "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise UsageError(f"{self.dir} is being written by another run; wait for it to finish or use "
                             "another --out") from None

    def check_resumable(self, config: dict) -> dict | None:
        """Refuse to add rows of a different experiment to an existing run directory;
        returns its manifest (None if there is none yet)."""
        if not self.manifest_path.exists():
            return None
        try:
            old = json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError:
            raise UsageError(f"{self.manifest_path} is unreadable; use another --out") from None
        differences = _diff(with_added_defaults(old.get("config", {})), with_added_defaults(config))
        if differences:
            raise UsageError(
                f"{self.dir} holds a run with a different config ({'; '.join(differences)}); "
                "use another --out or the same options to resume"
            )
        return old

    def _record_wider_limit(self, old: dict, limit: int | None) -> None:
        """A resume with a larger --limit (None: every item) adds items, so the manifest must
        say so: it describes the rows in the directory, not the first invocation."""
        previous = old.get("config", {}).get("limit")
        if previous is not None and (limit is None or limit > previous):
            old["config"]["limit"] = limit
            _write_json_atomic(self.manifest_path, old)

    def _read_rows(self) -> list[ResultRow]:
        if not self.results_path.exists():
            return []
        try:
            read = read_rows(self.results_path)
        except RowError as exc:
            raise UsageError(f"cannot resume {self.dir}: {exc}") from None
        if read.torn is not None:
            with open(self.results_path, "r+b") as fh:
                fh.truncate(read.good_bytes)
        return read.rows

    def append(self, row: ResultRow) -> None:
        with open(self.results_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def write_summary(self, rows: list[ResultRow], k_attack: int, k_sweep: list[int],
                      density_sweep: list[float] | None = None) -> dict:
        summary = summarize(rows, k_attack, k_sweep, density_sweep)
        _write_json_atomic(self.summary_path, summary)
        return summary


# Growing --limit only adds items; the rows already written stay valid.
RESUMABLE_KEYS = {"limit"}


def _diff(old: dict, new: dict) -> list[str]:
    keys = sorted((set(old) | set(new)) - RESUMABLE_KEYS)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
