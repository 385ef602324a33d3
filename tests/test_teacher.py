"""Teacher-guided training (recipe dgl, after DGL-GAN): a frozen teacher discriminator adds
lambda * 0.5 * (D_T(G(z)) - 1)^2 to G's loss from a stated iteration on, and changes nothing else."""

from __future__ import annotations

import dataclasses
import fractions
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from gas_nas.cli import main
from gas_nas.common.errors import GasNasError, SpaceError, StorageError
from gas_nas.common.events import Events
from gas_nas.models.networks import build_discriminator
from gas_nas.models.spec import ARCH_FORMAT, DiscriminatorSpec, TrainConfig, load_arch, resolve_train
from gas_nas.trial.metrics import param_count
from gas_nas.trial.teacher import load_default_teacher, load_teacher
from gas_nas.trial.train import Cohort, train_cohort

from conftest import write_teacher, write_tiny_space

SMALL = DiscriminatorSpec(base_filters=8, inception=True, depth=2)
TINY = {"batch_size": 4, "log_every": 1}


@pytest.fixture(scope="module")
def real(mnist_dir):
    from gas_nas.trial.data import load_mnist

    return load_mnist(mnist_dir, train=True)[0][:500]


def dgl(**keys) -> TrainConfig:
    return TrainConfig.from_dict({"recipe": "dgl", **TINY, **keys})


def state_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


# ---------------------------------------------------------------- the recipe


def test_teacher_weight_zero_reproduces_gas_bitwise(real, teacher_file):
    teacher = load_teacher(teacher_file)
    gas = TrainConfig.from_dict({"recipe": "gas", "iterations": 4, **TINY})
    off = dgl(iterations=4, teacher_weight=0, teacher_from=0)
    (c_gas, (h_gas,)), (c_off, (h_off,)) = (train_cohort([SMALL], [5], t, real, teacher=teacher.module) for t in (gas, off))
    assert (h_off.d_losses, h_off.g_losses) == (h_gas.d_losses, h_gas.g_losses)
    assert h_off.teacher_losses == [0.0] * 4
    assert_same_weights(c_off.G, c_gas.G)
    assert_same_weights(c_off.discriminators[0], c_gas.discriminators[0])


def test_stage_one_inside_a_cuda_graph_is_gas_bitwise(real, teacher_file):
    """A CUDA graph always runs the teacher (its scale 0 before the switch): G's steps must still be gas's."""
    teacher = load_teacher(teacher_file)
    runs = []
    for train in (TrainConfig.from_dict({"recipe": "gas", **TINY}), dgl()):
        c = Cohort([SMALL, SMALL], [1, 2], train, real, teacher=teacher.module if train.recipe == "dgl" else None)
        if c.parts.teacher is not None:
            c.parts.teacher.always = True  # what `capturable` sets for a graph
        for _ in range(3):
            c.draw()
            c.step()
        runs.append(c)
    assert torch.equal(runs[0].sums[:, :2], runs[1].sums[:, :2]) and not runs[1].sums[:, 2].any()
    assert_same_weights(runs[0].G, runs[1].G)


def test_the_teacher_never_changes(real, teacher_file):
    teacher = load_teacher(teacher_file)
    before = state_hash(teacher.module)
    _, (hist,) = train_cohort([SMALL], [0], dgl(iterations=3, teacher_from=0, teacher_weight=0.5), real, teacher=teacher.module)
    assert hist.status == "complete" and all(t > 0 for t in hist.teacher_losses)
    assert state_hash(teacher.module) == before  # parameters and running statistics
    assert not teacher.module.training and not any(p.requires_grad for p in teacher.module.parameters())
    assert hashlib.sha256(teacher_file.read_bytes()).hexdigest() == teacher.sha256


def test_generator_gradient_of_the_teacher_term_is_autograd_of_the_formula(real, teacher_file, float64):
    lam = 0.3
    teacher = load_teacher(teacher_file)
    c = Cohort([SMALL, DiscriminatorSpec(base_filters=8, depth=2)], [3, 4], dgl(batch_size=3, teacher_weight=lam), real.double(), teacher=teacher.module)
    c.draw()
    c.parts.teacher.switch(True)
    _, terms = c.g_backward_terms(0)
    total = [p.grad.clone() for p in c.g_params]
    c.parts.teacher.switch(False)
    c.g_backward(0)  # the same noise slot and weights: the student's part alone
    student = [p.grad.clone() for p in c.g_params]
    fake = c.G(c.noise[:, 0])  # (K, B, 1, 28, 28)
    per_trial = torch.stack([lam * 0.5 * (teacher.module(f) - 1).square().mean() for f in fake])
    expected = torch.autograd.grad(per_trial.sum(), c.g_params)
    torch.testing.assert_close(terms.double(), per_trial.detach(), rtol=1e-6, atol=0)  # losses are taken in fp32
    for t, s, e in zip(total, student, expected):
        torch.testing.assert_close(t - s, e, rtol=1e-5, atol=1e-5 * float(e.abs().max()))
    assert any(e.abs().max() > 0 for e in expected)


def test_the_teacher_term_switches_on_at_the_stated_iteration(real, teacher_file):
    teacher = load_teacher(teacher_file)
    train = dgl(iterations=8, teacher_from=0.5)
    assert train.teacher_start == 4
    _, (hist,) = train_cohort([SMALL], [0], train, real, teacher=teacher.module)
    assert hist.log_steps == list(range(1, 9))
    assert hist.teacher_losses[:4] == [0.0] * 4 and all(t > 0 for t in hist.teacher_losses[4:])
    assert len(hist.g_losses) == 8 and hist.g_losses != hist.teacher_losses  # logged apart


def test_a_teacher_recipe_without_a_teacher_is_refused(real):
    with pytest.raises(ValueError, match="needs a teacher"):
        train_cohort([SMALL], [0], dgl(iterations=1), real)


# ---------------------------------------------------------------- keys and files


def test_teacher_keys_are_recipe_keys_of_dgl_only():
    t = dgl()
    assert (t.teacher_weight, t.teacher_from, t.teacher, t.optimizer, t.g_steps) == (0.1, 0.5, None, "rmsprop", 4)
    assert "teacher_weight" not in t.to_dict() and "teacher" not in TrainConfig().to_dict()
    over = dgl(teacher_weight=0.05, teacher="/x/d.pt")
    assert over.overrides == ("teacher_weight",) and over.to_dict()["teacher_weight"] == 0.05 and over.to_dict()["teacher"] == "/x/d.pt"
    assert TrainConfig.from_dict(over.to_dict()) == over
    with pytest.raises(SpaceError, match=r"^train.teacher_weight: recipe gas trains without a teacher"):
        TrainConfig.from_dict({"recipe": "gas", "teacher_weight": 0.1})
    with pytest.raises(SpaceError, match=r"^train.teacher_from: must be in \[0, 1\]"):
        dgl(teacher_from=1.5)
    with pytest.raises(SpaceError, match=r"^train.teacher_weight: must be a finite number >= 0"):
        dgl(teacher_weight=-1)
    # switching recipes drops the teacher and its keys, as it drops other recipe changes
    train, _ = resolve_train([("space", {"recipe": "dgl", "teacher_weight": 0.5, "teacher": "/t.pt"}), ("--recipe", {"recipe": "gas"})])
    assert train.recipe == "gas" and train.teacher is None and train.teacher_weight is None


def test_a_relative_teacher_path_is_resolved_against_the_file_naming_it(tmp_path, monkeypatch):
    folder = tmp_path / "arch"
    folder.mkdir()
    path = folder / "a.yaml"
    path.write_text(yaml.safe_dump({"format": ARCH_FORMAT, "discriminator": SMALL.to_dict(), "train": {"recipe": "dgl", "teacher": "t/d.pt"}}))
    monkeypatch.chdir(tmp_path)
    _, train, _ = load_arch("arch/a.yaml")
    assert train.teacher == str(folder / "t" / "d.pt")


def test_bad_teacher_files_are_one_line(tmp_path, teacher_file):
    with pytest.raises(GasNasError, match="no such file"):
        load_teacher(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GasNasError, match="not a checkpoint that loads with weights_only=True"):
        load_teacher(tmp_path / "junk.pt")
    torch.save({"state_dict": {}, "spec": SMALL.to_dict(), "code": fractions.Fraction(1, 3)}, tmp_path / "code.pt")
    with pytest.raises(GasNasError, match="weights_only=True"):  # a pickle that would build objects: refused
        load_teacher(tmp_path / "code.pt")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "nospec.pt")
    with pytest.raises(GasNasError, match="not a discriminator.pt written by `gas-nas train`"):
        load_teacher(tmp_path / "nospec.pt")
    ckpt = torch.load(teacher_file, weights_only=True)
    torch.save({**ckpt, "spec": {**ckpt["spec"], "base_filters": 16}}, tmp_path / "mismatch.pt")
    with pytest.raises(GasNasError, match="its weights do not match its spec") as err:
        load_teacher(tmp_path / "mismatch.pt")
    assert "\n" not in str(err.value)


def test_the_default_teacher_is_trained_once_keyed_and_cached(tmp_path, monkeypatch, mnist_dir):
    import gas_nas.trial.teacher as teacher_mod

    tiny = TrainConfig(iterations=2, batch_size=4, log_every=1)
    monkeypatch.setattr(teacher_mod, "default_recipe", lambda: (DiscriminatorSpec(base_filters=8, depth=2), tiny, 0))
    said: list[str] = []

    class Heard(Events):
        def say(self, line: str) -> None:
            said.append(line)

    first = load_default_teacher(mnist_dir, cache_dir=tmp_path, events=Heard())
    assert len(said) == 1 and "training the default teacher once" in said[0] and "2 iterations" in said[0] and str(tmp_path) in said[0]
    (cached,) = tmp_path.glob("teacher-case1-*.pt")
    assert first.path == str(cached) and first.sha256 == hashlib.sha256(cached.read_bytes()).hexdigest()
    again = load_default_teacher(mnist_dir, cache_dir=tmp_path, events=Heard())
    assert len(said) == 1 and again.sha256 == first.sha256  # cached: not trained again
    longer = dataclasses.replace(tiny, iterations=3)
    monkeypatch.setattr(teacher_mod, "default_recipe", lambda: (DiscriminatorSpec(base_filters=8, depth=2), longer, 0))
    assert teacher_mod.default_teacher_path(tmp_path) != cached  # keyed by what it is trained with


def test_the_default_teacher_is_paper_case_1_at_the_paper_budget():
    from gas_nas.models.space import load_space
    from gas_nas.trial.teacher import default_recipe

    spec, train, _ = default_recipe()
    assert spec == load_space().cases[0].spec and (train.recipe, train.iterations, train.batch_size) == ("gas", 2000, 32)


# ---------------------------------------------------------------- commands and studies


@pytest.fixture
def cli_here(monkeypatch, cli_env):
    for key in ("GAS_NAS_DATA", "GAS_NAS_CACHE"):
        monkeypatch.setenv(key, cli_env[key])


def test_train_cli_records_the_teacher_and_keeps_the_students_size(tmp_path, teacher_file, cli_here, capsys):
    space = write_tiny_space(tmp_path / "tiny.yaml")
    arch = tmp_path / "small.yaml"
    arch.write_text(yaml.safe_dump({"format": ARCH_FORMAT, "discriminator": SMALL.to_dict()}))
    out = tmp_path / "out"
    args = ["train", "--arch", str(arch), "--space", str(space), "--recipe", "dgl", "--teacher", str(teacher_file), "--device", "cpu", "--out", str(out), "--json"]
    assert main(args) == 0
    m = json.loads(capsys.readouterr().out)
    teacher = load_teacher(teacher_file)
    assert (m["teacher_sha256"], m["teacher_params"], m["teacher_mb"]) == (teacher.sha256, teacher.params, teacher.mb)
    assert m["d_params"] == param_count(build_discriminator(SMALL)) != teacher.params
    assert len(m["teacher_losses"]) == len(m["g_losses"]) == 3
    assert yaml.safe_load((out / "arch.yaml").read_text())["train"]["teacher"] == str(teacher_file)
    capsys.readouterr()
    assert main([*args[:-1], "--teacher", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.pt: no such file" in err


def test_a_study_keeps_its_teacher(tmp_path, teacher_file, cli_here, capsys):
    import optuna

    from gas_nas.study.record import TrialRecord
    from gas_nas.study.search import TEACHER_ATTR

    teacher_file = Path(shutil.copy(teacher_file, tmp_path / "teacher.pt"))  # overwritten below; the fixture is shared
    space = write_tiny_space(tmp_path / "tiny.yaml", search={"cohort": 1})
    storage = f"sqlite:///{tmp_path}/t.db"
    base = ["search", "--space", str(space), "--storage", storage, "--study", "dgl", "--recipe", "dgl", "--device", "cpu", "--artifacts", str(tmp_path / "art"), "--quiet"]
    assert main([*base, "--teacher", str(teacher_file), "--trials", "1"]) == 0
    study = optuna.load_study(study_name="dgl", storage=storage)
    teacher = load_teacher(teacher_file)
    assert study.user_attrs[TEACHER_ATTR]["teacher_sha256"] == teacher.sha256
    (trial,) = [t for t in study.trials if t.state.name == "COMPLETE"]
    recorded = TrialRecord.of(trial).metrics
    assert recorded.teacher_sha256 == teacher.sha256 and recorded.teacher_params == teacher.params
    other = write_teacher(tmp_path / "other.pt", seed=1)
    before = len(study.get_trials())
    capsys.readouterr()
    # another teacher file is another training setting of the study ...
    assert main([*base, "--teacher", str(other), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.teacher" in err and str(other) in err
    # ... and the same path holding other weights is caught by the teacher's checksum
    teacher_file.write_bytes(other.read_bytes())
    assert main([*base, "--teacher", str(teacher_file), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was trained with teacher sha256" in err
    assert len(optuna.load_study(study_name="dgl", storage=storage).get_trials()) == before  # refused before any trial


def test_open_study_refuses_another_teacher_or_none(tmp_path):
    from gas_nas.models.space import load_space
    from gas_nas.study.search import open_study

    space = load_space(write_tiny_space(tmp_path / "tiny.yaml"))
    url = f"sqlite:///{tmp_path}/s.db"
    a, b = {"teacher_sha256": "a" * 64, "teacher_path": "/a.pt"}, {"teacher_sha256": "b" * 64, "teacher_path": "/b.pt"}
    open_study(space, url, "s", teacher=a)
    open_study(space, url, "s", teacher=a)
    for other in (b, None):
        with pytest.raises(StorageError, match="was trained with teacher sha256 aaaaaaaaaaaa"):
            open_study(space, url, "s", teacher=other)
    open_study(space, url, "plain")
    with pytest.raises(StorageError, match="was trained with no teacher, this run has teacher sha256 bbbbbbbbbbbb"):
        open_study(space, url, "plain", teacher=b)


def test_resolve_teacher_checks_a_named_file_and_trains_nothing_without_need(tmp_path, teacher_file, monkeypatch):
    import gas_nas.trial.teacher as teacher_mod
    from gas_nas.trial.teacher import resolve_teacher

    monkeypatch.setattr(teacher_mod, "load_default_teacher", lambda *a, **k: pytest.fail("the default teacher must not be trained"))
    assert resolve_teacher(TrainConfig()) is None
    assert resolve_teacher(dgl(teacher_weight=0)) is None
    assert resolve_teacher(dgl(teacher=str(teacher_file))).sha256 == load_teacher(teacher_file).sha256
    with pytest.raises(GasNasError, match="no such file"):
        resolve_teacher(dgl(teacher_weight=0, teacher=str(tmp_path / "missing.pt")))
