"""What a run tells whoever watches it: lines, and bars over supernets, trials or iterations.

`Events` does nothing, so a script passes it as is; the terminal's version
(gas_nas.progress.TerminalEvents) draws rich bars and prints. The library layer (gas_nas.run)
and the strategies only ever call these methods, never print.
"""

from __future__ import annotations

from typing import Any


def human_time(seconds: float) -> str:
    """A duration the way the lines and bars say it: "12 s", "9 min", "7.5 h"."""
    if seconds < 90:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class NullBar:
    """A bar nobody sees: every hook the search, the trainer or a supernet calls, doing nothing."""

    def __enter__(self) -> NullBar:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def __call__(self, study: Any, trial: Any) -> None:  # an Optuna callback after each trial
        return None

    def next(self, label: str) -> None:  # the next supernet starts
        return None

    def on_iteration(self, done: int, total: int) -> None:
        return None

    def on_cohort_start(self, trials: list) -> None:
        return None

    def on_held(self, study: Any, number: int, label: str, metrics: Any) -> None:
        return None


class Events:
    """A run's events; `quiet` runs skip what only a watcher needs (timing a few iterations for an estimate)."""

    quiet = True

    def say(self, line: str) -> None:
        """One line of what the run does (settings, the guard, a supernet's report)."""

    def supernets(self, count: int, iterations: int) -> NullBar:
        """A bar over the supernet phase: `next(label)` per supernet, `on_iteration` inside one."""
        return NullBar()

    def proposals(self, proposals: list) -> None:
        """The trials a strategy queued (gas_nas.strategies.differentiable.Proposal)."""

    def trials(self, total: int | None, until: int | None, prior: float | None) -> NullBar:
        """A bar over the trials this process runs: an Optuna callback with the trainer's hooks."""
        return NullBar()

    def training(self, iterations: int) -> NullBar:
        """A bar over one training's iterations (`train`)."""
        return NullBar()


class _TrialLines(NullBar):
    def __init__(self, say) -> None:
        self.say = say

    def __call__(self, study: Any, trial: Any) -> None:
        self.say(f"  {study.study_name} trial {trial.number} {trial.state.name} {trial.values}")


class LogEvents(Events):
    """Plain lines, one per finished trial too: what a long unattended run (an evidence script) logs."""

    def say(self, line: str) -> None:
        print(line, flush=True)

    def trials(self, total: int | None, until: int | None, prior: float | None) -> NullBar:
        return _TrialLines(self.say)
