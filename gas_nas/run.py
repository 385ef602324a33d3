"""The library layer under the CLI: one run of `search`, `train`, `confirm` or `export`, every
check one line (a GasNasError) before anything is created or trained, then the work.

Functions take a request: any object with the CLI's attribute names (`argparse.Namespace`, or
`SearchRequest` for scripts), and tell what happens to `Events` (gas_nas.common.events: the terminal's
bars and lines, or nothing), so the CLI only parses flags and prints, and docs scripts and
benchmarks run the same searches without importing gas_nas.cli or rebuilding the pipeline.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gas_nas.argtypes import MAX_SEED
from gas_nas.common.errors import GasNasError
from gas_nas.common.events import Events, human_time


@dataclass
class SearchRequest:
    """A search as a user asks for it, in the CLI's words (None: the space's or study's value)."""

    space: Any = None  # a YAML path, or a SearchSpace a script built (its train and quality keys are the study's)
    storage: str | None = None  # None: $GAS_NAS_STORAGE, else sqlite:///studies/gas.db
    study: str | None = None
    artifacts: str | None = None
    recipe: str | None = None
    iterations: int | None = None
    batch_size: int | None = None
    teacher: str | None = None
    device: str = "auto"
    data_dir: str | None = None
    seed: int | None = None
    sampler: str | None = None
    strategy: str | None = None
    lambdas: tuple[float, ...] | None = None
    cohort: Any = None  # an int, or "auto"
    trials: int | None = None
    until: int | None = None
    jobs: int = 1
    quiet: bool = False


TRAIN_FLAGS = {"recipe": "--recipe", "iterations": "--iterations", "batch_size": "--batch-size", "teacher": "--teacher"}


# The flags a resume hint repeats: the study keeps its settings, and a resume that names them
# again must name the same (gas_nas.study.settings); --space also gives the axes.
RESUME_FLAGS = {"space": "--space", "recipe": "--recipe", "iterations": "--iterations", "batch_size": "--batch-size", "teacher": "--teacher", "seed": "--seed"}


def storage_url(req: Any) -> str:
    """--storage, else $GAS_NAS_STORAGE (keeps a password off command lines and shell history)."""
    from gas_nas.study.storage import DEFAULT_SQLITE

    return req.storage or os.environ.get("GAS_NAS_STORAGE") or DEFAULT_SQLITE


def torch_device(name: str):
    """The torch device `--device` names; cuda:N also becomes the current CUDA device (streams and graphs use it)."""
    import torch

    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise GasNasError(f"--device {name}: no CUDA device is available (use --device cpu or auto)")
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            raise GasNasError(f"--device {name}: this machine has {count} CUDA device{'s' if count > 1 else ''} (cuda:0..cuda:{count - 1})")
        torch.cuda.set_device(index)
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def check_memory(specs: list, train, quality, device, have, *, data_loaded: bool) -> None:
    """Refuse, in one line, a trial whose predicted peak does not fit what this process may use
    (on a CPU the kernel's out-of-memory killer would end it without a message)."""
    from gas_nas.trial.memory import check

    reason = check(specs, train, quality, device, have, data_loaded=data_loaded)
    if reason:
        raise GasNasError(reason)


def check_data(req: Any) -> None:
    """MNIST is found (a named folder checked, the default cache downloaded into) before any
    study is created or training starts."""
    from gas_nas.trial.data import resolve_data_dir

    resolve_data_dir(req.data_dir)


def train_config(req: Any, space, arch: str | None = None):
    """The one precedence for training keys, flags > arch file > space, and the line saying which won."""
    from gas_nas.models.spec import resolve_train, train_section

    built = not isinstance(req.space, (str, type(None)))  # a SearchSpace a script built: its own train keys
    layers = [("space", space.train.to_dict() if built else train_section(space.path))] + ([("arch file", train_section(arch))] if arch else [])
    layers += [(flag, {key: getattr(req, key)}) for key, flag in TRAIN_FLAGS.items() if getattr(req, key) is not None]
    if req.teacher:  # recorded with the trials: absolute, as relative paths in files are resolved against the file
        layers[-1] = ("--teacher", {"teacher": str(Path(req.teacher).expanduser().absolute())})
    train, line = resolve_train(layers)
    if req.iterations is not None:
        train = dataclasses.replace(train, log_every=min(train.log_every, req.iterations))
    return train, line


def teacher_for(train, device, req: Any, events: Events | None = None):
    """The teacher the recipe trains with (None without one), checked before any training (the
    default teacher is trained on first use, told to `events`)."""
    from gas_nas.trial.teacher import resolve_teacher

    return resolve_teacher(train, device, req.data_dir, events=events)


def study_settings(req: Any, space, storage: str, study_name: str, line: str):
    """The space, base seed and training line this search runs with: a resumed study's stored
    settings where this run names none (a named one that differs is refused, before any write);
    and which setting parts the run named."""
    from gas_nas.models.spec import resolve_train
    from gas_nas.study.search import existing_study
    from gas_nas.study.settings import StudySettings, apply, keep_settings

    named = {part for part, given in (("train", req.space or any(getattr(req, k) is not None for k in TRAIN_FLAGS)),
                                      ("quality", req.space), ("seed", req.seed is not None)) if given}
    wanted = StudySettings(space.train, space.quality, req.seed if req.seed is not None else 0)
    found = existing_study(storage, study_name)
    if found is None:
        return space, wanted.seed, line, named
    kept = keep_settings(found, wanted, named)
    if "train" not in named:
        line = resolve_train([(f"study {study_name}", kept.train.to_dict())])[1]
    return apply(space, kept), kept.seed, line, named


def train_seed(req: Any, meta: dict) -> tuple[int, str]:
    """`--seed`, else the seed an exported trial trained with (validated as `--seed` is), else 0;
    and a line saying which, with what a cohort-trained trial's retraining gives."""
    if req.seed is not None:
        return req.seed, f"seed {req.seed} (--seed)"
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    if "seed" not in metrics:
        return 0, "seed 0 (default)"
    seed = metrics["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise GasNasError(f"{req.arch}: metadata.metrics.seed: expected an integer 0..{MAX_SEED}, got {seed!r}")
    line = f"seed {seed} (arch file: trial {meta.get('trial')}'s)"
    cohort = metrics.get("cohort") or 1
    if isinstance(cohort, int) and cohort > 1:
        line += (f"; that trial trained in a cohort of {cohort}, whose fused fp32 kernels round differently from a trial alone: "
                 "expect the same architecture, budget and seed, not bit-identical numbers")
    return seed, line


def trial_seconds(space, res, device) -> float | None:
    """On a CPU, a trial's seconds timed from a few iterations of the first paper case: the start
    line's figure and the bars' until a trial has finished (None on CUDA: warm-up and graph
    capture make a few iterations say little)."""
    from gas_nas.models.spec import DiscriminatorSpec
    from gas_nas.trial.train import seconds_per_trial

    if device.type != "cpu":
        return None
    spec = space.cases[0].spec if space.cases else DiscriminatorSpec()
    teacher = res.teacher.module if res.teacher is not None else None
    return seconds_per_trial(spec, space.train, res.real, teacher=teacher) or None


def start_workers(req, plan: list, storage: str, study_name: str, n_trials: int | None, seed: int) -> list:
    """`--jobs K`: K-1 more `gas-nas search` processes on the same study, each with its share of the machine."""
    from gas_nas.study.workers import start

    if len(plan) < 2:
        return []
    cmd = [sys.executable, "-m", "gas_nas.cli", "search", "--study", study_name, "--seed", str(seed), "--quiet"]
    cmd += ["--until", str(req.until)] if req.until else ["--trials", str(n_trials)]
    for flag, value in (("--space", req.space), ("--recipe", req.recipe), ("--iterations", req.iterations), ("--batch-size", req.batch_size), ("--teacher", req.teacher),
                        ("--data-dir", req.data_dir), ("--sampler", req.sampler), ("--artifacts", req.artifacts), ("--cohort", req.cohort)):
        if value is not None:
            cmd += [flag, str(value)]
    env = {**os.environ, "GAS_NAS_STORAGE": storage}  # not in argv, where `ps` would show a password
    return start(plan, cmd, env)


@dataclass
class PreparedSearch:
    """A search ready to run: every input checked, the study opened (created with its paper cases
    and settings, or resumed with its own), MNIST and the classifier loaded, memory measured."""

    space: Any
    study: Any
    storage: str
    study_name: str
    device: Any
    plan: list  # gas_nas.study.workers.Worker: this process first
    res: Any  # gas_nas.study.search.Resources
    memory: Any
    seed: int
    cohort: int
    cohort_auto: bool
    n_trials: int | None
    artifacts: str
    train_line: str  # which training keys came from where
    resume: str  # the command that continues this study the same way
    strategy: Any  # gas_nas.strategies.registry.Strategy
    strategy_line: str = ""  # what the strategy says before it runs ("" for nothing)


def prepare_search(req: Any, events: Events | None = None) -> PreparedSearch:
    """Everything before the first trial, in the order that refuses bad input before any write:
    paths, space, flags, storage, MNIST, the study's settings, the teacher; then the study."""
    import optuna
    import torch

    from gas_nas.common.paths import check_output_dir
    from gas_nas.models.space import load_space
    from gas_nas.strategies.registry import get_strategy
    from gas_nas.study.search import load_resources, open_study, record_artifacts
    from gas_nas.study.settings import StudySettings, keep_settings
    from gas_nas.study.storage import DEFAULT_ARTIFACTS, check_openable, redact
    from gas_nas.study.workers import divide
    from gas_nas.trial.memory import available
    from gas_nas.trial.train import auto_cohort

    artifacts = str(check_output_dir(req.artifacts or DEFAULT_ARTIFACTS, "--artifacts"))
    space = load_space(req.space) if isinstance(req.space, (str, type(None))) else req.space
    train, line = train_config(req, space)
    search = {k: v for k, v in (("strategy", req.strategy), ("lambdas", req.lambdas)) if v is not None}
    space = dataclasses.replace(space, train=train, search=dataclasses.replace(space.search, **search))
    strategy = get_strategy(space.search.strategy)
    strategy_line = strategy.check(space, req)  # a combination it cannot run: one line, before any work
    n_trials = req.trials if req.trials or req.until else 50
    storage = storage_url(req)
    study_name = req.study or space.name
    if req.jobs > 1 and storage.startswith("sqlite"):
        raise GasNasError(f"--jobs {req.jobs} needs a storage several processes can share: use --storage journal:studies/gas.journal (one machine) or postgresql://USER:PASSWORD@HOST/DB, not SQLite")
    plan = divide(req.jobs, torch_device(req.device))
    device = torch.device(plan[0].device)
    check_openable(storage)  # the storage is named first: a bad URL says so even without MNIST
    check_data(req)
    space, seed, line, named = study_settings(req, space, storage, study_name, line)
    teacher = teacher_for(space.train, device, req, events)
    setting = req.cohort or space.search.cohort
    cohort = auto_cohort(device, space.train, plan[0].memory_share, teacher.module if teacher else None) if setting == "auto" else setting
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our lines replace Optuna's
    study = open_study(space, storage, study_name, seed=seed, sampler=req.sampler, teacher=teacher.identity() if teacher else None)
    keep_settings(study, StudySettings(space.train, space.quality, seed), named)  # a new study stores them
    record_artifacts(study, storage, artifacts)  # so `gas-nas dashboard` finds them without --artifacts
    res = load_resources(device, req.data_dir, teacher=teacher)
    memory = available(device, share=plan[0].memory_share)  # once, with MNIST loaded: what every cohort is checked against
    where = f" --storage {redact(storage)}" if req.storage else ""  # from $GAS_NAS_STORAGE: it still holds the password
    resume = f"gas-nas search{where} --study {study_name}" + "".join(f" {flag} {getattr(req, key)}" for key, flag in RESUME_FLAGS.items() if isinstance(getattr(req, key), (str, int, float)))
    resume += f" --strategy {strategy.name}" if strategy.propose is not None else ""
    resume += f" --lambdas {','.join(f'{v:g}' for v in req.lambdas)}" if req.lambdas else ""
    return PreparedSearch(space, study, storage, study_name, device, plan, res, memory, seed, cohort, setting == "auto", n_trials, artifacts,
                          line, resume, strategy, strategy_line)


SLOW_SEARCH_S = 3600.0  # a search expected to run longer than this gets a hint before its first trial


def slow_search_hint(trial_seconds: float, trials: int, iterations: int) -> str:
    """Before a CPU search: how long a trial takes here (the bars start from the same figure),
    and, for a search of over an hour, how to take a quick look first."""
    line = (f"on this machine a trial of the original GAS discriminator at {iterations} iterations takes about {human_time(trial_seconds)}, "
            f"so {trials} trials take about {human_time(trial_seconds * trials)}")
    if trial_seconds * trials < SLOW_SEARCH_S:
        return line
    return f"{line}; --iterations {max(iterations // 20, 1)} gives a quick look first"


def study_status(study) -> str:
    """What the study holds before this process runs: new (paper cases queued) or counts by state."""
    from collections import Counter

    import optuna

    from gas_nas.study.record import TrialRecord

    trials = study.get_trials(deepcopy=False)
    queued = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
    cases = sum(1 for t in queued if TrialRecord.of(t).case)
    if len(queued) == len(trials):
        return f"new study; the {cases} paper cases are queued as its first trials" if cases == len(queued) else f"new study; {len(queued)} trials queued"
    counts = Counter("failed" if t.state == optuna.trial.TrialState.FAIL else t.state.name.lower() for t in trials if t.state != optuna.trial.TrialState.WAITING)
    line = ", ".join(f"{n} {state}" for state, n in counts.items())
    if queued:
        line += f"; {len(queued)} queued" + (f" ({cases} paper cases)" if cases else "")
    return line


@dataclass(kw_only=True)
class Ending:
    """How a run ended: exit code 0, or why not in one line (without the "gas-nas:" prefix)."""

    code: int = 0
    message: str = ""
    stopped: bool = False  # by Ctrl-C or SIGTERM: what it found is not the run's last word


@dataclass
class SearchEnd(Ending):
    """A finished (or stopped) search and its study."""

    study: Any


def search(req: Any, events: Events | None = None) -> SearchEnd:
    """A whole `gas-nas search`: prepare (every refusal before any write), the strategy's own
    proposals, then the trials, with extra workers for --jobs; Ctrl-C or SIGTERM ends it cleanly."""
    from gas_nas.common.interrupt import StopRequest

    events = events or Events()
    ready = prepare_search(req, events)
    say_settings(ready, events)
    n_trials = ready.n_trials
    if ready.strategy.propose is not None:
        events.say(ready.strategy_line)
        with (stop := StopRequest()):
            waiting = ready.strategy.propose(ready.study, ready.space, ready.res, ready.seed, events, stop)
        if stop.stopped:
            return SearchEnd(ready.study, code=stop.exit_code, message=f"{stop.by} during {ready.strategy.phase}; no trial was running, "
                                                          f"the finished proposals' trials are queued. Resume with: {ready.resume}", stopped=True)
        n_trials = req.trials or waiting
        if not n_trials:
            return SearchEnd(ready.study)
    return run_trials(ready, events, n_trials, until=req.until, req=req)


def say_settings(ready: PreparedSearch, events: Events) -> None:
    """The lines before a search: training keys, the study, the guard, memory, workers."""
    from gas_nas.study.search import guard_line
    from gas_nas.study.storage import redact

    events.say(ready.train_line)
    events.say(f"study {ready.study_name!r} in {redact(ready.storage)}: {study_status(ready.study)}; device {ready.device}, cohort {ready.cohort}"
               + (" (auto)" if ready.cohort_auto else ""))
    events.say(guard_line(ready.study, ready.space))
    if ready.memory is not None:
        events.say(f"memory: {ready.memory.describe()}; a cohort that would not fit is split, a trial that would not fit alone fails")
    if len(ready.plan) > 1:
        events.say(f"{len(ready.plan)} workers:" + "".join(f"\n  {w.describe()}" for w in ready.plan))


def run_trials(ready: PreparedSearch, events: Events | None = None, n_trials: int | None = None, *, until: int | None = None, req: Any = None,
               on_trial_start: Any = None) -> SearchEnd:
    """The trial loop of a prepared search: `n_trials` trials (the paper cases first, all of them
    while the relative guard waits on them), or until the study has `until` complete ones; with
    `req`, --jobs' extra workers run beside this process."""
    import optuna

    from gas_nas.common.interrupt import StopRequest
    from gas_nas.study.search import SearchOptions, cases_to_settle, run_search

    events = events or Events()
    space, study = ready.space, ready.study
    complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    if n_trials and not until and cases_to_settle(study, space) > n_trials:
        n_trials = cases_to_settle(study, space)
        events.say(f"the relative guard is settled by the paper cases, so this run trains all {n_trials} of them first")
    prior = None if events.quiet else trial_seconds(space, ready.res, ready.device)
    if prior is not None:
        events.say(slow_search_hint(prior, max(until - complete, 0) if until else n_trials, space.train.iterations))
    with events.trials(n_trials or until, until, prior) as bar:
        stop = StopRequest()
        opts = SearchOptions(seed=ready.seed, artifacts=ready.artifacts, cohort=ready.cohort, memory=ready.memory, on_iteration=bar.on_iteration,
                             on_cohort_start=bar.on_cohort_start, on_held=bar.on_held, on_trial_start=on_trial_start, should_stop=stop, callbacks=[bar])
        workers = start_workers(req, ready.plan, ready.storage, ready.study_name, n_trials, ready.seed) if req is not None else []
        with stop:
            run_search(study, space, opts, ready.res, n_trials=n_trials if not until else None, until=until)
        if stop.stopped:
            for w in workers:
                w.wait()
            return SearchEnd(study, code=stop.exit_code, message=f"{stop.by}; the running trials are marked FAIL (interrupted) and paper cases queued again. "
                                                    f"Resume with: {ready.resume}", stopped=True)
    failed = [w.args for w in workers if w.wait() != 0]
    if failed:
        return SearchEnd(study, code=1, message=f"{len(failed)} of {len(ready.plan) - 1} extra workers failed (see their messages above)")
    return SearchEnd(study)


@dataclass
class Trained:
    """A finished `gas-nas train`: the outcome, the files written and the guard's reasons."""

    outcome: Any  # gas_nas.trial.results.TrialOutcome
    paths: dict
    reasons: list[str]  # why the quality guard fails it ([] passes)


def train(req: Any, events: Events | None = None) -> Trained:
    """A whole `gas-nas train`: the arch file's spec with the precedence of training keys, its
    seed, every check before MNIST loads (memory, data, teacher), one training, its files."""
    from gas_nas.common.paths import check_output_dir
    from gas_nas.models.space import load_space
    from gas_nas.models.spec import load_arch
    from gas_nas.study.search import load_resources
    from gas_nas.trial.guard import violations
    from gas_nas.trial.memory import available
    from gas_nas.trial.report import save_trial
    from gas_nas.trial.train import run_trial

    events = events or Events()
    check_output_dir(req.out, "--out")
    spec, _, meta = load_arch(req.arch)
    space = load_space(req.space)
    config, line = train_config(req, space, req.arch)
    seed, seed_line = train_seed(req, meta)
    device = torch_device(req.device)
    check_memory([spec], config, space.quality, device, available(device), data_loaded=False)  # before MNIST and the classifier
    check_data(req)
    res = load_resources(device, req.data_dir, teacher=teacher_for(config, device, req, events))
    events.say(f"{line}; {seed_line}")
    with events.training(config.iterations) as bar:
        outcome = run_trial(spec, config, space.quality, real=res.real, held_out=res.held_out, classifier=res.classifier, seed=seed,
                            progress=bar.on_iteration, teacher=res.teacher)
    paths = save_trial(outcome, req.out, spec, config, title=Path(req.arch).stem)
    return Trained(outcome, paths, violations(outcome.metrics, space.quality))


@dataclass
class Confirmed(Ending):
    """A finished (or stopped) `gas-nas confirm`: the trials it confirmed and what their seeds say."""

    study: Any
    trials: list  # FrozenTrial: the study's trials confirmed
    found: dict  # trial number -> gas_nas.study.confirmation.Confirmation


def confirm(req: Any, events: Events | None = None) -> Confirmed:
    """A whole `gas-nas confirm`: which trials, every check before training (data, teacher), the
    retrainings queued in the companion study and run; Ctrl-C keeps the finished ones."""
    from gas_nas.common.interrupt import StopRequest
    from gas_nas.models.spec import QualityConfig
    from gas_nas.study.confirm import plan_confirm, queue, run_confirm
    from gas_nas.study.confirmation import confirmations
    from gas_nas.study.search import SearchOptions, load_existing, load_resources
    from gas_nas.trial.memory import available
    from gas_nas.trial.train import auto_cohort

    import optuna

    events = events or Events()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our lines replace Optuna's, as in search
    study = load_existing(storage_url(req), req.study)
    plan = plan_confirm(study, req.trials, req.seeds, QualityConfig())
    device = torch_device(req.device)
    check_data(req)
    teacher = teacher_for(plan.train, device, req, events)
    cohort = req.cohort if isinstance(req.cohort, int) else auto_cohort(device, plan.train, 1, teacher.module if teacher else None)
    _, todo = queue(study, plan)
    events.say(f"confirming {len(plan.trials)} trial(s) of {study.study_name!r} ({', '.join(str(t.number) for t in plan.trials)}) with {plan.seeds} seeds each "
               f"at {plan.train.iterations} iterations: {todo} retraining(s) to run; {plan.guard.describe()}")
    res = load_resources(device, req.data_dir, teacher=teacher)
    stop = StopRequest()
    opts = SearchOptions(cohort=cohort, memory=available(device), should_stop=stop)

    def done(number, seed, record):
        m = record.metrics
        verdict = record.fail_reason or ("feasible" if record.feasible else f"infeasible: {record.infeasible_reason}")
        events.say(f"trial {number} seed {seed}: " + (f"imbalance {m.imbalance:.4g}, FID {m.fid:.1f}, D AUC {m.d_auc:.2f}; " if m else "") + verdict)

    with stop:
        run_confirm(study, plan, res, opts, on_done=done)
    if stop.stopped:
        return Confirmed(study, plan.trials, {}, code=stop.exit_code, message=f"{stop.by}; finished retrainings are kept, the running ones queued again. "
                                                                 "Resume with the same command", stopped=True)
    return Confirmed(study, plan.trials, confirmations(study))


@dataclass
class Exported:
    """A written `gas-nas export`: which trial, where, and what a user should hear about it."""

    trial: int
    study_name: str
    path: Path
    pick_line: str = ""  # --pick: the trial it chose and by which values
    warning: str = ""  # an infeasible trial exported anyway


def export(req: Any) -> Exported:
    """The trial `--trial` or `--pick` names, written as architecture YAML that `gas-nas train
    --arch` rebuilds, with its study, objectives, metrics and (where confirmed) its seeds' values."""
    from gas_nas.common.paths import check_output_file
    from gas_nas.models.spec import TrainConfig, save_arch
    from gas_nas.study.confirmation import confirmations
    from gas_nas.study.record import TrialRecord
    from gas_nas.study.search import load_existing, pick_trial, trial_spec
    from gas_nas.study.storage import redact

    check_output_file(req.output, "--output", force=req.force)
    storage = storage_url(req)
    study = load_existing(storage, req.study)
    pick_line = ""
    if req.pick:
        trial, used = pick_trial(study, req.pick)
        pick_line = f"--pick {req.pick}: trial {trial.number}, by {used}"
    else:
        match = [t for t in study.get_trials(deepcopy=False) if t.number == req.trial]
        if not match:
            raise GasNasError(f"study {study.study_name!r} has no trial {req.trial} (it has {len(study.trials)})")
        trial = match[0]
    record = TrialRecord.of(trial)
    if trial.state.name != "COMPLETE":
        reason = record.fail_reason
        raise GasNasError(f"trial {trial.number} is {trial.state.name}{': ' + reason if reason else ''}; only a COMPLETE trial has a trained result to export")
    warning = f"trial {trial.number} is infeasible ({record.infeasible_reason or 'quality guard'}); exporting it anyway" if record.feasible is False else ""
    names = study.metric_names or []
    m = record.metrics
    meta = {
        "study": study.study_name, "storage": redact(storage), "trial": trial.number, "state": trial.state.name,
        "case": record.case, "pick": req.pick,
        "objectives": dict(zip(names, trial.values or [])),
        "metrics": ({k: getattr(m, k) for k in ("d_params", "d_param_mb", "imbalance", "fid", "classes", "entropy", "d_auc", "iterations", "seed", "cohort")} if m else {})
        | {"feasible": record.feasible},
    }
    confirmed = confirmations(study).get(trial.number)
    if confirmed is not None:
        meta["confirmed"] = confirmed.to_dict(names)  # the seeds' values; metrics stay the trial's own (train --arch rebuilds those)
    train = TrainConfig.from_dict(record.train) if record.train else None
    path = save_arch(req.output, trial_spec(trial), train, meta)
    return Exported(trial.number, study.study_name, path, pick_line, warning)
