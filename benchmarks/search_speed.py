"""Search throughput in trials per minute: naive sequential trials vs gas-nas's search.

    python benchmarks/search_speed.py [--device auto|cpu|cuda] [--trials N] [--iterations N] [--batch-size N]

(a) naive: N sequential trials of the naive eager loop (`trial_speed.naive_train`) on the paper
    cases in order (cycled past 6), training only.
(b) gas-nas cohorts: the `gas-nas search` machinery in this process, once per cohort size K
    (1, 2, 4 on CPU; 1, 4, 16 on CUDA; `--cohorts`): `run.prepare_search` on a temp SQLite file
    (study, MNIST, classifier), `run.run_trials(n_trials=N)` with K trials trained together. K = 1 is
    sequential solo trials; each K is reported as a ratio against it. Each trial also
    generates samples, scores quality (FID, digit coverage), saves sample/loss plots as Optuna
    artifacts and does Optuna bookkeeping; (a) does none of that. Timed: `run_trials` only
    (setup printed apart). Past the six paper cases the random sampler picks the specs, so
    every K trains the same discriminators.
(c) gas-nas with concurrency: `gas-nas search --jobs 1` and then `--jobs J` (default 2) as
    subprocesses on journal storages, for the same total number of trials (`--trials N` runs N
    per worker, so --jobs J gets N / J each, rounded up); each timed end to end (process start,
    imports, data and classifier load included), trials counted from the journal afterwards,
    reported as trials per hour and the ratio J / 1. The subprocesses get this environment
    without OMP_NUM_THREADS and MKL_NUM_THREADS, so --jobs divides the cores as a user's run does.

The first N study trials are the enqueued paper cases, so for N <= 6 (a), (b) and (c) train
the same discriminators with the same seeds (seed + trial number). No warm-up: (a) runs first
and pays the process's first-call costs. Budget: paper (2000 iterations, batch 32, 2000
quality samples) on CUDA, a small one on CPU (flags override).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna
import torch
import yaml
from optuna.trial import TrialState

from gas_nas import run
from gas_nas.models.space import DEFAULT_SPACE, load_space
from gas_nas.study.storage import open_storage
from gas_nas.trial.data import load_mnist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trial_speed import PAPER_ITERATIONS, budget, naive_train, pick_device, sync  # noqa: E402

CPU_TRIALS, CUDA_TRIALS = 4, 16
CPU_COHORTS, CUDA_COHORTS = "1,2,4", "1,4,16"
CPU_ITERATIONS = 10
CPU_QUALITY_SAMPLES = 256
STUDY = "bench"
CLI = Path(__file__).resolve().parents[1] / "gas_nas" / "cli.py"


def cli_has_jobs() -> bool:
    try:
        return "--jobs" in CLI.read_text()
    except OSError:
        return False


def gas_nas_exe() -> str:
    exe = Path(sys.executable).with_name("gas-nas")
    return str(exe) if exe.exists() else (shutil.which("gas-nas") or "gas-nas")


def finished_trials(storage_url: str) -> int:
    study = optuna.load_study(storage=open_storage(storage_url), study_name=STUDY)
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))


def per_minute(trials: int, seconds: float) -> float:
    return 60.0 * trials / seconds if seconds > 0 else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--trials", type=int, help=f"default: {CUDA_TRIALS} on CUDA, {CPU_TRIALS} on CPU")
    p.add_argument("--iterations", type=int, help=f"default: {PAPER_ITERATIONS} on CUDA (paper), {CPU_ITERATIONS} on CPU")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--quality-samples", type=int, help=f"quality.n_samples for (b), (c) (default: the YAML's on CUDA, {CPU_QUALITY_SAMPLES} on CPU)")
    p.add_argument("--jobs", type=int, default=2, help="workers for (c) (default: 2)")
    p.add_argument("--cohorts", help=f"cohort sizes for (b), comma-separated (default: {CUDA_COHORTS} on CUDA, {CPU_COHORTS} on CPU)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: a, b, c")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", help="MNIST IDX files (default: $GAS_NAS_DATA)")
    args = p.parse_args(argv)

    device = pick_device(args.device)
    cuda = device.type == "cuda"
    trials = args.trials or (CUDA_TRIALS if cuda else CPU_TRIALS)
    iterations = args.iterations or (PAPER_ITERATIONS if cuda else CPU_ITERATIONS)
    label = "set by flags" if args.iterations else ("paper budget" if cuda else "small CPU budget, NOT the paper's 2000")
    cohorts = [int(k) for k in (args.cohorts or (CUDA_COHORTS if cuda else CPU_COHORTS)).split(",")]
    skip = set(filter(None, args.skip.split(",")))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    tmp = Path(tempfile.mkdtemp(prefix="gas-nas-bench-"))
    try:
        doc = yaml.safe_load(DEFAULT_SPACE.read_text())
        if args.quality_samples or not cuda:
            doc.setdefault("quality", {})["n_samples"] = args.quality_samples or CPU_QUALITY_SAMPLES
        doc.setdefault("train", {}).update(iterations=iterations, batch_size=args.batch_size)
        doc.setdefault("search", {})["sampler"] = "random"  # the same specs whatever the cohort size
        space_path = tmp / "space.yaml"
        space_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        space = load_space(space_path)
        space = dataclasses.replace(space, train=budget(space.train, iterations, args.batch_size))
        print(
            f"budget: {trials} trials x {iterations} iterations, batch {args.batch_size}, "
            f"{space.quality.n_samples} quality samples ({label}); device {device}",
            flush=True,
        )

        # (a) naive sequential trials, training only
        sec_a = None
        if "a" not in skip:
            images_cpu, _ = load_mnist(args.data_dir, train=True, device="cpu")
            sync(device)
            start = time.perf_counter()
            for i in range(trials):
                case = space.cases[i % len(space.cases)]
                naive_train(case.spec, space.train, images_cpu, device, seed=args.seed + i)
            sync(device)
            sec_a = time.perf_counter() - start
            print(f"  (a) naive: {trials} trials in {sec_a:.1f} s", flush=True)

        # (b) gas-nas search machinery, in process, one run per cohort size, through the library layer
        rates_b: dict[int, float] = {}
        for k in cohorts if "b" not in skip else []:
            start = time.perf_counter()
            storage_b = f"sqlite:///{tmp}/bench-{k}.db"
            ready = run.prepare_search(run.SearchRequest(space=space, storage=storage_b, study=STUDY, artifacts=str(tmp / f"artifacts_b{k}"),
                                                         device=str(device), data_dir=args.data_dir, seed=args.seed, cohort=k))
            setup_b = time.perf_counter() - start
            sync(device)
            start = time.perf_counter()
            run.run_trials(ready, n_trials=trials)
            sync(device)
            sec_b = time.perf_counter() - start
            done_b = finished_trials(storage_b)
            rates_b[k] = per_minute(done_b, sec_b)
            print(f"  (b) gas-nas cohort {k}: {done_b} trials in {sec_b:.1f} s (+ {setup_b:.1f} s setup, not counted)", flush=True)

        # (c) gas-nas with concurrency: --jobs 1, then --jobs J, the same total, as subprocesses
        rates_c: dict[int, float] = {}
        if cli_has_jobs() and "c" not in skip:
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
            for jobs in dict.fromkeys((1, args.jobs)):
                storage_c = f"journal:{tmp}/c{jobs}.journal"
                cmd = [
                    gas_nas_exe(), "search", "--jobs", str(jobs), "--storage", storage_c, "--study", STUDY,
                    "--space", str(space_path), "--artifacts", str(tmp / f"artifacts_c{jobs}"), "--trials", str(-(-trials // jobs)),
                    "--iterations", str(iterations), "--batch-size", str(args.batch_size),
                    "--device", device.type, "--seed", str(args.seed), "--quiet",
                ] + (["--data-dir", args.data_dir] if args.data_dir else [])
                start = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                sec_c = time.perf_counter() - start
                if proc.returncode != 0:
                    print(f"  (c) failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()[-2000:]}", flush=True)
                    continue
                done_c = finished_trials(storage_c)
                rates_c[jobs] = per_minute(done_c, sec_c)
                print(f"  (c) gas-nas --jobs {jobs}: {done_c} trials in {sec_c:.1f} s (end to end, subprocess)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rate_a = per_minute(trials, sec_a) if sec_a else None
    solo = rates_b.get(cohorts[0])
    print("note: (b) and (c) include sample generation, quality metrics (FID, coverage), plots and Optuna bookkeeping; (a) trains only")
    print(f"device      {torch.cuda.get_device_name(device) if cuda else f'cpu ({torch.get_num_threads()} threads)'}")
    print(f"torch       {torch.__version__}")
    print(f"budget      {trials} trials, {iterations} iterations ({label}), batch {args.batch_size}")
    if rate_a is not None:
        print(f"(a) naive sequential        {rate_a:8.2f} trials/min")
    for k, rate in rates_b.items():
        print(f"(b) gas-nas cohort {k:<3}      {rate:8.2f} trials/min   ratio vs cohort {cohorts[0]}: {rate / solo:.2f}x" + (f"   vs naive: {rate / rate_a:.2f}x" if rate_a else ""))
    for jobs, rate in rates_c.items():
        ratio = f"   ratio vs --jobs 1: {rate / rates_c[1]:.2f}x" if 1 in rates_c and jobs != 1 else ""
        print(f"(c) gas-nas --jobs {jobs:<3}      {rate:8.2f} trials/min ({60 * rate:.0f} trials/hour){ratio}" + (f"   vs naive: {rate / rate_a:.2f}x" if rate_a else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
