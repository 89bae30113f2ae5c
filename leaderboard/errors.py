"""The one error type the command line turns into a one-line message and exit status 2."""


class LeaderboardError(Exception):
    """A problem with the user's input (no runs, conflicting runs, bad option), not a bug."""
