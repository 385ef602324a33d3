"""What optuna-dashboard shows for a study: feasibility it can see, a note per trial, one plot.

optuna-dashboard 0.21 reads constraints only from the old list-form trial system attribute
`constraints` (Optuna 5's `set_constraint` writes one `constraints:NAME` key each) and picks
its "best trials" ignoring constraints. `set_constraints` writes both forms; `dashboard_app`
and `serve` make its best trials Optuna's constrained front, the one `gas-nas show` prints.
`after_trial(study, trial)` writes a finished trial's note and refreshes the study plot.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from gas_nas.record import TrialRecord

PLOT_ID = "size-vs-imbalance"  # the study plot's graph object id: saving again replaces it
GREY = "#b8b8b8"


# ---------------------------------------------------------------- feasibility


def set_constraints(trial: optuna.Trial, constraints: dict[str, float]) -> None:
    """Named constraints for Optuna, and the same values as a list for optuna-dashboard's plots.

    Call while the trial is running (system attributes of finished trials are read-only).
    Feasible when every value is <= 0; both forms hold the same values, so feasibility agrees.
    """
    for name, value in constraints.items():
        trial.set_constraint(name, value)
    trial.storage.set_trial_system_attr(trial._trial_id, "constraints", list(constraints.values()))


def is_feasible(trial: FrozenTrial) -> bool:
    return all(value <= 0 for value in trial.constraints.values())


def _constrained_front(trials: list[FrozenTrial], directions: list) -> list[FrozenTrial]:
    from optuna_dashboard import _pareto_front

    return _pareto_front.get_pareto_front_trials([t for t in trials if is_feasible(t)], directions)


def _use_constrained_front() -> None:
    """The dashboard's study API takes its best trials from this one function; feasible only."""
    from optuna_dashboard import _app

    _app.get_pareto_front_trials = _constrained_front


def dashboard_app(storage: Any, artifact_store: Any = None):
    """optuna-dashboard's WSGI app with the feasible Pareto front as its best trials."""
    import optuna_dashboard

    _use_constrained_front()
    return optuna_dashboard.wsgi(storage, artifact_store=artifact_store)


def serve(storage: Any, host: str, port: int, artifact_store: Any = None) -> None:
    """Run optuna-dashboard (blocking) with the feasible Pareto front as its best trials."""
    import optuna_dashboard

    _use_constrained_front()
    optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=artifact_store)


# ---------------------------------------------------------------- after a trial


def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna callback (also callable after `study.tell`): the trial's note, the study plot."""
    save_trial_note(study, trial)
    refresh_study_plot(study)


def trial_note(trial: FrozenTrial) -> str:
    """Markdown for the trial's page: case, verdict with reasons, then what was measured."""
    r = TrialRecord.of(trial)
    m = r.metrics
    get = (lambda key: getattr(m, key)) if m else (lambda key: None)
    lines = [f"### Trial {trial.number}" + (f": paper case {r.case}" if r.case else "")]
    if trial.state == TrialState.COMPLETE:
        lines.append("**Feasible**: passes the quality guard." if r.feasible else f"**Infeasible**: {r.infeasible_reason or 'fails the quality guard'}.")
    else:
        lines.append(f"**{trial.state.name}**: {r.fail_reason or 'no reason recorded'}.")
    rows = [
        ("Fréchet distance", _fmt(get("fid"), ".1f")),
        ("digits found", _join(_fmt(get("classes"), "d"), "of 10")),
        ("class entropy", _join(_fmt(get("entropy"), ".2f"), "nats (even: 2.30)")),
        ("imbalance", _join(_fmt(get("imbalance"), ".3f"), f"(D loss {_fmt(get('d_loss'), '.3f')}, G loss {_fmt(get('g_loss'), '.3f')}; equilibrium 0.25 / 0.125)")),
        ("size", _join(_fmt(get("d_param_mb"), ".3f"), f"MB ({_fmt(get('d_params'), ',d')} parameters)")),
        ("paper's MB", _join(_fmt(r.paper_mb, "g"), "(GPU memory the paper reported, TensorFlow)")),
        ("teacher (training only)", _join(_fmt(get("teacher_mb"), ".3f"), f"MB ({_fmt(get('teacher_params'), ',d')} parameters, sha256 {(get('teacher_sha256') or '')[:12]})") if get("teacher_sha256") else "-"),
        ("iterations", _fmt(get("iterations"), "d")),
        ("seconds", _join(_fmt(get("seconds"), ".1f"), f"(its share of a cohort of {get('cohort')})" if (get("cohort") or 1) > 1 else "")),
        ("device", get("device") or "-"),
    ]
    lines += ["", "| measured | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows if v != "-"]
    return "\n".join(lines) + "\n"


def save_trial_note(study: optuna.Study, trial: FrozenTrial) -> None:
    """optuna-dashboard's `save_note` on a finished trial (it only needs its storage and ids)."""
    from types import SimpleNamespace

    from optuna_dashboard import save_note

    save_note(SimpleNamespace(storage=study._storage, study=study, _trial_id=trial._trial_id), trial_note(trial))


def _fmt(value: Any, spec: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(int(value) if spec.endswith("d") else value, spec)


def _join(value: str, rest: str) -> str:
    return "-" if value == "-" else f"{value} {rest}".rstrip()


# ---------------------------------------------------------------- the study plot


def study_figure(study: optuna.Study):
    """Size against imbalance: feasible trials in colour, infeasible and failed ones grey, the
    paper cases labelled, the feasible Pareto front (Optuna's `best_trials`) as a line."""
    import plotly.graph_objects as go

    names = study.metric_names or ["size", "imbalance"]
    points = [(t, *_xy(t)) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))]
    points = [(t, x, y) for t, x, y in points if x is not None]
    groups = {
        "feasible": [p for p in points if p[0].state == TrialState.COMPLETE and is_feasible(p[0])],
        "infeasible": [p for p in points if p[0].state == TrialState.COMPLETE and not is_feasible(p[0])],
        "failed": [p for p in points if p[0].state == TrialState.FAIL],
    }
    style = {"feasible": dict(color="#1f77b4", size=9), "infeasible": dict(color=GREY, size=9), "failed": dict(color=GREY, size=9, symbol="x")}
    fig = go.Figure()
    for label, group in groups.items():
        fig.add_trace(go.Scatter(x=[p[1] for p in group], y=[p[2] for p in group], mode="markers", name=label, marker=style[label],
                                 text=[_hover(p[0]) for p in group], hoverinfo="text"))
    front = sorted(study.best_trials, key=lambda t: t.values[0])
    fig.add_trace(go.Scatter(x=[t.values[0] for t in front], y=[t.values[1] for t in front], name="feasible front",
                             mode="lines+markers" if len(study.directions) == 2 else "markers", line=dict(color="#d62728"),
                             marker=dict(color="#d62728", size=11, symbol="circle-open"), hoverinfo="skip"))
    cases = [(p, TrialRecord.of(p[0]).case) for p in points if TrialRecord.of(p[0]).case]
    fig.add_trace(go.Scatter(x=[p[1] for p, _ in cases], y=[p[2] for p, _ in cases], mode="markers+text", name="paper cases",
                             text=[case for _, case in cases], textposition="top center",
                             marker=dict(symbol="diamond-open", size=14, color="#333333"), hoverinfo="skip"))
    feasible = len(groups["feasible"])
    complete = feasible + len(groups["infeasible"])
    fig.update_layout(
        title=dict(text=f"{names[0]} vs {names[1]}: {feasible}/{complete} feasible, {len(front)} on the front", x=0.02, font=dict(size=14)),
        xaxis=dict(title=f"{names[0]} (log)", type="log"), yaxis=dict(title=f"{names[1]} (log)", type="log"), template="none",
        legend=dict(orientation="h", y=-0.2), margin=dict(l=60, r=20, t=50, b=60),
    )
    return fig


def _xy(t: FrozenTrial) -> tuple[float | None, float | None]:
    """A complete trial's first two objectives; a failed one's recorded size and imbalance, if finite."""
    if t.state == TrialState.COMPLETE:
        return t.values[0], t.values[1]
    m = TrialRecord.of(t).metrics
    x, y = (m.d_param_mb, m.imbalance) if m else (None, None)
    ok = all(isinstance(v, (int, float)) and math.isfinite(v) for v in (x, y))
    return (x, y) if ok else (None, None)


def _hover(t: FrozenTrial) -> str:
    r = TrialRecord.of(t)
    head = f"trial {t.number}" + (f" ({r.case})" if r.case else "")
    why = r.fail_reason if t.state == TrialState.FAIL else r.infeasible_reason
    return head + (f"<br>{why}" if why else "")


def refresh_study_plot(study: optuna.Study) -> None:
    """Save the study plot for optuna-dashboard's study page, replacing the previous one.
    Without plotly (a bare machine) the search goes on without the plot, after one warning."""
    from optuna_dashboard import save_plotly_graph_object

    try:
        figure = study_figure(study)
    except ImportError as exc:
        if not _WARNED:
            _WARNED.append(True)
            print(f"gas-nas: warning: no study plot in the dashboard ({exc}); pip install plotly", file=sys.stderr)
        return
    save_plotly_graph_object(study, figure, graph_object_id=PLOT_ID)


_WARNED: list[bool] = []  # the missing-plotly warning is printed once per process
