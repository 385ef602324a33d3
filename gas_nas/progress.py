"""What a run shows on a terminal: rich bars, one plain line per trial elsewhere, and
`TerminalEvents`, the terminal's side of gas_nas.common.events.

Driven by Optuna callbacks (after each trial) and the trainer's progress hook (per log
interval), never by Optuna's own `show_progress_bar`.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from gas_nas.common.events import Events, NullBar, human_time
from gas_nas.study.record import INTERRUPTED, TrialRecord

WARM_SHARE = 10  # a cohort's iteration rate is trusted once a tenth of its iterations ran (the first ones are slow)


def iteration_bar(console: Console, quiet: bool = False, transient: bool = False) -> Progress:
    """One training's iterations on a bar (`train`, the default teacher's training): nothing
    when quiet or when the console is not a terminal."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                    transient=transient, disable=quiet or not console.is_terminal)


class SearchProgress:
    """Use as a context manager; pass `on_iteration`, `on_cohort_start` and itself (a callback) to the search.

    On a terminal: a bar over this process's trials and one over the running cohort's
    iterations (moved every iteration by the trainer's host-side count). Both bars' "left"
    column and the line printed after each trial come from one estimate (`left_seconds`), so
    they agree: seconds per finished trial (a cohort's wall time shared among its trials) times
    the trials still to run, plus what the running cohort still needs. Before a trial has
    finished, `prior` (the seconds per trial the start line printed, timed from a few
    iterations) stands in, so the first bars say what the start line said; a trial stopped by
    Ctrl-C or SIGTERM is not counted as finished.
    """

    def __init__(self, console: Console, total: int | None, quiet: bool = False, until: int | None = None, clock=time.monotonic,
                 prior: float | None = None):
        self.console, self.total, self.quiet, self.until, self.clock, self.prior = console, total, quiet, until, clock, prior
        self.fancy = console.is_terminal and not quiet
        self.done = 0
        self.held: set[int] = set()  # trials counted as run while their verdict waits for the guard
        self.spent = 0.0  # seconds of this process's finished trials (a cohort's wall time shared among its trials)
        self.left_trials = total or 0  # trials still to run, the running cohort's included (as of the last finished trial)
        self.cohort: list[tuple[int, str]] = []
        self.label = "trial -"
        self.cohort_start = 0.0
        self.iterations = (0, 0)  # (done, total) of the running cohort
        self.start = clock()
        self.bars: Progress | None = None

    def __enter__(self) -> SearchProgress:
        if self.fancy:
            self.bars = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _ElapsedColumn(self),
                _LeftColumn(self), console=self.console, transient=False,
            )
            self.trials = self.bars.add_task("trials (front: 0)", total=self.total, scope="search")
            self.iters = self.bars.add_task("trial -", total=1, scope="cohort")
            self.bars.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bars is not None:
            self.bars.stop()

    def on_cohort_start(self, trials: list[tuple[int, str]]) -> None:
        """Before a cohort trains: its trials on the iteration bar, or one plain line."""
        self.cohort, self.cohort_start, self.iterations = trials, self.clock(), (0, 0)
        names = ", ".join(f"{n}" + (f" ({case})" if case else "") for n, case in trials)
        label = f"trial {names}" if len(trials) == 1 else f"cohort of {len(trials)}: trials {names}"
        self.label = label
        if self.bars is not None:
            self.bars.reset(self.iters, total=1, description=label)
        elif not self.quiet and len(trials) > 1:
            print(f"training {label}", flush=True)

    def on_iteration(self, done: int, total: int) -> None:
        self.iterations = (done, total)
        if self.bars is not None:
            description = f"{self.label}: measuring samples" if done == total else self.label
            self.bars.update(self.iters, completed=done, total=total, description=description)

    def per_trial(self) -> float | None:
        """Seconds a trial takes: from this process's finished trials, else from the running cohort's
        iteration rate (training only, before the first trial has finished)."""
        if self.done:
            return self.spent / self.done
        if self.prior:
            return self.prior
        done, total = self.iterations
        if done and self.cohort:
            return (self.clock() - self.cohort_start) / done * total / len(self.cohort)
        return None

    def cohort_left(self) -> float | None:
        """Seconds the running cohort still needs: its iterations left at its own rate, or, when
        that says less, its trials' usual time minus what it has run (measuring is part of a trial)."""
        if not self.cohort:
            return None
        elapsed = self.clock() - self.cohort_start
        done, total = self.iterations
        usual = self.spent / self.done if self.done else self.prior
        warm = done >= max(3, total // WARM_SHARE) or usual is None  # the first iterations are slow (warm-up): trust history or the prior over them
        by_rate = elapsed / done * (total - done) if done and warm else None
        by_history = max(usual * len(self.cohort) - elapsed, 0.0) if usual else None
        known = [v for v in (by_rate, by_history) if v is not None]
        return max(known) if known else None

    def left_seconds(self) -> float | None:
        """The whole rest of this process's search: the running cohort, then the trials after it."""
        per_trial, running = self.per_trial(), self.cohort_left()
        after = max(self.left_trials - len(self.cohort), 0)
        if per_trial is None:
            return None if after else running
        return (running or 0.0) + per_trial * after

    def on_held(self, study: optuna.Study, number: int, label: str, m) -> None:
        """A trial trained while the relative guard waits for paper cases: counted as run now
        (its verdict comes when the guard settles), so the bars and estimate move on."""
        line = (f"trial {number}" + (f" ({label})" if label else "") + f": trained (FID {m.fid:.1f}, imbalance {m.imbalance:.3g}); "
                "its verdict waits for the relative guard, settled when the paper cases finish")
        self._count(study, number, m.seconds, line)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback after every finished trial."""
        if trial.state == TrialState.FAIL and TrialRecord.of(trial).fail_reason == INTERRUPTED:  # stopped, not finished: no estimate from it
            self.cohort = [c for c in self.cohort if c[0] != trial.number]
            self.held.discard(trial.number)
            self._print(f"{trial_line(study, trial)} (not counted as run)")
            return
        if trial.number in self.held:  # counted when it was held: now only its verdict
            self.held.discard(trial.number)
            self._print(f"{trial_line(study, trial)} (guard settled)")
            return
        m = TrialRecord.of(trial).metrics
        self._count(study, trial.number, m.seconds if m else trial.duration.total_seconds() if trial.duration else 0.0, None, trial)

    def _print(self, line: str) -> None:
        if self.bars is not None:
            self.bars.console.print(line, highlight=False, markup=False)
        else:
            print(line, flush=True)

    def _count(self, study: optuna.Study, number: int, seconds: float, line: str | None, trial: FrozenTrial | None = None) -> None:
        """A trial this process ran: the estimate, the bars, and its line."""
        if line is not None:
            self.held.add(number)
        self.done += 1
        m = TrialRecord.of(trial).metrics if trial is not None else None
        self.spent += seconds
        self.cohort = [c for c in self.cohort if c[0] != number]
        if not self.cohort:
            self.iterations = (0, 0)
            if self.bars is not None:
                self.bars.update(self.iters, description=f"{self.label}: done")
        front = len(study.best_trials)
        if self.bars is not None:
            complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            self.bars.update(self.trials, advance=1, description=f"trials (study: {complete} complete, front: {front})")
        left = self._left(study)
        self.left_trials = left + len(self.cohort)  # the rest of the running cohort is still to come
        rest = f", about {human_time(self.spent / self.done * left)} left for {left} more" if left else ""
        share = f" (its share of a cohort of {m.cohort})" if m and m.cohort > 1 else ""
        line = f"{line or trial_line(study, trial)}; took {human_time(seconds)}{share}{rest}"
        if self.bars is not None:
            self.bars.console.print(line, highlight=False, markup=False)
        elif not self.quiet or (trial is not None and trial.state != TrialState.COMPLETE):
            print(line, flush=True)

    def _left(self, study: optuna.Study) -> int:
        """Trials still to run: of this process's N, or complete ones the study lacks (--until)."""
        if self.until is not None:
            return max(self.until - len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))), 0)
        return max((self.total or 0) - self.done, 0)


class _ElapsedColumn(ProgressColumn):
    """Time since the search (trials bar) or the running cohort (its bar) started; it keeps
    counting while a cohort's samples are measured after its last iteration."""

    def __init__(self, progress: SearchProgress):
        super().__init__()
        self.progress = progress

    def render(self, task: Task) -> Text:
        p = self.progress
        start = p.start if task.fields.get("scope") == "search" else p.cohort_start if p.cohort else None
        if start is None:
            return Text("")
        seconds = int(p.clock() - start)
        return Text(f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}", style="progress.elapsed")


class _LeftColumn(ProgressColumn):
    """"about 3 min left": the search's estimate on the trials bar, the running cohort's on its bar."""

    def __init__(self, progress: SearchProgress):
        super().__init__()
        self.progress = progress

    def render(self, task: Task) -> Text:
        scope = task.fields.get("scope")
        seconds = self.progress.left_seconds() if scope == "search" else self.progress.cohort_left()
        if task.finished and scope == "search" or scope == "cohort" and not self.progress.cohort:
            seconds = None  # nothing left to estimate
        return Text("" if seconds is None else f"about {human_time(seconds)} left", style="progress.remaining")


class SupernetProgress:
    """The differentiable strategy's supernet phase on one bar: its label names the supernet,
    and its "left" column estimates the whole phase (this supernet's iterations left and every
    later supernet's, at this phase's iteration rate once warm)."""

    def __init__(self, console: Console, supernets: int, iterations: int, quiet: bool = False, clock=time.monotonic):
        self.supernets, self.iterations, self.clock = supernets, iterations, clock
        self.index, self.done, self.start = -1, 0, clock()
        self.rate: float | None = None  # seconds per iteration, from the supernets run so far (or this one, once warm)
        self.finished_seconds, self.finished_iterations = 0.0, 0
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _PhaseLeftColumn(self), console=console,
                            disable=quiet or not console.is_terminal)
        self.task = None

    def __enter__(self) -> SupernetProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def next(self, label: str) -> None:
        if self.index >= 0:
            self.finished_seconds += self.clock() - self.start
            self.finished_iterations += self.done
        self.index, self.done, self.start = self.index + 1, 0, self.clock()
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(f"{label} ({self.index + 1} of {self.supernets})", total=self.iterations)

    def on_iteration(self, done: int, total: int) -> None:
        self.done = done
        if self.task is not None:
            self.bar.update(self.task, completed=done)

    def left_seconds(self) -> float | None:
        """Seconds the phase still needs (None until an iteration rate is known)."""
        rate = self.finished_seconds / self.finished_iterations if self.finished_iterations else None
        if rate is None and self.done >= max(3, self.iterations // WARM_SHARE):
            rate = (self.clock() - self.start) / self.done
        if rate is None:
            return None
        later = max(self.supernets - self.index - 1, 0)
        return rate * (self.iterations - self.done + later * self.iterations)


class _PhaseLeftColumn(ProgressColumn):
    """"about 12 min left in the supernet phase" (blank until the rate is known)."""

    def __init__(self, progress: SupernetProgress):
        super().__init__()
        self.progress = progress

    def render(self, task: Task) -> Text:
        seconds = self.progress.left_seconds()
        return Text("" if seconds is None else f"about {human_time(seconds)} left in the supernet phase", style="progress.remaining")


def trial_line(study: optuna.Study, trial: FrozenTrial) -> str:
    """One short plain line: number, case, state, objectives, quality verdict or failure reason."""
    r = TrialRecord.of(trial)
    head = f"trial {trial.number}" + (f" [{r.label}]" if r.label else "") + f" {trial.state.name}"
    if trial.state == TrialState.COMPLETE:
        names = study.metric_names or [f"v{i}" for i in range(len(trial.values))]
        vals = " ".join(f"{n}={v:.4g}" for n, v in zip(names, trial.values))
        m = r.metrics
        quality = f" fid={m.fid:.1f} classes={m.classes}" if m and math.isfinite(m.fid) else ""
        verdict = "feasible" if r.feasible else f"infeasible ({r.infeasible_reason})"
        return f"{head} {vals}{quality} {verdict}"
    return f"{head}: {r.fail_reason or 'no reason recorded'}"


class TerminalEvents(Events):
    """A run's events on a terminal: lines through rich (one line each, however narrow the
    terminal), bars when it is a terminal. Quiet: no lines, and the bars' plain lines only for
    failures (SearchProgress's rule). `say` overrides where lines go (`train --json`: stderr)."""

    def __init__(self, console: Console, quiet: bool = False, say: Callable[[str], None] | None = None):
        self.console, self.quiet = console, quiet
        self._say = say

    def say(self, line: str) -> None:
        if self._say is not None:
            self._say(line)
        elif not self.quiet and line:
            self.console.print(line, soft_wrap=True, markup=False, highlight=False)

    def supernets(self, count: int, iterations: int) -> SupernetProgress:
        return SupernetProgress(self.console, count, iterations, quiet=self.quiet)

    def proposals(self, proposals: list) -> None:
        from rich.table import Table

        from gas_nas.strategies.differentiable import mixed_axes

        if self.quiet or not proposals:
            return
        table = Table(title="trials proposed by the supernets")
        for column in ("lambda", "rank", "discriminator", "probability", "trial"):
            table.add_column(column, justify="left" if column == "discriminator" else "right")
        for p in proposals:
            table.add_row(f"{p.lam:g}", str(p.derived.rank), mixed_axes(p.derived.spec), f"{p.derived.probability:.3f}",
                          f"#{p.trial} queued" if p.enqueued else f"#{p.trial} (already in the study)")
        self.console.print(table)

    def trials(self, total: int | None, until: int | None, prior: float | None) -> SearchProgress:
        return SearchProgress(self.console, total, quiet=self.quiet, until=until, prior=prior)

    def training(self, iterations: int) -> _TrainingBar:
        return _TrainingBar(iteration_bar(self.console, quiet=self.quiet), iterations)


class _TrainingBar(NullBar):
    """One training's iterations on `iteration_bar`, moved by the trainer's progress hook."""

    def __init__(self, bar: Progress, iterations: int):
        self.bar, self.iterations = bar, iterations

    def __enter__(self) -> _TrainingBar:
        self.bar.__enter__()
        self.task = self.bar.add_task("training", total=self.iterations)
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def on_iteration(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done)
