"""Training recipes: what a trial really builds (optimiser, hyperparameters, schedule, init)
follows its recipe; files name a recipe plus overrides; one precedence, flags > arch file > space."""

from __future__ import annotations

import pytest
import torch
import yaml

import gas_nas.trial.train
from gas_nas.cli import main
from gas_nas.common.errors import SpaceError
from gas_nas.models import recipes
from gas_nas.models.space import load_space
from gas_nas.models.spec import ARCH_FORMAT, DiscriminatorSpec, TrainConfig, load_arch, resolve_train, save_arch
from gas_nas.trial.train import train_gan

from conftest import write_tiny_space

# What each recipe must train with, written out from the papers (not read from the registry).
EXPECTED = {
    "gas": {"optimizer": torch.optim.RMSprop, "lr": 1e-3, "betas": None, "d_steps": 1, "g_steps": 4, "truncated": True},
    "dcgan": {"optimizer": torch.optim.Adam, "lr": 2e-4, "betas": (0.5, 0.999), "d_steps": 1, "g_steps": 1, "truncated": False},
    # OSGAN: GAS's optimiser and schedule; the D step shares its backward with the first G step
    "osgan": {"optimizer": torch.optim.RMSprop, "lr": 1e-3, "betas": None, "d_steps": 1, "g_steps": 4, "truncated": True},
    # DGL-GAN: GAS's settings; the frozen teacher has no optimiser (tests/test_teacher.py)
    "dgl": {"optimizer": torch.optim.RMSprop, "lr": 1e-3, "betas": None, "d_steps": 1, "g_steps": 4, "truncated": True},
}
SPEC = DiscriminatorSpec(base_filters=8)  # batch norm, so the init of norm scales shows
ITERATIONS = 2
BUDGET = {"iterations": ITERATIONS, "batch_size": 8, "log_every": 1}


@pytest.fixture(scope="module")
def real(mnist_dir):
    from gas_nas.trial.data import load_mnist

    return load_mnist(mnist_dir, train=True)[0][:2000]


@pytest.fixture
def built(monkeypatch):
    """Every optimiser a trial builds, with its parameters' values at that moment (just initialised)."""
    made = []

    def record(params, train, device, **kw):
        params = list(params)
        made.append((recipes.make_optimizer(params, train, device, **kw), [p.detach().clone() for p in params]))
        return made[-1][0]

    monkeypatch.setattr(gas_nas.trial.train, "make_optimizer", record)
    return made


def sides(made) -> dict:
    """{'D': (optimizer, initial params), 'G': ...}: the GAS generator is far larger than SPEC's D."""
    d, g = sorted(made, key=lambda m: sum(p.numel() for p in m[1]))
    return {"D": d, "G": g}


def steps_taken(opt: torch.optim.Optimizer) -> set[int]:
    return {int(state["step"]) for state in opt.state.values()}


def check_trained_as(made, expected: dict, iterations: int = ITERATIONS) -> None:
    for side, (opt, init) in sides(made).items():
        assert type(opt) is expected["optimizer"], side
        group = opt.param_groups[0]
        assert group["lr"] == pytest.approx(expected["lr"])
        if expected["betas"] is not None:
            assert group["betas"] == pytest.approx(expected["betas"])
        assert steps_taken(opt) == {iterations * expected[f"{side.lower()}_steps"]}, side
        weights = torch.cat([p.flatten() for p in init if p.ndim >= 2])
        scales_and_biases = torch.cat([p.flatten() for p in init if p.ndim == 1])
        within_two_std = bool(weights.abs().max() <= 2 * 0.02 + 1e-6)
        assert within_two_std is expected["truncated"], side
        assert bool(((scales_and_biases == 0) | (scales_and_biases == 1)).all()) is expected["truncated"], side


def test_every_registered_recipe_has_its_expectations_written_here():
    assert set(EXPECTED) == set(recipes.RECIPES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_trial_really_trains_with_its_recipes_optimiser_schedule_and_init(name, built, real, teacher_file):
    from gas_nas.trial.teacher import load_teacher

    train = TrainConfig.from_dict({"recipe": name, **BUDGET})
    teacher = load_teacher(teacher_file).module if recipes.get_recipe(name).has_teacher else None
    _, _, hist = train_gan(SPEC, train, real, seed=0, teacher=teacher)
    assert hist["status"] == "complete"
    check_trained_as(built, EXPECTED[name])


def test_a_space_that_only_flips_recipe_trains_the_other_recipe(tmp_path, built, real):
    space = load_space(write_tiny_space(tmp_path / "dcgan.yaml", train={"recipe": "dcgan", "iterations": ITERATIONS}))
    assert space.train.to_dict()["recipe"] == "dcgan" and not space.train.overrides
    train_gan(SPEC, space.train, real)
    check_trained_as(built, EXPECTED["dcgan"])


SPARSE_DEFAULTS = {"sparse_mode": "dynamic", "sparse_regrow": "random", "sparse_interval": None}  # written for every trial (docs/guide-recipes.md)


def test_overrides_win_and_are_all_that_is_written(tmp_path, built, real):
    train = TrainConfig.from_dict({"recipe": "dcgan", "lr": 1e-4, "g_steps": 2, **BUDGET})
    train_gan(SPEC, train, real)
    check_trained_as(built, {**EXPECTED["dcgan"], "lr": 1e-4, "g_steps": 2})
    path = save_arch(tmp_path / "a.yaml", SPEC, train)
    written = yaml.safe_load(path.read_text())["train"]
    assert written == {"recipe": "dcgan", "iterations": 2, "batch_size": 8, "z_dim": 100, "log_every": 1, "divergence_loss": 1e4,
                       "precision": "fp32", "channels_last": False, **SPARSE_DEFAULTS, "lr": 1e-4, "g_steps": 2}
    assert load_arch(path)[1] == train  # the round trip keeps recipe and overrides
    written["recipe"] = "gas"  # flipped by hand: the gas recipe, the file's two changes kept
    flipped = TrainConfig.from_dict(written)
    assert (flipped.optimizer, flipped.lr, flipped.d_steps, flipped.g_steps) == ("rmsprop", 1e-4, 1, 2)


def test_an_old_file_with_every_key_spelled_out_loads_them_as_overrides(tmp_path):
    old = {"recipe": "dcgan", "iterations": 10, "batch_size": 32, "d_steps": 1, "g_steps": 4, "optimizer": "rmsprop", "lr": 0.001,
           "beta1": 0.5, "beta2": 0.999, "z_dim": 100, "init_std": 0.02, "log_every": 50, "divergence_loss": 10000.0}
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"format": ARCH_FORMAT, "discriminator": SPEC.to_dict(), "train": old}))
    spec, train, _ = load_arch(path)
    assert spec == SPEC and train.overrides == recipes.RECIPE_KEYS
    assert (train.optimizer, train.lr, train.g_steps) == ("rmsprop", 1e-3, 4)  # what the old file trained with
    assert train.to_dict() == old | {"precision": "fp32", "channels_last": False, **SPARSE_DEFAULTS}  # what it meant (+ newer budget keys)


def test_precedence_is_flags_then_arch_file_then_space_key_by_key():
    space = {"recipe": "gas", "iterations": 2000, "batch_size": 32, "lr": 5e-4}
    train, line = resolve_train([("space", space), ("arch file", {"iterations": 100}), ("--iterations", {"iterations": 3})])
    assert (train.recipe, train.iterations, train.batch_size, train.lr, train.overrides) == ("gas", 3, 32, 5e-4, ("lr",))
    assert line.startswith("training: recipe gas (space), iterations 3 (--iterations), batch_size 32 (space)") and "lr 0.0005 (space)" in line
    assert "\n" not in line and "flags > arch file > space" in line
    # a layer naming another recipe drops the changes made to the recipe below it
    train, line = resolve_train([("space", space), ("arch file", {"recipe": "dcgan", "g_steps": 2}), ("--recipe", {"recipe": "gas"})])
    assert (train.recipe, train.optimizer, train.lr, train.g_steps) == ("gas", "rmsprop", 1e-3, 4) and train.overrides == ()
    assert "recipe gas (--recipe)" in line


def test_unknown_recipe_is_one_line_naming_the_recipes():
    with pytest.raises(SpaceError, match=r"^a.yaml: train.recipe: unknown recipe 'wgan'; allowed: dcgan, dgl, gas, osgan$"):
        TrainConfig.from_dict({"recipe": "wgan"}, "a.yaml: train")


@pytest.fixture
def cli_here(monkeypatch, cli_env):
    """In-process `gas-nas` with the test MNIST and classifier (so `built` sees the trial's objects)."""
    for key in ("GAS_NAS_DATA", "GAS_NAS_CACHE"):
        monkeypatch.setenv(key, cli_env[key])


def test_train_cli_flips_recipe_in_a_written_arch_file_and_says_which_won(tmp_path, built, cli_here, capsys):
    space = write_tiny_space(tmp_path / "tiny.yaml")
    assert main(["cases", "--space", str(space), "--write", str(tmp_path / "cases"), "--json"]) == 0
    arch = tmp_path / "cases" / "case6-inception-k8.yaml"
    doc = yaml.safe_load(arch.read_text())
    assert doc["train"]["recipe"] == "gas" and "optimizer" not in doc["train"]  # recipe + budget only
    doc["train"]["recipe"] = "dcgan"
    arch.write_text(yaml.safe_dump(doc))
    capsys.readouterr()
    args = ["train", "--arch", str(arch), "--space", str(space), "--batch-size", "8", "--device", "cpu", "--out", str(tmp_path / "out"), "--json"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "training: recipe dcgan (arch file), iterations 3 (arch file), batch_size 8 (--batch-size)" in err
    check_trained_as(built, EXPECTED["dcgan"], iterations=3)
    assert yaml.safe_load((tmp_path / "out" / "arch.yaml").read_text())["train"]["recipe"] == "dcgan"
    assert torch.load(tmp_path / "out" / "discriminator.pt")["train"]["recipe"] == "dcgan"
    built.clear()
    assert main([*args, "--recipe", "gas", "--iterations", "1"]) == 0
    assert "recipe gas (--recipe), iterations 1 (--iterations)" in capsys.readouterr().err
    check_trained_as(built, EXPECTED["gas"], iterations=1)


def test_the_shipped_space_reaches_dcgans_discriminator():
    space = load_space()
    for axis, value in (("downsample", "strided"), ("activation", "leaky_relu"), ("norm", "batch")):
        assert space.axis(axis).contains(value)
