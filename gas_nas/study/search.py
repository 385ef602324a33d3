"""The Optuna study: create or resume it, seed the paper cases once, run trials, read fronts.

This is the only module that knows Optuna. Storage URLs become storages in `storage.py`;
training lives in `train.py`; this file wires a trial to them and records the results.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from gas_nas.common.errors import GasNasError, StorageError
from gas_nas.common.interrupt import Interrupted
from gas_nas.models.space import SearchSpace, sample, sampled_params
from gas_nas.models.spec import DiscriminatorSpec
from gas_nas.study.bookkeeping import PLOT_INTERVAL_S, AtomicFileStore, Recorder, StudyPlot
from gas_nas.study.confirmation import COMPANION_SUFFIX, confirmations, trusted_front
from gas_nas.study.dashboard import closest_infeasible, constraint_attrs, refresh_study_plot, save_trial_note
from gas_nas.study.record import INTERRUPTED, TrialRecord
from gas_nas.study.samplers import make_sampler
from gas_nas.study.storage import DEFAULT_ARTIFACTS, ParamBuffer, check_existing, error_line, open_storage, redact
from gas_nas.trial import guard as guard_rules
from gas_nas.trial.guard import Guard, absolute_guard, guard_mode, relative_guard

if TYPE_CHECKING:  # torch loads only where a trial trains: show, export and dashboard never need it
    import torch

    from gas_nas.trial.memory import Available

SEEDED_ATTR = "gas_nas:seeded"  # study user attribute: the paper cases are enqueued
TEACHER_ATTR = "gas_nas:teacher"  # study user attribute: the teacher its trials train with (None: none)
ARTIFACTS_ATTR = "gas_nas:artifacts"  # study user attribute: where its trials' artifacts were written
GUARD_ATTR = "gas_nas:guard"  # study user attribute: the settled quality guard (gas_nas.trial.guard.Guard) its trials are judged by
SEED_WAIT_S = 60.0
HOLD_POLL_S = 2.0  # a worker holding trials for the guard checks this often whether the paper cases have finished


@dataclass
class SearchOptions:
    """How this process runs its trials (the study itself comes from `open_study`).

    `callbacks` are called as `callback(study, frozen_trial)` after each trial is told (on the
    recording thread when `overlap` is on).
    """

    seed: int = 0
    artifacts: str = DEFAULT_ARTIFACTS
    cohort: int = 1
    memory: Available | None = None  # what a cohort may use (gas_nas.trial.memory); None: not checked
    cuda_graph: bool = True
    on_iteration: Callable[[int, int], None] | None = None
    on_trial_start: Callable[[int, str], None] | None = None
    on_cohort_start: Callable[[list[tuple[int, str]]], None] | None = None  # (number, case) of each trial
    on_held: Callable[[optuna.Study, int, str, Any], None] | None = None  # (study, number, label, metrics) of a trial whose verdict waits for the guard
    should_stop: Callable[[], bool] | None = None
    callbacks: list = field(default_factory=list)
    overlap: bool | None = None  # record a cohort while the next one trains; None: on CUDA only (on a CPU it would share the cores)
    plot_interval: float = PLOT_INTERVAL_S  # the dashboard's study plot is refreshed at most this often (and at the end)


def metric_names(space: SearchSpace) -> list[str]:
    names = ["d_size_mb", space.search.balance]
    return names + (["fid"] if space.search.quality_objective == "fid" else [])


def open_study(space: SearchSpace, storage_url: str, study_name: str, *, seed: int = 0, sampler: str | None = None, teacher: dict | None = None) -> optuna.Study:
    """Create the study (and enqueue the paper cases) or join the existing one.

    `teacher` (`Teacher.identity()`, None without one) is recorded on a new study; joining a
    study created with another teacher (or none) is refused, as are other objectives.

    Race-free seeding: `create_study(load_if_exists=False)` succeeds in exactly one process;
    only that process enqueues the cases, then flags the study. Joiners wait for the flag so
    the cases stay the first trials. A creator that died before flagging is finished by the
    next process (idempotent, it only adds the cases that are missing).
    """
    cfg = space.search
    storage = open_storage(storage_url, heartbeat_interval=cfg.heartbeat_interval, grace_period=cfg.grace_period, max_retries=cfg.max_retries)
    directions = ["minimize"] * len(metric_names(space))
    sampler_obj = make_sampler(sampler or cfg.sampler, seed)
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, directions=directions, sampler=sampler_obj)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=study_name, sampler=sampler_obj)
        sampler_obj.reseed_rng()  # joiners (workers, resumes) must not replay the creator's random draws
        created = False
    except Exception as exc:  # noqa: BLE001 - a database that answers badly
        raise StorageError(f"cannot create study {study_name!r} in {redact(storage_url)}: {error_line(exc, storage_url)}") from None
    if len(study.directions) != len(directions):
        raise StorageError(f"study {study_name!r} has {len(study.directions)} objectives but the space asks for {len(directions)} ({', '.join(metric_names(space))}); use another --study")
    if not created and study.metric_names not in (None, metric_names(space)):
        raise StorageError(f"study {study_name!r} minimises {', '.join(study.metric_names)} but the space asks for {', '.join(metric_names(space))}; use another --study")
    if created:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metric_names(space))
        study.set_user_attr(TEACHER_ATTR, teacher)
        _enqueue_cases(study, space)
    else:
        _wait_for_seeding(study, space)
        _check_teacher(study, teacher)
    return study


def _check_teacher(study: optuna.Study, teacher: dict | None) -> None:
    """A study's trials all train with one teacher (or none): resuming with another is refused."""
    had = study.user_attrs.get(TEACHER_ATTR)  # absent: a study from before teachers, trained without one
    sha = (had or {}).get("teacher_sha256")
    if sha != (teacher or {}).get("teacher_sha256"):
        then = f"teacher sha256 {sha[:12]} ({had.get('teacher_path')})" if sha else "no teacher"
        now = f"teacher sha256 {teacher['teacher_sha256'][:12]} ({teacher.get('teacher_path')})" if teacher else "no teacher"
        raise StorageError(f"study {study.study_name!r} was trained with {then}, this run has {now}; use the same teacher or another --study")


def _enqueue_cases(study: optuna.Study, space: SearchSpace) -> None:
    have = {TrialRecord.of(t).case for t in study.get_trials(deepcopy=False)}
    for case in space.cases:
        if case.name not in have:
            study.enqueue_trial(sampled_params(space, case.spec), user_attrs=TrialRecord(case=case.name, paper_mb=case.paper_mb).case_attrs())
    study.set_user_attr(SEEDED_ATTR, [c.name for c in space.cases])


def _wait_for_seeding(study: optuna.Study, space: SearchSpace) -> None:
    deadline = time.monotonic() + SEED_WAIT_S
    while SEEDED_ATTR not in study.user_attrs:
        if time.monotonic() > deadline:  # the creator died between create and flag
            _enqueue_cases(study, space)
            return
        time.sleep(0.2)


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the RUNNING trials whose worker died (no heartbeat within the grace period); the
    storage's retry callback enqueues each again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def waiting_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def existing_study(storage_url: str, study_name: str) -> optuna.Study | None:
    """The study if the storage already holds it, read without creating anything; else None
    (a missing storage, or one that is not Optuna's: `open_study` creates or refuses it)."""
    from gas_nas.study.storage import check_url

    check_url(storage_url)  # a malformed URL is refused here, in one line
    try:
        return load_existing(storage_url, study_name)
    except StorageError:
        return None


def load_existing(storage_url: str, study_name: str | None) -> optuna.Study:
    """An existing study for show/export/dashboard; a missing one is a one-line error.

    Read-only: a missing database or one that is not Optuna's is refused before Optuna opens it.
    """
    check_existing(storage_url)
    storage = open_storage(storage_url)
    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    except Exception as exc:  # noqa: BLE001
        raise StorageError(f"cannot read studies from {redact(storage_url)}: {error_line(exc, storage_url)}") from None
    if study_name is None:
        searches = [n for n in names if not n.endswith(COMPANION_SUFFIX)]  # a study's retrainings are not a study to pick
        if len(searches) != 1:
            raise StorageError(f"{redact(storage_url)} holds {len(searches)} studies ({', '.join(map(repr, searches)) or 'none'}); pick one with --study")
        study_name = searches[0]
    if study_name not in names:
        raise StorageError(f"no study {study_name!r} in {redact(storage_url)}; it has: {', '.join(map(repr, names)) or 'no studies'}")
    return optuna.load_study(storage=storage, study_name=study_name)


# ---------------------------------------------------------------- where the artifacts are


def storage_folder(storage_url: str) -> Path | None:
    """The folder holding a file storage (an SQLite file or a journal); None for a database server."""
    from gas_nas.study.storage import is_journal, journal_path

    if is_journal(storage_url):
        return journal_path(storage_url).parent
    if storage_url.startswith("sqlite:///"):
        db = storage_url.removeprefix("sqlite:///").partition("?")[0]
        return Path(db).parent if db and db != ":memory:" else None
    return None


def record_artifacts(study: optuna.Study, storage_url: str, artifacts: str | Path) -> str:
    """Write where this study's artifacts go as a study user attribute (only when it changes).

    With a file storage the folder is stored relative to the storage's folder, so the two can be
    moved or copied together; with a database server it is absolute, a hint for the machine that
    reads it (`--artifacts` still wins). Returns what was recorded.
    """
    import os

    folder = Path(artifacts).resolve()
    home = storage_folder(storage_url)
    value = os.path.relpath(folder, home.resolve()) if home is not None else str(folder)
    if study.user_attrs.get(ARTIFACTS_ATTR) != value:
        study.set_user_attr(ARTIFACTS_ATTR, value)
    return value


def find_artifacts(study: optuna.Study, storage_url: str, given: str | None) -> tuple[Path, str]:
    """The artifact folder to read and where that answer came from: `--artifacts`, else the study's
    record (relative to a file storage's folder), else the default `studies/artifacts`."""
    if given:
        return Path(given), "--artifacts"
    recorded = study.user_attrs.get(ARTIFACTS_ATTR)
    if isinstance(recorded, str) and recorded:
        home = storage_folder(storage_url)
        path = Path(recorded)
        return (path if path.is_absolute() or home is None else (home / path).resolve()), "recorded by the study's search"
    return Path(DEFAULT_ARTIFACTS), "the default"


def artifact_ids(study: optuna.Study) -> list[str]:
    """Ids of every artifact uploaded to the study's trials (read from the trials already loaded)."""
    import json

    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX

    ids = []
    for t in study.get_trials(deepcopy=False):
        for key, value in t.system_attrs.items():
            if key.startswith(ARTIFACTS_ATTR_PREFIX):
                ids.append(json.loads(value)["artifact_id"])
    return ids


def artifacts_problem(study: optuna.Study, folder: Path, source: str) -> str | None:
    """One line when trial pages would lack their sample grids and loss curves: the folder is
    missing, or holds none (or only some) of the study's artifacts; None when all are there."""
    ids = artifact_ids(study)
    if not ids:
        return None
    where = f"{folder} ({source})"
    if not folder.is_dir():
        return f"no artifact folder {where}: trial pages will show no sample grids or loss curves; pass --artifacts DIR (the search's --artifacts)"
    present = sum((folder / i).is_file() for i in ids)
    if present == len(ids):
        return None
    held, pages = ("none", "trial pages") if present == 0 else (f"only {present}", "some trial pages")
    return f"{where} holds {held} of the study's {len(ids)} artifacts: {pages} will lack sample grids and loss curves; pass --artifacts DIR (the search's --artifacts)"


# ---------------------------------------------------------------- the guard trials are judged by


def settled_guard(study: optuna.Study, space: SearchSpace) -> Guard | None:
    """The guard this study judges every trial by, settled once and stored with the study; None
    while a relative guard waits for paper cases still to finish.

    An absolute guard settles at once. A study that completed trials before guards were stored
    keeps the absolute bounds its trials were judged by. A relative guard settles when every
    paper case has a result (a case whose every attempt failed without one is left out); every
    worker computes it from the same results, so they store the same guard.
    """
    stored = study.user_attrs.get(GUARD_ATTR)
    if isinstance(stored, dict):
        return Guard.from_dict(stored)
    older = not stored and study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if older or guard_mode(space.quality, space.train, bool(space.cases)) == "absolute":
        guard = absolute_guard(space.quality)
    else:
        fids = case_fids(study)
        if fids is None:
            return None
        guard = relative_guard(space.quality, fids)
    study.set_user_attr(GUARD_ATTR, guard.to_dict())
    return guard


def guard_line(study: optuna.Study, space: SearchSpace | None = None) -> str:
    """The guard in one line: the study's settled one, or how a relative one will settle."""
    guard = stored_guard(study)
    if guard is not None:
        return f"quality guard ({guard.mode}): {guard.describe()}"
    if space is None or study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return "quality guard: not stored (a study from before gas-nas stored its guard)"
    if guard_mode(space.quality, space.train, bool(space.cases)) == "absolute":
        return f"quality guard (absolute): {absolute_guard(space.quality).describe()}"
    q = space.quality
    return (f"quality guard (relative, {space.train.iterations} iterations < the paper's): FID <= {q.relative_fid:g} x the median FID of the "
            f"{len(space.cases)} paper cases (at most {q.backstop_fid:g}), settled when they finish; trials wait for it")


def cases_to_settle(study: optuna.Study, space: SearchSpace) -> int:
    """How many queued paper cases a search must train before its relative guard settles (0
    when the guard is settled or absolute): a search asked for fewer trials trains them anyway."""
    if stored_guard(study) is not None or guard_mode(space.quality, space.train, bool(space.cases)) == "absolute":
        return 0
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)) if TrialRecord.of(t).case)


def stored_guard(study: optuna.Study) -> Guard | None:
    """The guard a study stored (None: an older study, or one whose relative guard is not settled yet)."""
    stored = study.user_attrs.get(GUARD_ATTR)
    return Guard.from_dict(stored) if isinstance(stored, dict) else None


def case_fids(study: optuna.Study) -> dict[str, float] | None:
    """Each paper case's FID (its first attempt that measured one; inf when it diverged), or None
    while a case still waits or runs without a result."""
    names = study.user_attrs.get(SEEDED_ATTR) or []
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    fids: dict[str, float] = {}
    for name in names:
        mine = [(t, TrialRecord.of(t)) for t in trials if TrialRecord.of(t).case == name]
        measured = [r.metrics for _, r in mine if r.metrics is not None]
        if measured:
            fids[name] = measured[0].fid if measured[0].status == "complete" else math.inf
        elif any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t, _ in mine):
            return None
    return fids


# ---------------------------------------------------------------- running trials


@dataclass
class Resources:
    """What every trial in a process shares: MNIST on the device and the quality classifier."""

    real: torch.Tensor
    held_out: torch.Tensor
    classifier: torch.nn.Module
    teacher: Any = None  # gas_nas.trial.teacher.Teacher for a recipe with a teacher


def load_resources(device: torch.device, data_dir: str | None, teacher: Any = None) -> Resources:
    from gas_nas.trial.classifier import load_classifier
    from gas_nas.trial.data import load_mnist

    real, _ = load_mnist(data_dir, train=True, device=device)
    held_out, _ = load_mnist(data_dir, train=False, device=device)
    return Resources(real=real, held_out=held_out, classifier=load_classifier(data_dir, device=device), teacher=teacher)


def run_search(study: optuna.Study, space: SearchSpace, opts: SearchOptions, resources: Resources, n_trials: int | None, until: int | None = None) -> None:
    """Ask/tell: take up to `opts.cohort` trials from the study, train them together, tell each.

    Runs `n_trials` more trials, or until the study has `until` complete ones. Enqueued trials
    (the paper cases) are asked first, so they lead. Raises `Interrupted` when
    `opts.should_stop()` turns true; the running cohort is then failed and its paper cases re-queued.

    A trained cohort is recorded (PNGs, artifacts, record, tell, note, callbacks) by a `Recorder`:
    with `opts.overlap` (default: on CUDA) on a worker thread while the next cohort trains. A
    trial is told COMPLETE only once its artifacts and record are stored. The study plot is
    refreshed at most every `opts.plot_interval` seconds, and when the search ends or stops.
    """
    Path(opts.artifacts).mkdir(parents=True, exist_ok=True)
    overlap = opts.overlap if opts.overlap is not None else getattr(getattr(resources.real, "device", None), "type", "cpu") == "cuda"
    run = _Run(study, space, opts, resources, AtomicFileStore(opts.artifacts), StudyPlot(lambda: refresh_study_plot(study), opts.plot_interval), until)
    asked = 0
    with Recorder(overlap) as recorder:
        run.recorder = recorder
        try:
            while True:
                size = opts.cohort if n_trials is None else min(opts.cohort, n_trials - asked)
                if until is not None:
                    size = min(size, until - _complete(study) - run.untold)  # trials still being recorded count as complete
                    if size <= 0 and run.untold > len(run.held):  # they may fail, and a trial told meanwhile counts twice: settle, then count again
                        recorder.drain()
                        continue
                if size <= 0 and run.held:
                    size = _while_held(run, recorder)
                    if size <= 0:
                        continue
                if size <= 0:
                    break
                _check_stop(opts)
                fail_stale_trials(study)  # what study.optimize does before each trial
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)  # we keep heartbeats ourselves
                    trials = [study.ask() for _ in range(size)]
                asked += size
                heartbeat = Heartbeat(study, trials).start()
                try:
                    job = _run_cohort(run, trials, heartbeat)
                except BaseException:
                    heartbeat.stop()
                    raise
                recorder.submit(job)
            recorder.drain()
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once (a recording in flight still finishes)
            raise
        except BaseException:
            try:
                recorder.drain()
                _fail_held(run)
            finally:
                run.plot.flush()
            raise
        run.plot.flush()


def _while_held(run: _Run, recorder: Recorder) -> int:
    """This process is done but holds trials until the study's guard settles: how many more
    trials to ask now (the paper cases still queued, which settle it), or 0 after waiting a
    moment for other workers' cases."""
    recorder.drain()
    _release_held(run)
    if not run.held:
        return 0
    queued = sum(1 for t in run.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)) if TrialRecord.of(t).case)
    if queued:
        return min(run.opts.cohort, queued)
    _check_stop(run.opts)
    time.sleep(HOLD_POLL_S)
    return 0


@dataclass
class _Run:
    """What the functions of one `run_search` share."""

    study: optuna.Study
    space: SearchSpace
    opts: SearchOptions
    resources: Resources
    store: Any
    plot: StudyPlot
    until: int | None
    recorder: Recorder | None = None
    untold: int = 0  # trained trials whose recording has not told them yet (held ones included)
    lock: threading.Lock = field(default_factory=threading.Lock)
    guard: Guard | None = None  # once settled (settled_guard)
    held: list = field(default_factory=list)  # (trial, _Trained, Heartbeat): results recorded, told once the guard settles

    def settled(self) -> Guard | None:
        if self.guard is None:
            self.guard = settled_guard(self.study, self.space)
        return self.guard

    def count_untold(self, change: int) -> None:
        with self.lock:  # changed by the search and by the recording thread
            self.untold += change


@dataclass
class _Trained:
    """What recording needs of a trained trial (no models: their memory is freed at once)."""

    metrics: Any  # TrialMetrics
    grid: torch.Tensor  # on the CPU
    curve: dict = field(default_factory=dict)  # the fine loss curve losses.png draws (TrialOutcome.curve)


def _run_cohort(run: _Run, trials: list, heartbeat: Heartbeat) -> Callable[[], None]:
    """Sample and train a cohort; the job that records it (and stops its heartbeat)."""
    study, space, opts = run.study, run.space, run.opts
    members, unbuilt = [], []
    for trial in trials:
        record = TrialRecord.of(trial)
        if opts.on_trial_start:
            opts.on_trial_start(trial.number, record.label)
        trial.storage = params = ParamBuffer(trial.storage)  # the suggested parameters: one write, not one each
        try:
            spec = sample(trial, space)
        except GasNasError as exc:
            unbuilt.append((trial, f"spec cannot be built: {exc}"))
            continue
        finally:
            trial.storage = params.storage
            params.flush()
        TrialRecord(spec=spec.to_dict(), train=space.train.to_dict()).write(trial)
        members.append((trial, spec))
    outcomes: list = []
    if members:
        if opts.on_cohort_start:
            opts.on_cohort_start([(t.number, TrialRecord.of(t).label) for t, _ in members])
        try:
            _check_stop(opts)
            outcomes = train_specs(space, opts, run.resources, [s for _, s in members], [opts.seed + t.number for t, _ in members])
        except (Interrupted, KeyboardInterrupt):
            try:
                run.recorder.drain()  # the previous cohort trained to the end: record it first
            finally:
                for trial, reason in unbuilt:
                    _tell_fail(run, trial, reason)
                for trial, _ in members:
                    _tell_fail(run, trial, INTERRUPTED)
                    record = TrialRecord.of(trial)
                    if record.case or record.provenance:  # the study must still get every paper case and proposal: queue it again
                        study.enqueue_trial(trial.params, user_attrs=record.case_attrs())
                heartbeat.stop()
            raise Interrupted from None
    done = [(t, o if isinstance(o, str) else _Trained(o.metrics, o.grid.detach().cpu(), o.curve)) for (t, _), o in zip(members, outcomes)]
    run.count_untold(len(done))

    def record() -> None:
        held = False
        try:
            for trial, reason in unbuilt:
                _tell_fail(run, trial, reason)
            for trial, outcome in done:
                if isinstance(outcome, str):
                    _tell_fail(run, trial, outcome)
                elif _store_outcome(run, trial, outcome):
                    held = _hold_or_tell(run, trial, outcome, heartbeat) or held
                    continue
                run.count_untold(-1)
        finally:
            if not held:
                heartbeat.stop()
        _release_held(run)

    return record


def train_specs(space, opts, resources, specs, seeds) -> list:
    """Outcomes of a cohort (a TrialOutcome, or the reason a trial failed). A cohort whose
    predicted peak exceeds `opts.memory` is split in halves before it is built, and a lone trial
    that still does not fit fails with the estimate (`gas_nas.trial.memory`); a cohort that runs out
    of CUDA memory all the same is split and retried."""
    import torch

    from gas_nas.trial.memory import check
    from gas_nas.trial.train import run_cohort

    too_big = opts.memory and check(specs, space.train, space.quality, resources.real.device, opts.memory)
    if too_big:
        if len(specs) == 1:
            return [too_big]
        half = len(specs) // 2
        return train_specs(space, opts, resources, specs[:half], seeds[:half]) + train_specs(space, opts, resources, specs[half:], seeds[half:])
    try:
        return run_cohort(
            specs, seeds, space.train, space.quality, real=resources.real, held_out=resources.held_out,
            classifier=resources.classifier, progress=opts.on_iteration, should_stop=opts.should_stop, cuda_graph=opts.cuda_graph,
            teacher=resources.teacher,
        )
    except torch.cuda.OutOfMemoryError:
        if len(specs) == 1:
            return ["CUDA out of memory"]
        torch.cuda.empty_cache()
        half = len(specs) // 2
        return train_specs(space, opts, resources, specs[:half], seeds[:half]) + train_specs(space, opts, resources, specs[half:], seeds[half:])
    except MemoryError:
        return ["out of memory"] * len(specs)
    except RuntimeError as exc:
        return [f"training failed: {error_line(exc, '')}"] * len(specs)


def _store_outcome(run: _Run, trial, trained: _Trained) -> bool:
    """The trial's artifacts; False when they cannot be saved (the trial is then told FAIL)."""
    from gas_nas.trial.report import LOSSES_PNG, SAMPLES_PNG, save_grid, save_loss_plot

    record = TrialRecord.of(trial)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            title = f"trial {trial.number}" + (f" ({record.label})" if record.label else "")
            pngs = [save_grid(trained.grid, Path(tmp) / SAMPLES_PNG), save_loss_plot(trained.metrics.to_dict(), Path(tmp) / LOSSES_PNG, title, trained.curve)]
            for path in pngs:
                optuna.artifacts.upload_artifact(artifact_store=run.store, file_path=str(path), study_or_trial=trial)
    except OSError as exc:  # a disk that fills: this trial fails, the search goes on
        _tell_fail(run, trial, f"cannot save its artifacts: {exc.strerror or exc}")
        return False
    return True


def _hold_or_tell(run: _Run, trial, trained: _Trained, heartbeat: Heartbeat) -> bool:
    """Tell the trial now if the study's guard is settled; otherwise store its measurements
    (where workers settling the guard see them) and hold it, its heartbeat beating, until
    `_release_held`. Returns whether it was held."""
    if run.settled() is None:
        TrialRecord(metrics=trained.metrics).write(trial)
        with run.lock:
            run.held.append((trial, trained, heartbeat))
        if run.opts.on_held:
            run.opts.on_held(run.study, trial.number, TrialRecord.of(trial).label, trained.metrics)
        return True
    _tell_outcome(run, trial, trained)
    run.count_untold(-1)
    return False


def _release_held(run: _Run) -> None:
    """Tell the held trials once the guard has settled, and stop their heartbeats."""
    if not run.held or run.settled() is None:
        return
    with run.lock:
        held, run.held = run.held, []
    for trial, trained, _ in held:
        _tell_outcome(run, trial, trained)
        run.count_untold(-1)
    for _, _, heartbeat in held:
        heartbeat.stop()


def _fail_held(run: _Run) -> None:
    """A stopped search: its held trials fail (interrupted); paper cases and proposals are queued again."""
    with run.lock:
        held, run.held = run.held, []
    for trial, _, _ in held:
        _tell_fail(run, trial, INTERRUPTED)
        record = TrialRecord.of(trial)
        if record.case or record.provenance:
            run.study.enqueue_trial(trial.params, user_attrs=record.case_attrs())
        run.count_untold(-1)
    for _, _, heartbeat in held:
        heartbeat.stop()


def _tell_outcome(run: _Run, trial, trained: _Trained) -> None:
    """The verdict under the study's settled guard, the record with the constraints in one
    write, then tell: a COMPLETE trial always has its artifacts, record and constraints."""
    space, m = run.space, trained.metrics
    guard = run.settled()
    reasons = guard_rules.violations(m, guard)
    result = TrialRecord(metrics=m, feasible=not reasons, infeasible_reason="; ".join(reasons))
    if m.status != "complete":
        result.fail_reason, result.feasible = m.reason, False
        return _finish(run, trial, result, state=TrialState.FAIL)
    constraints = constraint_attrs(guard_rules.constraints(m, guard))
    size = m.peak_mb if space.search.size == "peak_mb" and m.peak_mb is not None else m.d_param_mb
    values = [size, getattr(m, space.search.balance)] + ([m.fid] if space.search.quality_objective == "fid" else [])
    if not all(map(math.isfinite, values)):
        result.fail_reason, result.feasible = f"non-finite objective {values}", False
        return _finish(run, trial, result, constraints, state=TrialState.FAIL)
    if run.until is not None and _complete(run.study) >= run.until:  # another worker completed the last trial first
        result.fail_reason = f"not counted: the study reached --until {run.until} complete trials while it trained"
        return _finish(run, trial, result, constraints, state=TrialState.PRUNED)
    _finish(run, trial, result, constraints, values=values)


def _tell_fail(run: _Run, trial, reason: str) -> None:
    _finish(run, trial, TrialRecord(fail_reason=reason, feasible=False), state=TrialState.FAIL)


def _finish(run: _Run, trial, record: TrialRecord, constraints: dict | None = None, **tell) -> None:
    """Write the trial's record in one go, tell the study, then the note, the plot and progress."""
    record.write(trial, constraints)
    frozen = run.study.tell(trial, **tell)
    save_trial_note(run.study, frozen)
    run.plot.trial_done()
    for callback in run.opts.callbacks:  # progress lines
        callback(run.study, frozen)


def _complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _check_stop(opts: SearchOptions) -> None:
    if opts.should_stop is not None and opts.should_stop():
        raise Interrupted


class Heartbeat:
    """Optuna records heartbeats only inside `study.optimize`; with ask/tell we keep them: one
    thread records a heartbeat for every trial of a cohort each interval, from before its
    training until its recording has told every trial, so a worker killed mid-cohort leaves
    RUNNING trials that `fail_stale_trials` fails and retries."""

    def __init__(self, study: optuna.Study, trials: list):
        storage = study._storage
        self.storage, self.ids = storage, [t._trial_id for t in trials]
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True) if interval else None

    def _beat(self) -> None:
        self._record()  # at once (on this thread: the search goes on meanwhile), then every interval
        while not self.stopped.wait(self.interval):
            self._record()

    def _record(self) -> None:
        for trial_id in self.ids:
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried next interval
                pass

    def start(self) -> Heartbeat:
        if self.thread is not None:
            self.thread.start()
        return self

    def stop(self) -> None:
        """Idempotent; joins the thread unless called from it."""
        self.stopped.set()
        if self.thread is not None and self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------- reading results


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front of feasible trials, as Optuna's own `best_trials` computes it."""
    return sorted(study.best_trials, key=lambda t: t.values[0])


def case_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The completed trial of each paper case (first one, in paper order of enqueueing)."""
    seen: dict[str, FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        case = TrialRecord.of(t).case
        if case and case not in seen:
            seen[case] = t
    return sorted(seen.values(), key=lambda t: t.number)


def proposal_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The completed trials another strategy proposed (the differentiable one's supernets)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if TrialRecord.of(t).provenance]


def trial_row(t: FrozenTrial, names: list[str], front_numbers: set[int]) -> dict:
    r = TrialRecord.of(t)
    m = r.metrics
    row = {"trial": t.number, "case": r.case, "origin": r.label, "state": t.state.name, "on_front": t.number in front_numbers}
    row.update({n: v for n, v in zip(names, t.values or [])})
    row.update({k: getattr(m, k) if m else None for k in ("fid", "classes", "entropy", "d_params")})
    row.update({k: getattr(m, k) if m and not math.isnan(getattr(m, k)) else None for k in ("d_auc", "d_spread")})  # None: not measured (older trials)
    row.update({"feasible": r.feasible, "infeasible_reason": r.infeasible_reason, "fail_reason": r.fail_reason, "spec": r.spec})
    return row


def pick_trial(study: optuna.Study, pick: str) -> tuple[FrozenTrial, str]:
    """smallest / balanced: ends of the feasible Pareto front (less the trials `gas-nas confirm`
    refuted); best-quality: lowest FID among feasible trials. A confirmed trial is ranked by
    its seeds' mean; the second value says which values decided."""
    found = confirmations(study)
    candidates = trusted_front(study, found)
    if pick == "best-quality":
        candidates = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                      if TrialRecord.of(t).feasible and (t.number not in found or found[t.number].kept)]
    if not candidates:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            raise GasNasError(f"study {study.study_name!r} has no complete trial to pick from")
        best = closest_infeasible(complete)
        r = TrialRecord.of(best)
        raise GasNasError(f"study {study.study_name!r} has no feasible trial to pick from; the closest is trial {best.number}"
                          f"{f' [{r.label}]' if r.label else ''} ({r.infeasible_reason or 'no reason recorded'}): export it anyway with --trial {best.number}")

    def value(t: FrozenTrial) -> float:
        c = found.get(t.number)
        if pick == "best-quality":
            return c.fid if c else TrialRecord.of(t).metrics.fid
        i = 0 if pick == "smallest" else 1
        return c.mean(i) if c else t.values[i]

    chosen = min(candidates, key=value)
    confirmed = [t.number for t in candidates if t.number in found]
    if not confirmed:
        return chosen, "single-seed values (no trial confirmed yet: gas-nas confirm)"
    return chosen, f"the seeds' mean for confirmed trials ({', '.join(map(str, confirmed))}), single-seed values for the rest"


def trial_spec(t: FrozenTrial) -> DiscriminatorSpec:
    spec = TrialRecord.of(t).spec
    if spec is None:
        raise GasNasError(f"trial {t.number} has no recorded architecture (state {t.state.name})")
    return DiscriminatorSpec.from_dict(spec)
