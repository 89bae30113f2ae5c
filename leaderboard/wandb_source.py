"""Runs from a W&B project, for leaderboards of runs that live on other machines.

`harness.run` logs the manifest config as `run.config` (plus `model_info` and
`versions`) and, when a run finishes, the summary.json numbers as `run.summary`
(counts and the `per_k` / `natural_per_k` lists). The per-item rows may not be
available (the `results` table artifact is optional), so W&B runs enter the
leaderboard through their summary counts: n_flipped / n per k add up exactly as
rows would. Only the median steps to first flip cannot be pooled without rows.

Needs the wandb package and network access; either missing is a LeaderboardError.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.results.stats import COUNT_KEYS

from .errors import LeaderboardError
from .runs import Loaded, Run, SkipRun, check_config

# Keys harness.run adds to the W&B config next to the manifest config, and W&B's own.
NOT_CONFIG = {"model_info", "versions"}


def _plain(value):
    """W&B summary/config objects as plain dicts and lists."""
    if isinstance(value, Mapping) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _config(raw: dict) -> dict:
    config = {k: v for k, v in raw.items() if not k.startswith("_") and k not in NOT_CONFIG}
    # Some API versions return {"key": {"value": v, "desc": ...}}.
    if config and all(isinstance(v, dict) and "value" in v and set(v) <= {"value", "desc"} for v in config.values()):
        config = {k: v["value"] for k, v in config.items()}
    return config


def _check_summary(summary: dict, ks: list[int]) -> dict:
    for key in ("per_k", "natural_per_k") + COUNT_KEYS:
        if summary.get(key) is None:
            raise SkipRun(f"run.summary lacks {key!r} (run unfinished, or not logged by harness.run)")
    for name in ("per_k", "natural_per_k"):
        entries = summary[name]
        if not isinstance(entries, list) or not all(isinstance(e, dict) and {"k", "n_flipped", "n"} <= set(e)
                                                    for e in entries):
            raise SkipRun(f"run.summary {name} is not a list of {{k, n_flipped, n}}")
        have = {int(e["k"]) for e in entries}
        absent = [k for k in ks if k not in have]
        if absent:
            raise SkipRun(f"run.summary {name} lacks k = {', '.join(map(str, absent))} of the k_sweep")
    return summary


def run_from_wandb(wrun) -> Run:
    """One W&B public-API run as a leaderboard Run (summary counts, no rows); SkipRun if unusable."""
    raw_config = _plain(wrun.config)
    config = check_config(_config(raw_config), "run.config")
    metrics = getattr(wrun, "summary_metrics", None)
    summary = _plain(metrics if metrics is not None else wrun.summary)
    _check_summary(summary, sorted(set(config["k_sweep"])))
    return Run(name=_name(wrun), config=config, summary=summary)


def _name(wrun) -> str:
    path = getattr(wrun, "path", None)
    ident = "/".join(path) if isinstance(path, (list, tuple)) else str(getattr(wrun, "id", "?"))
    display = getattr(wrun, "name", None)
    return f"wandb:{ident}" + (f" ({display})" if display and display != ident.split("/")[-1] else "")


def check_project(path: str) -> str:
    parts = path.split("/")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise LeaderboardError(f"--from-wandb expects ENTITY/PROJECT, got {path!r}")
    return path


def load_wandb(path: str, timeout: int = 30) -> Loaded:
    """Every run of a W&B project; runs without harness summaries are skipped with a reason."""
    check_project(path)
    try:
        import wandb
    except ImportError:
        raise LeaderboardError("--from-wandb needs the wandb package: pip install wandb") from None
    try:
        api = wandb.Api(timeout=timeout)
        wruns = list(api.runs(path))
    except Exception as exc:  # noqa: BLE001 - auth, network and 404 all mean "cannot read the project"
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise LeaderboardError(f"cannot read W&B project {path} ({type(exc).__name__}: {reason}); "
                               "check the network and `wandb login` / WANDB_API_KEY") from None
    loaded = Loaded()
    for wrun in wruns:
        try:
            loaded.runs.append(run_from_wandb(wrun))
        except SkipRun as exc:
            loaded.skipped.append((_name(wrun), str(exc)))
    if not wruns:
        loaded.warnings.append(f"wandb:{path}: the project has no runs")
    return loaded
