"""One LSGAN trial: train the GAS generator against a spec's discriminator, then measure it.

`run_trial(spec, train, quality, ...)` is all a caller needs; it has no flags, no globals and
never raises for a run that goes bad: divergence ends the trial early with a reason.
Speed: MNIST sits on the training device, batches are drawn there, and losses are summed on
the device and read once per log interval, so the loop has no host sync between logs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from gas_nas.metrics import imbalance as imbalance_of
from gas_nas.metrics import last_quarter_mean, param_count, param_mb, sample_quality
from gas_nas.models import build_discriminator, build_generator
from gas_nas.recipes import get_recipe, make_optimizer
from gas_nas.spec import DiscriminatorSpec, QualityConfig, TrainConfig

GRID_SAMPLES = 64
Progress = Callable[[int, int], None]


@dataclass
class TrialMetrics:
    """Everything one trial measured; JSON-ready via `to_dict`, stored as Optuna user attributes."""

    status: str  # "complete" or "diverged"
    reason: str
    iterations: int
    d_params: int
    d_param_mb: float
    imbalance: float
    d_loss: float  # mean over the last quarter of training
    g_loss: float
    fid: float
    classes: int
    entropy: float
    class_histogram: list[int]
    classifier_accuracy: float
    seconds: float
    device: str
    seed: int
    peak_mb: float | None = None
    log_steps: list[int] = field(default_factory=list)
    d_losses: list[float] = field(default_factory=list)
    g_losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def violations(self, quality: QualityConfig) -> list[str]:
        """Why the samples fail the quality guard (empty: feasible)."""
        out = []
        if self.status != "complete":
            out.append(f"training {self.status}: {self.reason}")
        if not self.fid <= quality.max_fid:
            out.append(f"fid {self.fid:.1f} > {quality.max_fid:g}")
        if self.classes < quality.min_classes:
            out.append(f"{self.classes} digits found < {quality.min_classes}")
        if not self.entropy >= quality.min_entropy:
            out.append(f"class entropy {self.entropy:.2f} < {quality.min_entropy:g}")
        return out

    def constraints(self, quality: QualityConfig) -> list[float]:
        """Optuna constraint values, feasible when all are <= 0."""
        fid = self.fid if math.isfinite(self.fid) else 1e9
        return [
            fid - quality.max_fid,
            float(quality.min_classes - self.classes),
            quality.min_entropy - self.entropy,
            0.0 if self.status == "complete" else 1.0,
        ]


@dataclass
class TrialOutcome:
    metrics: TrialMetrics
    generator: nn.Module
    discriminator: nn.Module
    grid: torch.Tensor  # (64, 1, 28, 28) samples from fixed noise, in [-1, 1]


def train_gan(
    spec: DiscriminatorSpec,
    train: TrainConfig,
    real: torch.Tensor,
    *,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[nn.Module, nn.Module, dict]:
    """Train G and D on `real` (N, 1, 28, 28) images on their device. Returns (G, D, history).

    history: log_steps, d_losses, g_losses (interval means), status and reason.
    """
    device = real.device
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    recipe = get_recipe(train.recipe)  # the loss and the init; its settings are already in `train`
    G = build_generator(train.z_dim, train.init_std, recipe.init).to(device)
    D = build_discriminator(spec, train.init_std, recipe.init).to(device)
    opt_g = make_optimizer(G.parameters(), train, device)
    opt_d = make_optimizer(D.parameters(), train, device)
    g_params = list(G.parameters())
    all_params = g_params + list(D.parameters())
    n, batch = real.shape[0], train.batch_size

    def noise() -> torch.Tensor:
        return torch.randn(batch, train.z_dim, device=device, generator=gen)

    sums = torch.zeros(2, device=device)  # running D and G loss over the current interval
    steps, d_hist, g_hist = [], [], []
    status, reason, done = "complete", "", 0
    for it in range(1, train.iterations + 1):
        # ---- discriminator: real -> 1, fake -> 0
        for _ in range(train.d_steps):
            x = real[torch.randint(0, n, (batch,), device=device, generator=gen)]
            with torch.no_grad():
                fake = G(noise())
            d_loss = recipe.d_loss(D(x), D(fake))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        # ---- generator: D(G(z)) -> 1; gradients flow through D but only G's are kept
        for _ in range(train.g_steps):
            g_loss = recipe.g_loss(D(G(noise())))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward(inputs=g_params)
            opt_g.step()
        sums += torch.stack([d_loss.detach(), g_loss.detach()])
        done = it
        if it % train.log_every == 0 or it == train.iterations:
            span = it - (steps[-1] if steps else 0)
            weights = torch.stack([p.detach().abs().amax() for p in all_params]).amax()
            d_mean, g_mean, w_max = torch.cat([sums / span, weights.reshape(1)]).tolist()  # the one host sync per interval
            sums.zero_()
            steps.append(it)
            d_hist.append(d_mean)
            g_hist.append(g_mean)
            if progress is not None:
                progress(it, train.iterations)
            reason = _divergence(d_mean, g_mean, w_max, train.divergence_loss)
            if reason:
                status, reason = "diverged", f"{reason} at iteration {it}"
                break
    return G, D, {"log_steps": steps, "d_losses": d_hist, "g_losses": g_hist, "status": status, "reason": reason, "iterations": done}


def _divergence(d_loss: float, g_loss: float, weight_max: float, limit: float) -> str:
    """Why training has diverged, or '' while it has not."""
    if not (math.isfinite(d_loss) and math.isfinite(g_loss)):
        return "loss is not finite"
    if max(abs(d_loss), abs(g_loss)) > limit:
        return f"loss exploded past {limit:g}"
    if not math.isfinite(weight_max):
        return "weights are not finite"
    return ""


@torch.no_grad()
def generate(G: nn.Module, n: int, z_dim: int, device: torch.device, seed: int, chunk: int = 500) -> torch.Tensor:
    """n samples from G in eval mode (BN running statistics), from seeded noise."""
    G.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    out = [G(torch.randn(min(chunk, n - i), z_dim, device=device, generator=gen)) for i in range(0, n, chunk)]
    return torch.cat(out)


def run_trial(
    spec: DiscriminatorSpec,
    train: TrainConfig,
    quality: QualityConfig,
    *,
    real: torch.Tensor,
    held_out: torch.Tensor,
    classifier: nn.Module,
    seed: int = 0,
    progress: Progress | None = None,
) -> TrialOutcome:
    """Train, then measure size, balance and sample quality. `held_out` is never trained on."""
    device = real.device
    start = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    G, D, hist = train_gan(spec, train, real, seed=seed, progress=progress)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    fake = generate(G, quality.n_samples, train.z_dim, device, seed + 1)
    pick = torch.randperm(held_out.shape[0], generator=torch.Generator().manual_seed(seed))[: quality.n_samples]
    q = sample_quality(classifier, fake, held_out[pick.to(held_out.device)])
    grid = generate(G, GRID_SAMPLES, train.z_dim, device, seed=12345).cpu()
    metrics = TrialMetrics(
        status=hist["status"],
        reason=hist["reason"],
        iterations=hist["iterations"],
        d_params=param_count(D),
        d_param_mb=param_mb(D),
        imbalance=imbalance_of(hist["d_losses"], hist["g_losses"]),
        d_loss=last_quarter_mean(hist["d_losses"]),
        g_loss=last_quarter_mean(hist["g_losses"]),
        fid=float(q.fid),
        classes=int(q.classes),
        entropy=float(q.entropy),
        class_histogram=[int(c) for c in q.histogram],
        classifier_accuracy=float(getattr(classifier, "test_accuracy", float("nan"))),
        seconds=time.perf_counter() - start,
        device=str(device),
        seed=seed,
        peak_mb=peak,
        log_steps=hist["log_steps"],
        d_losses=hist["d_losses"],
        g_losses=hist["g_losses"],
    )
    return TrialOutcome(metrics=metrics, generator=G, discriminator=D, grid=grid)


def peak_train_memory_mb(spec: DiscriminatorSpec, train: TrainConfig, device: torch.device) -> float:
    """CUDA peak memory of one training iteration (G and D, batch from `train`), in MB."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    real = torch.rand(train.batch_size * 4, 1, 28, 28, device=device) * 2 - 1
    one = dataclasses.replace(train, iterations=1, log_every=1)
    train_gan(spec, one, real)
    return torch.cuda.max_memory_allocated(device) / 2**20
