"""OSGAN one-stage updates: one backward gives D and G the gradients two-stage training gives."""

from __future__ import annotations

import math

import pytest
import torch

from gas_nas.models.recipes import ONE_STAGE_FLOOR, lsgan_one_stage_scale
from gas_nas.models.spec import DiscriminatorSpec, TrainConfig
from gas_nas.trial.train import Cohort, train_cohort

PER_SAMPLE = dict(base_filters=8, depth=2, norm="none")  # no batch norm: D treats samples independently


@pytest.fixture(scope="module")
def real(mnist_dir):
    from gas_nas.trial.data import load_mnist

    return load_mnist(mnist_dir, train=True)[0][:500]


def _grads(params) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in params]


@pytest.mark.parametrize("output", ["sigmoid", "linear"])
def test_one_stage_gradients_equal_two_stage_before_any_update(output, real, float64):
    specs = [DiscriminatorSpec(output=output, **PER_SAMPLE), DiscriminatorSpec(output=output, inception=True, **PER_SAMPLE)]
    cohorts = {}
    for recipe in ("osgan", "gas"):
        c = Cohort(specs, [3, 4], TrainConfig.from_dict({"recipe": recipe, "batch_size": 6}), real.double())
        if output == "linear":  # keep D's outputs away from 0, where the one-stage factor is floored
            for D in c.discriminators:
                torch.nn.init.constant_(D.head.bias, 0.5)
        c.draw()
        cohorts[recipe] = c
    one, two = cohorts["osgan"], cohorts["gas"]
    d_one, g_one = one.parts.one_stage.backward(one, 0)
    one_d, one_g = [_grads(ps) for ps in one.d_params], _grads(one.g_params)
    d_two = two.d_backward(0)
    two_d = [_grads(ps) for ps in two.d_params]
    g_two = two.g_backward(0)  # the same noise slot: the same fake batch, before any update
    two_g = _grads(two.g_params)
    torch.testing.assert_close(d_one, d_two, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(g_one, g_two, rtol=1e-5, atol=1e-12)
    for x, y in [*zip(sum(one_d, []), sum(two_d, [])), *zip(one_g, two_g)]:
        assert y.abs().max() > 0
        # relative to the tensor's own scale: BatchNorm in G makes some entries near-cancelling sums
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5 * float(y.abs().max()))


def test_the_one_stage_factor_is_exact_away_from_zero_and_floored_near_it():
    out = torch.tensor([0.5, 0.9, -0.4, 0.0, 1e-6, -1e-6])
    scale = lsgan_one_stage_scale(out)
    assert torch.isfinite(scale).all()
    torch.testing.assert_close(scale[:3], (out[:3] - 1) / out[:3])
    floor = 1 / ONE_STAGE_FLOOR  # (o - 1) / o with |o| floored: about -1/floor above 0, +1/floor below
    assert [float(v) for v in scale[3:]] == pytest.approx([-floor, -floor, floor], rel=1e-3)


@pytest.mark.parametrize("g_steps", [4, 1])
def test_osgan_trains_with_its_schedule(g_steps, real):
    train = TrainConfig.from_dict({"recipe": "osgan", "iterations": 3, "batch_size": 4, "log_every": 1, "g_steps": g_steps})
    cohort, hists = train_cohort([DiscriminatorSpec(**PER_SAMPLE), DiscriminatorSpec(base_filters=8)], [0, 1], train, real)
    assert [h.status for h in hists] == ["complete", "complete"]
    assert all(math.isfinite(v) for h in hists for v in h.d_losses + h.g_losses)
    # one fused step per iteration, then the remaining G steps: G takes g_steps optimiser steps, D one
    assert int(cohort.opt_g.state[cohort.g_params[0]]["step"]) == 3 * g_steps
    assert int(cohort.opt_d.state[cohort.d_params[0][0]]["step"]) == 3
