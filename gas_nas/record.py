"""The one record of what gas-nas stores on an Optuna trial, written and read back in one place.

Every key a trial carries as an Optuna user attribute is a field here (or a field of
`TrialMetrics`, flattened), so `show`, `export`, the dashboard, progress lines and
`docs/reproduce.py` read trials through `TrialRecord.of(trial)` and never type a key by hand.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from gas_nas.results import TrialMetrics

METRIC_KEYS = tuple(f.name for f in dataclasses.fields(TrialMetrics))
INTERRUPTED = "interrupted"


@dataclass
class TrialRecord:
    """What one trial is: its paper case (if any), architecture, training config, results.

    `feasible` is None until the trial has results; `fail_reason` says why a FAIL trial failed.
    """

    case: str | None = None
    paper_mb: float | None = None
    spec: dict | None = None  # DiscriminatorSpec.to_dict()
    train: dict | None = None  # TrainConfig.to_dict()
    metrics: TrialMetrics | None = None
    feasible: bool | None = None
    infeasible_reason: str = ""
    fail_reason: str = ""

    def to_attrs(self) -> dict[str, Any]:
        """User attributes for the fields that are set (so a partial record adds, never erases)."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "metrics"}
        attrs = {k: v for k, v in own.items() if v is not None and v != ""}
        if self.metrics is not None:
            attrs.update({k: _jsonable(v) for k, v in self.metrics.to_dict().items()})
        return attrs

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> TrialRecord:
        own = {f.name: attrs[f.name] for f in dataclasses.fields(cls) if f.name != "metrics" and f.name in attrs}
        metrics = None
        if all(k in attrs for k in METRIC_KEYS if _required(k)):
            metrics = TrialMetrics(**{k: _number(attrs[k]) for k in METRIC_KEYS if k in attrs})
        return cls(**own, metrics=metrics)

    @classmethod
    def of(cls, trial: Any) -> TrialRecord:
        """The record of an Optuna trial (FrozenTrial or Trial)."""
        return cls.from_attrs(trial.user_attrs)

    def write(self, trial: Any) -> None:
        for key, value in self.to_attrs().items():
            trial.set_user_attr(key, value)

    def case_attrs(self) -> dict[str, Any]:
        """What a re-queued paper case carries (enqueue_trial's user_attrs)."""
        return {"case": self.case, "paper_mb": self.paper_mb}


def _required(key: str) -> bool:
    field = next(f for f in dataclasses.fields(TrialMetrics) if f.name == key)
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan; Optuna stores attributes as JSON
    return value


def _number(value: Any) -> Any:
    return float(value) if value in ("inf", "-inf", "nan") else value


__all__ = ["INTERRUPTED", "METRIC_KEYS", "TrialRecord"]
