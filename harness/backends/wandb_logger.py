"""Weights & Biases logging that can never cost a result.

Logs the manifest as config, per-item outcomes and per-k flip rates as they come,
GCG-style per-step traces, and at the end a table of adversarial examples and the
flip-rate-against-k plot. Mode `auto` is online when WANDB_API_KEY is set, else
offline (files under the run directory's `wandb/`). If wandb is missing or any
call fails, it warns once and turns itself off; the run directory is the record.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from tasks.outcomes import OUTCOME_NAMES


class WandbLogger:
    def __init__(self, mode: str, project: str, manifest: dict, out_dir: Path):
        self.run = None
        self._warned = False
        if mode == "auto":
            mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
        self.mode = mode
        if mode == "disabled":
            return
        self._guard(self._start, project, manifest, Path(out_dir))

    def _warn(self, exc: BaseException) -> None:
        if not self._warned:
            warnings.warn(f"W&B logging disabled ({type(exc).__name__}: {exc}); results on disk are unaffected",
                          stacklevel=3)
            self._warned = True
        self.run = None

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - logging must never stop an experiment
            self._warn(exc)
            return None

    def _start(self, project: str, manifest: dict, out_dir: Path) -> None:
        import wandb

        config = manifest["config"]
        self.run = wandb.init(
            project=project, mode=self.mode, dir=str(out_dir), config={**config, "model_info": manifest["model"],
                                                                         "versions": manifest["versions"]},
            name=out_dir.name, id=_run_id(out_dir), resume="allow", reinit="finish_previous",
            tags=[Path(config["model"]).name[:64], config["method"], config["attack"]],
        )

    def log_item(self, row: dict, trace: list[dict], summary: dict) -> None:
        if self.run is None:
            return
        self._guard(self._log_item, row, trace, summary)

    def _log_item(self, row: dict, trace: list[dict], summary: dict) -> None:
        for step in trace:
            self.run.log({f"trace/{k}": v for k, v in step.items() if isinstance(v, (int, float))})
        data = {"items_done": summary["n_items"], "attack_success_rate": summary["attack_success_rate"],
                "item/success": int(row.success), "item/steps": row.steps}
        for entry in summary["per_k"]:
            data[f"flip_rate/k={entry['k']}"] = entry["flip_rate"]
        for name, entries in (summary.get("outcomes_per_k") or {}).items():
            for entry in entries:
                data[f"{name}_rate/k={entry['k']}"] = entry["rate"]
        self.run.log(data)

    def finish(self, summary: dict, rows: list[dict]) -> None:
        if self.run is None:
            return
        self._guard(self._finish, summary, rows)

    def _finish(self, summary: dict, rows: list[dict]) -> None:
        import wandb

        ks = summary["k_sweep"]
        columns = ["item_id", "question", "answer", "status", "adv_text", "steps", "success", "verified",
                   "verified_status", "p_correct_full"] + [f"p_correct_k{k}" for k in ks] \
            + [f"outcome_k{k}" for k in ks]
        table = wandb.Table(columns=columns)
        for r in rows:
            scores = r.scores or {}
            p_correct = [scores[m].p_correct if m in scores else None for m in ["full"] + [str(k) for k in ks]]
            table.add_data(r.item_id, r.question, r.answer, r.status, r.adv_text, r.steps, r.success, r.verified,
                           r.verified_status, *p_correct, *[_outcome_name(r, k) for k in ks])
        curve = wandb.Table(columns=["k", "flip_rate", "ci_low", "ci_high"],
                            data=[[e["k"], e["flip_rate"], e["ci_low"], e["ci_high"]] for e in summary["per_k"]])
        self.run.log({"adversarial_examples": table,
                      "flip_rate_vs_k": wandb.plot.line(curve, "k", "flip_rate", title="Flip rate against k")})
        for key, value in summary.items():
            if isinstance(value, (int, float)) or value is None:
                self.run.summary[key] = value
        for key in ("per_k", "natural_per_k", "outcomes_per_k", "natural_outcomes_per_k", "density_per_k"):
            if key in summary:
                self.run.summary[key] = summary[key]
        self.run.finish()
        self.run = None


def _outcome_name(row, k: int) -> str | None:
    """kept / strict flip / breakdown for the adversarial prompt at k (None when not counted)."""
    if not row.scores:
        return None
    cls = ((row.outcomes or {}).get(str(k)) or {}).get("class")
    return OUTCOME_NAMES.get(cls)


def _run_id(out_dir: Path) -> str:
    """Stable id per run directory, so a resumed run continues the same W&B run."""
    import hashlib

    return hashlib.sha1(str(out_dir.resolve()).encode()).hexdigest()[:16]
