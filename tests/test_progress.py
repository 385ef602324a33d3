"""The lines a running search prints that need no training: the long-CPU-search hint."""

from __future__ import annotations

import pytest

from gas_nas.common.events import human_time
from gas_nas.run import slow_search_hint


def test_long_search_gets_one_hint_with_trial_time_total_and_a_quick_budget():
    hint = slow_search_hint(540.0, 50, 2000)  # 9-minute trials
    assert "takes about 9 min" in hint and "50 trials take about 7.5 h" in hint and "--iterations 100" in hint


def test_short_search_gets_its_estimate_without_the_quick_look():
    assert slow_search_hint(2.0, 7, 3).endswith("takes about 2 s, so 7 trials take about 14 s")
    assert "--iterations" not in slow_search_hint(60.0, 50, 2000)  # 50 minutes in all


def test_times_read_in_the_unit_a_person_would_use():
    assert [human_time(s) for s in (0.42, 12, 540, 27000)] == ["0.42 s", "12 s", "9 min", "7.5 h"]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _finished_trial(study, seconds: float):
    """A trial told COMPLETE with `seconds` recorded, as the search tells one."""
    from gas_nas.study.record import TrialRecord
    from gas_nas.trial.results import TrialMetrics

    trial = study.ask()
    metrics = TrialMetrics(status="complete", reason="", iterations=40, d_params=1, d_param_mb=1.0, imbalance=0.5, d_loss=0.25, g_loss=0.125,
                           fid=50.0, classes=10, entropy=2.3, class_histogram=[1] * 10, classifier_accuracy=0.99, seconds=seconds, device="cpu", seed=0)
    TrialRecord(metrics=metrics, feasible=True).write(trial)
    return study.tell(trial, [1.0, 0.5])


def _rendered(progress) -> list[str]:
    """The two bars as a terminal shows them."""
    from io import StringIO

    from rich.console import Console

    out = Console(file=StringIO(), width=160, force_terminal=True, color_system=None)
    out.print(progress.bars.get_renderable())
    return out.file.getvalue().splitlines()


def test_both_bars_and_the_trial_line_give_one_estimate_of_the_time_left(capsys):
    """A 40-iteration trial (shorter than log_every): the iteration bar and its estimate move with
    every iteration, and after a trial the trials bar says what the printed line says."""
    from io import StringIO

    import optuna
    from rich.console import Console

    from gas_nas.progress import SearchProgress

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["minimize", "minimize"])
    clock = Clock()
    console = Console(file=StringIO(), width=160, force_terminal=True, color_system=None)
    with SearchProgress(console, total=4, clock=clock) as progress:
        progress.bars.stop()  # rendered by hand below, not by rich's refresh thread
        progress.on_cohort_start([(0, "1 original")])
        clock.now = 5.0
        progress.on_iteration(10, 40)  # 0.5 s per iteration so far
        cohort, trials = _rendered(progress)[1], _rendered(progress)[0]
        assert "10/40 0:00:05 about 15 s left" in cohort  # 30 iterations at 0.5 s
        assert "about 75 s left" in trials  # 15 s, then 3 more trials of 20 s each
        clock.now = 30.0
        progress.on_iteration(40, 40)
        clock.now = 33.0
        assert "measuring samples" in _rendered(progress)[1] and "0:00:33" in _rendered(progress)[1]  # the clock runs on
        progress(study, _finished_trial(study, 30.0))
        line = console.file.getvalue().splitlines()[-1]
        assert "took 30 s, about 2 min left for 3 more" in line  # 3 trials of 30 s
        assert "about 2 min left" in _rendered(progress)[0]
        clock.now = 35.0
        progress.on_cohort_start([(1, "")])
        clock.now = 45.0
        progress.on_iteration(5, 40)  # slower than the first trial's rate would say: the rate wins
        assert "about 70 s left" in _rendered(progress)[1]
        assert progress.left_seconds() == 130.0  # 70 s + 2 trials of 30 s
        assert "about 2 min left" in _rendered(progress)[0]


def test_the_start_lines_estimate_leads_the_bars_until_a_trial_finishes_and_a_stopped_trial_is_not_counted():
    """The figure the start line printed is the bars' until a trial has finished (not the first
    slow iterations' rate); a trial stopped by a signal changes no estimate and is not counted."""
    from io import StringIO

    import optuna
    from rich.console import Console

    from gas_nas.progress import SearchProgress
    from gas_nas.study.record import TrialRecord

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["minimize", "minimize"])
    clock = Clock()
    console = Console(file=StringIO(), width=160, force_terminal=True, color_system=None)
    with SearchProgress(console, total=50, clock=clock, prior=60.0) as progress:
        progress.bars.stop()
        progress.on_cohort_start([(0, "1 original")])
        clock.now = 10.0
        progress.on_iteration(1, 300)  # the first iteration is slow: 10 s, which would say 50 min a trial
        assert progress.left_seconds() == 50 * 60.0 - 10.0 and "about 50 min left" in _rendered(progress)[0]
        assert "about 50 s left" in _rendered(progress)[1]  # the prior, less what ran
        clock.now = 40.0
        progress.on_iteration(150, 300)  # warm: the cohort's own rate (0.27 s an iteration) now leads its bar
        assert progress.cohort_left() == pytest.approx(40.0 / 150 * 150)
        stopped = study.ask()
        TrialRecord(fail_reason="interrupted", feasible=False).write(stopped)
        progress(study, study.tell(stopped, state=optuna.trial.TrialState.FAIL))
        line = console.file.getvalue().splitlines()[-1]
        assert "interrupted (not counted as run)" in line and "left" not in line
        assert progress.done == 0 and progress.per_trial() == 60.0


def test_a_trial_held_for_the_relative_guard_counts_as_run_once():
    """Under a relative guard the first trials wait for the paper cases before their verdict:
    each is counted (bars, estimate, a line) when it has trained, and only its verdict is
    printed when the guard settles, so the estimate moves on and nothing is counted twice."""
    from io import StringIO

    import optuna
    from rich.console import Console

    from gas_nas.progress import SearchProgress
    from gas_nas.study.record import TrialRecord

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["minimize", "minimize"])
    clock = Clock()
    console = Console(file=StringIO(), width=200, force_terminal=True, color_system=None)
    with SearchProgress(console, total=6, clock=clock, prior=60.0) as progress:
        progress.bars.stop()
        progress.on_cohort_start([(0, "1 original")])
        clock.now = 40.0
        held = _finished_trial(study, 40.0)  # its metrics, as the search writes them before holding it
        progress.on_held(study, 0, "1 original", TrialRecord.of(held).metrics)
        line = console.file.getvalue().splitlines()[-1]
        assert "trial 0 (1 original): trained (FID 50.0" in line and "waits for the relative guard" in line
        assert "took 40 s, about 3 min left for 5 more" in line  # 5 trials of 40 s
        assert progress.done == 1 and progress.left_seconds() == 200.0
        progress(study, held)  # the guard settled: its verdict, not a second count
        assert "(guard settled)" in console.file.getvalue().splitlines()[-1]
        assert progress.done == 1 and progress.left_seconds() == 200.0


def test_the_supernet_phase_has_one_labelled_estimate_for_all_its_supernets():
    from io import StringIO

    from rich.console import Console

    from gas_nas.progress import SupernetProgress

    clock = Clock()
    console = Console(file=StringIO(), width=160, force_terminal=True, color_system=None)
    with SupernetProgress(console, supernets=3, iterations=100, clock=clock) as phase:
        phase.bar.stop()
        phase.next("supernet lambda 0.01")
        clock.now = 1.0
        phase.on_iteration(1, 100)
        assert phase.left_seconds() is None  # one slow first iteration says nothing yet
        clock.now = 20.0
        phase.on_iteration(20, 100)  # 1 s an iteration
        assert phase.left_seconds() == 80 + 2 * 100
        clock.now = 100.0
        phase.on_iteration(100, 100)
        phase.next("supernet lambda 0.1")
        clock.now = 101.0
        phase.on_iteration(1, 100)  # the finished supernet's rate, not this one's first iteration
        assert phase.left_seconds() == 99 + 100
        out = Console(file=StringIO(), width=160, force_terminal=True, color_system=None)
        out.print(phase.bar.get_renderable())
        assert "supernet lambda 0.1 (2 of 3)" in out.file.getvalue() and "about 3 min left in the supernet phase" in out.file.getvalue()
