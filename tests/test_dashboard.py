"""What optuna-dashboard's browser page reads (its JSON API) for a study with infeasible trials."""

from __future__ import annotations

import json
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.trial import TrialState

from gas_nas.dashboard import PLOT_ID, after_trial, dashboard_app, set_constraints
from gas_nas.record import TrialRecord
from gas_nas.search import front
from gas_nas.train import TrialMetrics

# (size, imbalance, case, fid): fid > 100 fails the guard. Trial 1 dominates all others but is
# infeasible: a constraint-blind front would be trial 1 alone; the feasible front is 0 and 2.
TRIALS = [(1.0, 1.0, "1 original", 50.0), (0.5, 0.5, "2 depthwise separable", 400.0), (2.0, 0.4, None, 60.0), (3.0, 3.0, None, 70.0)]
MAX_FID = 100.0


def _record(study: optuna.Study, size: float, imbalance: float, case: str | None, fid: float) -> None:
    trial = study.ask()
    metrics = TrialMetrics(status="complete", reason="", iterations=2000, d_params=int(size * 2**18), d_param_mb=size, imbalance=imbalance,
                           d_loss=0.2, g_loss=0.2, fid=fid, classes=9, entropy=2.1, class_histogram=[200] * 10,
                           classifier_accuracy=0.99, seconds=540.0, device="cpu", seed=0)
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
    assert "paper case 1 original" in notes[0] and "**Feasible**" in notes[0]
    assert "**Infeasible**: fid 400.0 > 100" in notes[1] and "paper case 2 depthwise separable" in notes[1]
    for key in ("| Fréchet distance | 50.0 |", "| digits found | 9 of 10 |", "class entropy | 2.10", "| imbalance | 1.000 (D loss 0.200, G loss 0.200",
                "| iterations | 2000 |", "| seconds | 540.0 |", "| device | cpu |"):
        assert key in notes[0]
    assert "**FAIL**: loss is not finite at iteration 3" in notes[4] and "paper case 3 inception" in notes[4]


def test_study_plot_labels_cases_greys_infeasible_and_draws_the_front(detail_and_study):
    detail, study = detail_and_study
    graphs = {g["id"]: json.loads(g["graph_object"]) for g in detail["plotly_graph_objects"]}
    assert list(graphs) == [PLOT_ID]  # refreshed after every trial, never duplicated
    traces = {t["name"]: t for t in graphs[PLOT_ID]["data"]}
    assert traces["feasible"]["x"] == [1.0, 2.0, 3.0] and traces["infeasible"]["x"] == [0.5]
    assert traces["infeasible"]["marker"]["color"] == traces["failed"]["marker"]["color"] != traces["feasible"]["marker"]["color"]
    assert traces["feasible front"]["x"] == [1.0, 2.0] and traces["feasible front"]["mode"] == "lines+markers"
    assert traces["paper cases"]["text"] == ["1 original", "2 depthwise separable"]
    assert "3/4 feasible, 2 on the front" in graphs[PLOT_ID]["layout"]["title"]["text"]


def test_a_machine_without_plotly_still_searches_with_one_warning(tmp_path, monkeypatch, capsys):
    """The GPU machine's wheels may lack plotly: the study plot is skipped, never the search."""
    import gas_nas.dashboard

    def no_plotly(study):
        raise ImportError("No module named 'plotly'")

    monkeypatch.setattr(gas_nas.dashboard, "study_figure", no_plotly)
    monkeypatch.setattr(gas_nas.dashboard, "_WARNED", [])
    study = _study(tmp_path, TRIALS)  # after_trial after each of 5 trials
    assert len(study.trials) == 5
    err = capsys.readouterr().err
    assert err.count("no study plot") == 1 and "plotly" in err
