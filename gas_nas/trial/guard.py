"""The guard a trial is judged by: bounds on its samples, and whether its discriminator gave up.

Two rules make a trial infeasible (each an Optuna constraint, <= 0 feasible):

- **Sample quality** (`fid`, `classes`, `entropy`): the study's bounds. The FID bound is absolute
  (`quality.max_fid`) or relative to what the same budget achieves in the same study:
  `relative_fid` x the median FID of the study's paper cases, at most `backstop_fid`. A
  relative guard is settled once, from the paper cases' results, before any trial's
  constraints are written (`gas_nas.study.search` holds trials until then), and stored with the study.
- **A discriminator that gave up** (`discriminates`): D no longer tells held-out real images
  from its G's samples (`gas_nas.trial.discrimination`: AUC below `quality.min_auc`, or outputs that
  hardly vary, spread below `quality.min_spread`), and the samples miss the paper-budget bar
  `PAPER_BAR` (FID <= 60, >= 8 digits, entropy >= 2), whatever the study's own FID bound. D at
  0.5 because G matches the data is the equilibrium and passes; D at 0.5 with blurred samples
  does not. docs/balance.md gives the measurements the default bounds were chosen from.

Imports no torch: `show`, `export` and the dashboard judge stored trials with it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from gas_nas.models.spec import QualityConfig, TrainConfig
from gas_nas.trial.results import TrialMetrics

PAPER_ITERATIONS = TrainConfig().iterations  # the GAS budget, 2000
PAPER_BAR = QualityConfig()  # its max_fid, min_classes and min_entropy: the absolute bar of the give-up rule
CONSTRAINT_NAMES = ("fid", "classes", "entropy", "finished", "discriminates")


@dataclass(frozen=True)
class Guard:
    """The resolved bounds one study judges its trials by (stored with the study)."""

    max_fid: float
    min_classes: int
    min_entropy: float
    min_auc: float
    min_spread: float
    mode: str = "absolute"  # or "relative"
    relative_fid: float | None = None
    backstop_fid: float | None = None
    reference_fid: float | None = None  # relative: the paper cases' median FID
    case_fids: dict[str, float] = field(default_factory=dict)  # relative: what it was settled from

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Guard:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("max_fid", "min_entropy", "min_auc", "min_spread", "relative_fid", "backstop_fid", "reference_fid"):
            if known.get(key) is not None:
                known[key] = float(known[key])  # "inf" comes back as a string from JSON
        known["case_fids"] = {k: float(v) for k, v in (known.get("case_fids") or {}).items()}
        return cls(**known)

    def describe(self) -> str:
        """The bounds in one line, with where a relative FID bound came from."""
        fid = f"FID <= {self.max_fid:.1f}"
        if self.mode == "relative":
            fid += f" ({self.relative_fid:g} x the paper cases' median FID {self.reference_fid:.1f}, at most {self.backstop_fid:g})"
        return f"{fid}, >= {self.min_classes} digits, class entropy >= {self.min_entropy:g}; D AUC >= {self.min_auc:g} and spread >= {self.min_spread:g} unless the samples pass the paper bar"


def guard_mode(quality: QualityConfig, train: TrainConfig, has_cases: bool) -> str:
    """"absolute" or "relative": `quality.guard`, with `auto` relative only below the paper's
    budget and with paper cases to compare with."""
    if quality.guard == "auto":
        return "relative" if train.iterations < PAPER_ITERATIONS and has_cases else "absolute"
    return quality.guard


def absolute_guard(quality: QualityConfig) -> Guard:
    return Guard(quality.max_fid, quality.min_classes, quality.min_entropy, quality.min_auc, quality.min_spread)


def relative_guard(quality: QualityConfig, case_fids: dict[str, float]) -> Guard:
    """The FID bound from the paper cases' FIDs (a diverged case counts as infinitely bad); a
    study none of whose cases finished falls back on the backstop."""
    finite = [f for f in case_fids.values() if math.isfinite(f)]
    reference = statistics.median(case_fids.values()) if finite else math.inf
    bound = min(quality.relative_fid * reference, quality.backstop_fid)
    return Guard(bound, quality.min_classes, quality.min_entropy, quality.min_auc, quality.min_spread, "relative",
                 quality.relative_fid, quality.backstop_fid, reference, dict(case_fids))


# ---------------------------------------------------------------- judging one trial


def gave_up(m: TrialMetrics, bounds: Any) -> str:
    """Why D no longer discriminates, in words ("" when it does, or was not measured)."""
    if m.d_auc is None or math.isnan(m.d_auc):
        return ""
    checks = [f"it ranks real images above generated ones with AUC {m.d_auc:.2f} < {bounds.min_auc:g}" if m.d_auc < bounds.min_auc else "",
              f"its outputs hardly vary (spread {m.d_spread:.2g} < {bounds.min_spread:g})" if m.d_spread < bounds.min_spread else ""]
    checks = [c for c in checks if c]
    return f"discriminator gave up: {' and '.join(checks)}" if checks else ""


def sample_violations(m: TrialMetrics, bounds: Any) -> list[str]:
    """Why the samples fail `bounds` (anything with max_fid, min_classes, min_entropy)."""
    out = []
    if not m.fid <= bounds.max_fid:
        out.append(f"fid {m.fid:.1f} > {bounds.max_fid:g}")
    if m.classes < bounds.min_classes:
        out.append(f"{m.classes} digit{'' if m.classes == 1 else 's'} found < {bounds.min_classes}")
    if not m.entropy >= bounds.min_entropy:
        out.append(f"class entropy {m.entropy:.2f} < {bounds.min_entropy:g}")
    return out


def give_up_violation(m: TrialMetrics, bounds: Any) -> str:
    """The give-up rule's reason ("" when it passes): D gave up and the samples miss PAPER_BAR."""
    why = gave_up(m, bounds)
    if not why:
        return ""
    missed = sample_violations(m, PAPER_BAR)
    return f"{why}, and its samples miss the paper-budget bar ({'; '.join(missed)})" if missed else ""


def violations(m: TrialMetrics, bounds: Any) -> list[str]:
    """Every reason the trial is infeasible under `bounds` (a Guard or a QualityConfig); empty: feasible."""
    out = [f"training {m.status}: {m.reason}"] if m.status != "complete" else []
    out += sample_violations(m, bounds)
    lazy = give_up_violation(m, bounds)
    return out + ([lazy] if lazy else [])


def constraints(m: TrialMetrics, bounds: Any) -> dict[str, float]:
    """Named Optuna constraint values (feasible when all are <= 0), in CONSTRAINT_NAMES order."""
    fid = m.fid if math.isfinite(m.fid) else 1e9
    if m.d_auc is None or math.isnan(m.d_auc):
        discriminates = 0.0 if m.status == "complete" else 1.0  # not measured (older trials); a diverged trial fails `finished` anyway
    else:
        margin = max(bounds.min_auc - m.d_auc, bounds.min_spread - m.d_spread)  # > 0 exactly when `gave_up`
        discriminates = margin if margin <= 0 or give_up_violation(m, bounds) else 0.0
    values = (fid - bounds.max_fid, float(bounds.min_classes - m.classes), bounds.min_entropy - m.entropy,
              0.0 if m.status == "complete" else 1.0, discriminates)
    return dict(zip(CONSTRAINT_NAMES, map(float, values)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


__all__ = ["CONSTRAINT_NAMES", "Guard", "PAPER_BAR", "PAPER_ITERATIONS", "absolute_guard",
           "constraints", "gave_up", "give_up_violation", "guard_mode", "relative_guard", "sample_violations", "violations"]
