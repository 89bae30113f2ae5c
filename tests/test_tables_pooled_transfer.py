"""`docs/runs/tables.py pooled-transfer` against a plain count over the committed transfer
records: per target, the flips of each source's tokens and its null's on the items confident
under that target in both cells, summed over sources, the source's own method left out."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOARD = ROOT / "docs/runs/board-needle-attack-qwen2.5-1.5b"
PAIRS = [("oracle", "random", "filler"), ("hip", "random", "filler")]


def confident_flips(cell: Path) -> dict:
    out = {}
    for line in (cell / "transfer.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["confident"]:
            out.setdefault(r["target"]["method"], {})[r["item_id"]] = r["outcome"] in ("strict", "breakdown")
    return out


def test_pooled_transfer_sums_each_source_without_its_own_method():
    cells = [BOARD / f"qwen2.5-1.5b__{m}__{a}-d0.1-steps16" for m, *attacks in PAIRS for a in attacks]
    done = subprocess.run([sys.executable, "docs/runs/tables.py", "pooled-transfer", *map(str, cells)],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    table = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in done.stdout.splitlines()[2:]}
    expected = {}
    for source, attack, null in PAIRS:
        a = confident_flips(BOARD / f"qwen2.5-1.5b__{source}__{attack}-d0.1-steps16")
        b = confident_flips(BOARD / f"qwen2.5-1.5b__{source}__{null}-d0.1-steps16")
        for target in set(a) & set(b) - {source}:
            ids = set(a[target]) & set(b[target])
            n, fa, fb, k = expected.get(target, (0, 0, 0, 0))
            expected[target] = (n + len(ids), fa + sum(a[target][i] for i in ids),
                                fb + sum(b[target][i] for i in ids), k + 1)
    assert set(table) == set(expected) and "oracle" in table and "hip" in table
    for target, (n, fa, fb, sources) in expected.items():
        cols = table[target]
        assert int(cols[1].split(" (")[0]) == n
        assert (int(cols[2]), int(cols[3]), int(cols[4])) == (sources, fa, fb)
        diff, interval = cols[5].split(" [")
        assert float(diff) == round((fa - fb) / n, 3)
        low, high = (float(x) for x in interval.rstrip("]").split(", "))
        wide_low, wide_high = (float(x) for x in cols[6].strip(" |[]").split(", "))
        assert wide_low <= low <= float(diff) <= high <= wide_high  # the simultaneous interval is wider


def write_cell(path: Path, attack: str, flips: dict) -> Path:
    """A minimal attacked cell whose source is snapkv (default settings): transfer records for
    targets given as {(method, settings as a tuple of pairs): flipped}, one item."""
    path.mkdir()
    (path / "manifest.json").write_text(json.dumps({"config": {"method": "snapkv", "attack": attack}}))
    lines = [{"item_id": "i0", "cluster": "c0", "source": {"method": "snapkv", "settings": {}, "density": 0.1},
              "target": {"method": method, "settings": dict(settings), "density": 0.1}, "confident": True,
              "outcome": "strict" if flipped else "kept"} for (method, settings), flipped in flips.items()]
    (path / "transfer.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_pooled_transfer_leaves_out_every_setting_of_the_source_method(tmp_path):
    targets = {("snapkv", ()): True, ("snapkv", (("window", 8),)): True, ("h2o", ()): False, ("full", ()): False}
    cells = [write_cell(tmp_path / "attack", "random", targets), write_cell(tmp_path / "null", "filler", targets)]
    done = subprocess.run([sys.executable, "docs/runs/tables.py", "pooled-transfer", *map(str, cells)],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    listed = {line.split(" | ")[0].strip("| ") for line in done.stdout.splitlines()[2:]}
    assert listed == {"full", "h2o"}
