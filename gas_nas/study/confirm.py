"""`gas-nas confirm`: retrain front members with more seeds, so the front a user trusts is not
the luck of one seed.

Each retraining is a trial of the study's companion (gas_nas/study/confirmation.py): queued with
`enqueue_trial`, claimed by `ask` (the storage hands a waiting trial to one worker only) and
recorded like a search trial (`TrialRecord`, constraints). Of two queued copies of one
retraining (two workers queued it at once) only the lowest-numbered live one trains.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from gas_nas.common.errors import GasNasError
from gas_nas.common.interrupt import Interrupted
from gas_nas.models.spec import DiscriminatorSpec, QualityConfig, TrainConfig
from gas_nas.study.confirmation import CONFIRMS, SEED, companion, confirmations, extra_seeds, has_result, is_live, trusted_front
from gas_nas.study.dashboard import constraint_attrs, refresh_study_plot, save_trial_note
from gas_nas.study.record import INTERRUPTED, TrialRecord
from gas_nas.study.search import GUARD_ATTR, Heartbeat, SearchOptions, fail_stale_trials, stored_guard, train_specs
from gas_nas.study.settings import stored_settings
from gas_nas.trial import guard as guard_rules
from gas_nas.trial.guard import Guard, absolute_guard
from gas_nas.trial.results import TrialMetrics

SPARE = "spare: another worker took the retraining this worker asked for"


@dataclass
class ConfirmPlan:
    """What `run_confirm` retrains: the trials and their settings, checked before any training."""

    trials: list[FrozenTrial]
    seeds: int
    train: TrainConfig
    quality: QualityConfig
    guard: Guard
    size: str = "param_mb"
    balance: str = "imbalance"


def plan_confirm(study: optuna.Study, numbers: list[int] | None, seeds: int, quality: QualityConfig) -> ConfirmPlan:
    """The trials to confirm (the feasible front, or `numbers`) under the study's own settings
    and settled guard; each problem is one GasNasError line."""
    settings = stored_settings(study)
    if settings is None:
        raise GasNasError(f"study {study.study_name!r} has no trained trial to confirm")
    guard = stored_guard(study)
    if guard is None:
        if study.user_attrs.get(GUARD_ATTR) is None and _relative_pending(study):
            raise GasNasError(f"study {study.study_name!r} has not settled its quality guard (its paper cases are unfinished): run its search on first")
        guard = absolute_guard(settings.quality or quality)  # a study from before guards were stored
    complete = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    if numbers:
        missing = [n for n in numbers if n not in complete]
        if missing:
            raise GasNasError(f"study {study.study_name!r} has no COMPLETE trial {', '.join(map(str, missing))}: confirm retrains trained trials")
        trials = [complete[n] for n in dict.fromkeys(numbers)]
    else:
        trials = trusted_front(study)  # after a refutation, the trials it brought onto the front
        if not trials:
            raise GasNasError(f"study {study.study_name!r} has no feasible front to confirm: name trials with --trials N,M")
    for t in trials:
        r = TrialRecord.of(t)
        if r.spec is None or r.metrics is None:
            raise GasNasError(f"trial {t.number} has no recorded architecture or metrics to retrain from")
    names = study.metric_names or []
    first = trials[0]
    m = TrialRecord.of(first).metrics
    size = "peak_mb" if m.peak_mb is not None and first.values[0] == m.peak_mb != m.d_param_mb else "param_mb"
    return ConfirmPlan(trials, seeds, settings.train, settings.quality or quality, guard, size, names[1] if len(names) > 1 else "imbalance")


def queue(study: optuna.Study, plan: ConfirmPlan) -> tuple[optuna.Study, int]:
    """The companion study with every retraining of `plan` that is neither done nor queued
    queued now; and how many retrainings are still to train."""
    comp = companion(study, create=True)
    have = {(t.user_attrs.get(CONFIRMS), t.user_attrs.get(SEED)) for t in comp.get_trials(deepcopy=False) if is_live(t)}
    done = {(t.user_attrs.get(CONFIRMS), t.user_attrs.get(SEED)) for t in comp.get_trials(deepcopy=False) if has_result(t, TrialRecord.of(t))}
    todo = 0
    for t in plan.trials:
        for seed in extra_seeds(TrialRecord.of(t).metrics.seed, plan.seeds):
            if (t.number, seed) not in have:
                comp.enqueue_trial({}, user_attrs={CONFIRMS: t.number, SEED: seed})
            todo += (t.number, seed) not in done
    return comp, todo


def run_confirm(study: optuna.Study, plan: ConfirmPlan, resources, opts: SearchOptions, on_done: Callable[[int, int, TrialRecord], None] | None = None) -> int:
    """Train the queued retrainings (this plan's, and any another worker queued), `opts.cohort`
    at a time, each recorded as it finishes; returns how many this process trained. Ctrl-C fails
    the running ones and queues them again."""
    comp, _ = queue(study, plan)
    fail_stale_trials(comp)
    space = _Space(plan.train, plan.quality)
    originals = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    trained = 0
    while comp.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        batch = _claim(comp, opts.cohort)
        if not batch:
            continue
        specs = [DiscriminatorSpec.from_dict(TrialRecord.of(originals[t.user_attrs[CONFIRMS]]).spec) for t in batch]
        with Heartbeat(comp, batch):
            try:
                if opts.should_stop is not None and opts.should_stop():
                    raise Interrupted
                outcomes = train_specs(space, opts, resources, specs, [t.user_attrs[SEED] for t in batch])
            except (Interrupted, KeyboardInterrupt):
                for t in batch:
                    TrialRecord(fail_reason=INTERRUPTED, feasible=False).write(t)
                    comp.tell(t, state=TrialState.FAIL)
                    comp.enqueue_trial({}, user_attrs={CONFIRMS: t.user_attrs[CONFIRMS], SEED: t.user_attrs[SEED]})
                raise Interrupted from None
            for t, spec, outcome in zip(batch, specs, outcomes):
                record = _record(comp, t, spec, plan, outcome)
                trained += 1
                if on_done:
                    on_done(t.user_attrs[CONFIRMS], t.user_attrs[SEED], record)
    _refresh(study)
    return trained


# ---------------------------------------------------------------- helpers


@dataclass
class _Space:
    """What `train_specs` reads of a search space: the training and quality settings."""

    train: TrainConfig
    quality: QualityConfig


def _claim(comp: optuna.Study, k: int) -> list:
    """Up to `k` waiting retrainings, asked for; a fresh trial (a rival took the last waiting
    one) or a later copy of a live retraining is closed without training."""
    batch = []
    for _ in range(k):
        if not comp.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            break
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)  # we keep heartbeats ourselves (search.Heartbeat)
            trial = comp.ask()
        if CONFIRMS not in trial.user_attrs:
            TrialRecord(fail_reason=SPARE).write(trial)
            comp.tell(trial, state=TrialState.FAIL)
            continue
        key = (trial.user_attrs[CONFIRMS], trial.user_attrs[SEED])
        if any(is_live(o) and o.number < trial.number and (o.user_attrs.get(CONFIRMS), o.user_attrs.get(SEED)) == key for o in comp.get_trials(deepcopy=False)):
            comp.tell(trial, state=TrialState.PRUNED)  # a lower-numbered copy trains (or trained) it
            continue
        batch.append(trial)
    return batch


def _record(comp: optuna.Study, trial, spec: DiscriminatorSpec, plan: ConfirmPlan, outcome) -> TrialRecord:
    if isinstance(outcome, str):  # no result (memory, a crash): the next `confirm` queues it again
        record = TrialRecord(spec=spec.to_dict(), train=plan.train.to_dict(), fail_reason=outcome, feasible=False)
        record.write(trial)
        comp.tell(trial, state=TrialState.FAIL)
        return record
    m: TrialMetrics = outcome.metrics
    reasons = guard_rules.violations(m, plan.guard)
    record = TrialRecord(spec=spec.to_dict(), train=plan.train.to_dict(), metrics=m, feasible=not reasons and m.status == "complete",
                         infeasible_reason="; ".join(reasons), fail_reason=m.reason if m.status != "complete" else "")
    size = m.peak_mb if plan.size == "peak_mb" and m.peak_mb is not None else m.d_param_mb
    values = [size, getattr(m, plan.balance)] + ([m.fid] if len(comp.directions) > 2 else [])
    record.write(trial, constraint_attrs(guard_rules.constraints(m, plan.guard)) if m.status == "complete" else None)
    if m.status == "complete" and all(map(math.isfinite, values)):
        comp.tell(trial, values=values)
    else:
        comp.tell(trial, state=TrialState.FAIL)
    return record


def _refresh(study: optuna.Study) -> None:
    """The confirmed trials' dashboard notes and the project's plot, with their spread."""
    originals = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number, confirmation in confirmations(study).items():
        save_trial_note(study, originals[number], confirmation)
    refresh_study_plot(study)


def _relative_pending(study: optuna.Study) -> bool:
    return any(TrialRecord.of(t).case for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)))
