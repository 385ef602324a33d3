#!/usr/bin/env python
"""Evidence for teacher-guided training (recipe `dgl`, after DGL-GAN): writes docs/teacher.md's results.

With the default teacher (paper case 1 trained once at the paper budget, `gas_nas.trial.teacher`),
the small discriminators of paper cases 4 and 6 are trained alone (recipe `gas`) and with the
teacher at several lambdas (recipe `dgl`, teacher from half the iterations on), over several
seeds, at one stated budget, beside case 1 alone; then the time per iteration with and without
the teacher. Every run goes through gas-nas's own `run_trial`.

Resumable (`gas_nas.study.evidence`, as docs/reproduce.py): each run is stored under OUT/teacher/runs/
as it finishes (metrics JSON and sample grid), keyed by what changes its numbers (case, spec,
seed, train config, quality settings, teacher sha256, the committed classifier, torch, device kind), and
skipped when the same command runs again; the results between the page's markers are
rewritten after every stored run.

CPU, beside other work:  OMP_NUM_THREADS=1 python docs/teacher.py --seeds 2 --iterations 1000 --device cpu --threads 1
CPU smoke test:          python docs/teacher.py --tiny --out /tmp/teacher-smoke --device cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGE = "teacher.md"
RUNS = Path("teacher") / "runs"
LAMBDAS = (0.05, 0.1, 0.5)
STUDENTS = (3, 5)  # paper cases 4 and 6 (indices into the space's cases)
TITLE = "Teacher-guided training: results"
TINY_BANNER = "> **SMOKE TEST — tiny CPU budget.** These numbers say nothing about teachers."
TINY = {"seeds": 2, "iterations": 4, "batch_size": 8, "n_samples": 64, "timing_iterations": 3, "lambdas": "0.1"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from gas_nas.argtypes import positive_int

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=positive_int, help="seeds per row (default 2)")
    p.add_argument("--iterations", type=positive_int, help="student iterations (default 1000)")
    p.add_argument("--batch-size", type=positive_int, help="batch size (default: the space's, 32)")
    p.add_argument("--n-samples", type=positive_int, help="samples for FID and digits (default: the space's, 2000)")
    p.add_argument("--lambdas", help=f"teacher weights, comma-separated (default {','.join(map(str, LAMBDAS))})")
    p.add_argument("--teacher", help="a discriminator.pt to use instead of the default teacher (the page says which)")
    p.add_argument("--timing-iterations", type=positive_int, help="iterations per timing repeat (default 30)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--data-dir", help="MNIST folder (default: $GAS_NAS_DATA, else the gas-nas cache)")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (1 leaves the other cores free)")
    p.add_argument("--max-runs", type=int, help="train at most this many missing runs, then write the page and stop")
    p.add_argument("--out", default=str(DOCS), help="folder of the page and its runs (default: docs)")
    p.add_argument("--tiny", action="store_true", help="CPU smoke test: a 3-iteration teacher, 4-iteration students, batch 8, 64 samples")
    args = p.parse_args(argv)
    from gas_nas.study.evidence import command_line

    args.command = "python docs/teacher.py " + command_line(sys.argv[1:] if argv is None else argv)
    if args.tiny and Path(args.out).resolve() == DOCS.resolve():
        p.error("--tiny writes a smoke-test page; give --out DIR outside docs/")
    for key, value in (TINY if args.tiny else {}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.seeds = args.seeds or 2
    args.iterations = args.iterations or 1000
    args.timing_iterations = args.timing_iterations or 30
    args.lambdas = tuple(float(x) for x in args.lambdas.split(",")) if args.lambdas else LAMBDAS
    return args


# ---------------------------------------------------------------- what runs


def plan(space, args, teacher, machine: dict, classifier: str) -> list[tuple[str, float, object]]:
    """(case, lambda, evidence run), seed by seed: case 1 alone, then each student alone and with each lambda."""
    from gas_nas.study.cases import slug
    from gas_nas.study.evidence import plan_run

    rows = [(space.cases[0], 0.0)] + [(space.cases[i], w) for i in STUDENTS for w in (0.0, *args.lambdas)]
    return [
        (case.name, weight, plan_run(case.name, f"{slug(case.name)}-w{weight:g}", case.spec, seed, student_train(space, weight),
                                     space.quality, machine, classifier, teacher if weight else None))
        for seed in range(args.seeds) for case, weight in rows
    ]


def student_train(space, weight: float):
    from gas_nas.models.spec import TrainConfig

    base = {k: v for k, v in space.train.to_dict().items() if k not in ("recipe", "teacher")}
    if not weight:
        return TrainConfig.from_dict({**base, "recipe": "gas"})
    return TrainConfig.from_dict({**base, "recipe": "dgl", "teacher_weight": weight})


def budget_space(args):
    from gas_nas.models.space import load_space

    space = load_space()
    changes = {"iterations": args.iterations, "log_every": min(space.train.log_every, args.iterations)}
    if args.batch_size:
        changes["batch_size"] = args.batch_size
    quality = dataclasses.replace(space.quality, n_samples=args.n_samples) if args.n_samples else space.quality
    return dataclasses.replace(space, train=dataclasses.replace(space.train, **changes), quality=quality)


# ---------------------------------------------------------------- the teacher


def get_teacher(args, device, real):
    """The default teacher (cached; trained at the paper budget on first use), a given file,
    or for --tiny a 3-iteration case 1 written into OUT."""
    from gas_nas.trial.teacher import load_default_teacher, load_teacher

    if args.teacher:
        return load_teacher(args.teacher, device)
    if not args.tiny:
        return load_default_teacher(args.data_dir, device)
    import torch

    from gas_nas.models.spec import DiscriminatorSpec, TrainConfig
    from gas_nas.trial.train import train_gan

    path = Path(args.out) / "teacher" / "tiny-teacher.pt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        _, D, _ = train_gan(DiscriminatorSpec(), TrainConfig(iterations=3, batch_size=8, log_every=1), real)
        torch.save({"state_dict": D.state_dict(), "spec": DiscriminatorSpec().to_dict()}, path)
    return load_teacher(path, device)


# ---------------------------------------------------------------- storing and timing


def ms_per_iteration(spec, train, real, teacher, iterations: int) -> float:
    """Milliseconds per iteration after one warm-up iteration. On a CPU it is process CPU time,
    which other processes on a shared machine barely disturb (the wall clock swings 2x there);
    with --threads 1 it is the time the iteration costs. On CUDA it is wall time (synchronised)."""
    from gas_nas.trial.train import train_gan

    cuda = real.device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time

    def stamp(done, total):
        if cuda:
            import torch

            torch.cuda.synchronize(real.device)
        stamps.append(clock())

    stamps: list[float] = []
    short = dataclasses.replace(train, iterations=iterations + 1, log_every=1)
    train_gan(spec, short, real, seed=0, teacher=teacher, progress=stamp)
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1) * 1000


def timing(space, args, real, teacher, fixed: dict, runs_dir: Path) -> dict:
    """ms per iteration of each student with and without the teacher (on from iteration 1),
    alternating, 3 repeats each, medians (CPU: process time); stored and reused like a run."""
    from gas_nas.study.evidence import write_json_atomic

    key = {"clock": "process" if real.device.type == "cpu" else "wall", "iterations": args.timing_iterations, "batch_size": space.train.batch_size, "threads": args.threads, "teacher_sha256": teacher.sha256, **fixed}
    name = "timing-" + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12] + ".json"
    try:
        record = json.loads((runs_dir / name).read_text())
        if record["key"] == key:
            return record
    except (OSError, ValueError, KeyError):
        pass
    rows = {}
    for i in STUDENTS:
        case = space.cases[i]
        plain, guided = student_train(space, 0.0), dataclasses.replace(student_train(space, 0.1), teacher_from=0.0)
        times = {"gas": [], "dgl": []}
        for _ in range(3):
            times["gas"].append(ms_per_iteration(case.spec, plain, real, None, args.timing_iterations))
            times["dgl"].append(ms_per_iteration(case.spec, guided, real, teacher.module, args.timing_iterations))
        med = {k: statistics.median(v) for k, v in times.items()}
        rows[case.name] = {"ms_gas": med["gas"], "ms_dgl": med["dgl"], "ratio": med["dgl"] / med["gas"]}
    record = {"key": key, "rows": rows}
    write_json_atomic(runs_dir / name, record)
    return record


# ---------------------------------------------------------------- the page


def results(runs: list, stored: dict, space, teacher, timing_record: dict | None, args, seconds: float) -> str:
    """The results block; `runs` from `plan`, `stored` maps a run's stem to its stored record."""
    from gas_nas.study.evidence import pm
    from gas_nas.trial.results import TrialMetrics

    lines = ([TINY_BANNER, ""] if args.tiny else []) + [f"Command: `{args.command}`  ", f"Teacher: {teacher_label(teacher, args)}  ",
             f"Students: {space.train.iterations} iterations, batch {space.train.batch_size}, teacher from iteration {student_train(space, 0.1).teacher_start + 1} (`teacher_from: {student_train(space, 0.1).teacher_from:g}`); "
             f"quality on {space.quality.n_samples} samples; {args.seeds} seeds per row; stored runs: {len(stored)} of {len(runs)}; compute in stored runs: {seconds / 60:.0f} min.", "",
             "| case | teacher λ | seeds | FID | digits | entropy | imbalance | duality gap | D params | s/run |", "|---|---|---|---|---|---|---|---|---|---|"]
    seen: list[tuple[str, float]] = []
    for case, weight, _ in runs:
        if (case, weight) not in seen:
            seen.append((case, weight))
    for case, weight in seen:
        ms = [TrialMetrics(**stored[r.stem]["metrics"]) for c, w, r in runs if (c, w) == (case, weight) and r.stem in stored]
        if not ms:
            lines.append(f"| {case} | {weight:g} | 0 | pending | | | | | | |")
            continue
        lines.append(f"| {case} | {'alone' if not weight else f'{weight:g}'} | {len(ms)} | {pm([m.fid for m in ms], '.1f')} | "
                     f"{pm([m.classes for m in ms], '.1f')} | {statistics.fmean(m.entropy for m in ms):.2f} | {pm([m.imbalance for m in ms], '.3f')} | "
                     f"{pm([m.duality_gap for m in ms], '.4f')} | {ms[0].d_params:,} | {statistics.fmean(m.seconds for m in ms):.0f} |")
    if timing_record:
        clock = "process CPU time" if timing_record["key"].get("clock") == "process" else "wall time"
        lines += ["", f"Time per iteration ({clock}) with the teacher on every G step (`teacher_from: 0`) against alone, {timing_record['key']['iterations']} iterations x 3 repeats, medians:", "",
                  "| case | ms/iter alone | ms/iter with teacher | ratio |", "|---|---|---|---|"]
        for case, row in timing_record["rows"].items():
            lines.append(f"| {case} | {row['ms_gas']:.0f} | {row['ms_dgl']:.0f} | {row['ratio']:.2f}x |")
    return "\n".join(lines)


def teacher_label(teacher, args) -> str:
    what = "given file" if args.teacher else "tiny smoke-test teacher" if args.tiny else "the default teacher (paper case 1, recipe gas, 2000 iterations, batch 32, seed 0)"
    return f"{what}, {teacher.params:,} parameters ({teacher.mb:.2f} MB), sha256 `{teacher.sha256[:16]}`"


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from gas_nas.study.evidence import classifier_fingerprint, load_run, machine_key, train_missing, write_results
    from gas_nas.study.search import load_resources

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu" if args.device == "auto" else args.device)
    space = budget_space(args)
    res = load_resources(device, args.data_dir)
    teacher = get_teacher(args, device, res.real)
    machine, classifier = machine_key(device), classifier_fingerprint(res.classifier)
    fixed = machine | {"classifier": classifier}
    out = Path(args.out)
    runs_dir = out / RUNS
    runs = plan(space, args, teacher, machine, classifier)
    page = out / PAGE

    def stored_records() -> dict:
        return {r.stem: rec for _, _, r in runs if (rec := load_run(runs_dir, r))}

    def write() -> None:
        stored = stored_records()
        write_results(page, results(runs, stored, space, teacher, None, args, sum(r["metrics"]["seconds"] for r in stored.values())), "docs/teacher.py", TITLE)

    train_missing([r for _, _, r in runs], space.quality, res, runs_dir, max_runs=args.max_runs, log=lambda s: print(s, flush=True), on_stored=write)
    stored = stored_records()
    timing_record = timing(space, args, res.real, teacher, fixed, runs_dir) if len(stored) == len(runs) else None
    write_results(page, results(runs, stored, space, teacher, timing_record, args, sum(r["metrics"]["seconds"] for r in stored.values())), "docs/teacher.py", TITLE)
    print(f"teacher.py: wrote {page} ({len(stored)} of {len(runs)} runs stored)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
