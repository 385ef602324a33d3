"""The one record of what gas-nas stores on an Optuna trial, written and read back in one place.

Every key a trial carries as an Optuna user attribute is a field here, so `show`, `export`, the
dashboard, progress lines and `docs/reproduce.py` read trials through `TrialRecord.of(trial)`
and never type a key by hand. The measurements (`TrialMetrics`) are one attribute, `metrics`, a
JSON object; studies written before that kept each measurement as its own attribute, and
`from_attrs` reads both layouts. `write` stores a record (and the trial's constraints) in one
storage transaction where the storage has transactions, so a trial's bookkeeping is a few
writes, not one per key.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from gas_nas.study.storage import write_trial_attrs
from gas_nas.trial.results import TrialMetrics

METRIC_KEYS = tuple(f.name for f in dataclasses.fields(TrialMetrics))
METRICS_ATTR = "metrics"  # TrialMetrics as one JSON object (older studies: one attribute per metric)
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
    provenance: dict | None = None  # a trial proposed by another strategy than the sampler: what proposed it

    def to_attrs(self) -> dict[str, Any]:
        """User attributes for the fields that are set (so a partial record adds, never erases)."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "metrics"}
        attrs = {k: v for k, v in own.items() if v is not None and v != ""}
        if self.metrics is not None:
            attrs[METRICS_ATTR] = {k: _jsonable(v) for k, v in self.metrics.to_dict().items()}
        return attrs

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> TrialRecord:
        """A record from user attributes in either layout (metrics as one object, or flat)."""
        own = {f.name: attrs[f.name] for f in dataclasses.fields(cls) if f.name != "metrics" and f.name in attrs}
        stored = attrs.get(METRICS_ATTR)
        values = stored if isinstance(stored, dict) else attrs
        metrics = None
        if all(k in values for k in METRIC_KEYS if _required(k)):
            metrics = TrialMetrics(**{k: _number(values[k]) for k in METRIC_KEYS if k in values})
        return cls(**own, metrics=metrics)

    @classmethod
    def of(cls, trial: Any) -> TrialRecord:
        """The record of an Optuna trial (FrozenTrial or Trial)."""
        return cls.from_attrs(trial.user_attrs)

    def write(self, trial: Any, system_attrs: dict[str, Any] | None = None) -> None:
        """Add this record's attributes to a running trial (an `optuna.Trial`), and `system_attrs`
        with them (the constraints, `gas_nas.study.dashboard.constraint_attrs`): one transaction on
        SQLite and PostgreSQL, one write per key on the journal."""
        attrs, system_attrs = self.to_attrs(), system_attrs or {}
        write_trial_attrs(trial.storage, trial._trial_id, attrs, system_attrs)
        cached = getattr(trial, "_cached_frozen_trial", None)  # what `trial.user_attrs` answers from
        if cached is not None:
            cached.user_attrs.update(attrs)
            cached.system_attrs.update(system_attrs)

    @property
    def label(self) -> str:
        """Where the trial came from, in a few words: its paper case, the supernet that proposed
        it, or "" for the sampler's."""
        if self.case:
            return self.case
        p = self.provenance or {}
        if p.get("strategy") == "differentiable":
            return f"supernet lambda {p.get('lambda'):g}" + (f" #{p['rank'] + 1}" if p.get("rank") else "")
        return ""

    def case_attrs(self) -> dict[str, Any]:
        """What a re-queued enqueued trial carries (enqueue_trial's user_attrs): its paper case, or its provenance."""
        return {"case": self.case, "paper_mb": self.paper_mb} if self.case else {"provenance": self.provenance}


def _required(key: str) -> bool:
    field = next(f for f in dataclasses.fields(TrialMetrics) if f.name == key)
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan; Optuna stores attributes as JSON
    return value


def _number(value: Any) -> Any:
    return float(value) if value in ("inf", "-inf", "nan") else value


__all__ = ["INTERRUPTED", "METRICS_ATTR", "METRIC_KEYS", "TrialRecord"]
