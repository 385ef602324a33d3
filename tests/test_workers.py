"""Several `gas-nas search` workers on one study, workers killed mid-trial, and `--jobs`.

Heartbeats (RDB storages): a worker killed with SIGKILL leaves its trial RUNNING; once its
heartbeat is older than the grace period, the next trial start in any live worker fails it
(Optuna's fail_stale_trials) and RetryHeartbeatStaleTrialCallback re-queues it. Budgets are
tiny (3 iterations, batch 8) and every subprocess runs single-threaded, so the whole file
stays around two minutes on two CPU cores.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from conftest import write_tiny_space
from optuna.trial import TrialState

from gas_nas.study.search import SEEDED_ATTR

PG_URL = os.environ.get("GAS_NAS_TEST_POSTGRES")
needs_postgres = pytest.mark.skipif(not PG_URL, reason="no PostgreSQL: set GAS_NAS_TEST_POSTGRES=postgresql://USER:PASSWORD@HOST:PORT/DB (.ci/run does)")
HEARTBEAT = {"heartbeat_interval": 1, "grace_period": 3, "max_retries": 2}
CASES = 6
WORKER_TIMEOUT = 300


def _search(tmp_path: Path, space: Path, storage: str, study: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gas_nas.cli", "search", "--space", str(space), "--storage", storage, "--study", study,
            "--artifacts", str(tmp_path / "artifacts"), "--seed", "0", "--device", "cpu", "--quiet", *extra]


def _start(cmd: list[str], env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    out = log.open("w")
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, log: Path) -> str:
    try:
        proc.wait(timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"worker did not finish in {WORKER_TIMEOUT}s:\n{log.read_text()[-3000:]}")
    text = log.read_text()
    assert proc.returncode == 0, f"worker exited {proc.returncode}:\n{text[-3000:]}"
    return text


_STORAGES: dict[str, optuna.storages.BaseStorage] = {}


def _storage(url: str) -> optuna.storages.BaseStorage:
    """One reader storage per URL (creating it also creates the RDB tables before any worker does)."""
    if url not in _STORAGES:
        from gas_nas.study.storage import is_journal, open_storage

        _STORAGES[url] = open_storage(url) if is_journal(url) else optuna.storages.RDBStorage(url)
    return _STORAGES[url]


def _trials(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(storage=_storage(url), study_name=study).get_trials(deepcopy=False)


def _kill_mid_trial(proc: subprocess.Popen, storage: str, study: str, log: Path, *, after_complete: int = 0) -> int:
    """SIGKILL `proc` while it trains a trial (its heartbeat already recorded); the trial's number."""
    deadline = time.monotonic() + WORKER_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"worker ended before it could be killed:\n{log.read_text()[-3000:]}")
        try:
            trials = _trials(storage, study)
        except Exception:  # noqa: BLE001 - the study may not exist yet, or SQLite is busy
            trials = []
        done = sum(t.state == TrialState.COMPLETE for t in trials)
        running = [t for t in trials if t.state == TrialState.RUNNING and "spec" in t.user_attrs]
        if running and done >= after_complete:
            time.sleep(0.3)  # the heartbeat thread records at trial start and then every second
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            number = running[0].number
            state = next(t.state for t in _trials(storage, study) if t.number == number)
            assert state == TrialState.RUNNING, f"trial {number} finished ({state.name}) before the kill landed; too fast to test"
            return number
        time.sleep(0.1)
    proc.kill()
    pytest.fail("no trial started in time")


def _assert_cases_once(trials: list[optuna.trial.FrozenTrial]) -> None:
    complete_cases = [t.user_attrs["case"] for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("case")]
    assert len(complete_cases) == CASES and len(set(complete_cases)) == CASES, complete_cases


# ---------------------------------------------------------------- dividing the machine (pure)


def _plan(jobs, device, cores, gpus=0, visible=None, cap=None):
    from gas_nas.study.workers import plan_workers

    return plan_workers(jobs, device, cores, gpus, visible, cap)


def test_cpu_cores_are_divided_among_workers_and_this_process():
    plan = _plan(2, "cpu", 2)
    assert [(w.device, w.threads, w.memory_share) for w in plan] == [("cpu", 1, 2), ("cpu", 1, 2)]
    assert plan[1].env == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GAS_NAS_MEMORY_SHARE": "2"}
    assert [w.threads for w in _plan(3, "cpu", 16)] == [6, 5, 5]  # the remainder goes to the first
    assert [w.threads for w in _plan(4, "cpu", 2)] == [1, 1, 1, 1]  # never fewer than one
    assert [w.threads for w in _plan(2, "cpu", 16, cap=4)] == [4, 4]  # a user's OMP_NUM_THREADS caps each share
    assert "CUDA_VISIBLE_DEVICES" not in plan[1].env


def test_cuda_worker_i_sees_device_i_mod_n_only():
    plan = _plan(5, "cuda", 16, gpus=2)
    assert [w.label for w in plan] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in plan] == ["0", "1", "0", "1", "0"]
    assert [w.device for w in plan] == ["cuda:0"] + ["cuda:0"] * 4  # a child sees one device; this process keeps its view
    assert [w.memory_share for w in plan] == [3, 2, 3, 2, 3]  # workers on the same GPU split its memory
    assert [w.threads for w in plan] == [4, 3, 3, 3, 3]
    assert _plan(3, "cuda", 8, gpus=4)[1].env["CUDA_VISIBLE_DEVICES"] == "1"


def test_cuda_devices_map_through_this_process_visible_list_and_cuda_n_pins_all():
    plan = _plan(2, "cuda", 4, gpus=2, visible="4,6")
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in plan] == ["4", "6"]
    pinned = _plan(3, "cuda:1", 6, gpus=2)
    assert [w.label for w in pinned] == ["cuda:1"] * 3 and [w.env["CUDA_VISIBLE_DEVICES"] for w in pinned] == ["1"] * 3
    assert [w.device for w in pinned] == ["cuda:1", "cuda:0", "cuda:0"]
    assert [w.memory_share for w in pinned] == [3, 3, 3]


def test_worker_lines_say_what_each_got():
    lines = [w.describe() for w in _plan(2, "cuda", 4, gpus=2)]
    assert lines == ["this process: cuda:0, 2 CPU threads", "worker 2: cuda:1, 2 CPU threads"]
    assert _plan(2, "cpu", 2)[1].describe() == "worker 2: cpu, 1 CPU thread, 1/2 of the RAM"


def test_a_started_worker_keeps_the_memory_share_its_parent_gave_it(monkeypatch):
    import torch

    from gas_nas.study.workers import divide

    threads = torch.get_num_threads()
    monkeypatch.setenv("GAS_NAS_MEMORY_SHARE", "3")
    (me,) = divide(1, torch.device("cpu"))
    assert (me.device, me.memory_share, me.threads) == ("cpu", 3, threads)
    monkeypatch.delenv("GAS_NAS_MEMORY_SHARE")
    assert divide(1, torch.device("cpu"))[0].memory_share == 1
    assert torch.get_num_threads() == threads  # one job leaves torch's threads alone


@pytest.mark.parametrize("text", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_names_parse(text):
    from gas_nas.study.workers import parse_device

    assert parse_device(text) == text


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:-1", "cuda:01", "cuda:x", "cuda:1:2", "CPU", "mps", "cuda:1234"])
def test_bad_device_names_are_one_line_exit_2(text, capsys):
    from gas_nas.cli import main

    assert main(["train", "--arch", "x.yaml", "--device", text]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected auto, cpu, cuda or cuda:N" in err[0], err


def test_a_cuda_device_this_machine_lacks_is_refused_in_one_line(tmp_path, capsys):
    import torch

    from gas_nas.cli import main

    arch = tmp_path / "a.yaml"
    arch.write_text("format: gas-nas/arch/v1\ndiscriminator: {}\n")
    index = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert main(["train", "--arch", str(arch), "--device", f"cuda:{index}", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--device cuda:{index}:" in err[0], err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- PostgreSQL: several workers


@pytest.mark.postgres
@needs_postgres
def test_three_workers_share_a_study_and_retry_a_killed_trial(tmp_path, cli_env):
    until = 8
    space = write_tiny_space(tmp_path / "tiny.yaml", search=HEARTBEAT)
    study = f"workers-{uuid.uuid4().hex[:10]}"
    env = cli_env
    cmd = _search(tmp_path, space, PG_URL, study, "--until", str(until))
    _storage(PG_URL)

    first = _start(cmd, env, tmp_path, tmp_path / "w0.log")
    killed = _kill_mid_trial(first, PG_URL, study, tmp_path / "w0.log")
    others = [_start(cmd, env, tmp_path, tmp_path / f"w{i}.log") for i in (1, 2)]
    logs = [_finish(p, tmp_path / f"w{i}.log") for i, p in zip((1, 2), others)]

    trials = _trials(PG_URL, study)
    states = {t.number: t.state for t in trials}
    assert not [n for n, s in states.items() if s in (TrialState.RUNNING, TrialState.WAITING)], states
    assert states[killed] == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE, [(t.number, t.state.name) for t in retries]
    killed_case = next(t for t in trials if t.number == killed).user_attrs.get("case")
    assert retries[0].user_attrs.get("case") == killed_case
    _assert_cases_once(trials)
    assert sum(s == TrialState.COMPLETE for s in states.values()) == until
    assert all("Traceback" not in text for text in logs)


def _open_study_worker(space_path: str, url: str, name: str, barrier, results) -> None:
    from gas_nas.models.space import load_space
    from gas_nas.study.search import open_study

    space = load_space(space_path)
    barrier.wait(timeout=60)
    try:
        open_study(space, url, name)
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


def _race_open_study(space: Path, url: str, name: str, n: int = 8) -> list[str]:
    """`n` processes call open_study at the same moment; what each reported."""
    ctx = multiprocessing.get_context("spawn")  # fresh processes: a fork of a process that ran torch's OpenMP pool can hang in the child
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open_study_worker, args=(str(space), url, name, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    outcomes = [results.get(timeout=5) for _ in procs]
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return outcomes


def _assert_seeded_once(url: str, name: str) -> None:
    study = optuna.load_study(storage=url, study_name=name)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == CASES, [(t.number, t.user_attrs.get("case")) for t in trials]
    assert all(t.state == TrialState.WAITING for t in trials)
    assert len({t.user_attrs.get("case") for t in trials}) == CASES
    assert len(study.user_attrs[SEEDED_ATTR]) == CASES


@pytest.mark.postgres
@needs_postgres
def test_eight_processes_seed_the_paper_cases_once_postgres(tmp_path):
    space = write_tiny_space(tmp_path / "tiny.yaml")
    name = f"seed-race-{uuid.uuid4().hex[:10]}"
    assert _race_open_study(space, PG_URL, name) == ["ok"] * 8
    _assert_seeded_once(PG_URL, name)


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_eight_processes_seed_the_paper_cases_once_locally(tmp_path, kind):
    """One machine: the journal file (what --jobs needs) and SQLite (fresh file, so the 8
    processes also race to create Optuna's tables; open_storage retries that)."""
    space = write_tiny_space(tmp_path / "tiny.yaml")
    url = f"journal:{tmp_path / 'studies' / 'race.journal'}" if kind == "journal" else f"sqlite:///{tmp_path / 'studies' / 'race.db'}"
    assert _race_open_study(space, url, "race") == ["ok"] * 8
    _assert_seeded_once(_storage(url), "race")


# ---------------------------------------------------------------- one machine


@pytest.mark.slow
@pytest.mark.parametrize("cohort", [1, 2])
def test_sqlite_search_killed_mid_trial_resumes(tmp_path, cli_env, cohort):
    """SIGKILL a --trials 3 search mid-trial; rerunning the command fails the stale trial(s) after
    the grace period, re-queues them, keeps the completed trials and goes on. With cohorts the
    search keeps the heartbeats itself (Optuna only does inside study.optimize)."""
    space = write_tiny_space(tmp_path / "tiny.yaml", search={"heartbeat_interval": 1, "grace_period": 2, "max_retries": 2},
                             train={"iterations": 3 if cohort == 1 else 10})
    url = f"sqlite:///{tmp_path / 'studies' / 'gas.db'}"
    env = cli_env
    n = 3 if cohort == 1 else 4  # with cohorts of 2, the second cohort (trials 2 and 3) is the one killed
    cmd = _search(tmp_path, space, url, "gas", "--trials", str(n), "--cohort", str(cohort))
    (tmp_path / "studies").mkdir()
    _storage(url)

    first = _start(cmd, env, tmp_path, tmp_path / "run1.log")
    killed = _kill_mid_trial(first, url, "gas", tmp_path / "run1.log", after_complete=cohort)
    before = {t.number: t.values for t in _trials(url, "gas") if t.state == TrialState.COMPLETE}
    assert before and killed not in before
    time.sleep(2.5)  # > grace period (the restart itself takes longer anyway)

    second = _start(cmd, env, tmp_path, tmp_path / "run2.log")
    log = _finish(second, tmp_path / "run2.log")
    assert "Traceback" not in log

    trials = _trials(url, "gas")
    states = {t.number: t.state for t in trials}
    assert TrialState.RUNNING not in states.values(), states
    assert states[killed] == TrialState.FAIL
    assert {t.number: t.values for t in trials if t.number in before} == before  # completed trials intact
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == len(before) + n  # the rerun added its n trials
    assert [t for t in trials if t.system_attrs.get("failed_trial") == killed], "the killed trial was not re-queued"
    stale = [t.number for t in trials if t.state == TrialState.FAIL]
    assert len(stale) == cohort  # every trial of the killed cohort was failed by the heartbeat check


@pytest.mark.slow
def test_jobs_runs_workers_on_a_journal_storage(tmp_path, cli_env):
    space = write_tiny_space(tmp_path / "tiny.yaml")
    journal = tmp_path / "studies" / "gas.journal"
    cmd = [c for c in _search(tmp_path, space, f"journal:{journal}", "jobs", "--jobs", "2", "--trials", "4") if c != "--quiet"]
    run = subprocess.run(cmd, env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    # what each worker got, printed before training (OMP_NUM_THREADS=1 in cli_env caps each share)
    assert "2 workers:\n  this process: cpu, 1 CPU thread, 1/2 of the RAM\n  worker 2: cpu, 1 CPU thread, 1/2 of the RAM" in run.stdout, run.stdout[:2000]

    trials = _trials(f"journal:{journal}", "jobs")
    finished = [t for t in trials if t.state.is_finished()]
    assert len(finished) == 8 == len(trials), [(t.number, t.state.name) for t in trials]  # each worker ran 4
    assert len([t for t in trials if t.user_attrs.get("case")]) == CASES
    _assert_cases_once(trials)
    assert not (tmp_path / "studies" / "gas.db").exists()
