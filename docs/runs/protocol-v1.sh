#!/usr/bin/env bash
# Evidence runs of benchmark protocol v1 (docs/replication.md, "Protocol v1"): natural flips
# on the balanced needle suite with absent-needle items, qwen2.5-1.5b, 256-token contexts,
# densities 0.05/0.1/0.2; random search against its filler and far nulls at density 0.1.
# Every command resumes where it stopped: rerun this script to continue.
# Usage: bash docs/runs/protocol-v1.sh natural METHOD | attack ATTACK
# LIMIT=N (attack only, default 80) stops at N items, so the three attacks can grow together
# in rounds; a later, larger LIMIT continues the same rows.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
COMMON=(--model qwen2.5-1.5b --suite needle --context-tokens 256 --absent 1 --balance true --wandb disabled)
case "$1" in
  natural)  # 66 contexts x (3 needles + 1 absent question); the natural runs are cells of the
            # needle board (docs/boards/needle-qwen2.5-1.5b.yaml), which continues all of them at once
    $PY -m harness.run "${COMMON[@]}" --attack none --method "$2" --limit 264 \
        --density-sweep 0.05,0.1,0.2 --k-attack 4 --out "docs/runs/board-needle-qwen2.5-1.5b/qwen2.5-1.5b__$2__none" ;;
  attack)   # 20 contexts, 16 draws per item, STREAM at k = 4 (density 0.105 at this length)
    $PY -m harness.run "${COMMON[@]}" --attack "$2" --method stream --limit "${LIMIT:-80}" --steps 16 \
        --k-attack 4 --k-sweep 4,8 --out "docs/runs/protocol-v1-attack-$2" ;;
  *) echo "usage: $0 natural METHOD | attack ATTACK" >&2; exit 2 ;;
esac
