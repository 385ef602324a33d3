"""What one trial measured, as a dataclass that imports no torch.

`gas-nas show` and `export`, the dashboard and progress lines read trials through
`TrialRecord` (gas_nas.record), which builds a `TrialMetrics`; keeping it apart from the
trainer lets those commands answer without loading the training stack.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from gas_nas.spec import QualityConfig


@dataclass
class TrialMetrics:
    """Everything one trial measured; JSON-ready via `to_dict`, stored as Optuna user attributes."""

    status: str  # "complete" or "diverged"
    reason: str
    iterations: int
    d_params: int  # dense count, masked weights included
    d_param_mb: float  # stored size: fp32 values (a sparse D's nonzeros only) plus its mask bits
    imbalance: float
    d_loss: float  # mean over the last quarter of training
    g_loss: float
    fid: float
    classes: int
    entropy: float
    class_histogram: list[int]
    classifier_accuracy: float
    seconds: float  # this trial's share of its cohort's wall time
    device: str
    seed: int
    cohort: int = 1  # trials trained together with it (itself included)
    peak_mb: float | None = None
    log_steps: list[int] = field(default_factory=list)
    d_losses: list[float] = field(default_factory=list)
    g_losses: list[float] = field(default_factory=list)
    duality_gap: float = math.nan  # gas_nas.balance; nan when quality.duality_gap_steps is 0 or training diverged
    d_nonzero: int | None = None  # parameters stored as values (= d_params when dense); None in older studies
    # Teacher-guided recipes (dgl): the frozen teacher (never part of d_param_mb) and its term in
    # G's loss per log interval (teacher_weight * its LSGAN loss; 0 before the stage switch).
    teacher_sha256: str | None = None
    teacher_params: int | None = None
    teacher_mb: float | None = None
    teacher_losses: list[float] = field(default_factory=list)
    machine: str | None = None  # "host (processor[, threads])" that trained it; None in older studies

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def violations(self, quality: QualityConfig) -> list[str]:
        """Why the samples fail the quality guard (empty: feasible)."""
        out = []
        if self.status != "complete":
            out.append(f"training {self.status}: {self.reason}")
        if not self.fid <= quality.max_fid:
            out.append(f"fid {self.fid:.1f} > {quality.max_fid:g}")
        if self.classes < quality.min_classes:
            out.append(f"{self.classes} digit{'' if self.classes == 1 else 's'} found < {quality.min_classes}")
        if not self.entropy >= quality.min_entropy:
            out.append(f"class entropy {self.entropy:.2f} < {quality.min_entropy:g}")
        return out

    def constraints(self, quality: QualityConfig) -> list[float]:
        """Optuna constraint values, feasible when all are <= 0."""
        fid = self.fid if math.isfinite(self.fid) else 1e9
        return [
            fid - quality.max_fid,
            float(quality.min_classes - self.classes),
            quality.min_entropy - self.entropy,
            0.0 if self.status == "complete" else 1.0,
        ]


__all__ = ["TrialMetrics"]
