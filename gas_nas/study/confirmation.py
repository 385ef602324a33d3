"""A trial's results over several seeds, read back from its study's companion of retrainings.

Optuna does not let a finished trial change, so `gas-nas confirm` (gas_nas/study/confirm.py) records
each retraining as a trial of a companion study, `<study>:confirm`, in the same storage, its
user attributes `confirms` and `seed` naming what it retrains. `confirmations(study)` gathers
them per trial, the trial's own result first; `trusted_front` is the feasible front without
the trials most of whose seeds fail the guard. Show, export and the dashboard read these.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from gas_nas.study.record import TrialRecord
from gas_nas.trial.results import TrialMetrics

COMPANION_SUFFIX = ":confirm"
SEED_STEP = 10_000  # a search's trial trains with base seed + trial number, so + k * 10,000 never repeats one
CONFIRMS, SEED = "confirms", "seed"  # companion trial user attributes: which trial, which seed


def extra_seeds(seed: int, seeds: int) -> list[int]:
    """The seeds a trial trained with `seed` is retrained with, to `seeds` in all."""
    return [seed + k * SEED_STEP for k in range(1, seeds)]


@dataclass
class Confirmation:
    """One trial's results over its seeds, its own first. `values` are its objectives per seed
    (None: that retraining diverged, which counts as failing the guard)."""

    trial: int
    seeds: list[int] = field(default_factory=list)
    values: list[list[float] | None] = field(default_factory=list)
    feasible: list[bool] = field(default_factory=list)
    metrics: list[TrialMetrics] = field(default_factory=list)  # everything each seed measured

    @property
    def fids(self) -> list[float]:
        return [m.fid for m in self.metrics]

    @property
    def passes(self) -> int:
        return sum(self.feasible)

    @property
    def kept(self) -> bool:
        """Feasible on most of its seeds (2 of 3); a trial that is not stays off gas-nas's front."""
        return self.passes * 2 > len(self.seeds)

    def mean(self, i: int) -> float:
        finite = [v[i] for v in self.values if v is not None]
        return statistics.fmean(finite) if finite else math.nan

    def spread(self, i: int) -> float:
        """Sample standard deviation over the seeds that finished (nan with fewer than two)."""
        finite = [v[i] for v in self.values if v is not None]
        return statistics.stdev(finite) if len(finite) > 1 else math.nan

    @property
    def fid(self) -> float:
        """Mean Fréchet distance over the seeds that measured one."""
        fids = [f for f in self.fids if math.isfinite(f)]
        return statistics.fmean(fids) if fids else math.nan

    def to_dict(self, names: list[str]) -> dict:
        return {"seeds": self.seeds, "passes": self.passes, "kept": self.kept,
                **{n: {"mean": self.mean(i), "spread": self.spread(i), "values": [v[i] if v else None for v in self.values]} for i, n in enumerate(names)},
                "fid": {"mean": self.fid, "values": self.fids}}

    def means(self, names: list[str]) -> str:
        """"d_size_mb 0.05 ± 0, imbalance 0.41 ± 0.1 over 3 seeds"."""
        parts = [f"{n} {self.mean(i):.4g} ± {self.spread(i):.2g}" for i, n in enumerate(names)]
        return f"{', '.join(parts)} over {len(self.seeds)} seeds"

    def describe(self, names: list[str]) -> str:
        """`means`, then "feasible on 2 of 3" (one line)."""
        return f"{self.means(names)}, feasible on {self.passes} of {len(self.seeds)}"


def companion_name(study: optuna.Study) -> str:
    return study.study_name + COMPANION_SUFFIX


def companion(study: optuna.Study, create: bool = False) -> optuna.Study | None:
    """The study's companion of retrainings (None when it has none and `create` is False)."""
    name = companion_name(study)
    if not create:  # read only (show, export, the dashboard): never a write, not even a refused one
        exists = name in {s.study_name for s in optuna.get_all_study_summaries(study._storage, include_best_trial=False)}
        return optuna.load_study(study_name=name, storage=study._storage) if exists else None
    return optuna.create_study(storage=study._storage, study_name=name, directions=study.directions, load_if_exists=True)


def confirmations(study: optuna.Study) -> dict[int, Confirmation]:
    """trial number -> its Confirmation, for every trial with at least one finished retraining."""
    comp = companion(study)
    if comp is None:
        return {}
    found: dict[int, Confirmation] = {}
    originals = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    for t in sorted(comp.get_trials(deepcopy=False), key=lambda t: t.number):
        number, record = t.user_attrs.get(CONFIRMS), TrialRecord.of(t)
        if number not in originals or not has_result(t, record):
            continue
        c = found.get(number) or _own(originals[number])
        if t.user_attrs[SEED] in c.seeds:
            continue  # a duplicate that trained anyway (it cannot, but a result is counted once)
        _add(c, t.user_attrs[SEED], t.values if t.state == TrialState.COMPLETE else None, bool(record.feasible), record.metrics)
        found[number] = c
    return found


def trusted_front(study: optuna.Study, found: dict[int, Confirmation] | None = None) -> list[FrozenTrial]:
    """The feasible Pareto front (Optuna's `best_trials`) without the trials their retrainings
    refuted (feasible on at most half of their seeds); a trial they hid comes back if nothing
    else dominates it. Every gas-nas objective is minimised."""
    found = confirmations(study) if found is None else found
    if all(c.kept for c in found.values()):
        return sorted(study.best_trials, key=lambda t: t.values[0])
    kept = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if all(v <= 0 for v in t.constraints.values()) and (t.number not in found or found[t.number].kept)]
    return sorted([t for t in kept if not any(_dominates(o.values, t.values) for o in kept)], key=lambda t: t.values[0])


def _dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def _own(t: FrozenTrial) -> Confirmation:
    r = TrialRecord.of(t)
    c = Confirmation(t.number)
    _add(c, r.metrics.seed, t.values, bool(r.feasible), r.metrics)
    return c


def _add(c: Confirmation, seed: int, values, feasible: bool, metrics: TrialMetrics) -> None:
    c.seeds.append(seed)
    c.values.append(list(values) if values is not None else None)
    c.feasible.append(feasible)
    c.metrics.append(metrics)


def has_result(t: FrozenTrial, record: TrialRecord) -> bool:
    """A retraining with a result: COMPLETE, or FAIL with metrics (it diverged: a failing seed)."""
    return t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and record.metrics is not None)


def is_live(t: FrozenTrial) -> bool:
    """Queued, running or finished with a result: not to be queued again."""
    return t.state in (TrialState.WAITING, TrialState.RUNNING) or has_result(t, TrialRecord.of(t))
