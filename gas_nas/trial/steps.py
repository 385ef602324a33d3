"""The parts a recipe adds to a training step, one object each: a teacher's term in G's loss
(DGL-GAN) and the one-stage update (OSGAN). The cohort (gas_nas.trial.train) runs the plain updates
and whichever parts its recipe has (`step_parts`); none of them is a flag inside the cohort.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from gas_nas.models.recipes import Recipe
from gas_nas.models.spec import TrainConfig


class TeacherTerm:
    """`scale * g_loss(D_T(G(z)))` per trial, added to G's loss: one forward of all K trials' fake
    batches through the frozen teacher D_T (eval mode judges each sample alone, so trials never
    interact). `scale` is a device scalar, 0 until `switch(True)` fills it with the weight in
    place, so a captured CUDA graph (which always runs the teacher: `always`) needs no
    re-capture; eager training skips the teacher's forward while it is off."""

    def __init__(self, module: nn.Module, weight: float, g_loss: Callable[[Any], Any], k: int, device: torch.device, always: bool = False):
        self.module, self.weight, self.g_loss, self.k = module, weight, g_loss, k
        self.scale = torch.zeros((), device=device)
        self.on = False
        self.always = always

    def switch(self, on: bool) -> None:
        """Stage two (on) or stage one (off), in place: a captured CUDA graph stays valid."""
        self.scale.fill_(self.weight if on else 0.0)
        self.on = on

    def __call__(self, fake: torch.Tensor) -> torch.Tensor | None:
        """Per-trial terms for fake batches (K, B, 1, 28, 28), or None while it is not run."""
        if not (self.on or self.always):
            return None
        judged = self.module(fake.flatten(0, 1)).view(self.k, -1, 1)  # (K, B, 1)
        return self.scale * torch.stack([self.g_loss(t) for t in judged])


class OneStage:
    """OSGAN: one forward and one backward of D's loss give D its gradients and, through a
    per-sample scale on the fake images (the recipe's `one_stage_scale` of D's output), G the
    gradients of its own loss. Exact when D treats samples independently (no batch norm in D);
    with batch norm, samples share statistics and G's gradient is an approximation. It replaces
    the last D update and the first G update of an iteration."""

    def __init__(self, scale: Callable[[torch.Tensor], torch.Tensor]):
        self.scale = scale

    def backward(self, c: Any, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of D and G from noise slot `s` of cohort `c` (gas_nas.trial.train.Cohort); per-trial D and G losses."""
        Ds, k = c.discriminators, c.k
        x = c.real[c.index[:, s]]
        scale: list[torch.Tensor] = []
        with c._autocast():
            fake = c.G(c.noise[:, s])  # (K, B, 1, 28, 28), with G's graph
            fake.register_hook(lambda grad: grad * scale[0].to(grad.dtype))
            d_fake = [D(fake[i]) for i, D in enumerate(Ds)]
            d_losses = torch.stack([c.recipe.d_loss(D(x[i]), d_fake[i]) for i, D in enumerate(Ds)])
        out = torch.stack(d_fake).detach().float()  # (K, B, 1)
        scale.append(self.scale(out).view(k, -1, 1, 1, 1))
        g_losses = torch.stack([c.recipe.g_loss(o) for o in out])
        c.opt_d.zero_grad(set_to_none=False)
        c.opt_g.zero_grad(set_to_none=False)
        d_losses.sum().backward()
        return d_losses, g_losses


@dataclass
class StepParts:
    """What a cohort's step runs beside the plain updates (None: the recipe has no such part)."""

    teacher: TeacherTerm | None = None
    one_stage: OneStage | None = None


def step_parts(recipe: Recipe, train: TrainConfig, k: int, device: torch.device, teacher: nn.Module | None, capturable: bool) -> StepParts:
    """The parts `recipe` adds, built for a cohort of `k` trials; a recipe with a teacher (at a
    weight above 0) needs `teacher`, a frozen discriminator in eval mode."""
    term = None
    if recipe.has_teacher and train.teacher_weight:
        if teacher is None:
            raise ValueError(f"recipe {recipe.name} needs a teacher discriminator (gas_nas.trial.teacher.resolve_teacher)")
        term = TeacherTerm(teacher, train.teacher_weight, recipe.g_loss, k, device, always=capturable)
    return StepParts(teacher=term, one_stage=OneStage(recipe.one_stage_scale) if recipe.one_stage_scale is not None else None)
