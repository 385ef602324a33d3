"""Sparse discriminators: what masking costs per iteration, and what a regrown weight's first step is.

    python benchmarks/sparse_speed.py [--device cpu|cuda] [--iterations N] [--repeats R] [--case K] [--density D]

(a) Time per training iteration of one paper case, dense against the same case at `--density`
    with static masks (applied after every D update) and with dynamic ones (plus prune/regrow
    every 2 iterations, the worst case), as gas-nas trains them (`train_cohort`). Runs alternate
    dense, static, dynamic, ...; the median of `--repeats` is used, so the ratios come from
    one run under the same load.
(b) Regrowth and RMSprop state: after a prune/regrow, one more D step with the optimiser's
    square averages of the regrown weights kept (they stayed current: masked weights still get
    their dense gradient) or reset to zero. Reported: the mean |step| of regrown weights over the
    mean |step| of the other live weights (measured: 0.98x kept, 247x reset; docs/guide-sparsity.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from gas_nas.models.space import load_space
from gas_nas.models.spec import TrainConfig
from gas_nas.trial.data import load_mnist
from gas_nas.trial.train import Cohort, train_cohort


def per_iteration(spec, train: TrainConfig, real: torch.Tensor) -> float:
    stamps: list[float] = []
    train_cohort([spec], [0], train, real, progress=lambda done, total: stamps.append(time.perf_counter()))
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def regrown_step_ratio(spec, train: TrainConfig, real: torch.Tensor, reset: bool) -> float:
    """Mean |step| of just-regrown weights over that of the other live weights, one D step after an update."""
    cohort = Cohort([spec], [0], train, real)
    for it in range(1, 11):
        cohort.draw()
        cohort.step()
    masks = cohort.masks[0]
    before = [m.clone() for m in masks.masks]
    masks.update(0.3, "random", torch.Generator().manual_seed(1))
    grown = [(m > 0) & (b == 0) for m, b in zip(masks.masks, before)]
    if reset:
        for w, g in zip(masks.weights, grown):
            cohort.opt_d.state[w]["square_avg"][g] = 0
    weights = [w.detach().clone() for w in masks.weights]
    cohort.draw()
    cohort.d_backward(0)
    cohort.opt_d.step()
    cohort.apply_masks()
    steps = [(w.detach() - w0).abs() for w, w0 in zip(masks.weights, weights)]
    new = torch.cat([s[g] for s, g in zip(steps, grown)])
    live = torch.cat([s[(m > 0) & ~g] for s, m, g in zip(steps, masks.masks, grown)])
    return float(new.mean() / live.mean())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--iterations", type=int, default=12)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--case", type=int, default=1, help="paper case 1..6 (default 1, the original)")
    p.add_argument("--density", type=float, default=0.3)
    args = p.parse_args()
    device = torch.device(args.device)
    real, _ = load_mnist(None, train=True, device=device)
    dense = load_space().cases[args.case - 1].spec
    sparse = dataclasses.replace(dense, density=args.density)
    train = TrainConfig(iterations=args.iterations, log_every=1)
    dynamic = dataclasses.replace(train, sparse_interval=2)
    static = dataclasses.replace(train, sparse_mode="static")
    runs = {"dense": (dense, train), f"density {args.density:g} static": (sparse, static), f"density {args.density:g} dynamic (update every 2)": (sparse, dynamic)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    per_iteration(dense, dataclasses.replace(train, iterations=3), real)  # warm-up
    for _ in range(args.repeats):
        for name, (spec, cfg) in runs.items():
            times[name].append(per_iteration(spec, cfg, real))
    base = statistics.median(times["dense"])
    print(f"case {args.case}, batch {train.batch_size}, {args.iterations} iterations, median of {args.repeats}, {torch.get_num_threads()} thread(s), {device}")
    for name, values in times.items():
        print(f"  {name:<40} {statistics.median(values) * 1e3:8.1f} ms/iteration  {statistics.median(values) / base:.3f}x dense")
    for reset in (False, True):
        ratio = regrown_step_ratio(sparse, dataclasses.replace(train, iterations=20), real, reset)
        print(f"  regrown weights' first step, RMSprop state {'reset' if reset else 'kept '}: {ratio:.2f}x the live weights' mean step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
