"""Evidence runs that survive being stopped: the training runs behind the docs/ pages.

Each finished run is stored at once (its metrics as JSON, its sample grid as PNG) in a folder
that is committed, keyed by everything that changes its numbers, and skipped when the same
command runs again; a run stopped at any point loses at most the run in progress.
`docs/reproduce.py` (and every other evidence script) plans its runs as `Run`s and calls
`train_missing`, then reads `load_run` to write its page. Several processes running the same
command share its runs (each claims a run before training it), so a 2-core machine can run two
one-thread workers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gas_nas.common.machine import cpu_model
from gas_nas.common.paths import atomic_path, atomic_write
from gas_nas.models.spec import DiscriminatorSpec, QualityConfig, TrainConfig


def stored_cpus(folder: Path, runs: list) -> str:
    """The CPU models the stored runs of `runs` ran on ("; "-joined), this machine's when none is stored."""
    found = [rec.get("cpu", "not recorded") for r in runs if (rec := load_run(folder, r)) is not None]
    return "; ".join(dict.fromkeys(found)) or cpu_model()


def machine_key(device) -> dict:
    """What about the machine a run is keyed by: torch and the device kind (a GPU's name).

    Not the CPU model, which is recorded on every run instead: the CPU changes between sessions
    here (Zen 5, EPYC, Xeon) as the thread count changes between runs, and both only move fp32
    numbers by the chaos seeds already sample; keyed by it, a page spanning sessions never fills."""
    import torch

    kind = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"torch": torch.__version__, "device": kind}


def classifier_fingerprint(classifier) -> str:
    """sha256 of the quality classifier's weights: another classifier gives other FIDs."""
    digest = hashlib.sha256()
    for name, tensor in sorted(classifier.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def key_matches(stored, current: dict) -> bool:
    """Equal keys, except that an option added to the spec or train config after a run was
    stored may appear in `current` at its default (a new option's default keeps the old
    behaviour, which its own tests check), so adding an option does not retrain every run."""
    if not isinstance(stored, dict) or set(stored) != set(current):
        return False
    defaults = {"spec": DiscriminatorSpec().to_dict(), "train": TrainConfig().to_dict()}
    for name, value in current.items():
        if name in defaults and isinstance(value, dict) and isinstance(stored[name], dict):
            added = set(value) - set(stored[name])
            if any(value[k] != defaults[name].get(k, object()) for k in added):
                return False
            value = {k: v for k, v in value.items() if k not in added}
        if stored[name] != value:
            return False
    return True


@dataclass
class Run:
    """One training run of an evidence page: what it trains and the key it is stored under."""

    name: str  # its row on the page (a paper case, or case + setting)
    spec: DiscriminatorSpec
    seed: int
    train: TrainConfig
    key: dict
    prefix: str  # file name before the key's hash: "<slug>-seed<seed>"
    teacher: Any = None  # gas_nas.trial.teacher.Teacher for a recipe with a teacher (its sha256 is in the key)

    @property
    def stem(self) -> str:
        return f"{self.prefix}-{key_hash(self.key)}"


def plan_run(name: str, slug: str, spec: DiscriminatorSpec, seed: int, train: TrainConfig, quality: QualityConfig,
             machine: dict, classifier: str, teacher: Any = None) -> Run:
    """A run keyed by everything that changes its numbers. The guard's thresholds are not in
    the key: they judge the numbers when a page is written and can change without retraining."""
    extra = {"teacher_sha256": teacher.sha256} if teacher is not None else {}
    key = extra | {
        "case": name,
        "spec": spec.to_dict(),
        "seed": seed,
        "train": train.to_dict(),
        "quality": {"n_samples": quality.n_samples, "duality_gap_steps": quality.duality_gap_steps},
        **machine,
        "classifier": classifier,
    }
    return Run(name, spec, seed, train, key, f"{slug}-seed{seed}", teacher)


def load_run(folder: Path, run: Run) -> dict | None:
    """The stored record of `run` (with "grid": its PNG's name), or None when it has not
    finished or was stored under another key."""
    for path in sorted(Path(folder).glob(f"{run.prefix}-*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if key_matches(record.get("key"), run.key) and path.with_suffix(".png").is_file():
            return record | {"grid": path.with_suffix(".png").name}
    return None


def command_line(argv: list[str], drop: tuple[str, ...] = ("--max-runs",)) -> str:
    """The arguments a page shows as its command, without the flags that only say when to stop
    (`--max-runs N`): the page shows the command that reproduces it."""
    given = list(argv)
    for flag in drop:
        if flag in given[:-1]:
            i = given.index(flag)
            del given[i : i + 2]
    return " ".join(given)


MACHINES_ATTR = "evidence:machines"  # study user attribute: every machine that trained in it


def note_machine(study: Any, machine: str) -> None:
    """Add `machine` to the study's list: an evidence study spans sessions, and the machine under it may change between them."""
    if machine not in study.user_attrs.get(MACHINES_ATTR, []):
        study.set_user_attr(MACHINES_ATTR, study.user_attrs.get(MACHINES_ATTR, []) + [machine])


def study_machines(studies: Any, current: str) -> str:
    """Every machine the studies name, in order ("; "), or the current one if none does."""
    return "; ".join(dict.fromkeys(m for study in studies for m in study.user_attrs.get(MACHINES_ATTR, [])) or [current])


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON so that a kill leaves the old file or the new one, never half of one."""
    with atomic_write(path) as f:
        f.write(json.dumps(obj, indent=1, allow_nan=True) + "\n")


def results_markers(script: str) -> tuple[str, str]:
    """The HTML comments around the part of a page that `script` writes; text outside them is
    written by hand (what the numbers mean) and survives every rewrite."""
    return f"<!-- results: written by {script} -->", "<!-- /results -->"


def write_results(path: Path, block: str, script: str, title: str) -> None:
    """Put `block` between `script`'s markers in the page at `path` (atomically), keeping the
    hand-written text around them; a page without the markers is created as `title` + block."""
    start, end = results_markers(script)
    block = f"{start}\n\n{block}\n\n{end}"
    path = Path(path)
    text = path.read_text() if path.is_file() else ""
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = f"# {title}\n\n{block}\n"
    with atomic_write(path) as f:
        f.write(text)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation over seeds; (nan, nan) without values, (inf, 0) when a
    run is not finite (a diverged seed), std 0 for a single seed."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    if not all(map(math.isfinite, values)):
        return math.inf, 0.0
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def pm(values: list[float], fmt: str) -> str:
    """"mean ± std" over seeds in format `fmt` ("–" without values, "inf" when one diverged, the
    value alone for one seed): every evidence page writes its spreads this way."""
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "–"
    if not math.isfinite(mean):
        return "inf"
    return f"{mean:{fmt}}" if len(values) < 2 else f"{mean:{fmt}} ± {std:{fmt}}"


def store_run(folder: Path, run: Run, outcome, threads: int) -> dict:
    """Write a finished run atomically: its grid first, then the JSON that marks it done."""
    from gas_nas.trial.report import save_grid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    grid, record_path = folder / f"{run.stem}.png", folder / f"{run.stem}.json"
    with atomic_path(grid) as part:
        save_grid(outcome.grid, part)
    record = {
        "key": run.key,
        "metrics": outcome.metrics.to_dict(),
        "threads": threads,
        "cpu": cpu_model(),
        "finished": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    write_json_atomic(record_path, record)
    return record


def estimate_seconds(runs: list[Run], quality: QualityConfig, real) -> float:
    """About how long `runs` take: a few timed iterations per distinct (spec, train) pair (as
    `gas-nas search` does on a CPU), scaled to each budget plus the duality gap's steps."""
    from gas_nas.trial.train import gap_steps, seconds_per_trial

    timed: dict[str, float] = {}
    total = 0.0
    for run in runs:
        token = json.dumps([run.spec.to_dict(), run.train.to_dict()], sort_keys=True)
        if token not in timed:
            scale = 1 + gap_steps(quality, run.train) / run.train.iterations
            teacher = {"teacher": run.teacher.module} if run.teacher is not None else {}
            timed[token] = seconds_per_trial(run.spec, run.train, real, **teacher) * scale
        total += timed[token]
    return total


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def claim(folder: Path, run: Run) -> bool:
    """Claim `run` for this process (an exclusive `.claim` file holding our pid), so that other
    workers of the same command skip it; a claim whose process has died is taken over."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{run.stem}.claim"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _claim_alive(path):
                return False
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{platform.node()} {os.getpid()}\n")
        return True
    return False


def _claim_alive(path: Path) -> bool:
    """Whether the process named in a claim file still runs (a claim from another host counts as alive)."""
    try:
        host, pid = path.read_text().split()
        if host != platform.node():
            return True
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return True  # being written, or not ours to judge
    return True


def release(folder: Path, run: Run) -> None:
    (Path(folder) / f".{run.stem}.claim").unlink(missing_ok=True)


def train_missing(runs: list[Run], quality: QualityConfig, res, folder: Path, *, max_runs: int | None,
                  log: Callable[[str], None], on_stored: Callable[[], None]) -> int:
    """Train the runs not stored yet (at most `max_runs`), in cohorts of `auto_cohort` (1 on a
    CPU) of consecutive runs with the same train config; store each as its cohort finishes and
    call `on_stored()`. Says how long it will take first and prints progress every tenth of a
    run. A run claimed by another worker of the same command is skipped (`claim`). Returns how
    many were trained."""
    import torch

    from gas_nas.trial.train import auto_cohort

    unstored = [r for r in runs if load_run(folder, r) is None]
    missing = unstored if max_runs is None else unstored[:max_runs]
    log(f"{len(runs) - len(unstored)} of {len(runs)} runs stored in {folder}; training {len(missing)} now")
    if not missing:
        return 0
    estimate = estimate_seconds(missing, quality, res.real)
    log(f"about {minutes(estimate)} for {len(missing)} runs on {res.real.device} with {torch.get_num_threads()} thread(s) "
        f"(timed from a few iterations; stopping loses at most the run in progress)")
    chunks: list[list[Run]] = []
    for run in missing:
        size = auto_cohort(res.real.device, run.train)
        if chunks and len(chunks[-1]) < size and chunks[-1][0].train == run.train and chunks[-1][0].teacher is run.teacher:
            chunks[-1].append(run)
        else:
            chunks.append([run])
    done, trained, spent = 0, 0, 0.0
    for chunk in chunks:
        mine = [r for r in chunk if load_run(folder, r) is None and claim(folder, r)]
        if len(mine) < len(chunk):
            log(f"  skipped {len(chunk) - len(mine)} run(s) stored or claimed by another worker meanwhile")
        done += len(chunk) - len(mine)
        if mine:
            try:
                spent += _train_chunk(mine, quality, res, folder, done, len(missing), log)
            finally:
                for run in mine:
                    release(folder, run)
            done += len(mine)
            trained += len(mine)
            left = estimate * (len(missing) - done) / len(missing)
            log(f"  {done}/{len(missing)} runs done in {minutes(spent)}; about {minutes(left)} left")
            on_stored()
    return trained


def _train_chunk(chunk: list[Run], quality: QualityConfig, res, folder: Path, done: int, total: int,
                 log: Callable[[str], None]) -> float:
    """Train one cohort of runs and store each; returns the seconds it took."""
    import torch

    from gas_nas.trial.train import run_cohort

    start = time.perf_counter()
    label = ", ".join(f"{r.name} seed {r.seed}" for r in chunk)
    step = max(1, chunk[0].train.iterations // 10)

    def progress(it: int, iterations: int) -> None:
        if it % step == 0 or it == iterations:
            log(f"  [{done + len(chunk)}/{total}] {label}: {it}/{iterations} iterations, {(time.perf_counter() - start) / 60:.1f} min")

    teacher = {"teacher": chunk[0].teacher} if chunk[0].teacher is not None else {}
    outs = run_cohort([r.spec for r in chunk], [r.seed for r in chunk], chunk[0].train, quality,
                      real=res.real, held_out=res.held_out, classifier=res.classifier, progress=progress, **teacher)
    for run, out in zip(chunk, outs):
        store_run(folder, run, out, torch.get_num_threads())
        m = out.metrics
        log(f"  stored {run.name} seed {run.seed}: fid {m.fid:.1f}  imbalance {m.imbalance:.3f}  classes {m.classes}  {m.status}")
    return time.perf_counter() - start

__all__ = ["Run", "claim", "classifier_fingerprint", "command_line", "cpu_model", "key_matches", "load_run", "machine_key", "mean_std", "plan_run", "pm", "release", "results_markers", "write_results", "store_run", "stored_cpus", "write_json_atomic", "train_missing"]
