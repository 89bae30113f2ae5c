"""`--executor ray`: a board's contexts sharded over Ray actors, each loading the model once.

Each actor resolves the same cells as the driver (`plan_cells` is deterministic) and turns
one context's work into rows and transfer records; the driver alone writes them, in context
order (`harness.workers.RayItemPool.imap`), so the run directories equal a local pass's.
"""

from __future__ import annotations


def make_board_worker(job):
    """(board, model name) -> work(context work) in an actor's process: loads the model once."""
    from harness.board.runner import plan_cells, score_context
    from harness.config import resolve
    from harness.models import load_model
    from harness.run import _items, _target

    board, model_name = job
    cells = [c for c in board.cells() if c.model == model_name]
    model, tokenizer = load_model(model_name)
    first = resolve(list(cells[0].argv) + ["--k-attack", "1"])
    items = _items(first, tokenizer)
    target = _target(first, model, tokenizer)
    plans = plan_cells(board, cells, target, items)

    def work(context_work):
        return score_context(target, plans, context_work)

    return work


def ray_contexts(board, model_name: str, todo: list, workers: int, address: str | None):
    """Results of `todo` [(context, work)] in order, from `workers` Ray actors."""
    from harness.workers import RayItemPool

    with RayItemPool((board, model_name), workers, address=address, factory=make_board_worker) as pool:
        yield from pool.imap([work for _, work in todo])
