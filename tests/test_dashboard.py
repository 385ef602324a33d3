"""What optuna-dashboard's browser page reads (its JSON API) for a study with infeasible trials."""

from __future__ import annotations

import json
import math
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.trial import TrialState

from gas_nas.study.dashboard import PLOT_ID, after_trial, dashboard_app, set_constraints
from gas_nas.study.record import TrialRecord
from gas_nas.study.search import front
from gas_nas.trial.guard import violations
from gas_nas.trial.train import TrialMetrics

# (size, imbalance, case, fid): fid > 100 fails the guard. Trial 1 dominates all others but is
# infeasible: a constraint-blind front would be trial 1 alone; the feasible front is 0 and 2.
TRIALS = [(1.0, 1.0, "1 original", 50.0), (0.5, 0.5, "2 depthwise separable", 400.0), (2.0, 0.4, None, 60.0), (3.0, 3.0, None, 70.0)]
MAX_FID = 100.0


def _record(study: optuna.Study, size: float, imbalance: float, case: str | None, fid: float) -> None:
    trial = study.ask()
    metrics = TrialMetrics(status="complete", reason="", iterations=2000, d_params=int(size * 2**18), d_param_mb=size, imbalance=imbalance,
                           d_loss=0.2, g_loss=0.2, fid=fid, classes=9, entropy=2.1, class_histogram=[200] * 10,
                           classifier_accuracy=0.99, seconds=540.0, device="cpu", seed=0,
                           machine="worker-7 (Intel Xeon, 1 thread(s))")
    TrialRecord(case=case, metrics=metrics, feasible=fid <= MAX_FID, infeasible_reason="" if fid <= MAX_FID else f"fid {fid:.1f} > {MAX_FID:g}").write(trial)
    set_constraints(trial, {"fid": fid - MAX_FID, "classes": 0.0, "entropy": -1.0, "finished": 0.0})
    study.tell(trial, [size, imbalance])
    after_trial(study, study.trials[-1])


def _failed(study: optuna.Study, reason: str) -> None:
    trial = study.ask()
    TrialRecord(case="3 inception", fail_reason=reason).write(trial)
    study.tell(trial, state=TrialState.FAIL)
    after_trial(study, study.trials[-1])


def _study(tmp_path, trials) -> optuna.Study:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/d.db", study_name="d", directions=["minimize", "minimize"])
    study.set_metric_names(["d_size_mb", "imbalance"])
    for row in trials:
        _record(study, *row)
    _failed(study, "loss is not finite at iteration 3")
    return study


def _detail(study: optuna.Study) -> dict:
    """GET /api/studies/<id>, the JSON optuna-dashboard's study and trial pages are drawn from."""
    app = dashboard_app(study._storage)
    env = {"PATH_INFO": f"/api/studies/{study._study_id}", "REQUEST_METHOD": "GET", "QUERY_STRING": "after=0"}
    setup_testing_defaults(env)
    status = []
    body = b"".join(app(env, lambda s, h, *a: status.append(s)))
    assert status[0].startswith("200")
    return json.loads(body)


@pytest.fixture
def detail_and_study(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = _study(tmp_path, TRIALS)
    return _detail(study), study


def test_dashboard_sees_infeasible_trials_and_its_front_is_gas_nas_front(detail_and_study):
    detail, study = detail_and_study
    infeasible = {t["number"] for t in detail["trials"] if any(c > 0 for c in t["constraints"])}
    assert infeasible == {1}
    assert all(t["constraints"] for t in detail["trials"] if t["state"] == "Complete")
    best = {t["number"] for t in detail["best_trials"]}
    assert best == {t.number for t in front(study)} == {0, 2}


def test_dashboard_shows_no_best_trial_when_nothing_is_feasible(tmp_path):
    study = _study(tmp_path, [(s, i, c, 500.0) for s, i, c, _ in TRIALS])
    detail = _detail(study)
    assert detail["best_trials"] == [] and front(study) == []
    assert all(any(c > 0 for c in t["constraints"]) for t in detail["trials"] if t["state"] == "Complete")


def test_every_trial_page_has_a_note_with_verdict_and_measurements(detail_and_study):
    detail, _ = detail_and_study
    notes = {t["number"]: t["note"]["body"] for t in detail["trials"]}
    assert notes[0].startswith("### Trial 0: paper case 1 (original)\n") and "**Feasible**" in notes[0]
    assert "**Infeasible**: fid 400.0 > 100" in notes[1] and "paper case 2 (depthwise separable)" in notes[1]
    for key in ("| Fréchet distance | 50.0 |", "| digits found | 9 of 10 |", "class entropy | 2.10", "| imbalance | 1.000 (D loss 0.200, G loss 0.200",
                "| iterations | 2000 |", "| seconds | 540.0 |", "| device | cpu on worker-7 (Intel Xeon, 1 thread(s)) |"):
        assert key in notes[0]
    assert "**FAIL**: loss is not finite at iteration 3" in notes[4] and "paper case 3 (inception)" in notes[4]


def _plot(detail: dict) -> dict:
    graphs = {g["id"]: json.loads(g["graph_object"]) for g in detail["plotly_graph_objects"]}
    assert list(graphs) == [PLOT_ID]  # refreshed after every trial, never duplicated
    return graphs[PLOT_ID]


def _traces(plot: dict) -> dict:
    return {t.get("legendgroup") or t["name"]: t for t in plot["data"]}


def test_study_plot_labels_cases_greys_infeasible_and_draws_the_front(detail_and_study):
    detail, study = detail_and_study
    plot = _plot(detail)
    traces = _traces(plot)
    assert traces["feasible"]["x"] == [1.0, 2.0, 3.0] and traces["infeasible"]["x"] == [0.5]
    assert traces["infeasible"]["name"] == "infeasible: fails the quality guard"
    assert traces["infeasible"]["marker"]["color"] == traces["failed"]["marker"]["color"] != traces["feasible"]["marker"]["color"]
    front = traces["feasible Pareto front (Best Trials)"]
    assert front["x"] == [1.0, 2.0] and front["mode"] == "lines+markers"
    assert traces["paper cases"]["hovertext"] == ["1 original", "2 depthwise separable"]
    assert traces["paper cases"]["text"] == ["1", "2"]  # a number beside the diamond: a name would cover other trials
    layout = plot["layout"]
    assert layout["xaxis"]["title"]["text"] == "discriminator size (MB)" and layout["yaxis"]["title"]["text"] == "D/G loss imbalance"
    assert layout["title"]["text"].startswith("Discriminator size (MB) vs D/G loss imbalance<br>")
    assert "3 of 4 complete trials feasible, 2 on the feasible front" in layout["title"]["text"]
    assert study.metric_names == ["d_size_mb", "imbalance"]  # the study's own names are unchanged


def test_case_labels_stay_inside_the_plot_area(detail_and_study):
    """The smallest case sits at the left edge: its label goes to its right, and both axes leave room."""
    plot = _plot(detail_and_study[0])
    cases = _traces(plot)["paper cases"]
    positions = dict(zip(cases["hovertext"], cases["textposition"]))
    assert positions["2 depthwise separable"].endswith("right")  # 0.5 MB, the leftmost point
    layout = plot["layout"]
    for axis, values in (("xaxis", [0.5, 1.0, 2.0, 3.0]), ("yaxis", [0.4, 0.5, 1.0, 3.0])):
        low, high = layout[axis]["range"]
        assert low < math.log10(min(values)) - 0.04 and high > math.log10(max(values)) + 0.04
    assert layout["yaxis"]["ticktext"] == ["0.5", "1", "2", "3"]  # in full: never "2" for 20


def test_trials_on_one_spot_are_counted_and_listed_together(tmp_path):
    """A trial that lands on a paper case's spot (the same architecture, say) no longer hides under it."""
    study = _study(tmp_path, TRIALS + [(1.0, 1.0, None, 55.0)])
    traces = _traces(_plot(_detail(study)))
    shared = traces["shared"]
    assert shared["text"] == ["×2"] and shared["x"] == [1.0] and shared["y"] == [1.0]
    hover = traces["feasible"]["text"][0]
    assert hover.startswith("2 trials here:") and "trial 0 (1 original)" in hover and "trial 4" in hover


def test_with_nothing_feasible_the_plot_says_so_beside_the_empty_best_trials(tmp_path):
    study = _study(tmp_path, [(s, i, c, 500.0) for s, i, c, _ in TRIALS])
    plot = _plot(_detail(study))
    said = "no feasible trial yet: 4 complete, all fail the quality guard (closest: trial 0 [1 original]: fid 500.0 > 100)"
    assert "4 complete trials, none feasible yet" in plot["layout"]["title"]["text"]
    assert said in plot["layout"]["annotations"][0]["text"].replace("<br>", " ")


def test_guard_reasons_read_as_english():
    from gas_nas.models.spec import QualityConfig

    metrics = TrialMetrics(status="complete", reason="", iterations=40, d_params=1, d_param_mb=1.0, imbalance=1.0, d_loss=0.2, g_loss=0.2,
                           fid=50.0, classes=1, entropy=0.0, class_histogram=[64] + [0] * 9, classifier_accuracy=0.99, seconds=1.0, device="cpu", seed=0)
    assert "1 digit found < 8" in violations(metrics, QualityConfig(min_classes=8))


def test_a_machine_without_plotly_still_searches_with_one_warning(tmp_path, monkeypatch, capsys):
    """The GPU machine's wheels may lack plotly: the study plot is skipped, never the search."""
    import gas_nas.study.dashboard

    def no_plotly(study):
        raise ImportError("No module named 'plotly'")

    monkeypatch.setattr(gas_nas.study.dashboard, "study_figure", no_plotly)
    monkeypatch.setattr(gas_nas.study.dashboard, "_WARNED", [])
    study = _study(tmp_path, TRIALS)  # after_trial after each of 5 trials
    assert len(study.trials) == 5
    err = capsys.readouterr().err
    assert err.count("no study plot") == 1 and "plotly" in err


def _study_note(study: optuna.Study) -> str:
    from optuna_dashboard import get_note

    return get_note(study)


def test_the_study_note_explains_the_dashboard_plots_and_keeps_a_person_s_note(tmp_path):
    study = _study(tmp_path, [(s, i, c, 500.0) for s, i, c, _ in TRIALS])
    note = _study_note(study)
    assert "**Status**: no feasible trial yet: 4 complete, all fail the quality guard (closest: trial 0 [1 original]" in note
    assert "`d_size_mb` is the discriminator size (MB), `imbalance` is the D/G loss imbalance" in note
    assert "Grey points are infeasible trials" in note
    from optuna_dashboard import save_note

    save_note(study, "my own notes")
    _failed(study, "interrupted")  # after_trial refreshes the plot and would rewrite a gas-nas note
    assert _study_note(study) == "my own notes"
