"""Where work runs: grid cells in this process or as Ray tasks, and one run's items over Ray actors.

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
from typing import Callable, Iterable, Iterator

from .errors import UsageError

RAY_EXTRA = 'pip install -e ".[ray]"'


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(f"Ray is not installed; the Ray executor needs it: {RAY_EXTRA}") from None
    return ray


def connect(ray, address: str | None, num_cpus: int | None = None) -> bool:
    """Join the cluster at `address`, reuse a Ray session this process already has, or start a
    local cluster of `num_cpus` CPUs (all cores when None). True when this call connected, so
    the caller disconnects (and stops the local cluster) when done."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    return True


def check_resources(total: dict, num_cpus: float, num_gpus: float, count: int = 1) -> None:
    """Refuse a demand the cluster can never meet: Ray would queue such tasks forever."""
    have_cpus, have_gpus = total.get("CPU", 0), total.get("GPU", 0)
    if count * num_cpus > have_cpus or count * num_gpus > have_gpus:
        what = f"{count} workers of" if count > 1 else "each task asks for"
        raise UsageError(f"{what} num_cpus={num_cpus:g}, num_gpus={num_gpus:g}, but the Ray cluster has "
                         f"{have_cpus:g} CPUs and {have_gpus:g} GPUs")


def _check_or_warn(ray, connected_here: bool, address: str | None, num_cpus, num_gpus, count=1) -> None:
    """Check the demand against the cluster; a joined cluster may autoscale, so only warn there."""
    try:
        check_resources(ray.cluster_resources(), num_cpus, num_gpus, count)
    except UsageError as exc:
        if connected_here and not address:
            raise
        print(f"warning: {exc}; tasks wait until the cluster grows", file=sys.stderr)


def _expected(exc: BaseException) -> bool:
    """A user-facing error (bad options, a model that does not load): its message says it all."""
    from .models import ModelLoadError

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
            _check_or_warn(self._ray, self._connected_here, self.address, self.num_cpus, self.num_gpus)
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


class _ItemActor:
    """One Ray actor of a `RayItemPool`: builds the item worker (loads the model) once, then
    turns items into rows. A failed build is kept and raised by `ready`, so the driver gets the
    original error (a ModelLoadError stays one) instead of Ray's "actor died"."""

    def __init__(self, cfg, factory: Callable | None):
        if factory is None:
            from harness.run import make_item_worker as factory
        self._work, self._error = None, None
        try:
            self._work = factory(cfg)
        except Exception as exc:  # noqa: BLE001 - re-raised by ready() in the driver
            self._error = exc

    def ready(self) -> bool:
        if self._error is not None:
            raise self._error
        return True

    def run(self, item):
        return self._work(item)


class RayItemPool:
    """`--workers N` inside one run: N Ray actors each build `harness.run.make_item_worker(cfg)`
    (the model loaded once per actor) and turn items into rows. `imap` yields the rows in item
    order, so the driver alone appends results.jsonl, exactly as the local loop does; rows are
    deterministic per item (seeds derive from the item id), hence equal to a local run's.

    `factory` replaces `make_item_worker` (a module-level function: Ray pickles it by name).
    Joins `address`, reuses this process's Ray session, or starts a local cluster; returns once
    every actor has built its worker (or raises the first build error); `close()` (or leaving
    the `with` block) stops the actors and whatever it started."""

    def __init__(self, cfg, n_workers: int, address: str | None = None, num_cpus: float = 1,
                 num_gpus: float = 0, factory: Callable | None = None):
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise UsageError(f"--workers must be an integer >= 1, got {n_workers!r}")
        ray = import_ray()
        self._ray = ray
        self._connected_here = connect(ray, address)
        try:
            _check_or_warn(ray, self._connected_here, address, num_cpus, num_gpus, n_workers)
        except UsageError:
            self.close()
            raise
        actor = ray.remote(_ItemActor).options(num_cpus=num_cpus, num_gpus=num_gpus)
        self._actors = [actor.remote(cfg, factory) for _ in range(n_workers)]
        try:
            ray.get([a.ready.remote() for a in self._actors])  # every model loaded, or the first error
        except ray.exceptions.RayTaskError as exc:
            self.close()
            raise (exc.cause if isinstance(exc.cause, Exception) else exc) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def close(self) -> None:
        for actor in getattr(self, "_actors", []):
            self._ray.kill(actor)
        self._actors = []
        if self._connected_here:
            self._ray.shutdown()
            self._connected_here = False

    def imap(self, items: Iterable) -> Iterator:
        """Rows of `items` in their order; each idle actor takes the next item, and finished rows
        wait in a buffer until every earlier one is out. A failing item raises its error once the
        rows before it are out (as the local loop would have written them); no new item starts."""
        ray = self._ray
        queue = enumerate(items)
        pending: dict = {}  # object ref -> (index, actor)
        done: dict[int, tuple[bool, object]] = {}  # index -> (ok, row or error)
        failed = False
        next_out = 0

        def feed(actor) -> None:
            for index, item in queue:
                pending[actor.run.remote(item)] = (index, actor)
                return

        for actor in self._actors:
            feed(actor)
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                index, actor = pending.pop(ref)
                try:
                    done[index] = (True, ray.get(ref))
                except ray.exceptions.RayTaskError as exc:
                    done[index] = (False, exc.cause if isinstance(exc.cause, Exception) else exc)
                    failed = True
                if not failed:
                    feed(actor)
                while next_out in done:
                    ok, result = done.pop(next_out)
                    if not ok:
                        raise result
                    yield result
                    next_out += 1
        finally:
            for ref in pending:
                try:
                    ray.cancel(ref)
                except (TypeError, ValueError, ray.exceptions.RayError):  # running actor tasks may refuse
                    pass
