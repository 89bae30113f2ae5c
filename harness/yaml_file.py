"""Reading a user's YAML file (run config or grid) with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.errors import UsageError


def read_mapping(path: str | Path, what: str, shape: str) -> dict:
    """The mapping in `path` ({} for an empty file); `what` names the file and `shape`
    says what it must hold, in errors."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path} must be {shape}")
    return data
