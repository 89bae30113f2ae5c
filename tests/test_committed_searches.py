"""Every committed search that stopped before its budget stopped on a success its row
confirms. A search (random search and its nulls, `attacks.random_search.run_draws`) stops at
the first candidate it scores as a flip, in a batch; the row re-scores that candidate alone.
If a method's selection depended on a prompt's batch position, the two would disagree and the
search would stop early on a flip nobody can reproduce (random eviction did, before a931f17)."""

import json
from pathlib import Path

import pytest

from harness.results import read_rows

ROOT = Path(__file__).resolve().parents[1]
SEARCHES = ("random", "filler", "far")


def searched_runs() -> list[Path]:
    """Committed runs of a search whose rows record their draws (rows of earlier releases were
    reclassified under later outcome rules, so their stored stop is not comparable)."""
    out = []
    for manifest in sorted((ROOT / "docs/runs").rglob("manifest.json")):
        config = json.loads(manifest.read_text())["config"]
        results = manifest.parent / "results.jsonl"
        if config.get("attack") in SEARCHES and results.is_file() and '"draws"' in results.read_text():
            out.append(manifest.parent)
    return out


def early_stops_without_success(run: Path) -> list[str]:
    budget = json.loads((run / "manifest.json").read_text())["config"]["steps"]
    rows = [r for r in read_rows(run / "results.jsonl").rows if r.attacked]
    return [r.item_id for r in rows if r.steps < budget and not r.success]


def test_some_committed_runs_record_their_draws():
    assert len(searched_runs()) >= 30


@pytest.mark.parametrize("run", searched_runs(), ids=lambda p: str(p.relative_to(ROOT / "docs/runs")))
def test_a_search_stops_early_only_on_a_success_its_row_confirms(run):
    assert early_stops_without_success(run) == []
