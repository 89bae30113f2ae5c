"""Where grid cells run: in this process, or as Ray tasks (one run's items over Ray actors
is `harness.workers`).

Ray is optional (`pip install -e ".[ray]"`) and imported only when asked for. A cell
crosses process boundaries as its `harness.run` argv, not as resolved options, so a
Ray worker resolves it again and imports the cell's plugins itself. Functions and
classes handed to Ray live at module level: Ray pickles them by reference, so workers
import this module instead of receiving a copy.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass
from typing import Iterator

from harness.errors import UsageError
from harness.workers import check_or_warn, connect, import_ray

def _expected(exc: BaseException) -> bool:
    """A user-facing error (bad options, a model that does not load): its message says it all."""
    from harness.models import ModelLoadError

    return isinstance(exc, (UsageError, ModelLoadError))


def describe(exc: BaseException) -> str:
    """One line naming a failure: our own errors by their message, anything else by its type too."""
    text = str(exc) if _expected(exc) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def run_cell(argv: list[str], cwd: str | None = None) -> dict:
    """Run one cell as `python -m harness.run ARGV` would (resuming its run directory); returns
    the run's summary. `cwd`: the driver's directory, so relative paths in argv mean the same on
    a Ray worker of the same machine."""
    from harness import run as runner

    if cwd is not None and os.path.isdir(cwd):
        os.chdir(cwd)
    return runner.run(runner.resolve(list(argv)))


@dataclass
class CellOutcome:
    name: str
    error: str | None  # None when the cell finished, else one line saying why not


class LocalExecutor:
    """Cells one after the other in this process; a failing cell is reported and the next one runs."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def map(self, cells) -> Iterator[CellOutcome]:
        for cell in cells:
            try:
                run_cell(cell.argv)
            except Exception as exc:  # noqa: BLE001 - one cell's failure must not stop the others
                if not _expected(exc):
                    print(f"cell {cell.name} failed:", file=sys.stderr)
                    traceback.print_exc()
                yield CellOutcome(cell.name, describe(exc))
            else:
                yield CellOutcome(cell.name, None)


class RayExecutor:
    """Cells as Ray tasks declaring `num_cpus`/`num_gpus` each, yielded as they finish.

    Joins the cluster at `address`, or starts a local one of `cluster_cpus` CPUs (all cores by
    default) and stops it on exit. Run directories must be reachable from every node (one
    machine, or a shared filesystem): the driver writes the leaderboard from them."""

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 cluster_cpus: int | None = None):
        self.address, self.num_cpus, self.num_gpus, self.cluster_cpus = address, num_cpus, num_gpus, cluster_cpus
        self._ray = None
        self._connected_here = False

    def __enter__(self):
        self._ray = import_ray()
        self._connected_here = connect(self._ray, self.address, self.cluster_cpus)
        try:
            check_or_warn(self._ray, self._connected_here, self.address, self.num_cpus, self.num_gpus)
        except UsageError:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info):
        if self._connected_here:
            self._ray.shutdown()
            self._connected_here = False
        return False

    def map(self, cells) -> Iterator[CellOutcome]:
        ray = self._ray
        task = ray.remote(run_cell).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus)
        cwd = os.getcwd()
        pending = {task.remote(list(cell.argv), cwd): cell for cell in cells}
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(ref)
                try:
                    ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                    if not _expected(cause):
                        print(f"cell {cell.name} failed:\n{exc}", file=sys.stderr)
                    yield CellOutcome(cell.name, describe(cause))
                except ray.exceptions.RayError as exc:  # the worker died (out of memory, node lost ...)
                    yield CellOutcome(cell.name, describe(exc))
                else:
                    yield CellOutcome(cell.name, None)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
