"""What a search trial costs besides training, as the study grows: ms per trial at 50, 200, 1000 trials.

    python benchmarks/bookkeeping.py [--sizes 50,200,1000] [--storage sqlite|URL ...] [--window S] [--min-trials M]
                                     [--cohort K] [--train-seconds S] [--overlap on|off|auto]

Training is replaced by a stub (`gas_nas.trial.train.run_cohort` returns made-up paper-budget metrics,
a real GAS generator and paper case 1's discriminator, and a random sample grid at once, or
after sleeping `--train-seconds`, which like a GPU leaves the CPU free), so what is timed is
everything else `run_search` does per trial: ask, sampling (random sampler, so the sampler's
own growth is not measured), the record, constraints, artifacts (PNGs, uploads), tell, the
trial note and the study plot, heartbeats.

For each size N the study is first filled to N trials the way that version of gas-nas would
have stored them (its `TrialRecord`, constraints, a note per trial, the study plot once), then
`run_search` runs until it has told at least `--min-trials` trials and `--window` seconds have
passed (so a plot refreshed every few seconds is paid inside the window). The figure is the mean
time between consecutive tells over that window (the first tell, which includes warm-up, and the
end of the search are outside it). Storages: SQLite in a temp folder, and PostgreSQL when
`GAS_NAS_TEST_POSTGRES` is set or a URL is given with `--storage`.

What is printed is the time per trial beyond the stub's training. With `--train-seconds 0` and
no overlap it is all the CPU work of a trial's bookkeeping, done while the device would wait;
with `--overlap on --train-seconds S` (S longer than a cohort's recording) it is what the
training path still pays: ask, sampling, the spec, heartbeats, handing the cohort over.

The script uses only names that exist before and after the change it measures, so the same
file times both (`git stash`/checkout the old `gas_nas/`, run, compare).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path

import optuna
import torch

import gas_nas.trial.train
from gas_nas.common.interrupt import Interrupted
from gas_nas.models.networks import build_discriminator, build_generator
from gas_nas.models.space import load_space
from gas_nas.study.dashboard import refresh_study_plot, save_trial_note
from gas_nas.study.record import TrialRecord
from gas_nas.study.search import Resources, SearchOptions, open_study, run_search
from gas_nas.study.storage import redact
from gas_nas.trial.train import TrialMetrics, TrialOutcome

from gas_nas.trial.guard import CONSTRAINT_NAMES as CONSTRAINTS
from gas_nas.trial.guard import constraints, violations


def fake_metrics(seed: int, d_params: int, cohort: int, rng: torch.Generator) -> TrialMetrics:
    """Paper-budget-shaped metrics (2000 iterations, a log point every 50)."""
    u = torch.rand(6, generator=rng).tolist()
    steps = list(range(50, 2001, 50))
    return TrialMetrics(
        status="complete", reason="", iterations=2000, d_params=d_params, d_param_mb=d_params * 4 / 2**20 * (0.2 + u[0]),
        imbalance=0.05 + u[1], d_loss=0.2 + 0.05 * u[2], g_loss=0.12 + 0.05 * u[3], fid=20 + 60 * u[4], classes=10,
        entropy=2.2 + 0.05 * u[5], class_histogram=[200] * 10, classifier_accuracy=0.99, seconds=3.0, device="cuda", seed=seed,
        cohort=cohort, log_steps=steps, d_losses=[0.2 + 0.01 * (i % 7) for i in range(len(steps))],
        g_losses=[0.13 + 0.01 * (i % 5) for i in range(len(steps))], duality_gap=0.1 + u[0],
    )


class StubTraining:
    """Stands in for `gas_nas.trial.train.run_cohort`: outcomes at once (or after `seconds` of sleep)."""

    def __init__(self, space, seconds: float):
        self.seconds = seconds
        self.generator = build_generator(space.train.z_dim)
        self.discriminator = build_discriminator(space.cases[0].spec)
        self.d_params = sum(p.numel() for p in self.discriminator.parameters())
        self.rng = torch.Generator().manual_seed(0)

    def __call__(self, specs, seeds, *args, **kwargs):
        if self.seconds:
            time.sleep(self.seconds)
        grid = torch.rand(64, 1, 28, 28, generator=self.rng) * 2 - 1
        return [TrialOutcome(fake_metrics(s, self.d_params, len(specs), self.rng), self.generator, self.discriminator, grid) for s in seeds]


def fill(study: optuna.Study, space, template: optuna.trial.FrozenTrial, count: int, stub: StubTraining) -> None:
    """Add `count` finished trials as this version of gas-nas stores them (record, constraints, note)."""
    for _ in range(count):
        m = fake_metrics(0, stub.d_params, 1, stub.rng)
        reasons = violations(m, space.quality)
        record = TrialRecord(spec=TrialRecord.of(template).spec, train=space.train.to_dict(), metrics=m, feasible=not reasons, infeasible_reason="; ".join(reasons))
        values = list(constraints(m, space.quality).values())
        system = {f"constraints:{k}": v for k, v in zip(CONSTRAINTS, values)} | {"constraints": values}
        study.add_trial(optuna.trial.create_trial(
            values=[m.d_param_mb, m.imbalance], params=template.params, distributions=template.distributions,
            user_attrs=record.to_attrs(), system_attrs=system,
        ))
        save_trial_note(study, study.get_trials(deepcopy=False)[-1])


def measure(study, space, opts: SearchOptions, window: float, min_trials: int) -> tuple[float, int]:
    """Mean seconds between consecutive tells while `run_search` runs for `window` s and >= `min_trials` tells."""
    stamps: list[float] = []
    opts.callbacks = [lambda s, t: stamps.append(time.perf_counter())]
    opts.should_stop = lambda: len(stamps) > min_trials and stamps[-1] - stamps[0] >= window
    try:
        run_search(study, space, opts, Resources(real=None, held_out=None, classifier=None), n_trials=10**6)
    except Interrupted:
        pass
    n = len(stamps) - 1
    return (stamps[-1] - stamps[0]) / n, n


def bench_storage(url: str, space, sizes: list[int], args, tmp: Path) -> list[tuple[int, float, int, float]]:
    stub = StubTraining(space, args.train_seconds)
    gas_nas.trial.train.run_cohort = stub
    study = open_study(space, url, f"bookkeeping-{uuid.uuid4().hex[:8]}", seed=0, sampler="random")
    opts = SearchOptions(seed=0, artifacts=str(tmp / f"artifacts-{uuid.uuid4().hex[:6]}"), cohort=args.cohort, cuda_graph=False)
    if args.overlap != "auto" and hasattr(opts, "overlap"):
        opts.overlap = args.overlap == "on"
    run_search(study, space, opts, Resources(real=None, held_out=None, classifier=None), n_trials=1)  # warm-up, and a template trial
    template = study.get_trials(deepcopy=False)[-1]
    rows = []
    for size in sizes:
        start = time.perf_counter()
        fill(study, space, template, max(size - len(study.get_trials(deepcopy=False)), 0), stub)
        refresh_study_plot(study)
        filled = time.perf_counter() - start
        have = len(study.get_trials(deepcopy=False))
        per_trial, n = measure(study, space, opts, args.window, args.min_trials)
        rows.append((have, per_trial, n, filled))
        beyond = per_trial - args.train_seconds / args.cohort
        print(f"  {redact(url)[:40]:40s} at {have:5d} trials: {1000 * beyond:8.1f} ms/trial beyond training, over {n} trials (filled in {filled:.0f} s)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="50,200,1000")
    p.add_argument("--storage", action="append", help="sqlite (a temp file, the default) or a storage URL; repeatable")
    p.add_argument("--window", type=float, default=15.0, help="seconds of search timed at each size (default 15)")
    p.add_argument("--min-trials", type=int, default=10, help="and at least this many trials (default 10)")
    p.add_argument("--cohort", type=int, default=1)
    p.add_argument("--train-seconds", type=float, default=0.0, help="stub training time per cohort (sleep; default 0)")
    p.add_argument("--overlap", choices=["auto", "on", "off"], default="auto", help="bookkeeping overlapped with training (where gas-nas has it)")
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    sizes = [int(s) for s in args.sizes.split(",")]
    storages = args.storage or (["sqlite"] + ([os.environ["GAS_NAS_TEST_POSTGRES"]] if os.environ.get("GAS_NAS_TEST_POSTGRES") else []))
    space = load_space()
    tmp = Path(tempfile.mkdtemp(prefix="gas-nas-bookkeeping-"))
    print(f"torch {torch.__version__}, optuna {optuna.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; "
          f"cohort {args.cohort}, stub training {args.train_seconds:g} s, overlap {args.overlap}", flush=True)
    results = {}
    try:
        for storage in storages:
            url = f"sqlite:///{tmp}/bookkeeping-{len(results)}.db" if storage == "sqlite" else storage
            results[storage if storage == "sqlite" else redact(storage)] = bench_storage(url, space, sizes, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}; threads alive: {threading.active_count()}")
    print(f"{'storage':12s} {'trials':>7s} {'ms/trial':>9s} {'timed':>6s}   (ms per trial beyond the stub's {args.train_seconds:g} s of training per cohort of {args.cohort})")
    for storage, rows in results.items():
        name = "sqlite" if storage == "sqlite" else "postgresql"
        for have, per_trial, n, _ in rows:
            print(f"{name:12s} {have:7d} {1000 * (per_trial - args.train_seconds / args.cohort):9.1f} {n:6d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
