#!/usr/bin/env python
"""One-shot differentiable search against TPE: the evidence behind docs/differentiable.md.

Two studies in one SQLite file, both on the default space at one per-trial budget and one
stated quality guard: `differentiable` (the six paper cases, then one supernet per lambda and
its proposals) and `tpe` (the six paper cases, then TPE trials until its search compute, the
seconds of its non-case trials, reaches `--factor` times the differentiable search's: its
supernets plus its proposed trials). The page compares the compute, the hypervolume of each
study's feasible front in (d_size_mb, imbalance) against one reference point, and where the
proposals rank among all trials; and, for each supernet, what the outer objective's
discriminator term and alphaGAN's best-response term give its trained supernet and a
constant-0.5 discriminator. `--space`, `--guard space` and `--name` make the same comparison on
another space under that space's own guard and give-up rule (the equal-ground comparison on
the supernet's subspace, docs/differentiable-subspace.md).

Resumable: the studies are SQLite (a stopped run loses at most the trial or supernet in
progress), the checks are JSON beside them, and the page is rewritten at the end of every call.
Two workers share the work with `--part`: one runs the differentiable study, the other TPE
trials from the start; the TPE worker stops only once the differentiable side is finished and
its compute, the budget's yardstick, is final (so it needs the other worker, or `--max-trials`).

    OMP_NUM_THREADS=1 python docs/differentiable.py --iterations 300 --device cpu --threads 1 [--max-trials N] [--part differentiable|tpe]
    OMP_NUM_THREADS=1 python docs/differentiable.py --iterations 300 --device cpu --threads 1 --space docs/lazy/supernet-subspace.yaml --guard space --name differentiable-subspace --factor 5 --part differentiable|tpe   # equal ground
    python docs/differentiable.py --tiny --out /tmp/differentiable       # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import sys
from pathlib import Path

from gas_nas.argtypes import lambda_list, positive_int
from gas_nas.study.evidence import command_line, note_machine, study_machines, write_results
from gas_nas.trial.guard import violations

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NAME = "differentiable"  # the page (NAME.md) and its folder of studies (NAME/); --name another pair
GUARD = {"max_fid": 150.0, "min_classes": 8, "min_entropy": 1.8}  # --guard stated: looser than the default 60, see the page
TINY = {"iterations": 3, "batch_size": 8, "n_samples": 64, "lambdas": (0.0, 10.0), "factor": 1.0}
PARTS = ("both", "differentiable", "tpe")
WITHDRAWN = "withdrawn"  # trial user attribute: a proposal failed unrun when the outer objective changed (see the page)
BANNER = "> **SMOKE TEST — tiny budget.** These numbers say nothing about the search."


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=positive_int, default=300, help="iterations per trial and per supernet (default 300)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--n-samples", type=positive_int, help="samples for FID and digits (default: the space's, 2000)")
    p.add_argument("--lambdas", type=lambda_list, default=(0.0001, 0.001, 0.01))
    p.add_argument("--factor", type=float, default=10.0, help="TPE's compute over the differentiable search's (default 10)")
    p.add_argument("--max-trials", type=int, help="train at most this many trials in this call (0: only the page)")
    p.add_argument("--part", choices=PARTS, default="both", help="which study this worker trains (default both: the differentiable one, then TPE)")
    p.add_argument("--gap-steps", type=int, default=50, help="best-response steps of the objective check (default 50)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(DOCS))
    p.add_argument("--space", help="search-space YAML (default: the default space); docs/lazy/supernet-subspace.yaml is the supernet's subspace")
    p.add_argument("--guard", choices=["stated", "space"], default="stated",
                   help="stated: the page's fixed loose bounds (GUARD), judged on stored metrics; space: the space's own guard and give-up rule, "
                        "as each trial's stored constraints say (default stated)")
    p.add_argument("--name", default=NAME, help=f"page NAME.md and folder NAME/ under --out (default {NAME})")
    p.add_argument("--tiny", action="store_true", help="smoke test: 3 iterations, batch 8, 64 samples, lambdas 0,10, factor 1")
    args = p.parse_args(argv)
    args.command = "python docs/differentiable.py " + command_line(sys.argv[1:] if argv is None else argv, drop=("--max-trials", "--part"))
    if args.tiny:
        if Path(args.out).resolve() == DOCS.resolve():
            p.error("--tiny writes a smoke-test page; give --out DIR outside docs/")
        for key, value in TINY.items():
            setattr(args, key, value)
    return args


def make_space(args):
    from gas_nas.models.space import load_space

    space = load_space(args.space)
    quality = dataclasses.replace(space.quality, **(GUARD if args.guard == "stated" else {}), **({"n_samples": args.n_samples} if args.n_samples else {}))
    train = dataclasses.replace(space.train, iterations=args.iterations, batch_size=args.batch_size, log_every=min(space.train.log_every, args.iterations))
    search = dataclasses.replace(space.search, lambdas=tuple(args.lambdas), cohort=1)
    return dataclasses.replace(space, train=train, quality=quality, search=search)


# ---------------------------------------------------------------- reading the studies


def feasible_points(study, space, guard: str = "stated") -> list[tuple[float, float, object]]:
    """(size, imbalance, trial) of every complete trial that passes the guard: the stated bounds
    on its stored metrics, or (`space`) its stored constraints, which hold the give-up rule."""
    from optuna.trial import TrialState

    from gas_nas.study.record import TrialRecord

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        m = TrialRecord.of(t).metrics
        passes = all(v <= 0 for v in t.constraints.values()) if guard == "space" else not violations(m, space.quality)
        if m is not None and passes and all(map(math.isfinite, t.values)):
            out.append((t.values[0], t.values[1], t))
    return out


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """The area dominated by `points` (both minimised) inside the box up to `ref`."""
    area, best = 0.0, ref[1]
    for x, y in sorted(p for p in points if p[0] < ref[0] and p[1] < ref[1]):
        if y < best:
            area += (ref[0] - x) * (best - y)
            best = y
    return area


def pareto_ranks(points: list[tuple[float, float]]) -> list[int]:
    """Non-dominated sorting: 1 for the front, 2 for the front without it, and so on."""
    ranks, left, rank = [0] * len(points), set(range(len(points))), 1
    while left:
        front = {i for i in left if not any(points[j][0] <= points[i][0] and points[j][1] <= points[i][1] and points[j] != points[i] for j in left)}
        for i in front:
            ranks[i] = rank
        left -= front
        rank += 1
    return ranks


def hypervolume_by_compute(trials: list[tuple[float, tuple[float, float] | None]], budgets: list[float], ref: tuple[float, float]) -> list[float]:
    """The hypervolume of the feasible points a search had found by the time its compute reached
    each budget. `trials`: (seconds it cost, its feasible point or None) in the order they
    finished; a trial counts once the seconds summed up to it fit the budget."""
    spent, found = 0.0, []
    for seconds, point in trials:
        spent += seconds
        found.append((spent, point))
    return [hypervolume([pt for s, pt in found if pt is not None and s <= b], ref) for b in budgets]


def compute_order(study, feasible: list[tuple[float, float, object]]) -> list[tuple[float, tuple[float, float] | None]]:
    """(seconds, feasible point or None) of a study's finished trials in the order they
    finished, given its `feasible_points`; the paper cases cost nothing (both studies have them before they search)."""
    from optuna.trial import TrialState

    from gas_nas.study.record import TrialRecord

    feasible = {t.number: (x, y) for x, y, t in feasible}
    out = []
    for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)), key=lambda t: t.datetime_complete):
        r = TrialRecord.of(t)
        out.append((0.0 if r.case or r.metrics is None else r.metrics.seconds, feasible.get(t.number)))
    return out


def search_seconds(study) -> tuple[float, int]:
    """Seconds of a study's search beyond the paper cases (its supernets and trained non-case trials), and that trial count."""
    from optuna.trial import TrialState

    from gas_nas.strategies.differentiable import supernet_records
    from gas_nas.study.record import TrialRecord

    records = [TrialRecord.of(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)) if WITHDRAWN not in t.user_attrs]
    trained = [r for r in records if not r.case and r.metrics]  # a killed worker's trial has no metrics: its retry counts
    return sum(r.metrics.seconds for r in trained) + sum(r["seconds"] for r in supernet_records(study)), len(trained)


def differentiable_finished(study, space, seed: int) -> bool:
    """Every supernet of this budget recorded and every trial the study holds finished (a dead
    worker's is failed and queued again first): its compute is final."""
    from optuna.trial import TrialState

    from gas_nas.models.supernet import supernet_space
    from gas_nas.strategies.differentiable import supernets_to_run
    from gas_nas.study.search import fail_stale_trials

    fail_stale_trials(study)
    busy = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    return not supernets_to_run(study, space, supernet_space(space), seed) and not busy


# ---------------------------------------------------------------- the objective check


def objective_check(result, held_out, train, steps: int, seed: int) -> dict:
    """What the outer objective's discriminator term (the calibrated held-out L_D) gave this
    supernet over the second half of its alpha steps, beside the plain L_D of the same batches,
    against a constant-0.5 discriminator; and alphaGAN's best-response term for the final
    supernet and the constant."""
    import statistics

    import torch

    from gas_nas.strategies.differentiable import best_response_d_loss, calibrated_d_loss, held_out_d_loss

    supernet, generator, probs = result.networks
    gen = torch.Generator(device=held_out.device).manual_seed(seed)
    images = held_out[torch.randperm(held_out.shape[0], generator=gen, device=held_out.device)[:512]]
    z = torch.randn(512, train.z_dim, generator=gen, device=held_out.device)

    def trained(x):
        return supernet(x, probs)

    def lazy(x):  # 0.5 whatever the input, with a zero gradient
        return 0.5 + 0 * x.flatten(1).sum(1, keepdim=True)

    late = result.terms[len(result.terms) // 2:]
    with torch.no_grad():
        constant = float(calibrated_d_loss(lazy(images), lazy(generator(z))))
    return {"lambda": result.lam, "steps": steps, "alpha_steps": len(late),
            "plain": statistics.fmean(p for p, _ in late), "calibrated": statistics.fmean(c for _, c in late),
            "calibrated_below_constant": sum(c < constant for _, c in late) / len(late), "constant": constant,
            "constant_plain": held_out_d_loss(lazy, generator, images, z),
            "trained_best_response": best_response_d_loss(trained, generator, images, z, train, steps, seed),
            "constant_best_response": best_response_d_loss(lazy, generator, images, z, train, steps, seed)}


# ---------------------------------------------------------------- the page


def axis_value(value) -> str:
    """A candidate as the page names it: ["depthwise_separable", true] -> "depthwise_separable inception"."""
    if isinstance(value, list):
        conv, inception = value
        return f"{conv}{' inception' if inception else ''}"
    return str(value)


def write_page(path: Path, args, space, studies: dict, checks: list[dict], env: str) -> None:
    from gas_nas.strategies.differentiable import supernet_records
    from gas_nas.study.record import TrialRecord
    from gas_nas.study.search import guard_line

    points = {name: feasible_points(study, space, args.guard) for name, study in studies.items()}
    everything = [p for ps in points.values() for p in ps]
    ref = (max((p[0] for p in everything), default=1.0) * 1.1, max((p[1] for p in everything), default=1.0) * 1.1)
    compute = {name: search_seconds(study) for name, study in studies.items()}
    lines = [BANNER, ""] if args.tiny else []
    lines += [f"Command: `{args.command}`  ",
              f"Budget: {space.train.iterations} iterations per trial and per supernet, batch {space.train.batch_size}, seed {args.seed}; "
              + (f"guard: FID <= {space.quality.max_fid:g}, >= {space.quality.min_classes} digits, entropy >= {space.quality.min_entropy:g} on "
                 if args.guard == "stated" else f"guard: the space's ({guard_line(studies['tpe'], space)}) on ")
              + f"{space.quality.n_samples} samples; {env}; written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.", ""]
    lines += ["| study | search seconds (beyond the paper cases) | trials beyond the cases | feasible trials | hypervolume |", "|---|---:|---:|---:|---:|"]
    for name in studies:
        seconds, n = compute[name]
        lines.append(f"| {name} | {seconds:,.0f} | {n} | {len(points[name])} | {hypervolume([p[:2] for p in points[name]], ref):.4g} |")
    d_sec, t_sec = compute["differentiable"][0], compute["tpe"][0]
    lines += ["", f"Reference point (size MB, imbalance): ({ref[0]:.4g}, {ref[1]:.4g}), 1.1 x the largest feasible value of either study. "
              f"Compute ratio TPE / differentiable: {t_sec / d_sec:.2f}x (target {args.factor:g}x)." if d_sec else "", ""]
    if d_sec:
        factors = sorted({f for f in (1, 2, 5) if f < args.factor} | {args.factor})
        d_hv = hypervolume([p[:2] for p in points["differentiable"]], ref)
        tpe_cases, *curve = hypervolume_by_compute(compute_order(studies["tpe"], points["tpe"]), [0.0] + [f * d_sec for f in factors], ref)
        d_cases = hypervolume_by_compute(compute_order(studies["differentiable"], points["differentiable"]), [0.0], ref)[0]
        lines += [f"The paper cases alone (compute 0): hypervolume {d_cases:.4g} in `differentiable`, {tpe_cases:.4g} in `tpe`; the same six "
                  "specs, whose points may differ: each trial's seed follows its number, and the cases sit at different numbers in the two studies.", "",
                  "TPE's feasible front as its compute grew, against the differentiable search's whole front "
                  f"(hypervolume {d_hv:.4g}; a factor TPE has not spent yet shows its front so far, marked *):", "",
                  "| TPE compute / differentiable | hypervolume | vs differentiable |", "|---:|---:|---:|"]
        for f, hv in zip(factors, curve):
            lines.append(f"| {f:g}x{'*' if f * d_sec > t_sec else ''} | {hv:.4g} | {hv / d_hv if d_hv else math.nan:.2f} |")
        lines.append("")
    records = supernet_records(studies["differentiable"])
    proposers: dict[int, list[str]] = {}  # trial -> the supernets on record that proposed it
    for rec in records:
        for n in rec["trials"]:
            proposers.setdefault(n, []).append(f"supernet lambda {rec['key']['lambda']:g}")
    proposed = set(proposers)

    def why(r) -> str:
        return r.infeasible_reason if args.guard == "space" else "; ".join(violations(r.metrics, space.quality))

    def by(t, r) -> str:
        return ", ".join(proposers[t.number]) + (f" (= paper case {r.case})" if r.case else "")
    if records:
        axes = list(records[0]["probs"])
        lines += ["Where each supernet left alpha: its entropy (summed over the mixed axes) and each axis's most probable value:", "",
                  f"| lambda | seconds | alpha entropy (uniform: {math.log(math.prod(len(records[0]['key']['candidates'][a]) for a in axes)):.4f}) | "
                  + " | ".join(axes) + " |", "|---:|---:|---:|" + "---|" * len(axes)]
        for r in records:
            top = {a: max(range(len(r["probs"][a])), key=r["probs"][a].__getitem__) for a in axes}
            lines.append(f"| {r['key']['lambda']:g} | {r['seconds']:,.0f} | {r['entropy']:.4f} | "
                         + " | ".join(f"{axis_value(r['key']['candidates'][a][top[a]])} ({r['probs'][a][top[a]]:.2f})" for a in axes) + " |")
        lines.append("")
    ranks = pareto_ranks([p[:2] for p in everything])
    owner = [name for name, ps in points.items() for _ in ps]
    lines += ["Proposals of the supernets among all feasible trials of both studies (Pareto rank 1: on the joint front):", "",
              "| trial | proposed by | spec | d_size_mb | imbalance | fid | Pareto rank |", "|---:|---|---|---:|---:|---:|---:|"]
    for (size, imb, t), rank, name in zip(everything, ranks, owner):
        r = TrialRecord.of(t)
        if name == "differentiable" and t.number in proposed:
            s = r.spec
            lines.append(f"| {t.number} | {by(t, r)} | {axis_value([s['conv'], s['inception']])}, {s['downsample']}, base {s['base_filters']}, depth {s['depth']} | "
                         f"{size:.4g} | {imb:.4g} | {r.metrics.fid:.1f} | {rank} of {max(ranks)} |")
    infeasible = [t for t in studies["differentiable"].get_trials(deepcopy=False) if t.number in proposed and t not in [p[2] for p in points["differentiable"]]]
    for t in infeasible:
        r = TrialRecord.of(t)
        lines.append(f"| {t.number} | {by(t, r)} | (infeasible or not trained: {t.state.name}{'; ' + why(r) if r.metrics else ''}) | | | | |")
    lines += ["", "The outer objective's discriminator term, checked per supernet: the calibrated held-out L_D alpha minimises and the plain "
              "L_D of the same batches, means over the second half of its alpha steps, against a constant-0.5 discriminator; and "
              f"alphaGAN's best-response term (the final supernet against its generator trained {args.gap_steps} more steps against it, "
              "512 held-out images):", "",
              "| lambda | alpha steps | calibrated L_D | steps below the constant | constant 0.5, calibrated | plain L_D | constant 0.5, plain | "
              "best response: trained | best response: constant 0.5 |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in checks:
        lines.append(f"| {c['lambda']:g} | {c['alpha_steps']} | {c['calibrated']:.4f} | {c['calibrated_below_constant']:.0%} | {c['constant']:.4f} | "
                     f"{c['plain']:.4f} | {c['constant_plain']:.4f} | {c['trained_best_response']:.4f} | {c['constant_best_response']:.4f} |")
    write_results(path, "\n".join(lines), "docs/differentiable.py", "Differentiable search against TPE" + (f" on the space `{space.name}`" if args.space else ""))


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import optuna
    import torch

    from gas_nas import run
    from gas_nas.common.errors import GasNasError
    from gas_nas.common.events import LogEvents
    from gas_nas.common.machine import cpu_model
    from gas_nas.strategies.differentiable import propose
    from gas_nas.study.search import fail_stale_trials, waiting_trials

    if args.threads:
        torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out = Path(args.out)
    folder = out / args.name
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{folder / 'studies.db'}"
    checks_path = folder / "objective-checks.json"
    checks = json.loads(checks_path.read_text()) if checks_path.exists() else []
    space = make_space(args)
    budget = math.inf if args.max_trials is None else args.max_trials
    events = LogEvents()
    log = events.say
    try:
        ready = {name: run.prepare_search(run.SearchRequest(space=space, storage=storage, study=name, strategy=name if name == "differentiable" else "optuna",
                                                            artifacts=str(folder / "artifacts"), device=args.device, data_dir=args.data_dir, seed=args.seed, cohort=1))
                 for name in ("differentiable", "tpe")}
        studies = {name: r.study for name, r in ready.items()}
        res, device = ready["tpe"].res, ready["tpe"].device
        machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({cpu_model()}), {torch.get_num_threads()} torch thread(s)"
        if budget > 0:  # the studies span sessions, and the machine under them may change between calls
            for name, study in studies.items():
                if args.part in ("both", name):
                    note_machine(study, machine)
        env = f"{study_machines(studies.values(), machine)}, torch {torch.__version__}"

        def train(study, n: int) -> int:
            n = int(min(n, budget - trained))
            if n > 0 and run.run_trials(ready[study.study_name], events, n_trials=n).stopped:
                raise KeyboardInterrupt
            return max(n, 0)

        trained = 0
        if budget > 0:
            def on_done(result) -> None:
                checks.append(objective_check(result, res.held_out, space.train, args.gap_steps, args.seed))
                checks_path.write_text(json.dumps(checks, indent=1) + "\n")
                log(f"supernet lambda {result.lam:g}: {result.seconds:.0f} s; check {checks[-1]}")

            if args.part != "tpe":
                fail_stale_trials(studies["differentiable"])  # a killed worker's proposal is queued again
                trained += train(studies["differentiable"], waiting_trials(studies["differentiable"]))  # the paper cases (and a resumed run's proposals)
                if trained < budget:
                    propose(studies["differentiable"], space, res.real, args.seed, events, on_done=on_done)
                    trained += train(studies["differentiable"], waiting_trials(studies["differentiable"]))
            while trained < budget and args.part != "differentiable":
                done = len([t for t in studies["tpe"].trials if t.state.is_finished()])
                final = differentiable_finished(studies["differentiable"], space, args.seed)
                if done >= 6 and final and search_seconds(studies["tpe"])[0] >= args.factor * search_seconds(studies["differentiable"])[0]:
                    break
                trained += train(studies["tpe"], 1)
        write_page(out / f"{args.name}.md", args, space, studies, checks, env)
    except GasNasError as exc:
        print(f"differentiable.py: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / f'{args.name}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
