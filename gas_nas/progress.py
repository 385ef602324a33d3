"""What a running search shows: rich bars on a terminal, one plain line per trial elsewhere.

Driven by Optuna callbacks (after each trial) and the trainer's progress hook (per log
interval), never by Optuna's own `show_progress_bar`.
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class SearchProgress:
    """Use as a context manager; pass `on_iteration`, `on_trial_start` and itself (a callback) to the search."""

    def __init__(self, console: Console, total: int | None, quiet: bool = False):
        self.console, self.total, self.quiet = console, total, quiet
        self.fancy = console.is_terminal and not quiet
        self.done = 0
        self.bars: Progress | None = None

    def __enter__(self) -> SearchProgress:
        if self.fancy:
            self.bars = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
            )
            self.trials = self.bars.add_task("trials (front: 0)", total=self.total)
            self.iters = self.bars.add_task("trial -", total=1)
            self.bars.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bars is not None:
            self.bars.stop()

    def on_trial_start(self, number: int, case: str) -> None:
        if self.bars is not None:
            self.bars.reset(self.iters, total=1, description=f"trial {number}" + (f" ({case})" if case else ""))

    def on_iteration(self, done: int, total: int) -> None:
        if self.bars is not None:
            self.bars.update(self.iters, completed=done, total=total)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback after every finished trial."""
        self.done += 1
        front = len(study.best_trials)
        if self.bars is not None:
            self.bars.update(self.trials, advance=1, description=f"trials (front: {front})")
        line = trial_line(study, trial)
        if self.bars is not None:
            self.bars.console.print(line, highlight=False)
        elif not self.quiet or trial.state != TrialState.COMPLETE:
            print(line, flush=True)


def trial_line(study: optuna.Study, trial: FrozenTrial) -> str:
    """One short plain line: number, case, state, objectives, quality verdict or failure reason."""
    a = trial.user_attrs
    head = f"trial {trial.number}" + (f" [{a['case']}]" if a.get("case") else "") + f" {trial.state.name}"
    if trial.state == TrialState.COMPLETE:
        names = study.metric_names or [f"v{i}" for i in range(len(trial.values))]
        vals = " ".join(f"{n}={v:.4g}" for n, v in zip(names, trial.values))
        fid = a.get("fid")
        quality = f" fid={fid:.1f} classes={a.get('classes')}" if isinstance(fid, float) and math.isfinite(fid) else ""
        verdict = "feasible" if a.get("feasible") else f"infeasible ({a.get('infeasible_reason')})"
        return f"{head} {vals}{quality} {verdict}"
    return f"{head}: {a.get('fail_reason') or 'no reason recorded'}"
