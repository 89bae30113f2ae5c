"""Leaderboard: rank sparse attention methods by how often an attack flips their answers.

Reads run directories (docs/results-schema.md) or W&B run summaries, never a
model: importing this package must stay free of torch and transformers.
"""

from .errors import LeaderboardError

__all__ = ["LeaderboardError"]
