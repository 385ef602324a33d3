"""A search's bookkeeping: records in few writes (both layouts readable), a study plot refreshed
at a bounded rate, and recording overlapped with training that a stop or a kill never leaves
half done. Training is replaced by a stub, so every test here runs in seconds on a CPU."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from conftest import write_tiny_space
from gas_nas.common.interrupt import Interrupted
from gas_nas.models.space import load_space
from gas_nas.models.spec import DiscriminatorSpec
from gas_nas.study.bookkeeping import AtomicFileStore, Recorder, StudyPlot
from gas_nas.study.dashboard import PLOT_ID, constraint_attrs
from gas_nas.study.record import TrialRecord, _jsonable
from gas_nas.study.search import Resources, SearchOptions, open_study, run_search, trial_row
from gas_nas.trial.guard import CONSTRAINT_NAMES
from gas_nas.trial.train import TrialMetrics, TrialOutcome

TESTS = Path(__file__).resolve().parent
NO_RESOURCES = Resources(real=None, held_out=None, classifier=None)


def metrics(seed: int = 0, fid: float = 40.0) -> TrialMetrics:
    return TrialMetrics(status="complete", reason="", iterations=3, d_params=1000 + seed, d_param_mb=0.5 + seed / 100, imbalance=0.2 + seed / 50,
                        d_loss=0.24, g_loss=0.13, fid=fid, classes=9, entropy=2.1, class_histogram=[6] * 10, classifier_accuracy=0.99,
                        seconds=0.01, device="cpu", seed=seed, log_steps=[1, 2, 3], d_losses=[0.3, 0.25, 0.24], g_losses=[0.1, 0.12, 0.13], duality_gap=math.nan)


def fake_training(calls: list | None = None, seconds: float = 0.0, interrupt_at: int | None = None):
    """Stands in for `gas_nas.trial.train.run_cohort`: made-up outcomes, or `Interrupted` on call `interrupt_at`."""

    def run_cohort(specs, seeds, *args, **kwargs):
        if calls is not None:
            calls.append(list(seeds))
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise Interrupted
        time.sleep(seconds)
        return [TrialOutcome(metrics(s), None, None, torch.rand(64, 1, 28, 28) * 2 - 1) for s in seeds]

    return run_cohort


def _study(tmp_path: Path, storage: str | None = None) -> tuple[optuna.Study, object]:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(write_tiny_space(tmp_path / "tiny.yaml"))
    return open_study(space, storage or f"sqlite:///{tmp_path}/b.db", "b", sampler="random"), space


def _plot(study: optuna.Study) -> dict:
    attrs = study._storage.get_study_system_attrs(study._study_id)
    prefix = f"dashboard:plot_data:{PLOT_ID}:"
    chunks = sorted((int(k[len(prefix):]), v) for k, v in attrs.items() if k.startswith(prefix))
    return json.loads("".join(v for _, v in chunks))


def _plotted(study: optuna.Study) -> int:
    return sum(len(t["x"]) for t in _plot(study)["data"] if t["name"] in ("feasible", "infeasible", "failed"))


def assert_whole(study: optuna.Study, artifacts: Path) -> None:
    """Every COMPLETE trial has its record, constraints, note and two whole PNG artifacts."""
    attrs = study._storage.get_study_system_attrs(study._study_id)
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        r = TrialRecord.of(t)
        assert r.spec and r.metrics and r.feasible is True, t.number
        assert t.constraints["fid"] < 0 and t.system_attrs["constraints"] == [t.constraints[k] for k in CONSTRAINT_NAMES]
        assert attrs.get(f"dashboard:{t._trial_id}:note_ver") == 1 and f"### Trial {t.number}" in attrs[f"dashboard:{t._trial_id}:note_str:0"]
        metas = optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)
        assert sorted(m.filename for m in metas) == ["losses.png", "samples.png"], t.number
        for m in metas:
            data = (artifacts / m.artifact_id).read_bytes()
            assert data[:4] == b"\x89PNG" and data[-8:-4] == b"IEND", (t.number, m.filename)  # whole: the PNG's last chunk is there


# ---------------------------------------------------------------- the record


def _old_layout(record: TrialRecord) -> dict:
    """The user attributes gas-nas wrote before the metrics became one attribute: one per metric."""
    attrs = {k: v for k, v in {"case": record.case, "paper_mb": record.paper_mb, "spec": record.spec, "train": record.train,
                               "feasible": record.feasible, "infeasible_reason": record.infeasible_reason}.items() if v not in (None, "")}
    return attrs | {k: _jsonable(v) for k, v in record.metrics.to_dict().items()}


def test_a_record_written_the_new_way_and_the_old_way_reads_back_equal(tmp_path):
    space = load_space()
    record = TrialRecord(case="1 original", paper_mb=18.7, spec=DiscriminatorSpec().to_dict(), train=space.train.to_dict(),
                         metrics=metrics(3, fid=math.inf), feasible=False, infeasible_reason="fid inf > 2000")
    new = record.to_attrs()
    assert "metrics" in new and "fid" not in new and new["metrics"]["fid"] == "inf"  # one structured attribute, JSON-safe
    old = _old_layout(record)
    assert TrialRecord.from_attrs(new).to_attrs() == TrialRecord.from_attrs(old).to_attrs() == new

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/r.db", study_name="r", directions=["minimize", "minimize"])
    trial = study.ask()
    record.write(trial)  # the new way, through the storage
    study.tell(trial, [1.0, 1.0])
    study.add_trial(optuna.trial.create_trial(values=[1.0, 1.0], user_attrs=old))  # a study from before
    written, legacy = study.get_trials()
    assert TrialRecord.of(written).to_attrs() == TrialRecord.of(legacy).to_attrs() == new
    row_new, row_old = (trial_row(t, ["d_size_mb", "imbalance"], set()) for t in (written, legacy))
    assert {k: v for k, v in row_new.items() if k != "trial"} == {k: v for k, v in row_old.items() if k != "trial"}  # what show prints
    assert row_new["fid"] == math.inf and row_new["d_params"] == 1003


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_record_and_its_constraints_reach_the_storage_whole(tmp_path, kind):
    url = f"sqlite:///{tmp_path}/w.db" if kind == "sqlite" else f"journal:{tmp_path}/w.journal"
    from gas_nas.study.storage import open_storage

    study = optuna.create_study(storage=open_storage(url), study_name="w", directions=["minimize", "minimize"])
    trial = study.ask()
    commits = []
    if kind == "sqlite":
        import sqlalchemy

        sqlalchemy.event.listen(study._storage._backend.engine, "commit", lambda conn: commits.append(1))
    record = TrialRecord(metrics=metrics(1), feasible=True)
    record.write(trial, constraint_attrs({"fid": -10.0, "classes": 0.0}))
    assert TrialRecord.of(trial).to_attrs() == record.to_attrs()  # the running trial sees what it wrote
    if kind == "sqlite":
        assert len(commits) == 1  # record and constraints: one transaction (it was one per key)
    frozen = study.tell(trial, [1.0, 2.0])
    assert TrialRecord.of(frozen).to_attrs() == record.to_attrs()
    assert frozen.constraints == {"0": -10.0, "1": 0.0, "fid": -10.0, "classes": 0.0}
    assert study.best_trials == [frozen]


def test_a_trials_sampled_parameters_are_one_write(tmp_path):
    import sqlalchemy

    from gas_nas.models.space import sample
    from gas_nas.study.storage import ParamBuffer, open_storage

    space = load_space()
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path}/p.db"), study_name="p", directions=["minimize", "minimize"])
    trial = study.ask()
    log = []
    engine = study._storage._backend.engine
    sqlalchemy.event.listen(engine, "commit", lambda conn: log.append("COMMIT"))
    sqlalchemy.event.listen(engine, "before_cursor_execute", lambda conn, cursor, sql, *a: log.append(sql.split()[0].upper()))
    trial.storage = buffer = ParamBuffer(trial.storage)
    spec = sample(trial, space)
    trial.storage = buffer.storage
    assert "INSERT" not in log and len(buffer.params) >= 8  # nothing written while sampling
    del log[:]
    buffer.flush()
    assert log.count("INSERT") == len(trial.params) and log.count("COMMIT") == 1  # then all in one transaction
    stored = optuna.load_study(study_name="p", storage=f"sqlite:///{tmp_path}/p.db").trials[0]
    assert stored.params == trial.params and stored.distributions == trial.distributions
    assert sample(optuna.trial.FixedTrial(stored.params), space) == spec  # the stored parameters rebuild the spec


# ---------------------------------------------------------------- the study plot


def test_study_plot_is_refreshed_at_a_bounded_rate():
    now = [0.0]
    refreshed = []

    def refresh():
        refreshed.append(now[0])
        now[0] += 1.0  # a rebuild that takes 1 s: then at most one every 20 s

    plot = StudyPlot(refresh, interval=5.0, share=0.05, clock=lambda: now[0])
    for _ in range(30):
        plot.trial_done()
        now[0] += 1.0
    assert refreshed == [0.0, 21.0]  # the first trial at once, the next 20 rebuild-times after the first ended
    plot.flush()
    assert refreshed[-1] == 32.0  # the end of a search: always
    plot.flush()
    assert len(refreshed) == 3  # nothing new since: no rebuild


def test_the_plot_is_refreshed_at_the_end_of_a_search_and_after_a_stop(tmp_path, monkeypatch):
    import gas_nas.study.search
    import gas_nas.trial.train

    study, space = _study(tmp_path)
    refreshes = []
    real_refresh = gas_nas.study.search.refresh_study_plot
    monkeypatch.setattr(gas_nas.study.search, "refresh_study_plot", lambda s: (refreshes.append(len(s.trials)), real_refresh(s)))
    monkeypatch.setattr(gas_nas.trial.train, "run_cohort", fake_training())
    opts = SearchOptions(artifacts=str(tmp_path / "a"), plot_interval=3600.0)
    run_search(study, space, opts, NO_RESOURCES, n_trials=4)
    assert len(refreshes) == 2 and _plotted(study) == 4  # after the first trial, and at the end with all four

    calls = []
    monkeypatch.setattr(gas_nas.trial.train, "run_cohort", fake_training(calls, interrupt_at=3))
    with pytest.raises(Interrupted):
        run_search(study, space, opts, NO_RESOURCES, n_trials=4)
    assert len(refreshes) == 4 and _plotted(study) == 6  # the two trials before the stop are on it
    assert "6 of 6 complete trials feasible" in _plot(study)["layout"]["title"]["text"]


# ---------------------------------------------------------------- recording overlapped with training


def test_with_overlap_a_cohort_is_recorded_while_the_next_trains_and_a_stop_loses_nothing(tmp_path, monkeypatch):
    import gas_nas.study.search
    import gas_nas.trial.train

    study, space = _study(tmp_path)
    calls, events = [], []
    note = gas_nas.study.search.save_trial_note

    def slow_note(s, t):
        events.append(("recorded", t.number, threading.current_thread() is threading.main_thread()))
        time.sleep(0.2)  # recording outlasts the next cohort's start
        note(s, t)

    train = fake_training(calls, interrupt_at=4)
    monkeypatch.setattr(gas_nas.study.search, "save_trial_note", slow_note)
    monkeypatch.setattr(gas_nas.trial.train, "run_cohort", lambda specs, seeds, *a, **k: (events.append(("train", seeds[0])), train(specs, seeds))[1])
    opts = SearchOptions(artifacts=str(tmp_path / "a"), cohort=2, overlap=True, plot_interval=3600.0)
    with pytest.raises(Interrupted):
        run_search(study, space, opts, NO_RESOURCES, n_trials=10)
    assert calls == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert events.index(("train", 2)) < events.index(("recorded", 1, False))  # cohort 2 trained while cohort 1 was recorded
    assert {e for e in events if e[0] == "recorded" and e[1] < 6} == {("recorded", n, False) for n in range(6)}  # on the worker
    states = [t.state for t in study.trials]
    assert states[:6] == [TrialState.COMPLETE] * 6 and states[6:8] == [TrialState.FAIL] * 2 and TrialState.RUNNING not in states
    assert [TrialRecord.of(t).fail_reason for t in study.trials[6:8]] == ["interrupted"] * 2
    assert_whole(study, tmp_path / "a")
    assert _plotted(study) == 6


def test_until_with_overlap_completes_exactly_that_many_trials(tmp_path, monkeypatch):
    """Trials still being recorded count toward --until, so no cohort is trained in vain."""
    import gas_nas.trial.train

    study, space = _study(tmp_path)
    calls = []
    monkeypatch.setattr(gas_nas.trial.train, "run_cohort", fake_training(calls))
    run_search(study, space, SearchOptions(artifacts=str(tmp_path / "a"), cohort=2, overlap=True), NO_RESOURCES, n_trials=None, until=5)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 5 + [TrialState.WAITING] and sum(map(len, calls)) == 5  # the 6th paper case waits


def test_a_trial_finished_after_another_worker_reached_until_is_pruned_with_its_reason(tmp_path, monkeypatch):
    """Another worker completing the last trial while this one trained: the extra trial is not
    counted, and `show`'s line says why instead of "no reason recorded"."""
    import gas_nas.trial.train
    from gas_nas.progress import trial_line

    study, space = _study(tmp_path)
    train = fake_training()

    def another_worker_finishes_first(specs, seeds, *args, **kwargs):
        study.add_trial(optuna.trial.create_trial(values=[1.0, 1.0], state=TrialState.COMPLETE))
        return train(specs, seeds)

    monkeypatch.setattr(gas_nas.trial.train, "run_cohort", another_worker_finishes_first)
    run_search(study, space, SearchOptions(artifacts=str(tmp_path / "a"), cohort=1), NO_RESOURCES, n_trials=None, until=1)
    ours = study.trials[0]
    assert [t.state for t in study.trials if t.state != TrialState.WAITING] == [TrialState.PRUNED, TrialState.COMPLETE]  # the other paper cases wait
    assert "not counted: the study reached --until 1 complete trials" in trial_line(study, ours)


def test_a_recording_error_stops_the_search_with_that_error(tmp_path, monkeypatch):
    import gas_nas.study.search
    import gas_nas.trial.train

    study, space = _study(tmp_path)
    monkeypatch.setattr(gas_nas.trial.train, "run_cohort", fake_training())
    monkeypatch.setattr(gas_nas.study.search, "save_trial_note", lambda s, t: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(OSError, match="disk gone"):
        run_search(study, space, SearchOptions(artifacts=str(tmp_path / "a"), overlap=True), NO_RESOURCES, n_trials=3)
    assert threading.active_count() == 1 or not any(t.name.startswith("gas-nas-recorder") for t in threading.enumerate())


def test_recorder_runs_jobs_in_order_with_a_bounded_queue():
    order, gate = [], threading.Event()
    with Recorder(overlap=True) as rec:
        rec.submit(lambda: (gate.wait(5), order.append(1)))
        started = time.monotonic()
        threading.Timer(0.3, gate.set).start()
        rec.submit(lambda: order.append(2))  # waits for job 1: one job in flight at most
        assert time.monotonic() - started >= 0.25
        rec.drain()
    assert order == [1, 2]


def test_an_artifact_is_written_whole_or_not_at_all(tmp_path):
    class Broken(io.BytesIO):
        def read(self, *args):
            if self.tell() > 0:
                raise OSError("disk full")
            return super().read(4)

    store = AtomicFileStore(tmp_path)
    with pytest.raises(OSError):
        store.write("a1", Broken(b"\x89PNG...."))
    assert list(tmp_path.iterdir()) == []
    store.write("a2", io.BytesIO(b"whole"))
    assert (tmp_path / "a2").read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == ["a2"]


CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
import gas_nas.study.search, gas_nas.trial.train
from test_bookkeeping import _study, fake_training, NO_RESOURCES
from gas_nas.study.search import SearchOptions, run_search
from pathlib import Path

study, space = _study(Path({tmp!r}))
gas_nas.trial.train.run_cohort = fake_training(seconds=0.05)
attrs, calls = gas_nas.study.search.constraint_attrs, []

def stuck_third(c):  # between trial 2's artifacts and its record: say so, and wait for the kill
    calls.append(1)
    if len(calls) == 3:
        Path({marker!r}).write_text("recording")
        time.sleep(120)
    return attrs(c)

gas_nas.study.search.constraint_attrs = stuck_third
run_search(study, space, SearchOptions(artifacts={art!r}, overlap=True, plot_interval=0.0), NO_RESOURCES, n_trials=50)
"""


def test_a_search_killed_while_recording_leaves_every_complete_trial_whole(tmp_path):
    """SIGKILL lands after a trial's artifacts are stored and before it is told: that trial is
    not COMPLETE (it stays RUNNING for the heartbeat check), and every COMPLETE one is whole."""
    art, marker = tmp_path / "a", tmp_path / "marker"
    code = CHILD.format(tests=str(TESTS), tmp=str(tmp_path), art=str(art), marker=str(marker))
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert marker.exists(), proc.stderr.read()[-3000:]
    study = optuna.load_study(study_name="b", storage=f"sqlite:///{tmp_path}/b.db")
    states = [t.state for t in study.trials]
    assert states[:2] == [TrialState.COMPLETE] * 2 and states[2] == TrialState.RUNNING and TrialState.COMPLETE not in states[2:]
    caught = study.trials[2]
    assert len(optuna.artifacts.get_all_artifact_meta(caught, storage=study._storage)) == 2 and "metrics" not in caught.user_attrs
    assert_whole(study, art)
