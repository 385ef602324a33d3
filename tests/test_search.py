"""`gas-nas search/show/export/dashboard` end to end on CPU with a tiny budget and temp SQLite."""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import sys
import time
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.trial import TrialState

from conftest import write_tiny_space
from gas_nas.common.machine import cpu_model
from gas_nas.models.networks import build_discriminator
from gas_nas.models.recipes import RECIPE_KEYS
from gas_nas.models.space import load_space
from gas_nas.models.spec import DiscriminatorSpec, load_arch
from gas_nas.study.record import TrialRecord
from gas_nas.trial.metrics import param_count

CASES = [c.name for c in load_space().cases]


def gas_nas(args, env, cwd, timeout=600, check=True):
    proc = subprocess.run([sys.executable, "-m", "gas_nas.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def searched(tmp_path_factory, cli_env):
    """A 7-trial search, then the same command again with 2 more trials."""
    root = tmp_path_factory.mktemp("search")
    space = write_tiny_space(root / "tiny.yaml")
    common = ["--space", str(space), "--storage", f"sqlite:///{root}/s.db", "--study", "s", "--artifacts", str(root / "art"), "--device", "cpu", "--seed", "7"]
    first = gas_nas(["search", "--trials", "7", *common], cli_env, root)
    after_first = optuna.load_study(study_name="s", storage=f"sqlite:///{root}/s.db").get_trials()
    second = gas_nas(["search", "--trials", "2", *common], cli_env, root)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{root}/s.db")
    return {"root": root, "space": space, "first": first, "second": second, "after_first": after_first, "study": study, "env": cli_env, "common": common}


def test_first_search_runs_the_six_paper_cases_first(searched):
    trials = searched["after_first"]
    assert len(trials) == 7 and all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.user_attrs.get("case") for t in trials[:6]] == CASES
    assert trials[6].user_attrs.get("case") is None
    study = searched["study"]
    assert study.metric_names == ["d_size_mb", "imbalance"]
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]


def test_rerun_resumes_and_adds_trials_without_new_cases(searched):
    trials = searched["study"].get_trials()
    assert len(trials) == 9 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.user_attrs["case"] for t in trials if t.user_attrs.get("case")) == sorted(CASES)


def test_every_trial_records_params_metrics_feasibility_and_artifacts(searched):
    root = searched["root"]
    assert searched["study"].user_attrs["gas_nas:artifacts"] == "art"  # relative to s.db's folder: the dashboard finds it
    for t in searched["study"].get_trials():
        a, r = t.user_attrs, TrialRecord.of(t)
        assert {"spec", "train", "metrics", "feasible"} <= set(a)  # the measurements are one attribute
        assert r.metrics.d_losses and r.metrics.classes >= 0 and r.feasible is True
        assert t.values[0] == pytest.approx(r.metrics.d_param_mb) and t.values[1] == pytest.approx(r.metrics.imbalance)
        assert set(t.params) <= set(r.spec)
        assert r.train["recipe"] == "gas" and not set(r.train) & set(RECIPE_KEYS)  # the recipe, and the space has no overrides
        metas = optuna.artifacts.get_all_artifact_meta(t, storage=searched["study"]._storage)
        assert sorted(m.filename for m in metas) == ["losses.png", "samples.png"]
        for m in metas:
            assert (root / "art" / m.artifact_id).read_bytes()[:4] == b"\x89PNG"


def test_output_is_plain_when_not_a_terminal(searched):
    out = searched["first"].stdout
    assert "trial 0 [1 original] COMPLETE d_size_mb=" in out
    assert "training: recipe gas (space), iterations 3 (space), batch_size 8 (space), log_every 1 (space); precedence: flags > arch file > space" in out
    assert "Pareto front" in out and "Trial 0 finished" not in out + searched["first"].stderr
    header = next(line for line in out.splitlines() if "trial" in line and "case" in line and "┃" in line)
    assert all(f" {col} " in header for col in ("d_size_mb", "imbalance", "fid", "classes", "params", "feasible"))  # no cut headers in a pipe


def test_search_says_what_is_queued_and_how_long_the_rest_takes(searched):
    first, second = searched["first"].stdout, searched["second"].stdout
    assert "new study; the 6 paper cases are queued as its first trials" in first.splitlines()[1]  # after the training line
    lines = [line for line in first.splitlines() if line.startswith("trial ")]
    assert len(lines) == 7 and all("; took " in line for line in lines)
    assert "left for 6 more" in lines[0] and "left for 1 more" in lines[5] and "left" not in lines[6]
    assert "7 complete" in second.splitlines()[1] and "queued" not in second.splitlines()[1]
    assert "no feasible trial" not in first


def test_dashboard_notes_and_plot_are_written_by_the_search(searched):
    from gas_nas.study.dashboard import PLOT_ID

    study = searched["study"]
    attrs = study._storage.get_study_system_attrs(study._study_id)
    assert any(k.startswith(f"dashboard:plot_data:{PLOT_ID}:") for k in attrs)
    for t in study.trials:
        note = "".join(v for k, v in sorted(attrs.items()) if k.startswith(f"dashboard:{t._trial_id}:note_str:"))
        assert f"### Trial {t.number}" in note and "**Feasible**" in note and f"| device | cpu on {platform.node()} ({cpu_model()}, " in note  # which machine trained it
        case = t.user_attrs.get("case")
        number, _, name = (case or "").partition(" ")
        assert f"paper case {number} ({name})" in note if case else "paper case" not in note


def test_show_json_lists_front_and_cases(searched):
    proc = gas_nas(["show", "--storage", f"sqlite:///{searched['root']}/s.db", "--study", "s", "--json"], searched["env"], searched["root"])
    shown = json.loads(proc.stdout)
    front = {t.number for t in searched["study"].best_trials}
    assert {r["trial"] for r in shown["front"]} == front
    assert [r["case"] for r in shown["cases"]] == CASES


def test_export_then_train_rebuilds_the_same_discriminator(searched):
    root, env = searched["root"], searched["env"]
    storage = ["--storage", f"sqlite:///{root}/s.db", "--study", "s"]
    gas_nas(["export", "--trial", "2", *storage, "-o", str(root / "t2.yaml")], env, root)
    spec, train, meta = load_arch(root / "t2.yaml")
    trial = searched["study"].trials[2]
    assert meta["trial"] == 2 and meta["study"] == "s" and meta["case"] == CASES[2]
    d_params = TrialRecord.of(trial).metrics.d_params
    assert param_count(build_discriminator(spec)) == d_params
    proc = gas_nas(["train", "--arch", str(root / "t2.yaml"), "--iterations", "1", "--device", "cpu", "--out", str(root / "rt"), "--json"], env, root)
    assert json.loads(proc.stdout)["d_params"] == d_params
    gas_nas(["export", "--pick", "smallest", *storage, "-o", str(root / "small.yaml")], env, root)
    _, _, meta = load_arch(root / "small.yaml")
    best = min(searched["study"].best_trials, key=lambda t: t.values[0])
    assert meta["trial"] == best.number and meta["metrics"]["feasible"] is True


def test_export_pick_refuses_when_nothing_is_feasible(tmp_path, cli_env):
    space = write_tiny_space(tmp_path / "strict.yaml", quality={"max_fid": 0.001})
    storage = f"sqlite:///{tmp_path}/x.db"
    gas_nas(["search", "--trials", "1", "--space", str(space), "--storage", storage, "--artifacts", str(tmp_path / "a")], cli_env, tmp_path)
    study = optuna.load_study(study_name="gas", storage=storage)
    t = study.trials[0]
    assert t.user_attrs["feasible"] is False and "fid" in t.user_attrs["infeasible_reason"]
    assert study.best_trials == [] and t.constraints["fid"] > 0
    first = gas_nas(["show", "--storage", storage], cli_env, tmp_path).stdout
    # the same words as the dashboard's status line
    assert "no feasible trial yet: 1 complete, all fail the quality guard (closest: trial 0 [1 original]: fid" in first
    proc = gas_nas(["export", "--pick", "balanced", "--storage", storage, "-o", str(tmp_path / "x.yaml")], cli_env, tmp_path, check=False)
    assert proc.returncode == 2 and "no feasible" in proc.stderr and "Traceback" not in proc.stderr
    assert "closest is trial 0 [1 original] (fid" in proc.stderr and "export it anyway with --trial 0" in proc.stderr


def test_dashboard_app_lists_the_study_and_serves_a_png(searched):
    import re

    from optuna.artifacts import FileSystemArtifactStore

    from gas_nas.study.dashboard import DASHBOARD_STYLE, dashboard_app

    study = searched["study"]
    app = dashboard_app(study._storage, artifact_store=FileSystemArtifactStore(str(searched["root"] / "art")))

    def get(url):
        path, _, query = url.partition("?")
        env = {"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": "GET"}
        setup_testing_defaults(env)
        status = []
        body = b"".join(app(env, lambda s, h, *a: status.append((s, dict(h)))))
        return status[0][0], status[0][1], body

    status, _, body = get("/api/studies")
    assert status.startswith("200") and "s" in [s["study_name"] for s in json.loads(body)["study_summaries"]]
    trial = study.trials[0]
    meta = optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)[0]
    status, headers, body = get(f"/artifacts/{study._study_id}/{trial._trial_id}/{meta.artifact_id}")
    assert status.startswith("200") and body[:4] == b"\x89PNG"
    # every page carries the style that keeps it inside the window
    status, headers, body = get(f"/dashboard/studies/{study._study_id}/trials")
    assert status.startswith("200") and DASHBOARD_STYLE + b"</head>" in body and int(headers["Content-Length"]) == len(body)
    # the note shows the sample grid and loss curves at full size, from URLs the app serves
    _, _, body = get(f"/api/studies/{study._study_id}?after=0")
    note = json.loads(body)["trials"][0]["note"]["body"]
    links = re.findall(r"!\[(sample grid|loss curves)[^\]]*\]\(([^)]+)\)", note)
    assert [w for w, _ in links] == ["sample grid", "loss curves"]
    for _, url in links:
        status, headers, body = get(url)
        assert status.startswith("200") and body[:4] == b"\x89PNG"


def test_diverging_trials_are_failed_with_reason_and_search_finishes(tmp_path, cli_env):
    space = write_tiny_space(tmp_path / "wild.yaml", train={"lr": 1e30, "iterations": 4})
    storage = f"sqlite:///{tmp_path}/d.db"
    proc = gas_nas(["search", "--trials", "2", "--space", str(space), "--storage", storage, "--artifacts", str(tmp_path / "a")], cli_env, tmp_path)
    trials = optuna.load_study(study_name="gas", storage=storage).trials
    assert [t.state for t in trials[:2]] == [TrialState.FAIL, TrialState.FAIL]
    assert all("not finite" in t.user_attrs["fail_reason"] for t in trials[:2])
    assert "FAIL: loss is not finite" in proc.stdout


def _wait_for_training(storage: str, count: int, proc: subprocess.Popen) -> None:
    """Until `count` trials are RUNNING with their architecture recorded (training has begun)."""
    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        try:
            running = optuna.load_study(study_name="gas", storage=storage).get_trials(states=(TrialState.RUNNING,))
        except KeyError:
            running = []
        if len([t for t in running if "spec" in t.user_attrs]) >= count:
            return
        time.sleep(0.5)
    proc.kill()
    pytest.fail("training did not start in time")


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_fails_the_running_cohort_and_resume_completes_every_paper_case(sig, code, tmp_path, cli_env):
    space = write_tiny_space(tmp_path / "slow.yaml", train={"iterations": 400})
    storage = f"sqlite:///{tmp_path}/i.db"
    common = ["--space", str(space), "--storage", storage, "--artifacts", str(tmp_path / "a")]
    args = [sys.executable, "-m", "gas_nas.cli", "search", "--trials", "2", "--cohort", "2", *common]
    proc = subprocess.Popen(args, env=cli_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_training(storage, 2, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code and "Resume with: gas-nas search" in err and "Traceback" not in err
    study = optuna.load_study(study_name="gas", storage=storage)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    first_two = study.trials[:2]
    assert [t.state for t in first_two] == [TrialState.FAIL, TrialState.FAIL]
    assert [t.user_attrs["fail_reason"] for t in first_two] == ["interrupted", "interrupted"]
    waiting = [t.user_attrs.get("case") for t in study.get_trials(states=(TrialState.WAITING,))]
    assert sorted(waiting) == sorted(CASES)  # the two interrupted cases are queued again
    if sig == signal.SIGINT:
        return  # the two signals differ only up to here; the resume is checked once (SIGTERM)
    gas_nas(["search", "--trials", "2", "--cohort", "2", *common], cli_env, tmp_path)  # at the study's budget: a resume keeps it
    study = optuna.load_study(study_name="gas", storage=storage)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    complete = [t.user_attrs.get("case") for t in study.get_trials(states=(TrialState.COMPLETE,))]
    still = [t.user_attrs.get("case") for t in study.get_trials(states=(TrialState.WAITING,))]
    assert len(complete) == 2 and sorted(complete + still) == sorted(CASES)  # every case done or queued, none lost


def test_a_stop_asked_right_after_a_trial_completes_ends_the_search_cleanly(tmp_path, mnist_dir, mnist_classifier):
    """The race of a Ctrl-C landing between trials: the search finishes telling the cohort it
    is in, asks for no more, and leaves nothing RUNNING."""
    from gas_nas.common.interrupt import Interrupted
    from gas_nas.study.search import Resources, SearchOptions, open_study, run_search
    from gas_nas.trial.data import load_mnist

    space = load_space(write_tiny_space(tmp_path / "tiny.yaml"))
    study = open_study(space, f"sqlite:///{tmp_path}/r.db", "race")
    real, _ = load_mnist(mnist_dir, train=True)
    held_out, _ = load_mnist(mnist_dir, train=False)
    stop = []
    opts = SearchOptions(artifacts=str(tmp_path / "a"), cohort=2, should_stop=lambda: bool(stop), callbacks=[lambda s, t: stop.append(t.number)])
    with pytest.raises(Interrupted):
        run_search(study, space, opts, Resources(real[:2000], held_out[:500], mnist_classifier), n_trials=6)
    states = [t.state for t in study.trials]
    assert states[:2] == [TrialState.COMPLETE, TrialState.COMPLETE] and TrialState.RUNNING not in states
    assert stop == [0, 1] and states[2:] == [TrialState.WAITING] * 4


def test_cohort_search_keeps_paper_cases_first_and_records_the_cohort(tmp_path, cli_env):
    space = write_tiny_space(tmp_path / "tiny.yaml", search={"cohort": 3})
    storage = f"sqlite:///{tmp_path}/c.db"
    proc = gas_nas(["search", "--trials", "7", "--space", str(space), "--storage", storage, "--artifacts", str(tmp_path / "a")], cli_env, tmp_path)
    assert "cohort 3" in proc.stdout
    assert f"training cohort of 3: trials 0 ({CASES[0]}), 1 ({CASES[1]}), 2 ({CASES[2]})" in proc.stdout
    trials = optuna.load_study(study_name="gas", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 7
    assert [t.user_attrs.get("case") for t in trials[:6]] == CASES and trials[6].user_attrs.get("case") is None
    assert [TrialRecord.of(t).metrics.cohort for t in trials] == [3, 3, 3, 3, 3, 3, 1]  # 7 = 3 + 3 + 1
    assert [TrialRecord.of(t).metrics.seed for t in trials] == list(range(7))


def test_a_cohort_out_of_cuda_memory_is_split_until_its_trials_fit(monkeypatch):
    """OOM for a cohort of 4 (and of 2): halves are retried; a trial that never fits fails alone."""
    import torch

    import gas_nas.trial.train
    from gas_nas.study.search import Resources, SearchOptions, train_specs

    sizes = []

    def fake_run_cohort(specs, seeds, *args, **kwargs):
        sizes.append(len(specs))
        if len(specs) > 1 or seeds == [13]:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [f"trained {seeds[0]}"]

    monkeypatch.setattr(gas_nas.trial.train, "run_cohort", fake_run_cohort)
    space = load_space()
    out = train_specs(space, SearchOptions(), Resources(real=None, held_out=None, classifier=None), [space.cases[0].spec] * 4, [10, 11, 12, 13])
    assert out == ["trained 10", "trained 11", "trained 12", "CUDA out of memory"]
    assert sizes == [4, 2, 1, 1, 2, 1, 1]


def test_a_cohort_too_big_for_memory_is_split_before_it_is_built_and_a_trial_too_big_fails(monkeypatch):
    """The memory preflight (gas_nas.trial.memory) splits a cohort in halves until each part fits the
    budget; a trial that would not fit alone fails with the estimate and the search goes on."""
    import torch

    import gas_nas.trial.train
    from gas_nas.study.search import Resources, SearchOptions, train_specs
    from gas_nas.trial.memory import MB, Available, estimate

    built = []

    def fake_run_cohort(specs, seeds, *args, **kwargs):
        built.append(seeds)
        return [f"trained {s}" for s in seeds]

    monkeypatch.setattr(gas_nas.trial.train, "run_cohort", fake_run_cohort)
    space = load_space()
    small, huge = space.cases[5].spec, DiscriminatorSpec(base_filters=1024, depth=5)
    budget = Available(estimate([small] * 2, space.train, space.quality).peak + MB, "test")
    resources = Resources(real=torch.empty(0), held_out=None, classifier=None)
    out = train_specs(space, SearchOptions(memory=budget), resources, [small] * 4 + [huge], [10, 11, 12, 13, 14])
    assert out[:4] == ["trained 10", "trained 11", "trained 12", "trained 13"]
    assert out[4].startswith("not enough memory: this trial needs at least") and "available (test)" in out[4]
    assert built == [[10, 11], [12], [13]]  # 5 = 2 + 3, 3 = 1 + 2, 2 = 1 + 1: the huge one is never built


def test_a_stop_ends_its_block_and_says_by_which_signal_while_other_errors_pass_through():
    """StopRequest is what search, the trial loop and confirm wrap their work in: a stop
    (Interrupted at a safe point, or KeyboardInterrupt on a second signal) ends the block with
    `stopped` set and the exit code of the signal; any other error is not a stop."""
    import signal

    from gas_nas.common.interrupt import Interrupted, StopRequest

    with (stop := StopRequest()):
        stop._handle(signal.SIGTERM, None)
        assert stop()
        raise Interrupted
    assert stop.stopped and stop.exit_code == 143 and stop.by == "stopped by SIGTERM"
    with (ctrl_c := StopRequest()):
        raise KeyboardInterrupt  # before any handler saw a signal: Ctrl-C
    assert ctrl_c.stopped and ctrl_c.exit_code == 130 and ctrl_c.by == "stopped by SIGINT"
    with pytest.raises(ValueError), (other := StopRequest()):
        raise ValueError("not a stop")
    assert not other.stopped
    before = signal.getsignal(signal.SIGTERM)
    with (calm := StopRequest()):
        assert signal.getsignal(signal.SIGTERM) == calm._handle  # this block's handler while it runs ...
    assert not calm.stopped and signal.getsignal(signal.SIGTERM) == before  # ... and the previous one after
