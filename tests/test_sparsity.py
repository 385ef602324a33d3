"""Sparse discriminators (STU-GAN): ERK densities, masks that hold through every update and
prune/regrow, density 1.0 untouched, cohort independence, and a stored size that is what the
checkpoint holds."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from gas_nas.cli import main
from gas_nas.models import sparsity
from gas_nas.models.networks import build_discriminator
from gas_nas.models.space import load_space
from gas_nas.models.spec import DiscriminatorSpec, TrainConfig, save_arch
from gas_nas.study.record import TrialRecord
from gas_nas.trial.report import discriminator_checkpoint, load_discriminator
from gas_nas.trial.train import Cohort, train_cohort

CASES = load_space().cases
SMALL = DiscriminatorSpec(base_filters=8, inception=True, depth=2)


@pytest.fixture(scope="module")
def real(mnist_dir):
    from gas_nas.trial.data import load_mnist

    images, _ = load_mnist(mnist_dir, train=True)
    return images[:600]


def sparse(spec: DiscriminatorSpec, density: float) -> DiscriminatorSpec:
    return DiscriminatorSpec.from_dict(spec.to_dict() | {"density": density})


@pytest.mark.parametrize("density", [0.5, 0.3, 0.1])
@pytest.mark.parametrize("case", range(6))
def test_erk_masks_keep_the_requested_overall_density(case: int, density: float) -> None:
    model = build_discriminator(sparse(CASES[case].spec, density))
    masks = sparsity.attach(model, density, sparsity.mask_generator(0))
    masked = sum(m.numel() for m in masks.masks)
    assert masks.nonzero() / masked == pytest.approx(density, rel=0.01)
    shapes = [tuple(w.shape) for w in masks.weights]
    per_layer = sparsity.erk_densities(shapes, density)
    assert all(0 < d <= 1 for d in per_layer)
    assert sum(d * math.prod(s) for d, s in zip(per_layer, shapes)) == pytest.approx(density * masked, rel=1e-9)
    assert len(masks.weights) == sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in model.modules())


def test_erk_gives_small_layers_more_density_and_dense_caps_are_resolved() -> None:
    shapes = [(32, 1, 3, 3), (64, 32, 3, 3), (128, 64, 3, 3), (1, 512)]
    d = sparsity.erk_densities(shapes, 0.2)
    assert d[0] == 1.0 and d[3] == 1.0  # would exceed 1: dense, the rest re-solved
    assert d[1] > d[2]  # the larger layer is sparser
    assert sparsity.erk_densities(shapes, 1.0) == [1.0] * 4


@pytest.mark.parametrize("mode,regrow", [("dynamic", "random"), ("dynamic", "gradient"), ("static", "random")])
def test_masks_hold_after_every_step_and_prune_regrow_keeps_the_count(real, mode: str, regrow: str) -> None:
    train = TrainConfig(iterations=16, batch_size=4, log_every=1, sparse_mode=mode, sparse_regrow=regrow, sparse_interval=2)
    cohort = Cohort([sparse(SMALL, 0.3)], [5], train, real)
    masks = cohort.masks[0]
    count, first = masks.nonzero(), [m.clone() for m in masks.masks]
    for it in range(1, train.iterations + 1):
        cohort.draw()
        cohort.step()
        cohort.update_masks(it)
        for w, m in zip(masks.weights, masks.masks):
            assert not bool(w[m == 0].any()), f"a pruned weight is nonzero at iteration {it}"
        assert masks.nonzero() == count
    moved = sum(int((a != b).sum()) for a, b in zip(first, masks.masks))
    assert (moved > 0) == (mode == "dynamic")


def test_channels_last_keeps_one_set_of_masks_and_they_hold(real) -> None:
    """A layout change replaces buffers: the masks the trainer updates must be the ones the model holds."""
    train = TrainConfig(iterations=6, batch_size=4, log_every=1, channels_last=True, sparse_interval=2, sparse_regrow="gradient")
    cohort, _ = train_cohort([sparse(SMALL, 0.3)], [2], train, real)
    masks, held = cohort.masks[0], sparsity.masks_of(cohort.discriminators[0])
    assert all(a is b for a, b in zip(masks.masks, held.masks))
    assert all(not bool(w[m == 0].any()) for w, m in zip(masks.weights, masks.masks))


def test_updates_follow_the_schedule() -> None:
    train = TrainConfig(iterations=200)
    due = [it for it in range(1, 201) if sparsity.update_due(it, train)]
    assert due == list(range(10, 150, 10))  # a twentieth of the budget, none in the last quarter
    assert sparsity.update_fraction(0, train) == pytest.approx(0.5)
    assert sparsity.update_fraction(75, train) == pytest.approx(0.25)
    assert sparsity.update_fraction(150, train) == pytest.approx(0.0)
    assert not any(sparsity.update_due(it, TrainConfig(iterations=3)) for it in range(1, 4))  # 3 iterations: static
    assert not any(sparsity.update_due(it, TrainConfig(iterations=200, sparse_mode="static")) for it in range(1, 201))


def test_density_one_trains_exactly_as_the_dense_trainer(real, monkeypatch: pytest.MonkeyPatch) -> None:
    """density 1.0 attaches nothing and changes no number: its losses and weights are bitwise
    those of the trainer with the sparse code cut out."""
    train = TrainConfig(iterations=6, batch_size=4, log_every=1, sparse_interval=1)
    cohort, (hist,) = train_cohort([sparse(SMALL, 1.0)], [3], train, real)
    assert cohort.masks == [None] and sparsity.masks_of(cohort.discriminators[0]) is None
    monkeypatch.setattr(Cohort, "apply_masks", lambda self: None)
    monkeypatch.setattr(Cohort, "update_masks", lambda self, it: None)
    monkeypatch.setattr(sparsity, "attach", lambda *a, **k: None)
    plain, (ref,) = train_cohort([SMALL], [3], train, real)
    assert hist.d_losses == ref.d_losses and hist.g_losses == ref.g_losses
    for a, b in zip(cohort.discriminators[0].state_dict().values(), plain.discriminators[0].state_dict().values()):
        assert torch.equal(a, b)


def test_stored_size_is_the_checkpoint_payload_and_round_trips(tmp_path: Path) -> None:
    spec = sparse(CASES[0].spec, 0.1)
    model = build_discriminator(spec)
    sparsity.attach(model, 0.1, sparsity.mask_generator(1))
    path = tmp_path / "discriminator.pt"
    torch.save(discriminator_checkpoint(model, spec, {"recipe": "gas"}), path)
    stored = torch.load(path, weights_only=True)
    assert sparsity.payload_bytes(stored["sparse_state"]) == sparsity.stored_bytes(model)
    dense = build_discriminator(CASES[0].spec)
    assert sparsity.stored_bytes(model) < 0.15 * sparsity.stored_bytes(dense)
    assert path.stat().st_size < 0.15 * 4 * sum(p.numel() for p in dense.parameters()) + 64 * 1024  # the file is small too
    back, spec_back, train = load_discriminator(path)
    assert spec_back == spec and train == {"recipe": "gas"}
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    model.eval(), back.eval()
    assert torch.equal(model(x), back(x))


def test_a_spectral_norm_discriminator_masks_its_original_weights(tmp_path: Path) -> None:
    spec = DiscriminatorSpec(base_filters=8, depth=2, norm="spectral", density=0.3)
    model = build_discriminator(spec)
    masks = sparsity.attach(model, 0.3, sparsity.mask_generator(0))
    assert all(not bool(w[m == 0].any()) for w, m in zip(masks.weights, masks.masks))
    path = tmp_path / "d.pt"
    torch.save(discriminator_checkpoint(model, spec, {}), path)
    back, _, _ = load_discriminator(path)
    model.eval(), back.eval()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(x), back(x))


def test_older_trial_records_without_a_nonzero_count_still_load() -> None:
    attrs = {"status": "complete", "reason": "", "iterations": 2, "d_params": 10, "d_param_mb": 4e-5, "imbalance": 0.1,
             "d_loss": 0.25, "g_loss": 0.125, "fid": 50.0, "classes": 10, "entropy": 2.3, "class_histogram": [1] * 10,
             "classifier_accuracy": 0.99, "seconds": 1.0, "device": "cpu", "seed": 0}
    record = TrialRecord.from_attrs(attrs)
    assert record.metrics is not None and record.metrics.d_nonzero is None


def _cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


@pytest.mark.parametrize(
    "discriminator,train,fragment",
    [
        ({"density": 0.0}, {}, "discriminator.density: must be in (0, 1]"),
        ({"density": 1.5}, {}, "discriminator.density: must be in (0, 1]"),
        ({"density": 0.5}, {"sparse_regrow": "magic"}, "sparse_regrow: expected one of random, gradient"),
        ({"density": 0.5}, {"sparse_interval": 50, "iterations": 10}, "sparse_interval: must be between 1 and 10"),
    ],
)
def test_bad_sparse_settings_are_one_line_and_exit_2_before_any_work(tmp_path: Path, discriminator: dict, train: dict, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"format": "gas-nas/arch/v1", "discriminator": discriminator, "train": train}))
    out = tmp_path / "out"
    code, err = _cli(["train", "--arch", str(path), "--device", "cpu", "--out", str(out)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err
    assert not out.exists()


def test_an_exported_sparse_architecture_trains_sparse_again(tmp_path: Path, cli_env: dict) -> None:
    spec = sparse(CASES[4].spec, 0.3)
    arch = save_arch(tmp_path / "sparse.yaml", spec, TrainConfig(sparse_mode="static", sparse_regrow="gradient"))
    doc = yaml.safe_load(arch.read_text())
    assert doc["discriminator"]["density"] == 0.3 and doc["train"]["sparse_regrow"] == "gradient"
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "gas_nas.cli", "train", "--arch", str(arch), "--iterations", "2", "--batch-size", "8",
                           "--device", "cpu", "--out", str(out), "--json"], env=cli_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["d_nonzero"] < metrics["d_params"]
    assert metrics["d_param_mb"] < 0.5 * 4 * metrics["d_params"] / 2**20
    back, spec_back, train = load_discriminator(out / "discriminator.pt")
    assert spec_back == spec and train["sparse_mode"] == "static"
    assert sparsity.stored_bytes(back) / 2**20 == pytest.approx(metrics["d_param_mb"])
