"""`docs/runs/tables.py directions` against a plain count over a committed attacked cell's
results.jsonl: flips by the question's answer, naturally and after the attack at its k, the
outcome classes, the draws, and the k each item is read at for a density."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CELL = ROOT / "docs/runs/board-needle-attack-qwen2.5-1.5b/qwen2.5-1.5b__hip__random-d0.1-steps16"


def read_k(row: dict, density: float) -> int:
    """The k the sweep chose for `density`, else the swept k whose density is nearest (lower k on ties)."""
    if str(density) in (row.get("density_ks") or {}):
        return int(row["density_ks"][str(density)])
    return min((abs(d - density), int(k)) for k, d in row["density"].items())[1]


def test_directions_equals_a_plain_count():
    rows = [json.loads(line) for line in (CELL / "results.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["status"] == "attacked" and r.get("confident") is not False]
    k = str(rows[0]["k_attack"])
    yes, no = [r for r in rows if r["answer"] == "yes"], [r for r in rows if r["answer"] == "no"]
    flipped = [r for r in rows if r["flipped"][k]]
    reads = {}
    for r in rows:
        reads[read_k(r, 0.1)] = reads.get(read_k(r, 0.1), 0) + 1
    done = subprocess.run([sys.executable, "docs/runs/tables.py", "directions", "0.1", str(CELL)],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    cols = [c.strip() for c in done.stdout.splitlines()[2].strip("|").split("|")]
    assert cols[0] == f"hip random k={k}"
    assert cols[1] == f"{len(rows)} ({len({r['needle']['group'] for r in rows})})"
    assert cols[2] == f"{len(yes)} / {len(no)}"
    assert cols[3] == f"{sum(r['natural_flipped'][k] for r in yes)} / {sum(r['natural_flipped'][k] for r in no)}"
    assert cols[4] == f"{sum(r['flipped'][k] for r in yes)} / {sum(r['flipped'][k] for r in no)}"
    strict = sum(r["outcomes"][k]["class"] == "strict" for r in flipped)
    assert cols[5] == f"{strict} + {len(flipped) - strict}"  # the classes partition the flips
    assert cols[6] == (f"{sum(r['steps'] for r in rows) / len(rows):.1f} / "
                       f"{sum(r['steps'] for r in flipped) / len(flipped):.1f} of 16")
    assert cols[7] == ", ".join(f"k={kk}: {n}" for kk, n in sorted(reads.items()))


def test_directions_refuses_bad_input_in_one_line_with_exit_2(tmp_path):
    for args, message in [(["0.1"], "give DENSITY CELL"), (["x", str(CELL)], "DENSITY must be a number"),
                          (["0.1", str(tmp_path)], "is not a run directory")]:
        done = subprocess.run([sys.executable, "docs/runs/tables.py", "directions", *args],
                              capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.splitlines()) == 1
        assert done.stdout == ""
