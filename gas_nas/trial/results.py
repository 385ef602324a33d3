"""What one trial measured, as dataclasses that import no torch (rules about them, such as
feasibility, live in gas_nas.trial.guard).

`gas-nas show` and `export`, the dashboard and progress lines read trials through
`TrialRecord` (gas_nas.study.record), which builds a `TrialMetrics`; keeping it apart from the
trainer lets those commands answer without loading the training stack.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn



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
    duality_gap: float = math.nan  # gas_nas.trial.balance; nan when quality.duality_gap_steps is 0 or training diverged
    d_nonzero: int | None = None  # parameters stored as values (= d_params when dense); None in older studies
    # Teacher-guided recipes (dgl): the frozen teacher (never part of d_param_mb) and its term in
    # G's loss per log interval (teacher_weight * its LSGAN loss; 0 before the stage switch).
    teacher_sha256: str | None = None
    teacher_params: int | None = None
    teacher_mb: float | None = None
    teacher_losses: list[float] = field(default_factory=list)
    machine: str | None = None  # "host (processor[, threads])" that trained it; None in older studies
    # Whether D still tells held-out real images from its G's samples (gas_nas.trial.discrimination);
    # nan in older studies and for a diverged trial.
    d_auc: float = math.nan
    d_spread: float = math.nan
    d_real: float = math.nan
    d_fake: float = math.nan

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrialOutcome:
    """A trained trial as the trainer returns it: what it measured, its models, its samples."""

    metrics: TrialMetrics
    generator: nn.Module
    discriminator: nn.Module
    grid: torch.Tensor  # (64, 1, 28, 28) samples from fixed noise, in [-1, 1]
    curve: dict = field(default_factory=dict)  # the plotted loss curve: steps, d_losses, g_losses (TrialHistory.curve_*)


__all__ = ["TrialMetrics", "TrialOutcome"]
