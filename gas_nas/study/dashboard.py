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

from gas_nas.study.confirmation import Confirmation, confirmations, trusted_front
from gas_nas.study.record import TrialRecord
from gas_nas.study.storage import write_study_system_attrs

PLOT_ID = "size-vs-imbalance"  # the study plot's graph object id: saving again replaces it
GREY = "#b8b8b8"


# ---------------------------------------------------------------- feasibility


def constraint_attrs(constraints: dict[str, float]) -> dict[str, Any]:
    """The trial system attributes of named constraints: one `constraints:NAME` key each, as
    Optuna 5's `set_constraint` writes them, and the same values as the list `constraints` that
    optuna-dashboard's plots read. Feasible when every value is <= 0; both forms hold the same
    values, so feasibility agrees. `TrialRecord.write` stores them with the trial's record."""
    attrs: dict[str, Any] = {f"constraints:{name}": float(value) for name, value in constraints.items()}
    attrs["constraints"] = [float(value) for value in constraints.values()]
    return attrs


def set_constraints(trial: optuna.Trial, constraints: dict[str, float]) -> None:
    """Named constraints for Optuna and the list for optuna-dashboard, in one write.

    Call while the trial is running (system attributes of finished trials are read-only).
    """
    TrialRecord().write(trial, constraint_attrs(constraints))


def is_feasible(trial: FrozenTrial) -> bool:
    return all(value <= 0 for value in trial.constraints.values())


def _constrained_front(trials: list[FrozenTrial], directions: list) -> list[FrozenTrial]:
    from optuna_dashboard import _pareto_front

    return _pareto_front.get_pareto_front_trials([t for t in trials if is_feasible(t)], directions)


def _use_constrained_front() -> None:
    """The dashboard's study API takes its best trials from this one function; feasible only."""
    from optuna_dashboard import _app

    _app.get_pareto_front_trials = _constrained_front


# optuna-dashboard lays each attribute of a trial page in a flex row whose value box keeps its
# line unwrapped: a long attribute widened the whole page (6,149 px for one trial). Letting
# boxes shrink below their content keeps the page in the window; a long value scrolls in its box.
DASHBOARD_STYLE = b"<style>.MuiBox-root{min-width:0}</style>"


def dashboard_app(storage: Any, artifact_store: Any = None):
    """optuna-dashboard's WSGI app with the feasible Pareto front as its best trials, and pages
    that fit the window (DASHBOARD_STYLE)."""
    import optuna_dashboard

    _use_constrained_front()
    return styled(optuna_dashboard.wsgi(storage, artifact_store=artifact_store))


def serve(storage: Any, host: str, port: int, artifact_store: Any = None) -> None:
    """Run `dashboard_app` (blocking) on optuna-dashboard's own server."""
    import bottle

    bottle.run(dashboard_app(storage, artifact_store), host=host, port=port)


def styled(app):
    """A WSGI app whose HTML pages carry DASHBOARD_STYLE in their head."""

    def wrapped(environ, start_response):
        seen: dict = {}

        def capture(status, headers, exc_info=None):
            seen.update(status=status, headers=headers, exc_info=exc_info)
            return lambda data: None

        body = app(environ, capture)
        headers = seen["headers"]
        kinds = {k.lower(): v for k, v in headers}
        if "text/html" not in kinds.get("content-type", "") or kinds.get("content-encoding"):
            start_response(seen["status"], headers, seen["exc_info"])
            return body
        try:
            page = b"".join(body)
        finally:
            getattr(body, "close", lambda: None)()
        page = page.replace(b"</head>", DASHBOARD_STYLE + b"</head>", 1)
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"] + [("Content-Length", str(len(page)))]
        start_response(seen["status"], headers, seen["exc_info"])
        return [page]

    return wrapped


# ---------------------------------------------------------------- after a trial


def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna callback (also callable after `study.tell`): the trial's note, the study plot."""
    save_trial_note(study, trial)
    refresh_study_plot(study)


def trial_note(trial: FrozenTrial, study_id: int | None = None, confirmation: Confirmation | None = None, names: list[str] | None = None) -> str:
    """Markdown for the trial's page: case, verdict with reasons, what was measured, its result
    over several seeds once `gas-nas confirm` retrained it, and (given the study's id) its sample
    grid and loss curves at full size, read from its artifacts."""
    r = TrialRecord.of(trial)
    m = r.metrics
    get = (lambda key: getattr(m, key)) if m else (lambda key: None)
    lines = [f"### Trial {trial.number}" + (f": {case_words(r.case)}" if r.case else f": proposed by a {r.label}" if r.label else "")]
    if trial.state == TrialState.COMPLETE:
        lines.append("**Feasible**: passes the quality guard." if r.feasible else f"**Infeasible**: {r.infeasible_reason or 'fails the quality guard'}.")
    else:
        lines.append(f"**{trial.state.name}**: {r.fail_reason or 'no reason recorded'}.")
    rows = [
        ("Fréchet distance", _fmt(get("fid"), ".1f")),
        ("digits found", _join(_fmt(get("classes"), "d"), "of 10")),
        ("class entropy", _join(_fmt(get("entropy"), ".2f"), "nats (even: 2.30)")),
        ("discriminator", _discrimination(m)),
        ("imbalance", _join(_fmt(get("imbalance"), ".3f"), f"(D loss {_fmt(get('d_loss'), '.3f')}, G loss {_fmt(get('g_loss'), '.3f')}; equilibrium 0.25 / 0.125)")),
        ("size", _join(_fmt(get("d_param_mb"), ".3f"), f"MB ({_fmt(get('d_params'), ',d')} parameters)")),
        ("paper's MB", _join(_fmt(r.paper_mb, "g"), "(GPU memory the paper reported, TensorFlow)")),
        ("supernet", _provenance(r.provenance)),
        ("teacher (training only)", _join(_fmt(get("teacher_mb"), ".3f"), f"MB ({_fmt(get('teacher_params'), ',d')} parameters, sha256 {(get('teacher_sha256') or '')[:12]})") if get("teacher_sha256") else "-"),
        ("iterations", _fmt(get("iterations"), "d")),
        ("seconds", _join(_fmt(get("seconds"), ".1f"), f"(its share of a cohort of {get('cohort')})" if (get("cohort") or 1) > 1 else "")),
        ("device", _join(get("device") or "-", f"on {get('machine')}" if get("machine") else "")),
    ]
    lines += ["", "| measured | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows if v != "-"]
    if confirmation is not None:
        lines += ["", _confirmed_words(confirmation, names or [])]
    if study_id is not None:
        lines += [""] + [f"![{words}](/artifacts/{study_id}/{trial._trial_id}/{artifact})" for words, artifact in _images(trial)]
    return "\n".join(lines) + "\n"


def _images(trial: FrozenTrial) -> list[tuple[str, str]]:
    """(words, artifact id) of the trial's sample grid and loss curves, in that order."""
    import json

    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX

    found = {}
    for key, value in trial.system_attrs.items():
        if key.startswith(ARTIFACTS_ATTR_PREFIX):
            meta = json.loads(value)
            found[meta.get("filename")] = meta.get("artifact_id")
    words = {"samples.png": "sample grid (64 samples, fixed noise)", "losses.png": "loss curves"}
    return [(w, found[name]) for name, w in words.items() if found.get(name)]


def _discrimination(m: Any) -> str:
    """Whether D still tells real from generated (gas_nas.trial.discrimination), in a line; "-" for older trials."""
    if m is None or not math.isfinite(m.d_auc):
        return "-"
    return f"AUC {m.d_auc:.2f} (0.5: cannot tell), spread {m.d_spread:.3g}; mean output real {m.d_real:.3f}, generated {m.d_fake:.3f}"


def _provenance(p: dict | None) -> str:
    """A differentiable proposal's record in a line: its lambda, rank, probability and the supernet's cost."""
    if not p:
        return "-"
    return (f"lambda {p.get('lambda'):g}, rank {p.get('rank', 0) + 1}, probability {p.get('probability', 0):.3f}, "
            f"{p.get('iterations')} iterations in {p.get('supernet_seconds')} s (seed {p.get('seed')})")


def case_words(case: str) -> str:
    """A paper case's name as a heading reads it: "1 original" -> "paper case 1 (original)"."""
    number, _, name = case.partition(" ")
    return f"paper case {number} ({name})" if number.isdigit() and name else f"paper case {case}"


def _confirmed_words(c: Confirmation, names: list[str]) -> str:
    """The note's paragraph on a confirmed trial: kept or refuted, then mean ± spread per seed count."""
    verdict = ("**Confirmed**" if c.kept else "**Refuted by its seeds**: off gas-nas's front") + f": feasible on {c.passes} of {len(c.seeds)} seeds ({', '.join(map(str, c.seeds))})"
    return f"{verdict}; {c.means(names)}."


def save_trial_note(study: optuna.Study, trial: FrozenTrial, confirmation: Confirmation | None = None) -> None:
    """The trial's note where optuna-dashboard keeps notes (study system attributes: a version
    and the markdown in chunks), written at once. optuna-dashboard's `save_note` reads every
    system attribute of the study (every note and the study plot) to find the version, twice,
    which grows with the study; a just-finished trial's note is its first, version 1."""
    from optuna_dashboard._note import note_ver_key, save_note_with_version, split_body

    note = trial_note(trial, study._study_id, confirmation, study.metric_names)
    if confirmation is None:
        write_study_system_attrs(study._storage, study._study_id, {note_ver_key(trial._trial_id): 1, **split_body(note, trial._trial_id)})
        return
    version = study._storage.get_study_system_attrs(study._study_id).get(note_ver_key(trial._trial_id), 0) + 1
    save_note_with_version(study._storage, study._study_id, trial._trial_id, version, note)  # a rewrite: a new version, old chunks cleared


def _fmt(value: Any, spec: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(int(value) if spec.endswith("d") else value, spec)


def _join(value: str, rest: str) -> str:
    return "-" if value == "-" else f"{value} {rest}".rstrip()


# ---------------------------------------------------------------- the study plot


AXIS_WORDS = {  # the study's metric names stay as they are (resume and `show --json` rely on them); plots say them in words
    "d_size_mb": "discriminator size (MB)",
    "imbalance": "D/G loss imbalance",
    "duality_gap": "duality gap",
    "fid": "Fréchet distance",
}
SAME_SPOT = 0.02  # trials closer than this (in decades on both log axes) share one marker spot


def study_figure(study: optuna.Study):
    """Size against imbalance: feasible trials in colour, infeasible and failed ones grey, the
    paper cases labelled inside the plot, the feasible Pareto front (Optuna's `best_trials`, less
    the trials `gas-nas confirm` refuted) as a line, confirmed trials' seed means with error bars. Trials on the same spot are counted ("x2") and listed together on hover; with no
    feasible trial the title and a note in the plot say so and name the closest trial."""
    import plotly.graph_objects as go

    names = study.metric_names or ["d_size_mb", "imbalance"]
    words = [AXIS_WORDS.get(n, n) for n in names[:2]]
    points = [(t, *_xy(t)) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))]
    points = [(t, x, y) for t, x, y in points if x is not None and x > 0 and y > 0]
    spots = _spots(points)
    groups = {
        "feasible": [p for p in points if p[0].state == TrialState.COMPLETE and is_feasible(p[0])],
        "infeasible": [p for p in points if p[0].state == TrialState.COMPLETE and not is_feasible(p[0])],
        "failed": [p for p in points if p[0].state == TrialState.FAIL],
    }
    legend = {"feasible": "feasible", "infeasible": "infeasible: fails the quality guard", "failed": "failed: training diverged or stopped"}
    outline = dict(color="white", width=1)
    style = {"feasible": dict(color="#1f77b4", size=10, line=outline, opacity=0.85), "infeasible": dict(color=GREY, size=10, line=outline, opacity=0.85),
             "failed": dict(color=GREY, size=9, symbol="x")}
    fig = go.Figure()
    for label, group in groups.items():
        fig.add_trace(go.Scatter(x=[p[1] for p in group], y=[p[2] for p in group], mode="markers", name=legend[label], legendgroup=label,
                                 marker=style[label], text=[spots[p[0].number][1] for p in group], hoverinfo="text",
                                 showlegend=bool(group) or label == "feasible"))
    found = confirmations(study)
    front = trusted_front(study, found)
    confirmed = [(n, c) for n, c in found.items() if math.isfinite(c.mean(0)) and c.mean(0) > 0 and c.mean(1) > 0]
    fig.add_trace(go.Scatter(x=[c.mean(0) for _, c in confirmed], y=[c.mean(1) for _, c in confirmed], mode="markers",
                             name="confirmed: mean ± standard deviation over its seeds (gas-nas confirm)", legendgroup="confirmed",
                             marker=dict(symbol="line-ew-open", size=14, color="#2ca02c", line=dict(width=2)),
                             error_y=dict(type="data", array=[_finite(c.spread(1)) for _, c in confirmed], color="#2ca02c", thickness=1.5, width=6),
                             text=[f"trial {n}: {c.describe(names)}" + ("" if c.kept else "; refuted: off the front") for n, c in confirmed],
                             hoverinfo="text", showlegend=bool(confirmed)))
    refuted = [(t, x, y) for t, x, y in points if t.number in found and not found[t.number].kept]
    fig.add_trace(go.Scatter(x=[p[1] for p in refuted], y=[p[2] for p in refuted], mode="markers", name="refuted: fails the guard on most of its seeds",
                             marker=dict(symbol="x-thin-open", size=16, color="#d62728", line=dict(width=2)), hoverinfo="skip", showlegend=bool(refuted)))
    fig.add_trace(go.Scatter(x=[t.values[0] for t in front], y=[t.values[1] for t in front], name="feasible Pareto front" + (", refuted trials left out" if refuted else " (Best Trials)"),
                             mode="lines+markers" if len(study.directions) == 2 else "markers", line=dict(color="#d62728"),
                             marker=dict(color="#d62728", size=14, symbol="circle-open"), hoverinfo="skip"))
    empty = no_feasible_text(study)
    bars = [c.mean(1) + _finite(c.spread(1)) for _, c in confirmed]  # a confirmed trial's error bar stays inside the plot
    xr, yr = _log_range([p[1] for p in points]), _log_range([p[2] for p in points] + bars, top=0.45 if empty else 0.12)  # room for the red note
    cases = [(p, TrialRecord.of(p[0]).case) for p in points if TrialRecord.of(p[0]).case]
    fig.add_trace(go.Scatter(x=[p[1] for p, _ in cases], y=[p[2] for p, _ in cases], mode="markers+text",
                             name="paper cases (numbered as in the GAS write-up; hover for names)", legendgroup="paper cases",
                             text=[case.split()[0] for _, case in cases], hovertext=[case for _, case in cases],  # a number, not a name over other trials
                             textposition=[_label_side(p[1], p[2], xr, yr) for p, _ in cases],
                             textfont=dict(size=11, color="#333333"), cliponaxis=False,
                             marker=dict(symbol="diamond-open", size=18, color="#333333", line=dict(width=1.5)), hoverinfo="text"))
    shared = [(x, y, n) for x, y, n in {(v[0], v[2], v[3]) for v in spots.values()} if n > 1]
    fig.add_trace(go.Scatter(x=[x for x, _, _ in shared], y=[y for _, y, _ in shared], mode="markers+text", text=[f"×{n}" for _, _, n in shared],
                             textposition="bottom right", textfont=dict(size=12, color="#000000"), name="×N: trials on one spot (hover lists them)",
                             marker=dict(size=24, color="rgba(0,0,0,0)"),  # invisible, as wide as a case's diamond: the count sits outside it
                             hoverinfo="skip", showlegend=bool(shared), cliponaxis=False, legendgroup="shared"))
    feasible = len(groups["feasible"])
    complete = feasible + len(groups["infeasible"])
    verdict = f"{feasible} of {complete} complete trials feasible, {len(front)} on the feasible front"
    if empty:
        verdict = f"{complete} complete trials, none feasible yet"
        fig.add_annotation(text=_wrap(empty, 70), xref="paper", yref="paper", x=0.5, y=0.98, showarrow=False, align="left",
                           font=dict(size=12, color="#b22222"), bgcolor="rgba(255,255,255,0.85)", bordercolor="#b22222", borderwidth=1)
    fig.update_layout(
        title=dict(text=f"{words[0][:1].upper() + words[0][1:]} vs {words[1]}<br><sup>{_wrap(verdict, 110)}</sup>", x=0.02, font=dict(size=14)),
        xaxis=dict(title=dict(text=words[0]), type="log", range=xr, **_log_ticks(xr)),
        yaxis=dict(title=dict(text=words[1]), type="log", range=yr, **_log_ticks(yr)),
        template="none", legend=dict(orientation="h", y=-0.22, font=dict(size=11)), margin=dict(l=70, r=20, t=70, b=40),
        hovermode="closest",
    )
    return fig


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def no_feasible_text(study: optuna.Study) -> str | None:
    """When the feasible front is empty: say so, with the trial that came closest (fewest failed
    checks, then lowest Fréchet distance) and its reasons. None when a trial is feasible."""
    found = no_feasible(study)
    if found is None:
        return None
    n, closest = found
    if not n:
        return "no complete trial yet, so no feasible front"
    return f"no feasible trial yet: {n} complete, all fail the quality guard (closest: {closest})"


def no_feasible(study: optuna.Study) -> tuple[int, str] | None:
    """None when a trial is feasible; else (complete trials, "trial K [case]: reasons" of the
    closest one, "" when none is complete): what the plot, the note and `show` say."""
    if study.best_trials:
        return None
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return 0, ""
    best = closest_infeasible(complete)
    r = TrialRecord.of(best)
    case = f" [{r.label}]" if r.label else ""
    return len(complete), f"trial {best.number}{case}: {r.infeasible_reason or 'no reason recorded'}"


def closest_infeasible(trials: list[FrozenTrial]) -> FrozenTrial:
    """The infeasible trial nearest to passing: fewest failed checks, then lowest Fréchet distance."""

    def closeness(t: FrozenTrial) -> tuple:
        r = TrialRecord.of(t)
        return (len(r.infeasible_reason.split("; ")), r.metrics.fid if r.metrics else math.inf)

    return min(trials, key=closeness)


def _spots(points: list) -> dict[int, tuple]:
    """Per trial number: (x, hover text listing every trial on its spot, y, how many share it).
    The spot's marker is its first trial's; others drawn there would hide under it."""
    buckets: dict[tuple, list] = {}
    for t, x, y in points:
        key = (round(math.log10(x) / SAME_SPOT), round(math.log10(y) / SAME_SPOT))
        buckets.setdefault(key, []).append((t, x, y))
    out = {}
    for members in buckets.values():
        text = "<br>".join(_hover(t) for t, _, _ in members)
        if len(members) > 1:
            text = f"{len(members)} trials here:<br>{text}"
        x0, y0 = members[0][1], members[0][2]
        for t, _, _ in members:
            out[t.number] = (x0, text, y0, len(members))
    return out


def _log_range(values: list[float], top: float = 0.06) -> list[float] | None:
    """A log axis range (in decades) with room around the points, more above for labels."""
    if not values:
        return None
    lo, hi = math.log10(min(values)), math.log10(max(values))
    pad = max((hi - lo) * 0.08, 0.05)
    return [lo - pad, hi + pad + max((hi - lo) * top, 0.05)]


def _log_ticks(decades: list[float] | None) -> dict:
    """Tick values 1-2-5 (1-2-3-5 over a short range) labelled in full: plotly's own log ticks
    label 20 as "2" beside the 2 of the decade below."""
    if not decades:
        return {}
    lo, hi = decades
    steps = (1, 2, 3, 5) if hi - lo < 1.5 else (1, 2, 5) if hi - lo < 4 else (1,)
    values = [m * 10.0**e for e in range(math.floor(lo), math.ceil(hi) + 1) for m in steps]
    values = [v for v in values if lo <= math.log10(v) <= hi]
    return dict(tickvals=values, ticktext=[f"{v:.4g}" for v in values])


def _label_side(x: float, y: float, xr: list[float] | None, yr: list[float] | None) -> str:
    """A paper case's label position that keeps it inside the plot: away from the nearer edges."""
    if not xr or not yr:
        return "top center"
    fx = (math.log10(x) - xr[0]) / (xr[1] - xr[0])
    fy = (math.log10(y) - yr[0]) / (yr[1] - yr[0])
    vertical = "bottom" if fy > 0.8 else "top"
    horizontal = "right" if fx < 0.3 else "left" if fx > 0.7 else "center"
    return f"{vertical} {horizontal}"


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "<br>".join(textwrap.wrap(text, width)) or text


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
    head = f"trial {t.number}" + (f" ({r.label})" if r.label else "")
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
    save_study_note(study)


STUDY_NOTE_HEAD = "### gas-nas study"  # a study note that starts otherwise was written by a person: never replaced


def study_note(study: optuna.Study) -> str:
    """Markdown for the study's Note page: where the search stands, and how to read
    optuna-dashboard's own plots (its Pareto front has no axis titles and greys infeasible trials)."""
    names = study.metric_names or ["d_size_mb", "imbalance"]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    front = study.best_trials
    status = no_feasible_text(study) or f"{sum(map(is_feasible, complete))} of {len(complete)} complete trials feasible, {len(front)} on the feasible front"
    axes = ", ".join(f"`{n}` is the {AXIS_WORDS.get(n, n)}" for n in names)
    return "\n".join([
        f"{STUDY_NOTE_HEAD} {study.study_name}",
        "",
        f"**Status**: {status}.",
        "",
        f"- **Pareto front** (optuna-dashboard's plot at the top of the study page): {axes}; all are minimised. "
        "Grey points are infeasible trials: they fail the quality guard (Fréchet distance, digits found, class entropy).",
        "- **Best Trials**: the feasible Pareto front, the trials `gas-nas show` marks with `*`; empty while no trial is feasible.",
        "- **Discriminator size vs D/G loss imbalance** (gas-nas's plot, after optuna-dashboard's own): the paper cases labelled, "
        "infeasible and failed trials grey, the feasible front in red.",
        "- **Each trial's page**: a note with its verdict and what it measured; its sample grid and loss curves under Artifacts.",
        "",
        "gas-nas rewrites this note after trials; edit its first line and it is left alone.",
    ]) + "\n"


def save_study_note(study: optuna.Study) -> None:
    """Write `study_note` unless a person has written the study's note, or it already says the same."""
    from optuna_dashboard import save_note
    from optuna_dashboard._note import get_note_from_system_attrs

    current = get_note_from_system_attrs(study._storage.get_study_system_attrs(study._study_id), None)["body"]
    if current and not current.startswith(STUDY_NOTE_HEAD):
        return
    body = study_note(study)
    if body != current:
        save_note(study, body)


_WARNED: list[bool] = []  # the missing-plotly warning is printed once per process
