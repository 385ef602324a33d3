"""Whether a trained discriminator still tells real images from its generator's samples.

`imbalance` and the duality gap both score a discriminator that outputs 0.5 on every image as
balanced, so a search can learn to make D give up. This measures D directly: its scores on
held-out real images against fresh samples of its own G, each batch run through D in training
mode as in training (BatchNorm on the batch's statistics, real and generated in separate
batches). Copies are measured, so the trained pair (and its running statistics) never change.

- `d_auc`: the probability that D scores a random real image above a random generated one
  (ties count half): 0.5 for a D that cannot tell them apart, 1.0 for a perfect separation.
- `d_spread`: the standard deviation of D's outputs over both sets; 0 for a constant D.
- `d_real`, `d_fake`: D's mean output on real and on generated images.

The rule built on it (docs/balance.md) lives in `gas_nas.trial.guard`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

MEASURE_BATCHES = 16  # batches of real and of generated images (of the training batch size) D scores


@dataclass(frozen=True)
class Discrimination:
    """D's scores on held-out real images against fresh generated ones (see the module)."""

    d_auc: float
    d_spread: float
    d_real: float
    d_fake: float


def auc(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> float:
    """P(real score > fake score) + P(equal) / 2 over all pairs (the Mann-Whitney AUC)."""
    r = real_scores.detach().flatten().to("cpu", torch.float64)
    f = fake_scores.detach().flatten().to("cpu", torch.float64)
    greater = (r[:, None] > f[None, :]).double().mean()
    equal = (r[:, None] == f[None, :]).double().mean()
    return float(greater + equal / 2)


@torch.no_grad()
def measure_discrimination(G: nn.Module, D: nn.Module, held_out: torch.Tensor, batch_size: int, z_dim: int, seed: int) -> Discrimination:
    """Score MEASURE_BATCHES batches of held-out real images (a seeded draw) and as many batches
    of G's samples (seeded noise) with a training-mode copy of D. A non-finite output gives
    nan everywhere: a D that says nothing usable is not counted as discriminating."""
    device = next(D.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n_batches = max(1, min(MEASURE_BATCHES, held_out.shape[0] // batch_size))
    pick = torch.randperm(held_out.shape[0], generator=gen, device="cpu")[: n_batches * batch_size]
    real = held_out[pick.to(held_out.device)].to(device).view(n_batches, batch_size, *held_out.shape[1:])
    z = torch.randn(n_batches, batch_size, z_dim, generator=gen, device="cpu").to(device)
    G_copy, D_copy = copy.deepcopy(G).train(), copy.deepcopy(D).train()
    real_scores = torch.cat([D_copy(x).flatten() for x in real])
    fake_scores = torch.cat([D_copy(G_copy(noise)).flatten() for noise in z])
    both = torch.cat([real_scores, fake_scores]).double()
    if not bool(torch.isfinite(both).all()):
        nan = float("nan")
        return Discrimination(nan, nan, nan, nan)
    return Discrimination(
        d_auc=auc(real_scores, fake_scores),
        d_spread=float(both.std()),
        d_real=float(real_scores.double().mean()),
        d_fake=float(fake_scores.double().mean()),
    )


__all__ = ["MEASURE_BATCHES", "Discrimination", "auc", "measure_discrimination"]
