"""The one error policy of every `python -m harness.*` command.

A user's mistake (bad option, unusable run directory, model that cannot be loaded)
is one line `PROG: error: ...` on stderr and exit status 2, never a traceback; Ctrl-C
says what was kept and exits 130; output piped into a reader that stops early (`| head`)
ends quietly. Each command's `main` hands its body to `command`.
"""

from __future__ import annotations

import sys
from typing import Callable

from harness.errors import ModelLoadError, UsageError

USER_ERRORS = (UsageError, ModelLoadError)


def command(prog: str, body: Callable[[], int | None], interrupted: str = "interrupted",
            errors: tuple[type[BaseException], ...] = USER_ERRORS) -> int:
    """Run `body()` and return its exit status (None: 0) under the error policy above."""
    try:
        return body() or 0
    except errors as exc:
        # One line even when the message quotes a library's multi-line error (e.g. the hub's).
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: {interrupted}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader closed stdout: nothing more to say, and no traceback at exit
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
