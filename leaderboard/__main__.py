"""`python -m leaderboard build ...`."""

import sys

from .cli import main

sys.exit(main())
