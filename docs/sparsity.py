#!/usr/bin/env python
"""Sparse discriminators trained sparse from scratch: the evidence behind docs/sparsity.md.

Two paper architectures (case 1, the original, and case 3, inception k=32) at densities 1,
0.5, 0.3 and 0.1 with static and dynamic masks, plus paper case 5 dense (inception k=16, about
the stored size of case 1 at density 0.1: sparse-wide against dense-narrow), each over several
seeds at one CPU budget. Resumable (`gas_nas.study.evidence`): every run is stored under
docs/sparsity/runs/ as it finishes and skipped when the same command runs again; the page is
rewritten after every stored run (between its results markers: the text around them is
written by hand).

    python docs/sparsity.py --iterations 500 --seeds 2 --device cpu --threads 1
    python docs/sparsity.py --tiny --out /tmp/sparsity      # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import time
from pathlib import Path

from gas_nas.argtypes import positive_int
from gas_nas.study.evidence import command_line, mean_std, pm, write_results
from gas_nas.trial.guard import violations

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGE = "sparsity.md"
TITLE = "Sparse discriminators trained sparse from scratch"
RUNS = "sparsity/runs"
DENSITIES = (1.0, 0.5, 0.3, 0.1)
ARCHS = (0, 2)  # paper cases 1 and 3 (indices into the space's cases)
NARROW = 4  # paper case 5, dense: the dense-narrow side of the equal-size comparison
WIDE_DENSITY = 0.1
TINY = {"iterations": 3, "batch_size": 8, "n_samples": 64, "seeds": 2}
BANNER = "> **SMOKE TEST — tiny budget.** These numbers say nothing about sparse training."


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=positive_int, default=500, help="iterations per run (default 500)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--n-samples", type=positive_int, help="samples for FID and digits (default: the space's)")
    p.add_argument("--seeds", type=positive_int, default=2)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: every core)")
    p.add_argument("--max-runs", type=int, help="train at most this many missing runs, then write the page (0: only the page)")
    p.add_argument("--data-dir")
    p.add_argument("--out", default=str(DOCS))
    p.add_argument("--tiny", action="store_true", help="smoke test: 3 iterations, batch 8, 64 samples")
    args = p.parse_args(argv)
    args.command = command_line(sys.argv[1:] if argv is None else argv)
    if args.tiny:
        if Path(args.out).resolve() == DOCS.resolve():
            p.error("--tiny writes a smoke-test page; give --out DIR outside docs/")
        args.iterations, args.batch_size, args.n_samples, args.seeds = (TINY[k] for k in ("iterations", "batch_size", "n_samples", "seeds"))
    return args


def settings(space) -> list[tuple[str, object, object]]:
    """(row name, spec, train config) for every setting, in training order."""
    from gas_nas.study.cases import slug

    rows = []
    for index in ARCHS:
        case = space.cases[index]
        rows.append((f"{case.name}, dense", case.spec, space.train))
        for density in DENSITIES[1:]:
            spec = dataclasses.replace(case.spec, density=density)
            for mode in ("static", "dynamic"):
                rows.append((f"{case.name}, density {density:g} {mode}", spec, dataclasses.replace(space.train, sparse_mode=mode)))
    narrow = space.cases[NARROW]
    rows.append((f"{narrow.name}, dense", narrow.spec, space.train))
    return [(name, spec, train, slug(name)) for name, spec, train in rows]


def compare(a: list[float], b: list[float]) -> str:
    """'lower than', 'higher than' or 'within the spread of': a's mean against b's, beyond both stds."""
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    if ma + sa < mb - sb:
        return "lower than"
    if ma - sa > mb + sb:
        return "higher than"
    return "within the spread of"


def write_page(path: Path, args, space, rows: list[tuple[str, list]], env: str) -> None:
    q = space.quality
    by = dict(rows)
    lines = [BANNER, ""] if args.tiny else []
    stored = sum(len(ms) for _, ms in rows)
    lines += [
        f"- **Command:** `python docs/sparsity.py {args.command}`",
        f"- **Device:** {env}",
        f"- **Date:** {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- **Budget per run:** {space.train.iterations} iterations, batch {space.train.batch_size}, recipe {space.train.recipe}; "
        f"dynamic masks: prune/regrow every {max(1, space.train.iterations // 20)} iterations (a twentieth), random regrowth (SET), "
        f"none in the last quarter; quality on {q.n_samples} samples (guard: FID <= {q.max_fid:g}, >= {q.min_classes} digits, entropy >= {q.min_entropy:g})",
        f"- **Seeds:** {args.seeds} per setting; **runs stored:** {stored} of {args.seeds * len(rows)}",
        "",
        "Mean ± std over seeds. *Stored MB*: fp32 values of the nonzero weights plus one bit per masked weight "
        "(what `d_size_mb` reports and `discriminator.pt` holds).",
        "",
        "| setting | stored MB | seeds | FID | digits | entropy | imbalance | guard passed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, ms in rows:
        size = f"{ms[0].d_param_mb:.3f}" if ms else "–"
        passed = sum(1 for m in ms if not violations(m, q))
        lines.append(f"| {name} | {size} | {len(ms)} | {pm([m.fid for m in ms], '.1f')} | {pm([m.classes for m in ms], '.1f')} | "
                     f"{pm([m.entropy for m in ms], '.2f')} | {pm([m.imbalance for m in ms], '.3f')} | {passed}/{len(ms)} |")
    lines += ["", "## What the numbers say", "",
              "Rule: a mean is *lower* or *higher* than another only when the two differ by more than both standard "
              "deviations together; otherwise *within the spread*.", ""]
    for index in ARCHS:
        case = space.cases[index].name
        dense = [m.fid for m in by[f"{case}, dense"]]
        for density in DENSITIES[1:]:
            static = [m.fid for m in by[f"{case}, density {density:g} static"]]
            dynamic = [m.fid for m in by[f"{case}, density {density:g} dynamic"]]
            if not (dense and static and dynamic):
                lines.append(f"- {case} at density {density:g}: not measured yet (dense, static and dynamic runs are needed).")
                continue
            lines.append(f"- {case} at density {density:g}: dynamic FID {pm(dynamic, '.1f')} is {compare(dynamic, static)} static "
                         f"{pm(static, '.1f')}; dynamic is {compare(dynamic, dense)} dense {pm(dense, '.1f')}.")
    wide = by[f"{space.cases[ARCHS[0]].name}, density {WIDE_DENSITY:g} dynamic"]
    narrow = by[f"{space.cases[NARROW].name}, dense"]
    if not (wide and narrow):
        lines.append(f"- Sparse-wide against dense-narrow at about equal stored size ({space.cases[ARCHS[0]].name} at density "
                     f"{WIDE_DENSITY:g}, dynamic, against {space.cases[NARROW].name} dense): not measured yet.")
    else:
        lines.append(f"- Sparse-wide against dense-narrow at about equal stored size: {space.cases[ARCHS[0]].name} at density "
                     f"{WIDE_DENSITY:g}, dynamic ({wide[0].d_param_mb:.3f} MB) has FID {pm([m.fid for m in wide], '.1f')}, "
                     f"{compare([m.fid for m in wide], [m.fid for m in narrow])} {space.cases[NARROW].name} dense "
                     f"({narrow[0].d_param_mb:.3f} MB) at {pm([m.fid for m in narrow], '.1f')}.")
    write_results(path, "\n".join(lines), "docs/sparsity.py", TITLE)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from gas_nas.common.errors import GasNasError
    from gas_nas.models.space import load_space
    from gas_nas.study.evidence import classifier_fingerprint, load_run, machine_key, plan_run, stored_cpus, train_missing
    from gas_nas.study.search import load_resources
    from gas_nas.trial.train import TrialMetrics

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    space = load_space()
    quality = dataclasses.replace(space.quality, n_samples=args.n_samples) if args.n_samples else space.quality
    train = dataclasses.replace(space.train, iterations=args.iterations, batch_size=args.batch_size, log_every=min(space.train.log_every, args.iterations))
    space = dataclasses.replace(space, train=train, quality=quality)
    out = Path(args.out)
    folder = out / RUNS
    try:
        device = torch.device(args.device)
        res = load_resources(device, args.data_dir)
        machine, classifier = machine_key(device), classifier_fingerprint(res.classifier)
        table = settings(space)
        runs = [plan_run(name, slug, spec, seed, cfg, quality, machine, classifier) for seed in range(args.seeds) for name, spec, cfg, slug in table]

        def write() -> None:
            env = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({stored_cpus(folder, runs)}), {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
            rows = [(name, [TrialMetrics(**rec["metrics"]) for r in runs if r.name == name and (rec := load_run(folder, r))]) for name, *_ in table]
            write_page(out / PAGE, args, space, rows, env)

        train_missing(runs, quality, res, folder, max_runs=args.max_runs, log=lambda s: print(s, flush=True), on_stored=write)
        write()
    except GasNasError as exc:
        print(f"sparsity.py: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / PAGE} ({time.perf_counter() - start:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
