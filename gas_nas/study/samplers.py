"""The Optuna samplers a study can run with, by the name `search.sampler` and `--sampler` use.

Every sampler reads the trials' constraints (Optuna 5's `constraints:NAME` system attributes,
written by `TrialRecord.write`), so infeasible trials steer each of them away. A name not in
`SAMPLERS` is refused; no name falls back to another sampler.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna
from optuna.trial import TrialState


def tpe(seed: int) -> optuna.samplers.BaseSampler:
    """Optuna 5's multi-objective default; unlike NSGA-II it learns from the enqueued paper cases
    from the first trial on. constant_liar keeps parallel workers from sampling the same point."""
    with warnings.catch_warnings():  # multivariate/group are "experimental" in Optuna; not the user's concern
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True, group=True)


def gp(seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's Gaussian-process sampler (constrained LogEHVI for several objectives), made for
    few expensive trials. Conditional axes (a dense block's growth rate, an inception branch)
    lie outside the space every trial shares, so GP draws them at random; see `SameConstraintsGP`."""
    return SameConstraintsGP(seed=seed, warn_independent_sampling=False)


SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": tpe,
    "gp": gp,
    "nsgaii": lambda seed: optuna.samplers.NSGAIISampler(seed=seed),  # needs generations: hundreds of trials
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
}


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}: expected one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](seed)


class SameConstraintsGP(optuna.samplers.GPSampler):
    """GPSampler fitted only on the complete trials that name the newest trial's constraints.

    Optuna's GP refuses a study whose trials name different constraints ("The constraint names
    must be the same for all trials"), and studies from older gas-nas versions hold trials with
    fewer constraints (before `discriminates`). Finished trials cannot be rewritten, so the GP
    is shown the trials it can model instead of failing every `ask`.
    """

    _fitted_names: tuple[str, ...] | None = None

    def sample_relative(self, study, trial, search_space):
        view = _SameConstraints(study)
        if view.names != self._fitted_names:  # Optuna keeps one fitted GP per constraint, by position
            self._constraints_gprs_cache_list = None
            self._fitted_names = view.names
        return super().sample_relative(view, trial, search_space)


class _SameConstraints:
    """A read-through view of a study whose trial lists keep, of the COMPLETE trials, those whose
    constraint names (`names`) match the newest complete trial's."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        complete = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=False)
        self.names = tuple(sorted(complete[-1].constraints)) if complete else None

    def __getattr__(self, name: str):
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False):
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [t for t in trials if t.state != TrialState.COMPLETE or tuple(sorted(t.constraints)) == self.names]
