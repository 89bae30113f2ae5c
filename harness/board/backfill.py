"""Transfer records for attacked runs made outside a board pass:
`python -m harness.board BOARD.yaml --transfer-to RUN [RUN ...]`.

Each item's adversarial tokens (from the run's rows) are re-scored under every method of
the board, at the density of the board's attack of the run's name, and written to the run's
`transfer.jsonl` exactly as a board pass writes them (harness/board/transfer.py). A run
attacked with a board cell's options (say, the protocol's random search against STREAM)
thereby joins the board's transfer matrix without its attack being searched again: only
the re-scoring is paid for. The targets take the board's methods and the run's own shared
options (blocks, dense layers, seed), so the records describe the run's attention. Resumes
item by item like a board pass.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

from harness.board.spec import BoardSpec
from harness.board.transfer import TransferStore, transfer_records, transfer_targets_for
from harness.errors import UsageError

# Attacks whose tokens have no transfer record: none inserts nothing, and far puts its
# tokens before the context, where the board's targets are not scored.
NOT_TRANSFERRED = ("none", "far")


def run_config(run_dir: Path):
    """The `RunConfig` a run directory's manifest records (options it predates at the value it
    ran with), or a UsageError naming the directory."""
    from harness.config import RunConfig
    from harness.results import with_added_defaults

    path = run_dir / "manifest.json"
    if not path.is_file():
        raise UsageError(f"--transfer-to {run_dir}: not a run directory (no manifest.json)")
    config = with_added_defaults(json.loads(path.read_text())["config"])
    config.pop("attack_params", None)
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    values = {k: v for k, v in config.items() if k in fields}
    return RunConfig(**values, attack_options={k: v for k, v in config.items() if k not in fields})


def attack_density(board: BoardSpec, run_dir: Path, attack: str) -> float:
    """The density of the board's attack named `attack` (a UsageError when the board has none,
    or lists it at several densities)."""
    if attack in NOT_TRANSFERRED:
        raise UsageError(f"--transfer-to {run_dir}: attack {attack!r} has no transfer records "
                         f"(only the inserted tokens of an attack or its filler null transfer)")
    densities = {board.attack_density(a) for a in board.attacks if a.name == attack}
    if len(densities) != 1:
        listed = "no" if not densities else f"{len(densities)} densities for"
        raise UsageError(f"--transfer-to {run_dir}: board file {board.path} has {listed} attack {attack!r}; "
                         f"the records are scored at that attack's density")
    return densities.pop()


def backfill(board: BoardSpec, run_dirs: list[str]) -> list[tuple[Path, int]]:
    """Write the missing transfer records of every run; (run directory, items with records)."""
    from harness.board.runner import contexts_of
    from harness.models import load_model
    from harness.results import read_rows
    from harness.run import _items, _target, item_context

    runs = []
    for name in run_dirs:
        run_dir = Path(name)
        cfg = run_config(run_dir)
        runs.append((run_dir, cfg, attack_density(board, run_dir, cfg.attack)))
    done = []
    loaded: dict = {}
    for run_dir, cfg, density in runs:
        if cfg.model not in loaded:
            print(f"loading model {cfg.model} ...", file=sys.stderr)
            loaded = {cfg.model: load_model(cfg.model)}  # one model in memory at a time
        model, tokenizer = loaded[cfg.model]
        target = _target(cfg, model, tokenizer)
        targets = transfer_targets_for(board, cfg)
        target.max_cached_prefixes = max(target.max_cached_prefixes, len(targets) + 2)
        rows = {row.item_id: row for row in read_rows(run_dir / "results.jsonl").rows}
        store = TransferStore(run_dir, per_item=len(targets) + 1)
        todo = [item for context in contexts_of(_items(cfg, tokenizer)) for item in context
                if item.id in rows and not store.has(item.id)]
        for item in tqdm(todo, desc=f"transfer {run_dir.name}", unit="item"):
            prepared = target.prepare(item, item_context(cfg, tokenizer, item))
            store.append(transfer_records(target, prepared, rows[item.id], cfg, density, targets))
        done.append((run_dir, sum(store.has(item_id) for item_id in rows)))
    return done
