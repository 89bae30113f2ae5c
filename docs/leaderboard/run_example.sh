#!/usr/bin/env bash
# Reproduces the example leaderboard in this directory: 2 models x 3 sparse methods,
# same suite slice (facts, first 12 items), random search, k_attack = 4, 60 candidates.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
for model in smollm2-135m qwen2.5-0.5b; do
  for method in stream window random; do
    "$PY" -m harness.run --model "$model" --method "$method" --suite facts --limit 12 \
      --attack random --k-attack 4 --k-sweep 2,4,8,16 --steps 60 --context filler --context-tokens 128 \
      --wandb disabled --out "runs/leaderboard/$model-$method"
  done
done
"$PY" -m leaderboard build runs/leaderboard --out docs/leaderboard --title "flipbench example leaderboard (facts[:12], random search, k_attack=4)"
