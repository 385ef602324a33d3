"""The Optuna study: create or resume it, seed the paper cases once, run trials, read fronts.

This is the only module that knows Optuna. Storage URLs become storages in `storage.py`;
training lives in `train.py`; this file wires a trial to them and records the results.
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from gas_nas.dashboard import after_trial, set_constraints
from gas_nas.errors import GasNasError, StorageError
from gas_nas.space import SearchSpace, sample, sampled_params
from gas_nas.spec import DiscriminatorSpec
from gas_nas.storage import DEFAULT_ARTIFACTS, error_line, open_storage, redact

SEEDED_ATTR = "gas_nas:seeded"  # study user attribute: the paper cases are enqueued
SEED_WAIT_S = 60.0


class TrialFailed(Exception):
    """A trial that went wrong (divergence, OOM, unbuildable spec): recorded as FAIL, search goes on."""


@dataclass
class SearchOptions:
    """How this process runs its trials (the study itself comes from `open_study`)."""

    seed: int = 0
    artifacts: str = DEFAULT_ARTIFACTS
    on_iteration: Callable[[int, int], None] | None = None
    on_trial_start: Callable[[int, str], None] | None = None
    callbacks: list = field(default_factory=list)


def metric_names(space: SearchSpace) -> list[str]:
    names = ["d_size_mb", "imbalance"]
    return names + (["fid"] if space.search.quality_objective == "fid" else [])


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """TPE by default: Optuna 5's multi-objective default, and unlike NSGA-II it learns from
    the enqueued paper cases from the first trial on; ~50 trials is too few for NSGA-II's
    generations. constant_liar keeps parallel workers from sampling the same point."""
    if name == "nsgaii":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():  # multivariate/group are "experimental" in Optuna; not the user's concern
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True, group=True)


def open_study(space: SearchSpace, storage_url: str, study_name: str, *, seed: int = 0, sampler: str | None = None) -> optuna.Study:
    """Create the study (and enqueue the paper cases) or join the existing one.

    Race-free seeding: `create_study(load_if_exists=False)` succeeds in exactly one process;
    only that process enqueues the cases, then flags the study. Joiners wait for the flag so
    the cases stay the first trials. A creator that died before flagging is finished by the
    next process (idempotent, it only adds the cases that are missing).
    """
    cfg = space.search
    storage = open_storage(storage_url, heartbeat_interval=cfg.heartbeat_interval, grace_period=cfg.grace_period, max_retries=cfg.max_retries)
    directions = ["minimize"] * len(metric_names(space))
    sampler_obj = make_sampler(sampler or cfg.sampler, seed)
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, directions=directions, sampler=sampler_obj)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=study_name, sampler=sampler_obj)
        sampler_obj.reseed_rng()  # joiners (workers, resumes) must not replay the creator's random draws
        created = False
    except Exception as exc:  # noqa: BLE001 - a database that answers badly
        raise StorageError(f"cannot create study {study_name!r} in {redact(storage_url)}: {error_line(exc, storage_url)}") from None
    if len(study.directions) != len(directions):
        raise StorageError(f"study {study_name!r} has {len(study.directions)} objectives but the space asks for {len(directions)} ({', '.join(metric_names(space))}); use another --study")
    if created:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metric_names(space))
        _enqueue_cases(study, space)
    else:
        _wait_for_seeding(study, space)
    return study


def _enqueue_cases(study: optuna.Study, space: SearchSpace) -> None:
    have = {t.user_attrs.get("case") for t in study.get_trials(deepcopy=False)}
    for case in space.cases:
        if case.name not in have:
            study.enqueue_trial(sampled_params(space, case.spec), user_attrs={"case": case.name, "paper_mb": case.paper_mb})
    study.set_user_attr(SEEDED_ATTR, [c.name for c in space.cases])


def _wait_for_seeding(study: optuna.Study, space: SearchSpace) -> None:
    deadline = time.monotonic() + SEED_WAIT_S
    while SEEDED_ATTR not in study.user_attrs:
        if time.monotonic() > deadline:  # the creator died between create and flag
            _enqueue_cases(study, space)
            return
        time.sleep(0.2)


def load_existing(storage_url: str, study_name: str | None) -> optuna.Study:
    """An existing study for show/export/dashboard; a missing one is a one-line error."""
    storage = open_storage(storage_url)
    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    except Exception as exc:  # noqa: BLE001
        raise StorageError(f"cannot read studies from {redact(storage_url)}: {error_line(exc, storage_url)}") from None
    if study_name is None:
        if len(names) != 1:
            raise StorageError(f"{redact(storage_url)} holds {len(names)} studies ({', '.join(names) or 'none'}); pick one with --study")
        study_name = names[0]
    if study_name not in names:
        raise StorageError(f"no study {study_name!r} in {redact(storage_url)}; it has: {', '.join(names) or 'no studies'}")
    return optuna.load_study(storage=storage, study_name=study_name)


# ---------------------------------------------------------------- running trials


class Objective:
    """Optuna objective: sample a spec, train it, record metrics, constraints and PNG artifacts."""

    def __init__(self, space: SearchSpace, opts: SearchOptions, resources: Any):
        self.space, self.opts, self.res = space, opts, resources
        from optuna.artifacts import FileSystemArtifactStore

        Path(opts.artifacts).mkdir(parents=True, exist_ok=True)
        self.store = FileSystemArtifactStore(opts.artifacts)

    def __call__(self, trial: optuna.Trial) -> list[float]:
        from gas_nas.report import save_trial
        from gas_nas.train import run_trial

        case = trial.user_attrs.get("case")
        if self.opts.on_trial_start:
            self.opts.on_trial_start(trial.number, case or "")
        try:
            spec = sample(trial, self.space)
        except GasNasError as exc:
            raise self._fail(trial, f"spec cannot be built: {exc}") from None
        trial.set_user_attr("spec", spec.to_dict())
        trial.set_user_attr("train", self.space.train.to_dict())
        try:
            outcome = run_trial(
                spec, self.space.train, self.space.quality,
                real=self.res.real, held_out=self.res.held_out, classifier=self.res.classifier,
                seed=self.opts.seed + trial.number, progress=self.opts.on_iteration,
            )
        except torch.cuda.OutOfMemoryError:
            raise self._fail(trial, "CUDA out of memory") from None
        except RuntimeError as exc:
            raise self._fail(trial, f"training failed: {str(exc).splitlines()[0]}") from None
        m = outcome.metrics
        for key, value in m.to_dict().items():
            trial.set_user_attr(key, _jsonable(value))
        with tempfile.TemporaryDirectory() as tmp:
            paths = save_trial(outcome, tmp, spec, self.space.train, title=f"trial {trial.number}" + (f" ({case})" if case else ""))
            for key in ("samples", "losses"):
                optuna.artifacts.upload_artifact(artifact_store=self.store, file_path=str(paths[key]), study_or_trial=trial)
        if m.status != "complete":
            raise self._fail(trial, m.reason)
        reasons = m.violations(self.space.quality)
        set_constraints(trial, dict(zip(("fid", "classes", "entropy", "finished"), m.constraints(self.space.quality))))
        trial.set_user_attr("feasible", not reasons)
        trial.set_user_attr("infeasible_reason", "; ".join(reasons))
        size = m.peak_mb if self.space.search.size == "peak_mb" and m.peak_mb is not None else m.d_param_mb
        values = [size, m.imbalance] + ([m.fid] if self.space.search.quality_objective == "fid" else [])
        if not all(map(math.isfinite, values)):
            raise self._fail(trial, f"non-finite objective {values}")
        return values

    @staticmethod
    def _fail(trial: optuna.Trial, reason: str) -> TrialFailed:
        trial.set_user_attr("fail_reason", reason)
        trial.set_user_attr("feasible", False)
        return TrialFailed(reason)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan; Optuna stores attrs as JSON
    return value


@dataclass
class Resources:
    """What every trial in a process shares: MNIST on the device and the quality classifier."""

    real: torch.Tensor
    held_out: torch.Tensor
    classifier: torch.nn.Module


def load_resources(device: torch.device, data_dir: str | None) -> Resources:
    from gas_nas.classifier import load_classifier
    from gas_nas.data import load_mnist

    real, _ = load_mnist(data_dir, train=True, device=device)
    held_out, _ = load_mnist(data_dir, train=False, device=device)
    return Resources(real=real, held_out=held_out, classifier=load_classifier(data_dir, device=device))


def run_search(study: optuna.Study, space: SearchSpace, opts: SearchOptions, resources: Resources, n_trials: int | None, until: int | None = None) -> None:
    """Run trials in this process: `n_trials` more, or until the study has `until` complete ones."""
    objective = Objective(space, opts, resources)
    callbacks = [after_trial, *opts.callbacks]  # the dashboard's note and plot first, then progress lines
    func: Callable = objective
    if until is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(until, states=(TrialState.COMPLETE,)))
        func = _GuardedObjective(objective, until)
    study.optimize(func, n_trials=n_trials, callbacks=callbacks, catch=(TrialFailed,), gc_after_trial=False)


class _GuardedObjective:
    """For shared studies: do not start or complete a trial past `until` complete ones."""

    def __init__(self, objective: Objective, until: int):
        self.objective, self.until = objective, until

    def _full(self, study: optuna.Study) -> bool:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= self.until

    def __call__(self, trial: optuna.Trial) -> list[float]:
        if self._full(trial.study):
            trial.study.stop()
            raise optuna.TrialPruned("study already has enough complete trials")
        values = self.objective(trial)
        if self._full(trial.study):
            trial.study.stop()
            raise optuna.TrialPruned("surplus: another worker completed the last trial first")
        return values


# ---------------------------------------------------------------- reading results


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front of feasible trials, as Optuna's own `best_trials` computes it."""
    return sorted(study.best_trials, key=lambda t: t.values[0])


def case_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The completed trial of each paper case (first one, in paper order of enqueueing)."""
    seen: dict[str, FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("case") and t.user_attrs["case"] not in seen:
            seen[t.user_attrs["case"]] = t
    return sorted(seen.values(), key=lambda t: t.number)


def trial_row(t: FrozenTrial, names: list[str], front_numbers: set[int]) -> dict:
    a = t.user_attrs
    row = {"trial": t.number, "case": a.get("case"), "state": t.state.name, "on_front": t.number in front_numbers}
    row.update({n: v for n, v in zip(names, t.values or [])})
    row.update({k: a.get(k) for k in ("fid", "classes", "entropy", "d_params", "feasible", "infeasible_reason", "fail_reason")})
    row["spec"] = a.get("spec")
    return row


def pick_trial(study: optuna.Study, pick: str) -> FrozenTrial:
    """smallest / balanced: ends of the feasible Pareto front; best-quality: lowest FID among feasible trials."""
    candidates = front(study)
    if pick == "best-quality":
        candidates = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.user_attrs.get("feasible")]
    if not candidates:
        raise GasNasError(f"study {study.study_name!r} has no feasible complete trial to pick from")
    key = {"smallest": lambda t: t.values[0], "balanced": lambda t: t.values[1], "best-quality": lambda t: float(t.user_attrs.get("fid", math.inf))}[pick]
    return min(candidates, key=key)


def trial_spec(t: FrozenTrial) -> DiscriminatorSpec:
    if "spec" not in t.user_attrs:
        raise GasNasError(f"trial {t.number} has no recorded architecture (state {t.state.name})")
    return DiscriminatorSpec.from_dict(t.user_attrs["spec"])
