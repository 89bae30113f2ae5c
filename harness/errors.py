"""Errors shared by the harness's command-line tools, free of torch and of the attack registry,
so that the results store and the leaderboard can use them without loading a model."""


class UsageError(ValueError):
    """Bad command-line input or an unusable run directory; reported as one line with exit status 2."""


class ModelLoadError(RuntimeError):
    """A model could not be located, verified, converted or loaded; the message says what to do."""
