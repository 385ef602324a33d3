"""The discriminator supernet (gas_nas/models/supernet.py) and its one-shot search (gas_nas/strategies/differentiable.py)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import yaml

from gas_nas.common.errors import SpaceError
from gas_nas.models.networks import build_discriminator, build_generator
from gas_nas.models.recipes import lsgan_d_loss
from gas_nas.models.space import load_space
from gas_nas.models.spec import TrainConfig
from gas_nas.models.supernet import AXES, SuperDiscriminator, discretize, expected_params, one_hot, param_table, supernet_space
from gas_nas.strategies.differentiable import ALPHA_LR, DARTS_ALPHA_STEPS, alpha_lr, best_response_d_loss, calibrated_d_loss, held_out_d_loss, run_supernet, schedule
from gas_nas.trial.metrics import param_count

from conftest import write_tiny_space

SPACE = supernet_space(load_space())


@pytest.fixture(scope="module")
def real(mnist_dir):
    from gas_nas.trial.data import load_mnist

    images, _ = load_mnist(mnist_dir, train=True)
    return images[:31000]


def _randomise(module: torch.nn.Module) -> None:
    """Weights, biases, norm scales, shifts and running statistics all far from their init, so a
    masked channel that leaked a bias or a norm shift would show in the output."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.3)
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)


def _choices(sspace):
    """Every (op, downsample, base_filters) at the deepest depth, and every op at every depth."""
    last = len(sspace.depths) - 1
    return [c for c in sspace.choices() if c["depth"] == last or (c["downsample"], c["base_filters"]) == (0, 0)]


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_one_hot_supernet_computes_the_discrete_discriminator(float64, norm):
    """For every candidate of every mixed axis (linear output: no sigmoid to saturate a difference)."""
    sspace = dataclasses.replace(SPACE, fixed=SPACE.fixed | {"norm": norm, "output": "linear", "activation": "leaky_relu"})
    net = SuperDiscriminator(sspace)
    _randomise(net)
    x = torch.randn(3, 1, 28, 28)
    checked = 0
    for choice in _choices(sspace):
        model = discretize(net, choice)
        expected = model(x)
        assert expected.std() > 1e-3  # a real signal, not a constant
        torch.testing.assert_close(net(x, one_hot(sspace, choice)), expected, rtol=1e-6, atol=1e-6, msg=lambda m: f"{sspace.spec(choice)}: {m}")
        checked += 1
    assert checked == len(sspace.ops) * len(sspace.downsamples) * len(sspace.base_filters) + len(sspace.ops) * (len(sspace.depths) - 1)


def test_one_hot_supernet_matches_in_eval_mode_with_running_statistics(float64):
    net = SuperDiscriminator(SPACE)
    _randomise(net)
    x = torch.randn(3, 1, 28, 28)
    for choice in [c for c in SPACE.choices() if c["base_filters"] == 1 and c["depth"] == 2]:
        model = discretize(net, choice).eval()
        torch.testing.assert_close(net.eval()(x, one_hot(SPACE, choice)), model(x), rtol=1e-6, atol=1e-6)


def test_expected_params_of_one_hot_weights_is_the_built_discriminators_count():
    table = param_table(SPACE)
    for n, choice in enumerate(SPACE.choices()):
        if n % 5 == 0:  # a spread of the 192 combinations (each built for real here)
            assert expected_params(table, one_hot(SPACE, choice)).item() == param_count(build_discriminator(SPACE.spec(choice)))
    uniform = {a: torch.full((k,), 1 / k) for a, k in zip(AXES, SPACE.sizes)}
    assert expected_params(table, uniform).item() == pytest.approx(table.mean().item())


def _space_file(tmp_path: Path, **axes) -> Path:
    path = write_tiny_space(tmp_path / "s.yaml")
    doc = yaml.safe_load(path.read_text())
    doc["axes"].update(axes)
    doc["seeds"] = []  # the paper cases need the whole space; the supernet does not
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("axes, words", [
    ({"dense_blocks": {"low": 0, "high": 4, "default": 2}}, "dense_blocks"),
    ({"norm": {"choices": ["batch", "spectral"], "default": "spectral"}}, "norm"),
    ({"conv": "standard", "inception": False, "downsample": "maxpool", "base_filters": 16, "depth": 3}, "no axis can be mixed"),
])
def test_a_space_the_supernet_cannot_represent_is_one_line(tmp_path: Path, axes: dict, words: str):
    with pytest.raises(SpaceError, match=words):
        supernet_space(load_space(_space_file(tmp_path, **axes)))


def test_fixed_axes_take_the_spaces_defaults(tmp_path: Path):
    sspace = supernet_space(load_space(_space_file(tmp_path, activation={"choices": ["relu", "leaky_relu"], "default": "leaky_relu"})))
    assert sspace.fixed["activation"] == "leaky_relu" and sspace.fixed["norm"] == "batch"
    assert all(sspace.spec(c).activation == "leaky_relu" for c in sspace.choices())


def test_schedule_warms_up_then_alternates_and_a_tiny_budget_still_moves_alpha():
    warmup, steps = schedule(20)
    assert warmup == 5 and not any(steps[:5]) and steps[5:] == [True, False] * 7 + [True]
    assert schedule(2) == (1, [False, True])
    assert schedule(1) == (1, [False])


SMALL = dataclasses.replace(SPACE, base_filters=(4, 8), depths=(2, 3))
TINY_TRAIN = TrainConfig(iterations=6, batch_size=4, log_every=1)


def test_a_supernet_run_is_seeded_and_derives_distinct_specs_in_probability_order(real):
    reports = []
    first = run_supernet(SMALL, TINY_TRAIN, real[:512], 0.1, 0, derive=3, on_report=reports.append)
    again = run_supernet(SMALL, TINY_TRAIN, real[:512], 0.1, 0, derive=3)
    assert first.probs == again.probs and [d.spec for d in first.derived] == [d.spec for d in again.derived]
    assert len({d.spec for d in first.derived}) == 3
    assert [d.probability for d in first.derived] == sorted((d.probability for d in first.derived), reverse=True)
    assert reports and reports[-1].iteration == 6 and 0 < reports[-1].entropy < math.log(4) + math.log(3) + math.log(2) * 2 + 1e-9
    assert len(first.terms) == sum(schedule(6)[1]) and all(math.isfinite(v) for pair in first.terms for v in pair)  # (plain, calibrated L_D) per alpha step
    assert set(first.probs) == {"op", "downsample", "base_filters", "depth"}
    assert all(abs(sum(p) - 1) < 1e-6 for p in first.probs.values())


def test_a_larger_lambda_moves_alpha_toward_fewer_parameters(real):
    """The size term pulls: with a large lambda the expected parameter count falls below uniform."""
    table = param_table(SMALL)
    result = run_supernet(SMALL, TrainConfig(iterations=12, batch_size=4, log_every=1), real[:512], 50.0, 0)
    probs = {a: torch.tensor(result.probs[a]) if a in result.probs else torch.ones(1) for a in AXES}
    uniform = {a: torch.full((k,), 1 / k) for a, k in zip(AXES, SMALL.sizes)}
    assert expected_params(table, probs) < expected_params(table, uniform)


def test_a_short_run_lets_alpha_commit(real):
    """At DARTS' 3e-4 a short run leaves alpha uniform; the budget-scaled rate lets a strong size
    term put most of the probability on the smallest base filters and depth within 5 alpha steps."""
    assert alpha_lr(DARTS_ALPHA_STEPS * 2) == ALPHA_LR and alpha_lr(100) * 100 == pytest.approx(ALPHA_LR * DARTS_ALPHA_STEPS)
    result = run_supernet(SMALL, TrainConfig(iterations=12, batch_size=4, log_every=1), real[:512], 50.0, 0)
    assert result.probs["base_filters"][0] > 0.9 and result.probs["depth"][0] > 0.9, result.probs


def test_the_supernet_creates_nothing_on_the_default_device(real):
    torch.set_default_device("meta")
    try:
        result = run_supernet(SMALL, dataclasses.replace(TINY_TRAIN, iterations=3), real[:256], 0.1, 0)
    finally:
        torch.set_default_device(None)
    assert result.derived and math.isfinite(result.entropy)


def test_the_outer_objective_charges_a_constant_discriminator_more_than_a_trained_one(real):
    """A discriminator that outputs 0.5 for everything scores 0.25 under both candidate terms;
    alphaGAN's best-response term cannot tell it from a real one (a generator exploits any
    frozen D), the held-out term can: a briefly trained D scores well below 0.25."""
    torch.manual_seed(0)
    G = build_generator()
    D = build_discriminator(load_space().cases[5].spec)  # paper case 6, small
    opt = torch.optim.RMSprop(D.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        x = real[torch.randint(0, 30000, (32,), generator=gen)]
        with torch.no_grad():
            fake = G(torch.randn(32, 100, generator=gen))
        loss = 0.5 * ((D(x) - 1).square().mean() + D(fake).square().mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
    images, z = real[30000:30256], torch.randn(256, 100, generator=gen)

    def lazy(x):  # 0.5 whatever the input (a zero gradient, as a real network with zero weights)
        return 0.5 + 0 * x.flatten(1).sum(1, keepdim=True)

    assert held_out_d_loss(lazy, G, images, z) == pytest.approx(0.25)
    assert best_response_d_loss(lazy, G, images, z, TrainConfig(batch_size=32), steps=3, seed=0) == pytest.approx(0.25)
    assert held_out_d_loss(D, G, images, z) < 0.2


def test_the_calibrated_outer_term_ranks_any_constant_last_and_ignores_the_generators_offset():
    """The outer term: a constant discriminator (whatever its value) scores 0.25, the worst
    value; one that rates real images above fakes scores less even when its outputs sit above
    0.5 everywhere (where the plain LSGAN loss charges it more than the constant); one that
    rates fakes above real images gains nothing."""
    gen = torch.Generator().manual_seed(0)
    real_out, fake_out = 0.6 + 0.1 * torch.randn(64, 1, generator=gen), 0.5 + 0.1 * torch.randn(64, 1, generator=gen)
    for c in (0.5, 0.9):
        assert float(calibrated_d_loss(torch.full((64, 1), c), torch.full((64, 1), c))) == pytest.approx(0.25)
    separating = float(calibrated_d_loss(real_out, fake_out))
    assert separating < 0.2
    pushed_up = (real_out + 0.35, fake_out + 0.35)  # what G's steps do to every output
    assert float(lsgan_d_loss(*pushed_up)) > 0.25 and float(calibrated_d_loss(*pushed_up)) == pytest.approx(separating, abs=1e-6)
    assert float(calibrated_d_loss(2 * real_out, 2 * fake_out)) == pytest.approx(separating, abs=1e-6)
    assert float(calibrated_d_loss(fake_out, real_out)) == pytest.approx(0.25)
