"""Search strategies: what proposes a search's trials, one object each in one registry (as recipes).

The trial loop, the study and its records are the same for every strategy: the Optuna sampler
(gas_nas.study.samplers) proposes each trial nobody queued. A strategy may check, before anything
runs, that it can search this space with this recipe, and queue trials of its own before the
loop (the differentiable strategy trains supernets and queues their argmax). Adding one means
writing its two functions and an entry in `STRATEGIES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from gas_nas.common.errors import GasNasError
from gas_nas.common.events import Events


@dataclass(frozen=True)
class Strategy:
    name: str
    summary: str
    # (space, request) -> a line to show before the run ("" for none); raises GasNasError for a
    # combination it cannot run, before anything is created or trained.
    check: Callable[[Any, Any], str]
    # (study, space, resources, seed, events, should_stop) -> trials waiting in the queue; None:
    # the sampler proposes every trial.
    propose: Callable[[Any, Any, Any, int, Events, Callable[[], bool]], int] | None = None
    phase: str = ""  # what runs while it proposes, in a stop message ("the supernet phase")


def _no_check(space: Any, req: Any) -> str:
    return ""


def _differentiable_check(space: Any, req: Any) -> str:
    from gas_nas.models.supernet import supernet_space
    from gas_nas.strategies.differentiable import fixed_line, unsupported_recipe

    if req.jobs > 1 or req.until:
        raise GasNasError("--strategy differentiable runs its supernets in one process: drop --jobs and --until")
    reason = unsupported_recipe(space.train)
    if reason:
        raise GasNasError(reason)
    return fixed_line(supernet_space(space))  # a space the supernet cannot represent: one line, before any work


def _differentiable_propose(study: Any, space: Any, res: Any, seed: int, events: Events, should_stop: Callable[[], bool]) -> int:
    from gas_nas.strategies.differentiable import propose
    from gas_nas.study.search import waiting_trials

    events.proposals(propose(study, space, res.real, seed, events, should_stop))
    return waiting_trials(study)


STRATEGIES = {
    "optuna": Strategy("optuna", "the Optuna sampler proposes every trial", _no_check),
    "differentiable": Strategy("differentiable", "supernets propose trials, one per size weight",
                               _differentiable_check, _differentiable_propose, phase="the supernet phase"),
}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise GasNasError(f"search.strategy: unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]
