"""The guard a trial is judged by: D's discrimination measured, the give-up rule, the relative FID bound."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from optuna.trial import TrialState
from torch import nn

from conftest import write_tiny_space
from gas_nas.models.space import load_space
from gas_nas.models.spec import DiscriminatorSpec, QualityConfig, TrainConfig
from gas_nas.study.record import TrialRecord
from gas_nas.trial.discrimination import auc, measure_discrimination
from gas_nas.trial.guard import PAPER_BAR, absolute_guard, constraints, guard_mode, relative_guard, violations
from gas_nas.trial.results import TrialMetrics


@pytest.fixture(scope="module")
def held_out(mnist_dir):
    from gas_nas.trial.data import load_mnist

    return load_mnist(mnist_dir, train=False)[0][:1000]


class ConstantD(nn.Module):
    """A discriminator that gave up: 0.5 on every image (one parameter, so it has a device)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.bias).expand(x.shape[0], 1)


def metrics(d, fid: float, classes: int = 10, entropy: float = 2.2) -> TrialMetrics:
    """A complete trial with D measured as `d` (a Discrimination) and the given samples."""
    return TrialMetrics(status="complete", reason="", iterations=300, d_params=1, d_param_mb=0.0, imbalance=0.0, d_loss=0.25,
                        g_loss=0.125, fid=fid, classes=classes, entropy=entropy, class_histogram=[1] * 10, classifier_accuracy=1.0,
                        seconds=0.0, device="cpu", seed=0, **dataclasses.asdict(d))


def test_auc_counts_ordered_pairs_and_half_the_ties():
    assert auc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert auc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 0.0
    assert auc(torch.full((5,), 0.5), torch.full((7,), 0.5)) == 0.5
    assert auc(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 0.0])) == 0.75


def test_a_constant_discriminator_is_infeasible_at_every_guard_setting(held_out):
    from gas_nas.models.networks import build_generator

    torch.manual_seed(0)
    d = measure_discrimination(build_generator(), ConstantD(), held_out, batch_size=32, z_dim=100, seed=0)
    assert d.d_auc == 0.5 and d.d_spread == 0.0 and d.d_real == d.d_fake == 0.5
    blurred = metrics(d, fid=120.0)  # the old front: digits, but blurred
    loose = QualityConfig(max_fid=1e6, min_classes=0, min_entropy=0.0)
    settings = [absolute_guard(QualityConfig()), absolute_guard(loose), relative_guard(QualityConfig(), {"1": 90.0, "2": 110.0}),
                relative_guard(QualityConfig(backstop_fid=1e6, relative_fid=100.0), {"1": 90.0})]
    for guard in settings:
        reasons = violations(blurred, guard)
        assert any("AUC 0.50 < 0.55" in r and "fid 120.0 > 60" in r for r in reasons), (guard, reasons)
        assert constraints(blurred, guard)["discriminates"] > 0
    # D at 0.5 because G matches the data is the equilibrium, not a loophole
    equilibrium = metrics(d, fid=PAPER_BAR.max_fid / 2)
    for guard in settings:
        assert not violations(equilibrium, guard) and constraints(equilibrium, guard)["discriminates"] <= 0


def test_a_saturated_discriminator_that_still_ranks_is_caught_by_its_spread():
    from gas_nas.trial.discrimination import Discrimination

    saturated = metrics(Discrimination(d_auc=0.76, d_spread=2e-5, d_real=1.0, d_fake=1.0), fid=500.0)
    reasons = violations(saturated, absolute_guard(QualityConfig(max_fid=1e6)))
    assert reasons == [reasons[0]] and "(spread 2e-05 < 0.01)" in reasons[0] and "AUC" not in reasons[0]


def test_a_briefly_trained_discriminator_still_discriminates_and_is_not_flagged(held_out, mnist_dir):
    """The negative control: 30 D steps against an untrained G already separate the two."""
    from gas_nas.models.networks import build_discriminator, build_generator
    from gas_nas.models.recipes import lsgan_d_loss, make_optimizer
    from gas_nas.trial.data import load_mnist

    torch.manual_seed(0)
    real = load_mnist(mnist_dir, train=True)[0][:2000]
    G, D = build_generator(), build_discriminator(DiscriminatorSpec(base_filters=8, depth=2))
    train = TrainConfig()
    opt = make_optimizer(D.parameters(), train, torch.device("cpu"))
    for _ in range(30):
        x = real[torch.randint(0, real.shape[0], (32,))]
        with torch.no_grad():
            fake = G(torch.randn(32, 100))
        opt.zero_grad()
        lsgan_d_loss(D(x), D(fake)).backward()
        opt.step()
    before = {k: v.clone() for k, v in D.state_dict().items()}
    d = measure_discrimination(G, D, held_out, batch_size=32, z_dim=100, seed=1)
    assert d.d_auc > 0.9 and d.d_spread > QualityConfig().min_spread and d.d_real > d.d_fake
    assert all(torch.equal(before[k], v) for k, v in D.state_dict().items())  # measured on a copy: BN statistics untouched
    trained = metrics(d, fid=500.0, classes=2, entropy=0.3)  # bad samples, but D works: only the sample guard judges
    assert all("discriminator" not in r for r in violations(trained, absolute_guard(QualityConfig())))
    assert constraints(trained, absolute_guard(QualityConfig()))["discriminates"] < 0


def test_trials_from_before_the_measurement_are_judged_by_their_samples_alone():
    from gas_nas.trial.discrimination import Discrimination

    old = metrics(Discrimination(math.nan, math.nan, math.nan, math.nan), fid=50.0)
    assert not violations(old, absolute_guard(QualityConfig())) and constraints(old, absolute_guard(QualityConfig()))["discriminates"] == 0


def test_the_relative_bound_is_the_cases_median_times_the_factor_capped_by_the_backstop():
    q = QualityConfig(relative_fid=1.5, backstop_fid=150.0)
    assert relative_guard(q, {"a": 60.0, "b": 80.0, "c": 100.0}).max_fid == 120.0
    assert relative_guard(q, {"a": 60.0, "b": 200.0, "c": 300.0}).max_fid == 150.0  # the backstop
    assert relative_guard(q, {"a": 60.0, "b": math.inf, "c": 80.0}).max_fid == 120.0  # a diverged case counts as worst
    assert relative_guard(q, {"a": math.inf}).max_fid == 150.0  # nothing finished: the backstop alone
    g = relative_guard(q, {"a": 60.0, "b": 80.0, "c": 100.0})
    assert "1.5 x the paper cases' median FID 80.0" in g.describe() and g.to_dict()["case_fids"] == {"a": 60.0, "b": 80.0, "c": 100.0}


def test_a_written_max_fid_wins_unless_the_file_names_a_guard():
    assert QualityConfig.from_dict({"max_fid": 80}).guard == "absolute"
    assert QualityConfig.from_dict({"max_fid": 80, "guard": "auto"}).guard == "auto"
    assert QualityConfig.from_dict({}).guard == "auto"
    short, paper = TrainConfig(iterations=300), TrainConfig()
    assert guard_mode(QualityConfig(), short, has_cases=True) == "relative"
    assert guard_mode(QualityConfig(), paper, has_cases=True) == "absolute"
    assert guard_mode(QualityConfig(), short, has_cases=False) == "absolute"  # nothing to compare with
    assert guard_mode(QualityConfig(guard="relative"), paper, has_cases=True) == "relative"
    assert load_space().quality.guard == "auto"


@pytest.mark.parametrize("bad, words", [({"guard": "loose"}, "quality.guard"), ({"min_auc": 1.5}, "quality.min_auc"),
                                        ({"relative_fid": 0}, "quality.relative_fid"), ({"backstop_fid": -1}, "quality.backstop_fid")])
def test_bad_guard_keys_are_one_line_naming_the_key(tmp_path, bad, words):
    from gas_nas.common.errors import SpaceError

    with pytest.raises(SpaceError, match=words):
        load_space(write_tiny_space(tmp_path / "s.yaml", quality=bad))


# ---------------------------------------------------------------- the relative guard in a search


def _search(tmp_path, mnist_dir, classifier, n_trials, study_name="rel", should_stop=None, cohort=1):
    from gas_nas.study.search import Resources, SearchOptions, open_study, run_search
    from gas_nas.trial.data import load_mnist

    space = load_space(write_tiny_space(tmp_path / "tiny.yaml", quality={"guard": "relative", "relative_fid": 1.0, "backstop_fid": 1e6}))
    study = open_study(space, f"sqlite:///{tmp_path}/r.db", study_name)
    real, _ = load_mnist(mnist_dir, train=True)
    held, _ = load_mnist(mnist_dir, train=False)
    opts = SearchOptions(artifacts=str(tmp_path / "a"), cohort=cohort, should_stop=should_stop)
    run_search(study, space, opts, Resources(real[:2000], held[:500], classifier), n_trials=n_trials)
    return study


def test_a_relative_guard_settles_from_every_paper_case_before_any_trial_is_judged(tmp_path, mnist_dir, mnist_classifier):
    """Two trials asked, but the bound needs all six cases: the search trains them all first,
    stores the guard, and judges every trial (the cases too) by it."""
    from gas_nas.study.search import GUARD_ATTR

    study = _search(tmp_path, mnist_dir, mnist_classifier, n_trials=2, cohort=2)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    guard = study.user_attrs[GUARD_ATTR]
    fids = sorted(TrialRecord.of(t).metrics.fid for t in trials)
    assert guard["mode"] == "relative" and guard["max_fid"] == pytest.approx((fids[2] + fids[3]) / 2)  # 1.0 x the median
    for t in trials:
        r = TrialRecord.of(t)
        assert t.system_attrs["constraints:fid"] == pytest.approx(r.metrics.fid - guard["max_fid"])
        assert "constraints:discriminates" in t.system_attrs
        assert r.feasible == (r.metrics.fid <= guard["max_fid"])  # half of the cases, by construction
    assert sum(TrialRecord.of(t).feasible for t in trials) == 3
    # a resume judges new trials by the stored bound
    study = _search(tmp_path, mnist_dir, mnist_classifier, n_trials=1)
    assert len(study.trials) == 7 and study.user_attrs[GUARD_ATTR] == guard
    last = study.trials[-1]
    assert last.system_attrs["constraints:fid"] == pytest.approx(TrialRecord.of(last).metrics.fid - guard["max_fid"])


def test_a_stop_while_trials_wait_for_the_guard_fails_them_and_queues_the_cases_again(tmp_path, mnist_dir, mnist_classifier):
    from gas_nas.common.interrupt import Interrupted
    from gas_nas.study.search import GUARD_ATTR

    asked = []

    def stop_after_two() -> bool:
        asked.append(1)
        return len(asked) > 4  # a few checks pass while the first two trials train

    with pytest.raises(Interrupted):
        _search(tmp_path, mnist_dir, mnist_classifier, n_trials=6, should_stop=stop_after_two)
    import optuna

    study = optuna.load_study(study_name="rel", storage=f"sqlite:///{tmp_path}/r.db")
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and TrialState.COMPLETE not in states  # nothing judged without the bound
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all(TrialRecord.of(t).fail_reason == "interrupted" for t in failed)
    waiting = [TrialRecord.of(t).case for t in study.trials if t.state == TrialState.WAITING]
    assert sorted(waiting) == sorted(c.name for c in load_space().cases)  # every case still to come
    assert GUARD_ATTR not in study.user_attrs
