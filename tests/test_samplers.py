"""`search.sampler` / `--sampler`: every name builds the sampler it names (gp is Optuna's
GPSampler, never TPE), and GP runs on gas-nas's real space and constraints, old studies included."""

from __future__ import annotations

from typing import get_args

import optuna
import pytest

from gas_nas.cli import build_parser
from gas_nas.models.space import load_space, sample
from gas_nas.models.spec import SamplerName
from gas_nas.study.dashboard import set_constraints
from gas_nas.study.samplers import SAMPLERS, SameConstraintsGP, make_sampler
from gas_nas.study.search import open_study
from gas_nas.trial.guard import CONSTRAINT_NAMES

from conftest import write_tiny_space

EXPECTED = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler, "nsgaii": optuna.samplers.NSGAIISampler, "random": optuna.samplers.RandomSampler}


def test_every_sampler_name_builds_that_sampler_and_no_other():
    assert set(SAMPLERS) == set(get_args(SamplerName)) == set(EXPECTED)
    for name, cls in EXPECTED.items():
        built = make_sampler(name, 0)
        assert [n for n, other in EXPECTED.items() if isinstance(built, other)] == [name]
    with pytest.raises(ValueError, match="unknown sampler 'magic'"):
        make_sampler("magic", 0)
    parser = build_parser()
    assert parser.parse_args(["search", "--sampler", "gp"]).sampler == "gp"
    with pytest.raises(SystemExit):
        parser.parse_args(["search", "--sampler", "magic"])


@pytest.mark.parametrize("where", ["yaml", "flag"])
def test_a_study_asked_for_gp_runs_gp(tmp_path, where):
    space = load_space(write_tiny_space(tmp_path / "tiny.yaml", search={"sampler": "gp" if where == "yaml" else "tpe"}))
    study = open_study(space, f"sqlite:///{tmp_path}/s.db", "s", sampler="gp" if where == "flag" else None)
    assert isinstance(study.sampler, optuna.samplers.GPSampler)


def _fake_study(sampler, space, n: int, names=CONSTRAINT_NAMES, first: int = 0) -> optuna.Study:
    """`n` trials of gas-nas's sampling with made-up objectives; wider discriminators are infeasible."""
    study = sampler if isinstance(sampler, optuna.Study) else optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for i in range(first, first + n):
        trial = study.ask()
        spec = sample(trial, space)
        wide = spec.base_filters > 16
        set_constraints(trial, {name: (1.0 if wide and name == "fid" else -1.0) for name in names})
        study.tell(trial, [spec.base_filters / 32 + 0.01 * i, abs(spec.depth - 3) + 0.1 * spec.dense_blocks])
    return study


def test_gp_proposes_on_the_default_space_with_conditional_axes_and_constraints():
    space = load_space()  # dense blocks' growth rate, inception: axes only some trials have
    sampler = make_sampler("gp", 0)
    study = _fake_study(sampler, space, 14)
    proposed = [t for t in study.trials if any(k.startswith("gp:relative_params") for k in t.system_attrs)]
    assert len(proposed) == 14 - sampler._n_startup_trials  # the GP model chose these, not a fallback
    assert sampler._constraints_gprs_cache_list is not None  # and it modelled the constraints


def test_gp_resumes_a_study_whose_older_trials_name_fewer_constraints():
    space = load_space()
    old = CONSTRAINT_NAMES[:-1]  # before `discriminates`
    plain = _fake_study(optuna.samplers.GPSampler(seed=0, n_startup_trials=2), space, 3, names=old)
    with pytest.raises(ValueError, match="constraint names must be the same"):
        _fake_study(plain, space, 2, first=3)  # Optuna's own GP fails on such a study ...
    resumed = _fake_study(optuna.samplers.GPSampler(seed=0, n_startup_trials=2), space, 3, names=old)
    resumed.sampler = SameConstraintsGP(seed=0, n_startup_trials=2)
    _fake_study(resumed, space, 4, first=3)  # ... gas-nas's fits the trials that name today's
    assert sum(any(k.startswith("gp:relative_params") for k in t.system_attrs) for t in resumed.trials) >= 2
