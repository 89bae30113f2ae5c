"""One run's items over Ray actors (`--workers N`), and the Ray session helpers the grid's
Ray executor shares.

Ray is optional (`pip install -e ".[ray]"`) and imported only when asked for. The item
worker factory is handed in (the run loop passes `harness.run.make_item_worker`), so this
module never imports the run loop that uses it.
"""

from __future__ import annotations

import sys
from typing import Callable, Iterable, Iterator

from harness.errors import UsageError

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


def check_or_warn(ray, connected_here: bool, address: str | None, num_cpus, num_gpus, count=1) -> None:
    """Check the demand against the cluster; a joined cluster may autoscale, so only warn there."""
    try:
        check_resources(ray.cluster_resources(), num_cpus, num_gpus, count)
    except UsageError as exc:
        if connected_here and not address:
            raise
        print(f"warning: {exc}; tasks wait until the cluster grows", file=sys.stderr)


class _ItemActor:
    """One Ray actor of a `RayItemPool`: builds the item worker (loads the model) once, then
    turns items into rows. A failed build is kept and raised by `ready`, so the driver gets the
    original error (a ModelLoadError stays one) instead of Ray's "actor died"."""

    def __init__(self, cfg, factory: Callable):
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

    `factory(cfg) -> work(item)` is `harness.run.make_item_worker` or a stand-in (a module-level
    function: Ray pickles it by name).
    Joins `address`, reuses this process's Ray session, or starts a local cluster; returns once
    every actor has built its worker (or raises the first build error); `close()` (or leaving
    the `with` block) stops the actors and whatever it started."""

    def __init__(self, cfg, n_workers: int, address: str | None = None, num_cpus: float = 1,
                 num_gpus: float = 0, *, factory: Callable):
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise UsageError(f"--workers must be an integer >= 1, got {n_workers!r}")
        ray = import_ray()
        self._ray = ray
        self._connected_here = connect(ray, address)
        try:
            check_or_warn(ray, self._connected_here, address, num_cpus, num_gpus, n_workers)
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
