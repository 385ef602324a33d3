"""The lines a running search prints that need no training: the long-CPU-search hint."""

from __future__ import annotations

from gas_nas.progress import human_time, slow_search_hint


def test_long_search_gets_one_hint_with_trial_time_total_and_a_quick_budget():
    hint = slow_search_hint(540.0, 50, 2000)  # a paper-budget trial on a 2-core CPU: about 9 minutes
    assert "takes about 9 min" in hint and "50 trials take about 7.5 h" in hint and "--iterations 100" in hint


def test_short_search_gets_no_hint():
    assert slow_search_hint(2.0, 7, 3) is None
    assert slow_search_hint(60.0, 50, 2000) is None  # 50 minutes in all


def test_times_read_in_the_unit_a_person_would_use():
    assert [human_time(s) for s in (0.42, 12, 540, 27000)] == ["0.42 s", "12 s", "9 min", "7.5 h"]
