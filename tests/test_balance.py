"""The duality gap (gas_nas.trial.balance): a balance measure a lazy discriminator or a collapsed generator cannot win."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from conftest import write_tiny_space
from gas_nas.common.errors import SpaceError
from gas_nas.models.space import load_space
from gas_nas.models.spec import DiscriminatorSpec, QualityConfig, TrainConfig
from gas_nas.study.record import TrialRecord
from gas_nas.trial.balance import duality_gap, gap_parts
from gas_nas.trial.metrics import imbalance
from gas_nas.trial.train import train_gan

SPEC = DiscriminatorSpec(base_filters=8, depth=2)
TRAIN = TrainConfig(iterations=30, batch_size=8, log_every=10)
STEPS = 30


@pytest.fixture(scope="module")
def data(mnist_dir):
    from gas_nas.trial.data import load_mnist

    real, _ = load_mnist(mnist_dir, train=True)
    held_out, _ = load_mnist(mnist_dir, train=False)
    return real[:5000], held_out[:1000]


@pytest.fixture(scope="module")
def pair(data):
    """A small discriminator and the GAS generator trained together briefly (seeded)."""
    G, D, _ = train_gan(SPEC, TRAIN, data[0], seed=0)
    return G, D


@pytest.fixture(scope="module")
def trained_parts(pair, data):
    return gap_parts(*pair, data[1], TRAIN, STEPS, seed=0)


class Collapsed(nn.Module):
    """Mode collapse: one image for every z (the image itself can still be trained)."""

    def __init__(self, image: torch.Tensor):
        super().__init__()
        self.image = nn.Parameter(image.detach().clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.image.expand(z.shape[0], -1, -1, -1)


def constant_half(D: nn.Module) -> nn.Module:
    lazy = copy.deepcopy(D)
    with torch.no_grad():
        lazy.head.weight.zero_()
        lazy.head.bias.zero_()  # sigmoid(0) = 0.5 for every input
    return lazy


def state(module: nn.Module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_the_gap_trains_copies_and_leaves_the_pair_untouched(pair, data):
    G, D = pair
    before_g, before_d, modes = state(G), state(D), (G.eval().training, D.train().training)
    duality_gap(G, D, data[1], TRAIN, STEPS, seed=0)
    assert all(torch.equal(before_g[k], v) for k, v in G.state_dict().items())
    assert all(torch.equal(before_d[k], v) for k, v in D.state_dict().items())
    assert (G.training, D.training) == modes
    assert all(p.requires_grad for p in [*G.parameters(), *D.parameters()])


def test_the_gap_is_finite_non_negative_and_seeded(pair, data, trained_parts):
    G, D = pair
    assert math.isfinite(trained_parts.gap) and trained_parts.d_gain >= 0 and trained_parts.g_gain >= 0
    assert trained_parts.gap > 0  # a pair this briefly trained is far from an equilibrium
    assert duality_gap(G, D, data[1], TRAIN, STEPS, seed=0) == trained_parts.gap
    assert gap_parts(G, D, data[1], TRAIN, 0, seed=0).gap == 0.0  # no best-response steps: nothing gained


def test_a_constant_half_discriminator_scores_zero_imbalance_but_not_zero_gap(pair, data):
    """The blind spot of `imbalance`: a D that outputs 0.5 for everything sits exactly on the
    equilibrium losses. Against an imperfect G a best-response D' separates real from fake, so
    the gap charges it; a constant D gives G nothing to follow, so G' gains nothing."""
    G, D = pair
    lazy = gap_parts(G, constant_half(D), data[1], TRAIN, STEPS, seed=0)
    assert imbalance([lazy.d_loss], [lazy.g_loss]) == pytest.approx(0, abs=1e-6)
    assert lazy.d_gain > 0.1 and lazy.g_gain == 0


def test_a_collapsed_generator_loses_nearly_all_of_its_discriminator_loss_to_a_best_response(pair, data):
    """One image for every z is easy to reject: D' drives L_D towards its floor, so the gap
    charges the collapsed pair nearly its whole D loss (a briefly trained pair is itself far
    from equilibrium, so "larger than a trained pair" needs a real budget: docs/balance.md)."""
    G, D = pair
    one = G.eval()(torch.randn(1, TRAIN.z_dim, generator=torch.Generator().manual_seed(3))).detach()
    collapsed = gap_parts(Collapsed(one), D, data[1], TRAIN, STEPS, seed=0)
    assert collapsed.d_gain > 0.8 * collapsed.d_loss and collapsed.gap > 0.2


def test_duality_gap_steps_and_balance_are_validated(tmp_path):
    assert QualityConfig().duality_gap_steps > 0 and QualityConfig(duality_gap_steps=0).duality_gap_steps == 0
    for bad in (-1, 1.5, "many"):
        with pytest.raises(SpaceError, match="quality.duality_gap_steps"):
            load_space(write_tiny_space(tmp_path / "bad.yaml", quality={"duality_gap_steps": bad}))
    with pytest.raises(SpaceError, match="search.balance"):
        load_space(write_tiny_space(tmp_path / "bad.yaml", search={"balance": "loss"}))
    with pytest.raises(SpaceError, match="duality_gap needs quality.duality_gap_steps > 0"):
        load_space(write_tiny_space(tmp_path / "off.yaml", quality={"duality_gap_steps": 0}, search={"balance": "duality_gap"}))


def test_a_search_on_the_duality_gap_records_it_and_minimises_it(tmp_path, data, mnist_classifier):
    import optuna

    from gas_nas.study.search import Resources, SearchOptions, open_study, run_search

    space = load_space(write_tiny_space(tmp_path / "gap.yaml", quality={"duality_gap_steps": 3}, search={"balance": "duality_gap"}))
    storage = f"sqlite:///{tmp_path}/g.db"
    study = open_study(space, storage, "gap")
    run_search(study, space, SearchOptions(artifacts=str(tmp_path / "a")), Resources(data[0][:2000], data[1][:500], mnist_classifier), n_trials=1)
    (trial,) = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert study.metric_names == ["d_size_mb", "duality_gap"]
    m = TrialRecord.of(trial).metrics
    assert trial.values[1] == m.duality_gap >= 0 and math.isfinite(trial.values[1])
    assert math.isfinite(m.imbalance)  # still recorded, just not an objective
    other = dataclasses.replace(space, search=dataclasses.replace(space.search, balance="imbalance"))
    with pytest.raises(Exception, match="minimises d_size_mb, duality_gap but the space asks for d_size_mb, imbalance"):
        open_study(other, storage, "gap")
    assert optuna.load_study(study_name="gap", storage=storage).metric_names == ["d_size_mb", "duality_gap"]


def test_the_gap_never_takes_more_than_a_tenth_of_the_trials_iterations():
    from gas_nas.trial.train import gap_steps

    quality = QualityConfig()  # 200 steps
    assert gap_steps(quality, TrainConfig()) == 200  # the paper's 2000 iterations
    assert gap_steps(quality, TrainConfig(iterations=20)) == 2  # a quick look stays quick
    assert gap_steps(quality, TrainConfig(iterations=3)) == 1
    assert gap_steps(QualityConfig(duality_gap_steps=0), TrainConfig()) == 0
    assert gap_steps(QualityConfig(duality_gap_steps=50), TrainConfig()) == 50
