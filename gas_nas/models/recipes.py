"""Training recipes: how a GAN is trained, one named object each, in one registry.

A recipe owns the loss, the update schedule (per iteration: `d_steps` D updates, then
`g_steps` G updates), the optimiser with its hyperparameters, and the weight initialisation.
Files (search space, architecture YAML) name a recipe and list only the recipe keys they
change (`RECIPE_KEYS`); every other `train` key (iterations, batch_size, z_dim, log_every,
divergence_loss, ...) is the trial's budget, never the recipe's. Adding a recipe means writing
its functions and one entry in `RECIPES`, nothing else.

A recipe with a teacher (`dgl`) also sets `TEACHER_KEYS`, overridable the same way: G's loss
gains `teacher_weight * g_loss(D_T(G(z)))` (for LSGAN `0.5 * (D_T(G(z)) - 1)^2`) through a frozen
teacher discriminator D_T, from iteration `int(teacher_from * iterations) + 1` on
(`gas_nas/trial/teacher.py` loads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from gas_nas.common.errors import SpaceError

if TYPE_CHECKING:  # torch is imported where it is used: reading a config (and `gas-nas --help`) stays light
    import torch
    from torch import nn

Init = Callable[[Any, float], None]  # (module, init_std): initialise weights in place

# The TrainConfig keys a recipe sets and a file may override one by one; the rest are budget.
RECIPE_KEYS = ("optimizer", "lr", "beta1", "beta2", "d_steps", "g_steps", "init_std")
# Recipe keys only a recipe with a teacher has (None in the others, and refused there).
TEACHER_KEYS = ("teacher_weight", "teacher_from")


@dataclass(frozen=True)
class Recipe:
    """One way to train: its settings (`RECIPE_KEYS`) and the code they do not cover."""

    name: str
    summary: str
    optimizer: str  # a key of OPTIMIZERS
    lr: float
    beta1: float
    beta2: float
    d_steps: int
    g_steps: int
    init_std: float
    init: Init
    d_loss: Callable[[Any, Any], Any]  # (D(real), D(fake)) tensors -> scalar tensor
    g_loss: Callable[[Any], Any]  # D(G(z)) -> scalar tensor
    # One-stage updates (OSGAN): D(G(z)) -> per-sample factor turning D's fake-loss gradient into
    # G's loss gradient. None: the usual two-stage updates.
    one_stage_scale: Callable[[Any], Any] | None = None
    # Teacher-guided generator (DGL-GAN): lambda, and the fraction of iterations before the
    # teacher term starts. None: no teacher.
    teacher_weight: float | None = None
    teacher_from: float | None = None

    @property
    def has_teacher(self) -> bool:
        return self.teacher_weight is not None

    def settings(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in RECIPE_KEYS + TEACHER_KEYS}


# ---------------------------------------------------------------- losses


def lsgan_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN discriminator loss, targets real 1 / fake 0 (mean over the batch, in fp32)."""
    return 0.5 * ((d_real.float() - 1).square().mean() + d_fake.float().square().mean())


def lsgan_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN generator loss, target 1."""
    return 0.5 * (d_fake.float() - 1).square().mean()


ONE_STAGE_FLOOR = 1e-3  # |D(G(z))| below this is floored in the one-stage factor's divisor


def lsgan_one_stage_scale(d_fake: torch.Tensor) -> torch.Tensor:
    """OSGAN's gradient scale for LSGAN, per sample: dL_G/dD(G(z)) over dL_D/dD(G(z)).

    With L_D's fake term 0.5 * mean(o^2) and L_G = 0.5 * mean((o - 1)^2), the two derivatives
    with respect to D's output o are o/B and (o - 1)/B, so the factor is (o - 1) / o (the same
    with or without a sigmoid on D: its derivative multiplies both). It blows up where D outputs
    0, so |o| is floored at ONE_STAGE_FLOOR in the divisor: there G's gradient is shrunk by
    |o| / ONE_STAGE_FLOOR instead of growing without bound; everywhere else it is exact.
    """
    import torch

    divisor = torch.where(d_fake >= 0, d_fake.clamp_min(ONE_STAGE_FLOOR), d_fake.clamp_max(-ONE_STAGE_FLOOR))
    return (d_fake - 1) / divisor


# ---------------------------------------------------------------- weight initialisation


def trunc_normal_init(module: nn.Module, std: float) -> None:
    """GAS (TensorFlow's truncated_normal): N(0, std) cut at 2 std, zero biases; norms start at identity."""
    from torch import nn

    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def normal_init(module: nn.Module, std: float) -> None:
    """DCGAN: weights N(0, std), norm scales N(1, std), zero biases."""
    from torch import nn

    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------- optimisers


def _rmsprop(params, train, **kw) -> torch.optim.Optimizer:
    import torch

    return torch.optim.RMSprop(params, lr=train.lr, **kw)


def _adam(params, train, **kw) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adam(params, lr=train.lr, betas=(train.beta1, train.beta2), **kw)


OPTIMIZERS: dict[str, Callable[..., Any]] = {"rmsprop": _rmsprop, "adam": _adam}


def make_optimizer(params, train, device: torch.device, *, capturable: bool = False) -> torch.optim.Optimizer:
    """`train.optimizer` with `train`'s hyperparameters; foreach kernels on CUDA.
    `capturable` keeps the step count on the device, as CUDA-graph capture needs."""
    return OPTIMIZERS[train.optimizer](params, train, foreach=device.type == "cuda", capturable=capturable)


# ---------------------------------------------------------------- the registry

GAS = Recipe(
    name="gas",
    summary="the GAS paper's: RMSprop lr 1e-3, 1 D step then 4 G steps, truncated N(0, 0.02) init, LSGAN loss",
    optimizer="rmsprop", lr=1e-3, beta1=0.5, beta2=0.999,  # betas only matter if `optimizer: adam` overrides
    d_steps=1, g_steps=4,  # "to avoid mode collapse"
    init_std=0.02, init=trunc_normal_init,
    d_loss=lsgan_d_loss, g_loss=lsgan_g_loss,
)

DCGAN = Recipe(
    name="dcgan",
    summary="Radford et al.'s: Adam lr 2e-4, betas (0.5, 0.999), 1 D step then 1 G step, N(0, 0.02) init; LSGAN loss",
    optimizer="adam", lr=2e-4, beta1=0.5, beta2=0.999,
    d_steps=1, g_steps=1,
    init_std=0.02, init=normal_init,
    d_loss=lsgan_d_loss, g_loss=lsgan_g_loss,  # the imbalance objective is measured on LSGAN losses
)

OSGAN = Recipe(
    name="osgan",
    summary="GAS's optimiser and schedule with one-stage updates (Shen et al. 2021): the last D step and the first G step share one forward and one backward",
    optimizer="rmsprop", lr=1e-3, beta1=0.5, beta2=0.999,
    d_steps=1, g_steps=4,  # with d_steps 1 and g_steps 1 every step is one-stage
    init_std=0.02, init=trunc_normal_init,
    d_loss=lsgan_d_loss, g_loss=lsgan_g_loss, one_stage_scale=lsgan_one_stage_scale,
)

DGL = Recipe(
    name="dgl",
    summary="GAS's recipe plus a frozen teacher discriminator in G's loss (Tian et al., DGL-GAN): "
    "lambda * 0.5 * (D_T(G(z)) - 1)^2 added after the first teacher_from of the iterations",
    optimizer="rmsprop", lr=1e-3, beta1=0.5, beta2=0.999,
    d_steps=1, g_steps=4,
    init_std=0.02, init=trunc_normal_init,
    d_loss=lsgan_d_loss, g_loss=lsgan_g_loss,
    teacher_weight=0.1,  # DGL-GAN's lambda for BigGAN (0.1-0.5 for StyleGAN2)
    teacher_from=0.5,  # two stages: plain training for the first half, then the teacher joins
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (GAS, DCGAN, OSGAN, DGL)}
DEFAULT_RECIPE = GAS.name  # what a `train` section without `recipe` means


def get_recipe(name: str, where: str = "recipe") -> Recipe:
    """The registered recipe `name`; anything else is one SpaceError line naming the allowed ones."""
    if not isinstance(name, str) or name not in RECIPES:
        raise SpaceError(f"{where}: unknown recipe {name!r}; allowed: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


__all__ = ["DCGAN", "DEFAULT_RECIPE", "DGL", "GAS", "OSGAN", "OPTIMIZERS", "RECIPES", "RECIPE_KEYS", "TEACHER_KEYS", "Recipe", "get_recipe", "make_optimizer"]
