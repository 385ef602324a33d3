#!/usr/bin/env python
"""Evidence for the second objective: `imbalance` and `duality_gap` side by side on trained pairs.

Trains the six paper cases (the search's own `run_trial`, one seed), then builds deliberately
bad pairs from case 1's trained pair: its D made constant (0.5 for every input), its G
collapsed (one of its own samples for every z), and an untrained G against its trained D.
For each pair: size, imbalance (training losses; and the pair's losses on held-out batches),
the duality gap with both of its sides, and the sample-quality metrics. Writes the table and
rank correlations between the markers in docs/balance.md (the analysis around them is prose).

    OMP_NUM_THREADS=1 python docs/balance.py --iterations 100 --gap-steps 100 --n-samples 500 --device cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import time
from pathlib import Path

import torch
from torch import nn

from gas_nas.models.networks import build_generator
from gas_nas.models.space import load_space
from gas_nas.trial.balance import gap_parts
from gas_nas.trial.classifier import load_classifier
from gas_nas.trial.data import load_mnist
from gas_nas.trial.metrics import imbalance, param_count, sample_quality
from gas_nas.trial.train import generate, run_trial

PAGE = Path(__file__).resolve().parent / "balance.md"
START, END = "<!-- results: written by docs/balance.py -->", "<!-- /results -->"


class Collapsed(nn.Module):
    """A mode-collapsed generator: one image (a learnable parameter) for every z."""

    def __init__(self, image: torch.Tensor, z_dim: int):
        super().__init__()
        self.z_dim = z_dim
        self.image = nn.Parameter(image.detach().clone().reshape(1, 1, 28, 28))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.image.expand(z.shape[0], -1, -1, -1)


def constant_half(D: nn.Module) -> nn.Module:
    """A copy of D that outputs 0.5 for every input (its last layer zeroed; it can still learn)."""
    import copy

    lazy = copy.deepcopy(D)
    with torch.no_grad():
        lazy.head.weight.zero_()
        lazy.head.bias.fill_(0.0 if lazy.spec.output == "sigmoid" else 0.5)
    return lazy


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation (no ties expected among these continuous values)."""
    ra = {i: r for r, i in enumerate(sorted(range(len(a)), key=a.__getitem__))}
    rb = {i: r for r, i in enumerate(sorted(range(len(b)), key=b.__getitem__))}
    n = len(a)
    return 1 - 6 * sum((ra[i] - rb[i]) ** 2 for i in range(n)) / (n * (n * n - 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-samples", type=int, default=1000)
    p.add_argument("--gap-steps", type=int, help="best-response steps (default: the space's quality.duality_gap_steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/mnist"))
    args = p.parse_args()

    device = torch.device(args.device)
    space = load_space()
    train = dataclasses.replace(space.train, iterations=args.iterations, batch_size=args.batch_size)
    steps = args.gap_steps if args.gap_steps is not None else space.quality.duality_gap_steps
    quality = dataclasses.replace(space.quality, n_samples=args.n_samples, duality_gap_steps=0)  # measured below, with its parts
    real, _ = load_mnist(args.data_dir, train=True, device=device)
    held_out, _ = load_mnist(args.data_dir, train=False, device=device)
    classifier = load_classifier(args.data_dir, device=device)
    pick = torch.randperm(held_out.shape[0], generator=torch.Generator().manual_seed(args.seed))[: args.n_samples]
    reference = held_out[pick.to(device)]

    rows, started = [], time.perf_counter()

    def add(name: str, G: nn.Module, D: nn.Module, train_imbalance: float, q) -> None:
        t = time.perf_counter()
        parts = gap_parts(G, D, held_out, train, steps, args.seed)
        rows.append({
            "pair": name, "d_params": param_count(D), "imbalance": train_imbalance,
            "heldout_imbalance": imbalance([parts.d_loss], [parts.g_loss]), "d_loss": parts.d_loss, "g_loss": parts.g_loss,
            "gap": parts.gap, "d_gain": parts.d_gain, "g_gain": parts.g_gain,
            "fid": q.fid, "classes": q.classes, "entropy": q.entropy, "gap_s": time.perf_counter() - t,
        })
        print(rows[-1], flush=True)

    trained = {}
    for case in space.cases:
        t = time.perf_counter()
        out = run_trial(case.spec, train, quality, real=real, held_out=held_out, classifier=classifier, seed=args.seed)
        m = out.metrics
        trained[case.name] = out
        add(case.name, out.generator, out.discriminator, m.imbalance, sample_quality(classifier, generate(out.generator, args.n_samples, train.z_dim, device, args.seed + 1), reference))
        rows[-1]["train_s"] = time.perf_counter() - t

    base = trained[space.cases[0].name]
    G, D = base.generator, base.discriminator
    q_g = sample_quality(classifier, generate(G, args.n_samples, train.z_dim, device, args.seed + 1), reference)
    add("bad: case 1's G + constant-0.5 D", G, constant_half(D), float("nan"), q_g)
    collapsed = Collapsed(generate(G, 1, train.z_dim, device, args.seed + 7)[0], train.z_dim)
    with torch.no_grad():
        q_c = sample_quality(classifier, collapsed(torch.zeros(args.n_samples, 1, device=device)), reference)
    add("bad: collapsed G (one case-1 sample) + case 1's D", collapsed, D, float("nan"), q_c)
    torch.manual_seed(args.seed)
    untrained = build_generator(train.z_dim, train.init_std, device=device)
    q_u = sample_quality(classifier, generate(untrained, args.n_samples, train.z_dim, device, args.seed + 1), reference)
    add("bad: untrained G + case 1's D", untrained, D, float("nan"), q_u)

    write_page(rows, args, steps, time.perf_counter() - started)


def write_page(rows: list[dict], args, steps: int, seconds: float) -> None:
    cases = rows[:6]
    cols = ("d_params", "imbalance", "heldout_imbalance", "gap", "d_gain", "g_gain", "d_loss", "g_loss", "fid", "classes", "entropy")
    fmt = lambda v: "-" if isinstance(v, float) and math.isnan(v) else f"{v:,}" if isinstance(v, int) else f"{v:.3f}"  # noqa: E731
    lines = [
        START,
        f"Command: `OMP_NUM_THREADS=1 python docs/balance.py --iterations {args.iterations} --batch-size {args.batch_size} "
        f"--n-samples {args.n_samples} --gap-steps {steps} --seed {args.seed} --device {args.device}`  ",
        f"Budget: {args.iterations} iterations at batch {args.batch_size} (the paper's is 2000), seed {args.seed}, "
        f"duality gap with {steps} best-response steps, quality on {args.n_samples} samples; "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, whole run {seconds / 60:.0f} min.",
        "",
        "| pair | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    lines += ["| " + r["pair"] + " | " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    pairs = [("d_params", "gap"), ("d_params", "imbalance"), ("fid", "gap"), ("fid", "imbalance"), ("fid", "heldout_imbalance")]
    lines += ["", "Spearman rank correlations over the six trained cases (+1: same order):", ""]
    lines += [f"- {a} vs {b}: {spearman([float(r[a]) for r in cases], [float(r[b]) for r in cases]):+.2f}" for a, b in pairs]
    cost = [r["gap_s"] / (r["train_s"] / args.iterations * 2000) for r in cases]
    lines += ["", f"Gap cost against a paper-budget trial (2000 iterations) of the same case on this CPU: "
              f"{min(cost):.1%} to {max(cost):.1%}.", END]
    block = "\n".join(lines)
    text = PAGE.read_text() if PAGE.exists() else f"# Balance objectives: imbalance vs duality gap\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    PAGE.write_text(head + block + tail)
    print(block)


if __name__ == "__main__":
    main()
