"""The one-pass board runner: load each model once, walk the suite context by context, and
score every item of a context for every cell before moving on.

Every cell is an ordinary `harness.run` run directory (same manifest, same rows as the
cell's own `python -m harness.run` command, which `board-cells.json` records), so
`leaderboard build` and resumption work unchanged. What the pass shares:
- one `attacks.Target` per model, whose prefix caches are keyed by the whole sparse
  config (`Target._prefix_layers`): the full-attention prefix of a context is computed
  once for every cell, each (method, k) sparse prefix once for the natural and the
  attacked cells of that method;
- the model load, once per model (and once per Ray actor with `--executor ray`, which
  shards contexts over actors; the driver alone writes, in context order, so the
  directories equal a local pass's).
Rows are appended as soon as an item is done; a rerun resumes item by item.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from harness.board.spec import BoardSpec, Cell
from harness.board.transfer import TransferStore, transfer_records, transfer_targets_for
from harness.results.store import RunStore


@dataclass
class CellPlan:
    """A cell resolved for one model: its config, attack, store and the rows already done."""

    cell: Cell
    cfg: object
    spec: object
    attack_cfg: object
    sparse: object
    rows: list = field(default_factory=list)
    attack_density: float = 0.1  # the density whose k (on the first item) is k_attack
    transfers: bool = False  # re-score this cell's adversarial tokens under every method
    store: RunStore | None = None
    transfer: TransferStore | None = None


def contexts_of(items: list) -> list[list]:
    """Items grouped by the context they share (needle groups; other items stand alone), in
    suite order."""
    groups: dict = {}
    for item in items:
        groups.setdefault(item.group or item.id, []).append(item)
    return list(groups.values())


def plan_cells(board: BoardSpec, cells: list[Cell], target, items: list) -> list[CellPlan]:
    """Resolve each cell with the k its attack density gives on the suite's first item (the
    same k for every item of the cell: `--k-attack` is one number per run)."""
    from harness.config import resolve
    from harness.run import _attack, densities_to_ks, item_context, sparse_config

    plans = []
    for cell in cells:
        probe = resolve(list(cell.argv) + ["--k-attack", "1"])
        target.sparse = sparse_config(probe)
        spec, attack_cfg = _attack(probe)
        first = target.prepare(items[0], item_context(probe, target.tokenizer, items[0]))
        density = board.attack_density(cell.attack)
        n_adv = getattr(attack_cfg, "n_adv", 0)
        k = densities_to_ks(target, first, n_adv, [density])[str(density)]
        warn_unreachable(cell, target, first, n_adv, board.densities)
        argv = board.argv(cell, k_attack=k)
        cfg = resolve(argv)
        spec, attack_cfg = _attack(cfg)
        plans.append(CellPlan(Cell(cell.model, cell.method, cell.attack, cell.out, tuple(argv)), cfg, spec,
                              attack_cfg, sparse_config(cfg), attack_density=density,
                              transfers=board.transfer and cell.attacked and cell.attack.name != "far"))
    return plans


def warn_unreachable(cell: Cell, target, prepared, n_adv: int, densities, tolerance: float = 0.025) -> None:
    """One line per board density the cell's method cannot reach on the suite's first item
    (e.g. a kv-cache method at 0.05, when the question alone is more than 5% of the prompt):
    its rows record the density they reach, and the board lists the entry as not comparable."""
    from harness.run import densities_to_ks
    from sparse.geometry import answer_density

    prompt_len = len(prepared.prompt_ids([0] * n_adv))
    region = target.region_length(prepared, n_adv)
    for d, k in densities_to_ks(target, prepared, n_adv, densities).items():
        reached = answer_density(target.sparse, k, prompt_len, region)
        if abs(reached - float(d)) > tolerance:
            print(f"harness.board: warning: cell {cell.out.name} cannot reach density {d} (nearest {reached:.3f} at "
                  f"k = {k}); its rows record {reached:.3f}", file=sys.stderr)


def transfer_targets(board: BoardSpec, model_name: str) -> list[tuple[str, object]]:
    """(method label, sparse config) of every method of the board, once each, whether or not
    an attack runs against it (an attack's `methods` restrict its sources, not its targets),
    with the board's shared options. The config's k is irrelevant: each record scores at the
    k of the attack density."""
    from harness.board.spec import Entry
    from harness.config import resolve

    cell = Cell(model_name, board.methods[0], Entry("none"), board.out / "transfer-target")
    return transfer_targets_for(board, resolve(board.argv(cell, k_attack=1)))


def score_context(target, plans: list[CellPlan], targets: list, work: list[tuple[int, object, object]]):
    """Yield (plan index, new row or None, transfer records) for each of one context's `work`:
    (plan index, item, the item's row when it is already written and only its transfer
    records are missing); `targets` are the transfer targets."""
    from harness.run import item_context, run_item

    for index, item, written in work:
        plan = plans[index]
        target.sparse = plan.sparse
        row = written
        if row is None:
            with tqdm(disable=True) as bar:
                row, _ = run_item(target, plan.spec, plan.attack_cfg, item, plan.cfg, bar)
        records = []
        if plan.transfers:
            prepared = target.prepare(item, item_context(plan.cfg, target.tokenizer, item))
            records = transfer_records(target, prepared, row, plan.cfg, plan.attack_density, targets)
        yield index, None if written is not None else row, records


def context_work(plans: list[CellPlan], context: list) -> list[tuple[int, object, object]]:
    """What a context still needs: rows not yet written, and the transfer records of attacked
    items whose row is written but whose records are not (a pass stopped between the two)."""
    work = []
    for index, plan in enumerate(plans):
        written = {r.item_id: r for r in plan.rows}
        for item in context:
            if item.id not in written:
                work.append((index, item, None))
            elif plan.transfers and not plan.transfer.has(item.id):
                work.append((index, item, written[item.id]))
    return work


def open_stores(plans: list[CellPlan], model_name: str, target, n_targets: int) -> None:
    """Each cell's run directory (created, or resumed: refused if its config differs)."""
    from harness.models import model_fingerprint
    from harness.run import _git_commit, _versions, result_config

    for plan in plans:
        plan.store = RunStore(plan.cell.out)
        manifest = {"config": result_config(plan.cfg, plan.attack_cfg), "model": model_fingerprint(model_name),
                    "versions": _versions(), "git_commit": _git_commit(),
                    "created": _now(), "attack_vocabulary": target.vocabulary_report(),
                    "board": {"cell": plan.cell.out.name, "command": "python -m harness.run " + " ".join(plan.cell.argv)}}
        plan.rows = plan.store.open(manifest)
        if plan.transfers:
            plan.transfer = TransferStore(plan.cell.out, per_item=n_targets + 1)


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_cells_file(board: BoardSpec, plans: list[CellPlan]) -> None:
    """`<out>/board-cells.json`: every cell's directory and its `harness.run` command, so each
    cell can be reproduced (or continued) alone."""
    path = board.out / "board-cells.json"
    cells = {}
    if path.exists():
        cells = json.loads(path.read_text())
    for plan in plans:
        cells[plan.cell.out.name] = "python -m harness.run " + " ".join(plan.cell.argv)
    board.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cells, indent=1, sort_keys=True) + "\n")


def run_model(board: BoardSpec, model_name: str, executor: str = "local", workers: int = 1,
              ray_address: str | None = None, max_contexts: int | None = None) -> list[CellPlan]:
    """Every cell of one model, in one pass over the suite's contexts (the first `max_contexts`
    of them when given: a budget for this pass, not a change of config, so the next pass
    continues where it stopped)."""
    print(f"loading model {model_name} ...", file=sys.stderr)
    target, items, plans, targets = load_cells(board, model_name)
    open_stores(plans, model_name, target, len(targets))
    write_cells_file(board, plans)
    contexts = contexts_of(items)
    todo = [(context, context_work(plans, context)) for context in contexts[:max_contexts]]
    todo = [(context, work) for context, work in todo if work]
    done_items = sum(len(p.rows) for p in plans)
    budget = "" if max_contexts is None or max_contexts >= len(contexts) else f" (this pass: the first {max_contexts})"
    print(f"board {board.out}: {len(plans)} cells x {len(items)} items, {done_items} rows already done, "
          f"{len(todo)} of {len(contexts)} contexts to score{budget}", file=sys.stderr)
    bar = tqdm(total=sum(len(work) for _, work in todo), desc=f"cell items ({model_name})", unit="item")
    with ExitStack() as stack, bar:
        if executor == "ray":  # contexts sharded over actors; this process alone writes, in order
            from harness.workers import RayItemPool

            pool = stack.enter_context(RayItemPool((board, model_name), workers, address=ray_address,
                                                   factory=make_board_worker))
            results = (entry for entries in pool.imap([work for _, work in todo]) for entry in entries)
        else:  # written item by item: an interrupted pass loses at most the item in progress
            results = (entry for _, work in todo for entry in score_context(target, plans, targets, work))
        for index, row, records in results:
            plan = plans[index]
            if row is not None:
                plan.store.append(row)
                plan.rows.append(row)
                plan.store.write_summary(plan.rows, plan.cfg.k_attack, plan.cfg.k_sweep, plan.cfg.density_sweep)
            if records:
                plan.transfer.append(records)
            bar.update()
    for plan in plans:  # a cell with nothing new still gets a summary of today's code
        plan.store.write_summary(plan.rows, plan.cfg.k_attack, plan.cfg.k_sweep, plan.cfg.density_sweep)
    return plans


def load_cells(board: BoardSpec, model_name: str):
    """(Target, items, plans, transfer targets) of one model's cells: the model loaded once,
    the suite built, and room in the target's prefix caches for every (method, density) a
    context needs at once (an attacked item is re-scored under every method in turn)."""
    from harness.config import resolve
    from harness.models import load_model
    from harness.run import _items, _target

    cells = [c for c in board.cells() if c.model == model_name]
    model, tokenizer = load_model(model_name)
    first = resolve(list(cells[0].argv) + ["--k-attack", "1"])
    items = _items(first, tokenizer)
    target = _target(first, model, tokenizer)
    target.max_cached_prefixes = max(target.max_cached_prefixes, len(board.methods) + len(board.densities) + 2)
    return target, items, plan_cells(board, cells, target, items), transfer_targets(board, model_name)


def make_board_worker(job):
    """(board, model name) -> work(context work), in a Ray actor's process: loads the model
    once and resolves the same cells as the driver (`plan_cells` is deterministic)."""
    target, _, plans, targets = load_cells(*job)
    return lambda context_work: list(score_context(target, plans, targets, context_work))


def log_to_wandb(plans: list[CellPlan]) -> None:
    """One W&B run per cell, from its directory, after the pass: W&B keeps one live run per
    process, and every row is on disk before anything is sent."""
    from harness.backends.wandb_logger import WandbLogger

    for plan in plans:
        if plan.cfg.wandb == "disabled":
            continue
        manifest = json.loads(plan.store.manifest_path.read_text())
        summary = json.loads(plan.store.summary_path.read_text())
        logger = WandbLogger(plan.cfg.wandb, plan.cfg.wandb_project, manifest, Path(plan.cell.out))
        for row in plan.rows:
            logger.log_item(row, [], summary)
        logger.finish(summary, plan.rows)


def run_board(board: BoardSpec, executor: str = "local", workers: int = 1, ray_address: str | None = None,
              max_contexts: int | None = None) -> list:
    plans = []
    for model_name in board.models:
        plans += run_model(board, model_name, executor, workers, ray_address, max_contexts)
    log_to_wandb(plans)
    return plans
