"""What a trial is scored on: discriminator size, training balance and sample quality."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

# LSGAN losses at equilibrium, where D outputs 0.5 everywhere:
# L_D = ((0.5 - 1)^2 + 0.5^2) / 2 = 0.25 and L_G = (0.5 - 1)^2 / 2 = 0.125.
D_LOSS_EQUILIBRIUM = 0.25
G_LOSS_EQUILIBRIUM = 0.125
LOSS_FLOOR = 1e-8
N_CLASSES = 10


def param_count(module: nn.Module) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in module.parameters())


def param_mb(module: nn.Module) -> float:
    """Size of the parameters stored as fp32, in MiB (count * 4 / 2**20)."""
    return param_count(module) * 4 / 2**20


def _as_history(values: Sequence[float] | Tensor) -> Tensor:
    if isinstance(values, Tensor):
        return values.detach().to("cpu", torch.float64).flatten()
    return torch.as_tensor([float(v) for v in values], dtype=torch.float64, device="cpu")


def last_quarter_mean(values: Sequence[float] | Tensor) -> float:
    """Mean of the last quarter of a loss history (at least one point); nan when empty."""
    values = _as_history(values)
    if values.numel() == 0:
        return float("nan")
    keep = max(1, math.ceil(values.numel() / 4))
    return float(values[-keep:].mean())


def imbalance(d_losses: Sequence[float] | Tensor, g_losses: Sequence[float] | Tensor) -> float:
    """How far the end of training sits from the LSGAN equilibrium; 0 is perfect balance.

    Both arguments are per-log-point histories of mean per-sample losses,
    D: ((D(x) - 1)^2 + D(G(z))^2) / 2 and G: (D(G(z)) - 1)^2 / 2. Only the last quarter of
    each history is averaged (the early transient says nothing about where training went).
    At equilibrium D outputs 0.5, so L_D* = 0.25 and L_G* = 0.125, and

        imbalance = |ln(mean L_D / 0.25)| + |ln(mean L_G / 0.125)|   (losses floored at 1e-8)

    It grows when D dominates (L_D small, L_G large) and when G dominates (L_D large,
    L_G small). Each loss is measured against its own equilibrium value because a balance
    ratio or relative gap between the two losses (as in ADAPT) is 0 whenever both are off by
    the same factor, e.g. both twice too large, which is not equilibrium. Empty or
    non-finite histories give inf, so a diverged trial is never the most balanced one.
    """
    d = _as_history(d_losses)
    g = _as_history(g_losses)
    if d.numel() == 0 or g.numel() == 0 or not bool(torch.isfinite(d).all() and torch.isfinite(g).all()):
        return float("inf")
    d_mean = max(last_quarter_mean(d), LOSS_FLOOR)
    g_mean = max(last_quarter_mean(g), LOSS_FLOOR)
    return abs(math.log(d_mean / D_LOSS_EQUILIBRIUM)) + abs(math.log(g_mean / G_LOSS_EQUILIBRIUM))


@dataclass(frozen=True)
class SampleQuality:
    """Fréchet distance to real MNIST in classifier-feature space, and digit coverage of the samples."""

    fid: float
    classes: int
    entropy: float
    histogram: list[int] = field(default_factory=list)


class _Precomputed(nn.Module):
    """Identity 'feature extractor' for torchmetrics' FID: features are computed once per chunk
    by the caller, so the same forward pass also gives the class histogram."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def sample_quality(
    classifier: nn.Module,
    fake: Tensor,
    real: Tensor,
    *,
    batch_size: int = 500,
    min_fraction: float = 0.01,
) -> SampleQuality:
    """Score generated digits against real ones; a collapsed generator cannot pass.

    `fake` and `real` are (N, 1, 28, 28) in [-1, 1], on any device; they are moved chunk by
    chunk to the classifier's device. `classifier` needs `.features(x)`, `.head(features)`
    and an int `num_features` (see `gas_nas.trial.classifier.MnistClassifier`). A digit counts as
    found when at least `min_fraction` of the samples are classified as it; entropy is that
    of the class histogram in nats (ln 10 = 2.30 for perfectly even coverage). NaN or inf
    in `fake` gives fid inf and 0 classes.
    """
    for name, x in (("fake", fake), ("real", real)):
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28) or x.shape[0] < 2:
            raise ValueError(f"sample_quality: {name} must be (N>=2, 1, 28, 28), got {tuple(x.shape)}")
    if not bool(torch.isfinite(fake).all()):
        return SampleQuality(fid=float("inf"), classes=0, entropy=0.0, histogram=[0] * N_CLASSES)
    device = _device_of(classifier)
    with torch.device(device):  # torchmetrics creates its states on the default device
        fid = FrechetInceptionDistance(feature=_Precomputed(int(classifier.num_features)), reset_real_features=True)
    fid = fid.to(device)
    histogram = torch.zeros(N_CLASSES, dtype=torch.int64, device=device)
    for start in range(0, real.shape[0], batch_size):
        fid.update(classifier.features(real[start : start + batch_size].to(device)), real=True)
    for start in range(0, fake.shape[0], batch_size):
        features = classifier.features(fake[start : start + batch_size].to(device))
        fid.update(features, real=False)
        predicted = classifier.head(features).argmax(dim=1)
        histogram += torch.bincount(predicted, minlength=N_CLASSES)
    distance = float(fid.compute())
    counts = histogram.cpu().tolist()
    total = sum(counts)
    found = sum(1 for c in counts if c >= min_fraction * total)
    probs = [c / total for c in counts if c > 0]
    entropy = 0.0 - sum(p * math.log(p) for p in probs)  # 0.0 - avoids printing -0.0
    return SampleQuality(
        fid=distance if math.isfinite(distance) else float("inf"),
        classes=found,
        entropy=entropy,
        histogram=counts,
    )
