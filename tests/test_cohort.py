"""Cohorts: K trials trained as one (fused generator, K discriminators) give each trial the
numbers it would get alone; divergence stays inside its trial; nothing uses the default device."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from gas_nas.models.networks import FusedGenerator, build_generator
from gas_nas.models.space import load_space
from gas_nas.models.spec import DiscriminatorSpec, QualityConfig, TrainConfig
from gas_nas.trial.train import make_optimizer, run_cohort, train_cohort

CASES = load_space().cases
SMALL = DiscriminatorSpec(base_filters=8, inception=True, depth=2)


@pytest.fixture(scope="module")
def real(mnist_dir):
    from gas_nas.trial.data import load_mnist

    images, _ = load_mnist(mnist_dir, train=True)
    return images[:600]


def _generators(k: int) -> list:
    gens = []
    for i in range(k):
        torch.manual_seed(i)
        g = build_generator(100)
        for m in g.modules():  # non-trivial BatchNorm affine parameters, so a mix-up would show
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                torch.nn.init.uniform_(m.weight, 0.5, 1.5)
                torch.nn.init.uniform_(m.bias, -0.2, 0.2)
        gens.append(g)
    return gens


def test_fused_generator_matches_k_generators_outputs_and_gradients(float64):
    gens = _generators(3)
    fused = FusedGenerator.from_generators(gens)
    z = torch.randn(3, 5, 100)
    out = fused(z)
    ref = torch.stack([g(z[i]) for i, g in enumerate(gens)])
    assert out.shape == (3, 5, 1, 28, 28)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    (ref * torch.linspace(-1, 1, ref.numel()).view_as(ref)).sum().backward()
    for i, g in enumerate(gens):
        torch.testing.assert_close(fused.fc_weight.grad[i], g.fc[0].weight.grad.t(), rtol=1e-5, atol=1e-5)
        for (name, p), (_, q) in zip(fused.body.named_parameters(), g.body.named_parameters()):
            torch.testing.assert_close(p.grad.chunk(3)[i], q.grad, rtol=1e-5, atol=1e-5, msg=name)
        torch.testing.assert_close(fused.fc_norm.weight.grad.chunk(3)[i], g.fc[1].weight.grad, rtol=1e-5, atol=1e-5)
    # BatchNorm running statistics were updated per trial, and a trial's generator comes back out
    back = fused.generator(1)
    for (name, a), b in zip(back.state_dict().items(), gens[1].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_one_optimiser_over_fused_parameters_equals_one_per_trial(optimizer, float64):
    train = TrainConfig(optimizer=optimizer, lr=1e-3)
    gens = _generators(2)
    fused = FusedGenerator.from_generators(gens)
    opts = [make_optimizer(g.parameters(), train, torch.device("cpu")) for g in gens]
    fused_opt = make_optimizer(fused.parameters(), train, torch.device("cpu"))
    for step in range(3):
        z = torch.randn(2, 4, 100, generator=torch.Generator().manual_seed(step))
        for g, opt, zi in zip(gens, opts, z):
            opt.zero_grad()
            g(zi).square().mean().backward()
            opt.step()
        fused_opt.zero_grad()
        fused(z).square().mean(dim=(1, 2, 3, 4)).sum().backward()
        fused_opt.step()
    for i, g in enumerate(gens):
        for (name, a), b in zip(fused.generator(i).state_dict().items(), g.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)


def _dense_or_sparse(density: float) -> DiscriminatorSpec:
    return dataclasses.replace(SMALL, density=density)


# What the trial alone trains with: the plain updates and each step part a recipe can add.
COHORT_CASES = {
    "plain": (dict(iterations=20), SMALL),
    "sparse": (dict(iterations=8, sparse_interval=2, sparse_regrow="random"), _dense_or_sparse(0.3)),
    "teacher": (dict(iterations=8, recipe="dgl", teacher_from=0.25, teacher_weight=0.5), SMALL),
    "one-stage": (dict(iterations=8, recipe="osgan"), DiscriminatorSpec(base_filters=8, depth=2, norm="none")),
}


@pytest.mark.parametrize("kind", COHORT_CASES)
def test_a_trial_gets_the_same_losses_in_a_cohort_of_three_as_alone(kind, real, teacher_file, float64):
    """The cohort trains K trials as one: a trial's losses (and a sparse trial's masks, a teacher
    trial's teacher terms) are those it gets alone, whatever step parts its recipe adds."""
    from gas_nas.trial.teacher import load_teacher

    keys, spec = COHORT_CASES[kind]
    train = TrainConfig.from_dict({"batch_size": 4, "log_every": 1, **keys})
    teacher = load_teacher(teacher_file).module if kind == "teacher" else None
    first = CASES[5].spec if kind == "plain" else DiscriminatorSpec(base_filters=8, depth=2, density=0.5 if kind == "sparse" else 1.0)
    others = [first, DiscriminatorSpec(base_filters=8, depth=3, inception=kind == "teacher")]
    together, hists = train_cohort([others[0], spec, others[1]], [11, 12, 13], train, real.double(), teacher=teacher)
    alone, (ref,) = train_cohort([spec], [12], train, real.double(), teacher=teacher)
    assert len(ref.d_losses) == train.iterations and ref.status == "complete"
    for key in ("d_losses", "g_losses") + (("teacher_losses",) if kind == "teacher" else ()):
        torch.testing.assert_close(torch.tensor(getattr(hists[1], key)), torch.tensor(getattr(ref, key)), rtol=1e-4, atol=0, msg=key)
    assert hists[0].d_losses != hists[1].d_losses  # trials really differ (own seed, own D)
    if kind == "sparse":
        for a, b in zip(together.masks[1].masks, alone.masks[0].masks):
            assert torch.equal(a, b)  # the same prune/regrow decisions
    if kind == "teacher":
        assert hists[0].teacher_losses != hists[1].teacher_losses and ref.teacher_losses[-1] > 0


def test_a_diverging_trial_fails_alone_and_leaves_its_cohort_unchanged(real, float64):
    train = TrainConfig(iterations=4, batch_size=4, log_every=1, lr=1.0)
    wild = DiscriminatorSpec(base_filters=8, depth=2, norm="none", output="linear")
    _, hists = train_cohort([SMALL, wild, SMALL], [1, 2, 3], train, real.double())
    _, without = train_cohort([SMALL, SMALL], [1, 3], train, real.double())
    assert hists[1].status == "diverged" and "iteration 1" in hists[1].reason and hists[1].iterations == 1
    assert [h.status for h in (hists[0], hists[2])] == ["complete", "complete"] and hists[0].iterations == 4
    for kept, ref in zip((hists[0], hists[2]), without):
        torch.testing.assert_close(torch.tensor(kept.g_losses), torch.tensor(ref.g_losses), rtol=1e-4, atol=1e-12)
        torch.testing.assert_close(torch.tensor(kept.d_losses), torch.tensor(ref.d_losses), rtol=1e-4, atol=1e-12)


def test_a_cohort_creates_nothing_on_the_default_device(real, mnist_classifier, mnist_dir):
    """With the default device set to `meta`, any tensor or module created without an explicit
    device fails; a whole cohort (training and quality) must still run on the CPU."""
    from gas_nas.trial.data import load_mnist

    held_out, _ = load_mnist(mnist_dir, train=False)
    train = TrainConfig(iterations=2, batch_size=4, log_every=1)
    torch.set_default_device("meta")
    try:
        outcomes = run_cohort([c.spec for c in CASES], list(range(6)), train, QualityConfig(n_samples=32, duality_gap_steps=2),
                              real=real, held_out=held_out[:200], classifier=mnist_classifier)
    finally:
        torch.set_default_device(None)
    assert [o.metrics.status for o in outcomes] == ["complete"] * 6
    assert all(o.metrics.cohort == 6 and math.isfinite(o.metrics.fid) for o in outcomes)
    assert all(p.device.type == "cpu" for o in outcomes for p in o.generator.parameters())


def test_bf16_and_channels_last_train_to_finite_losses(real):
    train = dataclasses.replace(TrainConfig(iterations=3, batch_size=4, log_every=1), precision="bf16", channels_last=True)
    _, hists = train_cohort([SMALL, CASES[5].spec], [0, 1], train, real)
    assert [h.status for h in hists] == ["complete", "complete"]
    assert all(math.isfinite(v) for h in hists for v in h.d_losses + h.g_losses)
