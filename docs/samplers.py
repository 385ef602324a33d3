#!/usr/bin/env python
"""Optuna's GP sampler against TPE and random search: the evidence behind docs/samplers.md.

Six studies in one SQLite file on one space (the default space at `ITERATIONS` iterations and
`N_SAMPLES` quality samples, the relative guard the space uses below the paper's budget):
samplers tpe, gp and random, each with search seeds 0 and 1. Each trains the six paper cases,
then `TRIALS` trials beyond them, sequentially in one process (a model-based sampler sees every
earlier trial, as it would for a user with one machine). The three samplers of one seed advance
together, `STEP` trials at a time, so a run stopped early still compares them at one count.
Then `gas-nas confirm --seeds 3` retrains each study's final front. The page: the hypervolume of
each study's feasible front against the number of trials beyond the cases (one reference point
for all six), how many trials each sampler needs to reach TPE's front at `TRIALS`, and which
front members keep their place after confirmation.

Resumable: the studies are SQLite (a stopped run loses at most the trial in progress) and every
call goes on where the stored studies stand. Two workers: one per search seed.

    OMP_NUM_THREADS=1 python docs/samplers.py --part search --seed 0 --threads 1    # and --seed 1 beside it
    OMP_NUM_THREADS=1 python docs/samplers.py --part confirm --seed 0 --threads 1   # and --seed 1 beside it
    python docs/samplers.py                                                         # the page
    python docs/samplers.py --tiny --out /tmp/samplers                              # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

from differentiable import hypervolume  # docs/differentiable.py: the same 2-D hypervolume on both pages

from gas_nas.argtypes import positive_int
from gas_nas.study.evidence import note_machine, study_machines, write_results

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGE, FOLDER = "samplers.md", "samplers"
SAMPLERS = ("tpe", "gp", "random")
SEEDS = (0, 1)
ITERATIONS, N_SAMPLES, TRIALS, STEP, CONFIRM_SEEDS = 100, 500, 40, 5, 3
COUNTS = (0, 5, 10, 15, 20, 25, 30, 35, 40)  # trials beyond the paper cases at which the page compares fronts
TINY = {"iterations": 3, "n_samples": 64, "trials": 2, "step": 1, "counts": (0, 1, 2)}
BANNER = "> **SMOKE TEST — tiny budget.** These numbers say nothing about the samplers."


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["search", "confirm", "page"], default="page")
    p.add_argument("--seed", type=int, choices=SEEDS, help="search: the search seed this worker runs (default: both, one after the other)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--data-dir")
    p.add_argument("--out", default=str(DOCS))
    p.add_argument("--tiny", action="store_true", help="smoke test: 3 iterations, 64 samples, 2 trials beyond the cases")
    args = p.parse_args(argv)
    args.iterations, args.n_samples, args.trials, args.step, args.counts = ITERATIONS, N_SAMPLES, TRIALS, STEP, COUNTS
    if args.tiny:
        if Path(args.out).resolve() == DOCS.resolve():
            p.error("--tiny writes a smoke-test page; give --out DIR outside docs/")
        for key, value in TINY.items():
            setattr(args, key, value)
    return args


def study_name(sampler: str, seed: int) -> str:
    return f"{sampler}-seed{seed}"


def make_space(args):
    from gas_nas.models.space import load_space

    space = load_space()
    train = dataclasses.replace(space.train, iterations=args.iterations, log_every=min(space.train.log_every, args.iterations))
    quality = dataclasses.replace(space.quality, n_samples=args.n_samples)
    return dataclasses.replace(space, name="samplers", train=train, quality=quality, search=dataclasses.replace(space.search, cohort=1))


# ---------------------------------------------------------------- reading the studies


def beyond_cases(study) -> list:
    """The finished trials after the paper cases, in the order they were asked for (a FAIL counts: the sampler spent it)."""
    from gas_nas.study.record import TrialRecord

    return sorted((t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and not TrialRecord.of(t).case), key=lambda t: t.number)


def feasible_point(t) -> tuple[float, float] | None:
    from optuna.trial import TrialState

    if t.state != TrialState.COMPLETE or not all(v <= 0 for v in t.constraints.values()) or not all(map(math.isfinite, t.values)):
        return None
    return t.values[0], t.values[1]


def points_at(study, count: int) -> list[tuple[float, float]]:
    """The feasible points a study had after its paper cases and its first `count` trials beyond them."""
    from gas_nas.study.search import case_trials

    trials = case_trials(study) + beyond_cases(study)[:count]
    return [p for p in map(feasible_point, trials) if p is not None]


def reference(studies: dict) -> tuple[float, float]:
    """One reference point for every study: 10% beyond the worst feasible size and imbalance any of them found."""
    every = [p for study in studies.values() for p in points_at(study, 10**9)]
    if not every:
        return 1.0, 1.0
    return 1.1 * max(p[0] for p in every), 1.1 * max(p[1] for p in every)


def reached_at(curve: dict[int, float], target: float) -> int | None:
    """The first compared trial count whose hypervolume reaches `target` (None: not within the run)."""
    return next((n for n, hv in sorted(curve.items()) if hv >= target - 1e-12), None)


# ---------------------------------------------------------------- the page


def write_page(out: Path, args, space, studies: dict, env: str) -> None:
    from gas_nas.study.confirmation import confirmations, trusted_front
    from gas_nas.study.evidence import pm
    from gas_nas.study.search import front, guard_line
    from gas_nas.study.record import TrialRecord

    ref = reference(studies)
    curves = {name: {n: hypervolume(points_at(s, n), ref) for n in args.counts if len(beyond_cases(s)) >= n} for name, s in studies.items()}
    lines = [BANNER, ""] if args.tiny else []
    lines += [f"Command: `OMP_NUM_THREADS=1 python docs/samplers.py --part search --seed S --threads 1` (S = {', '.join(map(str, SEEDS))}, "
              f"one worker each), then `... --part confirm --seed S`, then `python docs/samplers.py`  ",
              f"Budget: {args.iterations} iterations per trial, batch {space.train.batch_size}, quality on {args.n_samples} samples; "
              f"{args.trials} trials beyond the six paper cases per study; samplers {', '.join(SAMPLERS)}, search seeds {', '.join(map(str, SEEDS))}; "
              f"one training seed per trial (the study's), {CONFIRM_SEEDS} seeds for the confirmed fronts; {env}; "
              f"written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.  ",
              f"Guard: {guard_line(next(iter(studies.values())), space)}.", "",
              "### Hypervolume of the feasible front by trials beyond the paper cases", "",
              f"In (d_size_mb, imbalance), both minimised, up to one reference point for all studies, ({ref[0]:.4g}, {ref[1]:.4g}): "
              "10% beyond the largest size and imbalance of any feasible trial of any study. Count 0 is the paper cases alone. "
              "Empty: the study has not got that far.", "",
              "| study | " + " | ".join(str(n) for n in args.counts) + " |", "|---|" + "---:|" * len(args.counts)]
    for name, curve in curves.items():
        lines.append(f"| {name} | " + " | ".join(f"{curve[n]:.4g}" if n in curve else "" for n in args.counts) + " |")
    for sampler in SAMPLERS:
        per_seed = [curves[study_name(sampler, s)] for s in SEEDS]
        lines.append(f"| **{sampler}**, mean ± spread | " + " | ".join(pm([c[n] for c in per_seed], ".4g") if all(n in c for c in per_seed) else ""
                                                              for n in args.counts) + " |")
    last = args.counts[-1]
    tpe_last = [curves[study_name("tpe", s)].get(last) for s in SEEDS]
    lines += ["", f"### Trials each sampler needs to reach TPE's front at {last}", "",
              f"The first compared count at which a study's hypervolume reaches the mean of TPE's two studies at {last} trials "
              "(\"not reached\": not within the run).", "", "| sampler | " + " | ".join(f"seed {s}" for s in SEEDS) + " |", "|---|" + "---:|" * len(SEEDS)]
    if None in tpe_last:
        lines.append(f"| (TPE has not reached {last} trials yet) |" + " |" * len(SEEDS))
    else:
        target = statistics.fmean(tpe_last)
        for sampler in SAMPLERS:
            cells = [reached_at(curves[study_name(sampler, s)], target) for s in SEEDS]
            lines.append(f"| {sampler} | " + " | ".join("not reached" if c is None else str(c) for c in cells) + " |")
    lines += ["", "### The final fronts, confirmed", "",
              f"Each study's feasible front after its trials, every member retrained by `gas-nas confirm` to {CONFIRM_SEEDS} seeds "
              "(its own, then the extra seeds confirm chooses). *Kept*: still on gas-nas's front once refuted members (feasible on at most "
              "half their seeds) are dropped.", "",
              "| study | trial | single seed: size MB / imbalance / FID | confirmed: imbalance | FID | feasible seeds | kept |",
              "|---|---:|---|---|---|---:|---|"]
    for name, study in studies.items():
        found = confirmations(study)
        trusted = {t.number for t in trusted_front(study, found)}
        members = front(study)
        for t in members:
            m, c = TrialRecord.of(t).metrics, found.get(t.number)
            confirmed = (f"{c.mean(1):.4g} ± {c.spread(1):.2g}", pm(c.fids, ".1f"), f"{c.passes} of {len(c.seeds)}") if c and len(c.seeds) > 1 else ("not yet", "", "")
            lines.append(f"| {name} | {t.number} | {t.values[0]:.4g} / {t.values[1]:.4g} / {m.fid:.1f} | {' | '.join(confirmed)} | "
                         f"{'yes' if t.number in trusted else 'no'} |")
        if not members:
            lines.append(f"| {name} | (no feasible trial) | | | | | |")
        kept = sum(t.number in trusted for t in members)
        lines.append(f"| {name} | **{kept} of {len(members)} kept** | | | | | |")
    write_results(out / PAGE, "\n".join(lines), "docs/samplers.py", "Optuna's GP sampler against TPE and random search")


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import optuna
    import torch

    from gas_nas import run
    from gas_nas.common.errors import GasNasError
    from gas_nas.common.events import LogEvents
    from gas_nas.common.machine import cpu_model
    from gas_nas.study.search import front, waiting_trials

    if args.threads:
        torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out = Path(args.out)
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{folder / 'studies.db'}"
    space = make_space(args)
    seeds = SEEDS if args.seed is None else (args.seed,)
    events = LogEvents()
    log = events.say
    try:
        def request(sampler: str, seed: int):
            return run.SearchRequest(space=space, storage=storage, study=study_name(sampler, seed), sampler=sampler, seed=seed,
                                     artifacts=str(folder / "artifacts"), device=args.device, data_dir=args.data_dir, cohort=1, quiet=True)

        ready = {study_name(sm, s): run.prepare_search(request(sm, s)) for s in SEEDS for sm in SAMPLERS}
        studies = {name: r.study for name, r in ready.items()}
        device = next(iter(ready.values())).device
        machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({cpu_model()}), {torch.get_num_threads()} torch thread(s)"
        if args.part != "page":  # the studies span sessions, and the machine under them may change between calls
            for s in seeds:
                for sm in SAMPLERS:
                    note_machine(studies[study_name(sm, s)], machine)
        if args.part == "search":
            for s in seeds:
                for count in range(args.step, args.trials + args.step, args.step):
                    for sm in SAMPLERS:
                        name = study_name(sm, s)
                        if len(beyond_cases(studies[name])) >= min(count, args.trials):
                            continue
                        log(f"{name}: to {min(count, args.trials)} trials beyond the paper cases")
                        # the queued paper cases first (the relative guard waits on them), then trials up to the count
                        r = ready[name]
                        end = run.run_trials(r, events, n_trials=min(count, args.trials) - len(beyond_cases(r.study)) + waiting_trials(r.study))
                        if end.stopped:
                            raise KeyboardInterrupt
        if args.part == "confirm":
            for s in seeds:
                for sm in SAMPLERS:
                    name = study_name(sm, s)
                    if len(beyond_cases(studies[name])) < args.trials:
                        log(f"{name}: not finished ({len(beyond_cases(studies[name]))} of {args.trials} trials); confirm it later")
                        continue
                    if not front(studies[name]):
                        log(f"{name}: no feasible trial to confirm")
                        continue
                    req = SimpleNamespace(storage=storage, study=name, trials=None, seeds=CONFIRM_SEEDS, device=args.device, data_dir=args.data_dir, cohort=1)
                    if run.confirm(req, events).stopped:
                        raise KeyboardInterrupt
        write_page(out, args, space, studies, f"{study_machines(studies.values(), machine)}, torch {torch.__version__}")
    except GasNasError as exc:
        print(f"samplers.py: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
