"""The two leaderboard rules a board run needs before any board is built: the densities a
board compares at by default and the full-attention accuracy a model needs on a suite.
They live here, below both, because harness may not import the leaderboard."""

DEFAULT_DENSITIES = (0.05, 0.1, 0.2)
MIN_ACCURACY = 0.7  # a model whose full attention answers fewer of a suite's items is skipped
