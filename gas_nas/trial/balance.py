"""The duality gap: how much each player of a trained GAN could still gain against the other.

`imbalance` reads the two training losses against their equilibrium values, so a discriminator
that outputs 0.5 for everything scores a perfect 0 while teaching the generator nothing. The
duality gap (Grnarova et al. 2019; alphaGAN's search objective) asks instead how far the pair
is from a Nash equilibrium: let each side improve against the other, frozen, and add up what
they gain. LSGAN's two losses differ, so this is the general (two-loss) form:

    gap = [L_D(G, D) - min_D' L_D(G, D')] + [L_G(G, D) - min_G' L_G(G', D)]

Each minimum is estimated by training a copy (D' from D, G' from G) for `steps` optimiser steps
with the trial's own optimiser, on held-out images and fresh noise, and the losses are measured
on fixed held-out batches and fixed noise. It is 0 only at an equilibrium; a lazy constant
discriminator leaves a D-side gain (at most 0.25: it gives G nothing to follow), a collapsed
generator should leave a D-side gain (its one image is easy to reject) and a weak generator a
G-side gain. docs/balance.md shows where a few best-response steps fall short of that.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from gas_nas.models.recipes import lsgan_d_loss, lsgan_g_loss, make_optimizer
from gas_nas.models.spec import TrainConfig

EVAL_BATCHES = 16  # fixed held-out batches (of the training batch size) the losses are measured on


@dataclass(frozen=True)
class GapParts:
    """The pair's own losses on the evaluation batches and what each side's best response gained."""

    d_loss: float
    g_loss: float
    d_gain: float  # L_D(G, D) - min_D' L_D(G, D'), >= 0
    g_gain: float  # L_G(G, D) - min_G' L_G(G', D), >= 0

    @property
    def gap(self) -> float:
        return self.d_gain + self.g_gain


def duality_gap(G: nn.Module, D: nn.Module, held_out: torch.Tensor, train: TrainConfig, steps: int, seed: int) -> float:
    """The LSGAN duality gap of (G, D), >= 0 (see `gap_parts`)."""
    return gap_parts(G, D, held_out, train, steps, seed).gap


def gap_parts(G: nn.Module, D: nn.Module, held_out: torch.Tensor, train: TrainConfig, steps: int, seed: int) -> GapParts:
    """Both sides of the LSGAN duality gap of (G, D); G and D themselves are never changed.

    `held_out` (N, 1, 28, 28) in [-1, 1] are images neither network trained on: the first
    EVAL_BATCHES x batch_size (in a seeded order; at most half of them) are the fixed
    evaluation batches, the rest feed the best responses. Everything runs in training mode, as the losses were during
    training (BatchNorm on batch statistics), in fp32. A few optimiser steps can leave a copy
    worse than where it started; since the copy's start is itself a candidate for the
    minimum, each side's gain is clamped at 0. A best response whose loss is not finite gains
    nothing; a pair whose own losses are not finite has an infinite gap.
    """
    device = next(D.parameters()).device
    batch, z_dim = train.batch_size, train.z_dim
    gen = torch.Generator(device=device).manual_seed(seed)
    images = held_out.to(device)
    order = torch.randperm(images.shape[0], generator=gen, device=device)
    n_batches = min(EVAL_BATCHES, images.shape[0] // (2 * batch))  # at most half the images: the rest trains
    if n_batches < 1:
        raise ValueError(f"duality_gap: needs at least {2 * batch} held-out images, got {images.shape[0]}")
    eval_real = images[order[: n_batches * batch]].view(n_batches, batch, *images.shape[1:])
    pool = images[order[n_batches * batch :]]
    eval_z = torch.randn(n_batches, batch, z_dim, generator=gen, device=device)

    G_fixed, D_fixed = (copy.deepcopy(m).train().requires_grad_(False) for m in (G, D))
    G_best, D_best = (copy.deepcopy(m).train().requires_grad_(True) for m in (G, D))
    d_start, g_start = _losses(G_fixed, D_fixed, eval_real, eval_z)
    if not (torch.isfinite(d_start) and torch.isfinite(g_start)):
        return GapParts(float(d_start), float(g_start), math.inf, math.inf)

    g_params = list(G_best.parameters())
    opt_d = make_optimizer(D_best.parameters(), train, device)
    opt_g = make_optimizer(g_params, train, device)
    for _ in range(steps):
        x = pool[torch.randint(0, pool.shape[0], (batch,), generator=gen, device=device)]
        z = torch.randn(2, batch, z_dim, generator=gen, device=device)
        # ---- D' against the frozen G: real -> 1, fake -> 0
        with torch.no_grad():
            fake = G_fixed(z[0])
        opt_d.zero_grad(set_to_none=False)
        lsgan_d_loss(D_best(x), D_best(fake)).backward()
        opt_d.step()
        # ---- G' against the frozen D: D(G'(z)) -> 1
        opt_g.zero_grad(set_to_none=False)
        lsgan_g_loss(D_fixed(G_best(z[1]))).backward(inputs=g_params)
        opt_g.step()

    d_best, _ = _losses(G_fixed, D_best, eval_real, eval_z)
    _, g_best = _losses(G_best, D_fixed, eval_real, eval_z)
    return GapParts(float(d_start), float(g_start), _gain(d_start, d_best), _gain(g_start, g_best))


@torch.no_grad()
def _losses(G: nn.Module, D: nn.Module, real: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean LSGAN D and G losses over the fixed evaluation batches."""
    d = g = 0.0
    for x, noise in zip(real, z):
        d_fake = D(G(noise))
        d = d + lsgan_d_loss(D(x), d_fake)
        g = g + lsgan_g_loss(d_fake)
    return d / len(real), g / len(real)


def _gain(start: torch.Tensor, best: torch.Tensor) -> float:
    """What one side gained; its start is a candidate for the minimum, so never below 0."""
    start, best = float(start), float(best)
    return max(0.0, start - best) if math.isfinite(best) else 0.0


__all__ = ["EVAL_BATCHES", "GapParts", "duality_gap", "gap_parts"]
