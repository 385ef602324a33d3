"""One GAS trial's training, timed two ways in one process: a naive eager loop vs gas-nas's trainer.

    python benchmarks/trial_speed.py [--device auto|cpu|cuda] [--iterations N] [--batch-size N] [--repeats R]

(a) `naive_train` below: what a typical GAN script does, a DataLoader over a CPU TensorDataset
    (shuffle=True), each batch moved to the device, a `.item()` per optimiser step for loss
    logging, RMSprop with default options, 1 D step then 4 G steps, LSGAN losses.
(b) `gas_nas.trial.train.train_gan`: MNIST already on the device, batches drawn there, losses read
    once per log interval.
(c) `--recipes`: OSGAN's one-stage updates against two-stage training, for the GAS schedule
    (1 D : 4 G) and for 1 : 1, as gas-nas trials (`run_trial`, same seed, same budget): time per
    iteration (training only, from the trainer's per-iteration progress stamps) and the quality
    metrics of each, so speed and what it costs in samples are read side by side.

Both train the same GAS generator and paper case 1 discriminator (built by gas_nas.models.networks, same
seed, so the same initial weights) for the same iterations; training only, no quality metrics.
Budget: the paper's (2000 iterations, batch 32) on CUDA, a small one on CPU (one iteration is
~0.7 s on a 2-core CPU). Timed: model build + optimisers + loop (+ DataLoader creation for a);
MNIST loading is excluded for both (done once per process). Warm-up: one short untimed run of
each before timing, so both are timed warm. Runs alternate a, b, a, b, ...; the median is used.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from gas_nas.models.networks import build_discriminator, build_generator
from gas_nas.models.space import load_space
from gas_nas.models.spec import DiscriminatorSpec, TrainConfig
from gas_nas.trial.data import load_mnist
from gas_nas.trial.train import run_trial, train_gan

PAPER_ITERATIONS = 2000  # the GAS budget (search_spaces/gas.yaml train.iterations)
CPU_ITERATIONS = 20
WARMUP_ITERATIONS = 3


def naive_train(spec: DiscriminatorSpec, train: TrainConfig, images_cpu: torch.Tensor, device: torch.device, *, seed: int = 0) -> dict:
    """A typical eager LSGAN script (the baseline): returns per-step loss logs."""
    torch.manual_seed(seed)
    G = build_generator(train.z_dim, train.init_std).to(device)
    D = build_discriminator(spec, train.init_std).to(device)
    opt_g = torch.optim.RMSprop(G.parameters(), lr=train.lr)
    opt_d = torch.optim.RMSprop(D.parameters(), lr=train.lr)
    loader = DataLoader(TensorDataset(images_cpu), batch_size=train.batch_size, shuffle=True, drop_last=True)
    d_log, g_log = [], []
    it = 0
    while it < train.iterations:
        for (x,) in loader:
            if it >= train.iterations:
                break
            x = x.to(device)
            # discriminator: real -> 1, fake -> 0
            for _ in range(train.d_steps):
                z = torch.randn(x.shape[0], train.z_dim, device=device)
                fake = G(z)
                d_loss = 0.5 * (((D(x) - 1) ** 2).mean() + (D(fake.detach()) ** 2).mean())
                opt_d.zero_grad()
                d_loss.backward()
                opt_d.step()
                d_log.append(d_loss.item())
            # generator: D(G(z)) -> 1
            for _ in range(train.g_steps):
                z = torch.randn(x.shape[0], train.z_dim, device=device)
                g_loss = 0.5 * ((D(G(z)) - 1) ** 2).mean()
                opt_g.zero_grad()
                g_loss.backward()
                opt_g.step()
                g_log.append(g_loss.item())
            it += 1
    return {"d_losses": d_log, "g_losses": g_log, "iterations": it}


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        sys.exit("trial_speed: --device cuda but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def default_iterations(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return PAPER_ITERATIONS, "paper budget"
    return CPU_ITERATIONS, "small CPU budget, NOT the paper's 2000"


def budget(train: TrainConfig, iterations: int, batch_size: int) -> TrainConfig:
    return dataclasses.replace(train, iterations=iterations, batch_size=batch_size, log_every=min(train.log_every, iterations))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--iterations", type=int, help=f"default: {PAPER_ITERATIONS} on CUDA (paper), {CPU_ITERATIONS} on CPU")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, help="timed runs of each (default: 3 on CUDA, 1 on CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", help="MNIST IDX files (default: $GAS_NAS_DATA)")
    p.add_argument("--recipes", action="store_true", help="(c) only: OSGAN vs two-stage, GAS schedule and 1:1, with quality metrics")
    args = p.parse_args(argv)
    if args.recipes:
        return compare_recipes(args)

    device = pick_device(args.device)
    iterations, label = (args.iterations, "set by --iterations") if args.iterations else default_iterations(device)
    repeats = args.repeats or (3 if device.type == "cuda" else 1)
    space = load_space()
    spec = space.cases[0].spec
    train = budget(space.train, iterations, args.batch_size)
    print(f"budget: {iterations} iterations, batch {args.batch_size} ({label}); case {space.cases[0].name!r}; device {device}", flush=True)

    images_cpu, _ = load_mnist(args.data_dir, train=True, device="cpu")
    real_on_device, _ = load_mnist(args.data_dir, train=True, device=device)

    def run_a(t: TrainConfig = train) -> None:
        naive_train(spec, t, images_cpu, device, seed=args.seed)

    def run_b(t: TrainConfig = train) -> None:
        train_gan(spec, t, real_on_device, seed=args.seed)

    warm = budget(space.train, min(WARMUP_ITERATIONS, iterations), args.batch_size)
    timed(lambda: run_a(warm), device)
    timed(lambda: run_b(warm), device)
    times_a, times_b = [], []
    for r in range(repeats):
        times_a.append(timed(run_a, device))
        times_b.append(timed(run_b, device))
        print(f"  repeat {r + 1}/{repeats}: naive {times_a[-1]:.2f} s, gas-nas {times_b[-1]:.2f} s", flush=True)
    a, b = statistics.median(times_a), statistics.median(times_b)

    rows = [
        ("device", torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"),
        ("torch", torch.__version__),
        ("iterations", f"{iterations} ({label})"),
        ("batch", str(args.batch_size)),
        ("warm-up", f"{warm.iterations} iterations of each, excluded from timing"),
        ("repeats", f"{repeats} (median)"),
        ("(a) naive eager s", f"{a:.2f}  ({1000 * a / iterations:.1f} ms/iter)"),
        ("(b) gas-nas train_gan s", f"{b:.2f}  ({1000 * b / iterations:.1f} ms/iter)"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(f"speedup (naive / gas-nas): {a / b:.2f}x")
    return 0


RECIPE_RUNS = [("gas", 4), ("osgan", 4), ("gas", 1), ("osgan", 1)]  # (recipe, g_steps), 1 D step each


def compare_recipes(args) -> int:
    """(c): each (recipe, schedule) as one trial; seconds per iteration and sample quality."""
    from gas_nas.models.spec import QualityConfig
    from gas_nas.trial.classifier import load_classifier

    device = pick_device(args.device)
    iterations, label = (args.iterations, "set by --iterations") if args.iterations else default_iterations(device)
    space = load_space()
    spec = space.cases[0].spec
    real, _ = load_mnist(args.data_dir, train=True, device=device)
    held_out, _ = load_mnist(args.data_dir, train=False, device=device)
    classifier = load_classifier(args.data_dir, device=device)
    quality = QualityConfig(n_samples=2000 if device.type == "cuda" else 500, duality_gap_steps=0)  # timing and sample quality only
    print(f"budget: {iterations} iterations, batch {args.batch_size} ({label}); case {space.cases[0].name!r}; "
          f"{quality.n_samples} quality samples; device {device}", flush=True)
    rows = []
    for recipe, g_steps in RECIPE_RUNS:
        train = TrainConfig.from_dict({"recipe": recipe, "g_steps": g_steps, "iterations": iterations, "batch_size": args.batch_size, "log_every": 1})
        stamps: list[float] = []
        sync(device)
        m = run_trial(spec, train, quality, real=real, held_out=held_out, classifier=classifier, seed=args.seed,
                      progress=lambda done, total: (sync(device), stamps.append(time.perf_counter()))).metrics
        per_iter = (stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1)  # the first iteration (warm-up) is left out
        rows.append((f"{recipe} 1:{g_steps}", per_iter, m))
        print(f"  {recipe} 1:{g_steps}: {1000 * per_iter:.1f} ms/iter, fid {m.fid:.1f}, {m.classes} digits, imbalance {m.imbalance:.3f}", flush=True)
    print(f"device      {torch.cuda.get_device_name(device) if device.type == 'cuda' else f'cpu ({torch.get_num_threads()} threads)'}")
    print(f"torch       {torch.__version__}")
    print(f"{'schedule':<12} {'ms/iter':>9} {'vs two-stage':>13} {'fid':>7} {'digits':>7} {'entropy':>8} {'imbalance':>10}")
    for i, (name, per_iter, m) in enumerate(rows):
        base = rows[i - 1][1] if name.startswith("osgan") else per_iter
        print(f"{name:<12} {1000 * per_iter:9.1f} {base / per_iter:12.2f}x {m.fid:7.1f} {m.classes:7d} {m.entropy:8.2f} {m.imbalance:10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
