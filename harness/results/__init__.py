"""The results contract, torch-free: the row schema and its one reader (`schema`), the
statistics of summary.json and the leaderboard (`stats`, `intervals`), the run directory
(`store`), the report and comparison commands (`report`, `compare`) and the pandas view
(`frame`). The schema's names are importable from here."""

from .schema import (  # noqa: F401
    ADDED_OPTION_DEFAULTS,
    ATTACKED,
    NO_ATTACK,
    NOT_VERIFIED,
    SKIP_FULL_WRONG,
    SKIPPED,
    STATUSES,
    UNVERIFIABLE,
    VERIFIED,
    ResultRow,
    RowError,
    RowsRead,
    manifest_margin,
    outcome_maps,
    read_rows,
    verification,
    with_added_defaults,
)
