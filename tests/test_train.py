"""One LSGAN trial on CPU: every paper case runs, runs are reproducible, divergence is contained."""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import subprocess
import sys

import pytest
import torch

from gas_nas.common.machine import cpu_model
from gas_nas.models.networks import build_discriminator
from gas_nas.models.space import load_space
from gas_nas.models.spec import DiscriminatorSpec, QualityConfig, TrainConfig, save_arch
from gas_nas.trial.guard import constraints, violations
from gas_nas.trial.metrics import param_count
from gas_nas.trial.train import run_trial, train_gan

TINY = TrainConfig(iterations=4, batch_size=8, log_every=1)
QUALITY = QualityConfig(n_samples=64, duality_gap_steps=2)


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    from gas_nas.trial.data import load_mnist

    real, _ = load_mnist(mnist_dir, train=True)
    held_out, _ = load_mnist(mnist_dir, train=False)
    return real[:4000], held_out[:2000]


@pytest.mark.parametrize("index", range(6))
def test_each_paper_case_finishes_with_finite_losses_and_all_metrics(index, mnist, mnist_classifier):
    case = load_space().cases[index]
    real, held_out = mnist
    outcome = run_trial(case.spec, TINY, QUALITY, real=real, held_out=held_out, classifier=mnist_classifier, seed=1)
    m = outcome.metrics
    assert m.status == "complete" and m.reason == "" and m.iterations == TINY.iterations
    assert m.log_steps == [1, 2, 3, 4] and len(m.d_losses) == len(m.g_losses) == 4
    assert all(math.isfinite(v) for v in m.d_losses + m.g_losses)
    assert m.d_params == param_count(build_discriminator(case.spec)) and m.d_param_mb == pytest.approx(m.d_params * 4 / 2**20)
    assert math.isfinite(m.imbalance) and m.imbalance >= 0
    assert math.isfinite(m.fid) and 0 <= m.classes <= 10 and sum(m.class_histogram) == QUALITY.n_samples
    assert m.classifier_accuracy >= 0.98
    assert outcome.grid.shape == (64, 1, 28, 28)
    assert m.machine == f"{platform.node()} ({cpu_model()}, {torch.get_num_threads()} thread(s))"  # workers on several hosts pool trials
    json.dumps(m.to_dict())  # the record is JSON-ready (stored as Optuna user attributes)


def test_same_seed_same_run_other_seed_other_run(mnist):
    real, _ = mnist
    spec = DiscriminatorSpec(base_filters=8, inception=True)
    G1, D1, h1 = train_gan(spec, TINY, real, seed=3)
    G2, D2, h2 = train_gan(spec, TINY, real, seed=3)
    _, _, h3 = train_gan(spec, TINY, real, seed=4)
    assert h1["d_losses"] == h2["d_losses"] and h1["g_losses"] == h2["g_losses"]
    assert all(torch.equal(a, b) for a, b in zip(G1.state_dict().values(), G2.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(D1.state_dict().values(), D2.state_dict().values()))
    assert h3["d_losses"] != h1["d_losses"]


@pytest.mark.parametrize("output,lr", [("linear", 1e3), ("sigmoid", 1e30)])
def test_absurd_learning_rate_ends_the_trial_with_a_reason(output, lr, mnist, mnist_classifier):
    real, held_out = mnist
    train = dataclasses.replace(TINY, iterations=20, lr=lr)
    outcome = run_trial(DiscriminatorSpec(base_filters=8, output=output), train, QUALITY, real=real, held_out=held_out, classifier=mnist_classifier)
    m = outcome.metrics
    assert m.status == "diverged" and "iteration" in m.reason and m.iterations < train.iterations
    assert violations(m, QUALITY) and violations(m, QUALITY)[0].startswith("training diverged")
    assert max(constraints(m, QUALITY).values()) > 0  # infeasible for Optuna


def test_dcgan_recipe_trains_with_adam(mnist):
    real, _ = mnist
    train = dataclasses.replace(TrainConfig.from_dict({"recipe": "dcgan"}), iterations=2, batch_size=8, log_every=1)
    _, _, hist = train_gan(DiscriminatorSpec(base_filters=8, activation="leaky_relu"), train, real)
    assert hist["status"] == "complete" and len(hist["d_losses"]) == 2


def test_train_cli_writes_checkpoints_pngs_and_metrics(tmp_path, cli_env):
    arch = save_arch(tmp_path / "case6.yaml", load_space().cases[5].spec, TINY)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "gas_nas.cli", "train", "--arch", str(arch), "--iterations", "2", "--batch-size", "8", "--device", "cpu", "--seed", "5", "--out", str(out), "--json"],
        capture_output=True, text=True, env=cli_env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["iterations"] == 2 and record["seed"] == 5 and record["status"] == "complete"
    for name in ("generator.pt", "discriminator.pt", "samples.png", "losses.png", "metrics.json", "arch.yaml"):
        assert (out / name).stat().st_size > 0
    assert (out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = torch.load(out / "discriminator.pt")
    D = build_discriminator(DiscriminatorSpec.from_dict(ckpt["spec"]))
    D.load_state_dict(ckpt["state_dict"])  # the checkpoint rebuilds its own model
    assert param_count(D) == record["d_params"]


def test_train_cli_offline_without_data_is_one_clear_line(tmp_path, cli_env):
    env = {**cli_env, "GAS_NAS_DATA": str(tmp_path / "empty")}
    (tmp_path / "empty").mkdir()
    arch = save_arch(tmp_path / "a.yaml", DiscriminatorSpec(base_filters=8), TINY)
    proc = subprocess.run([sys.executable, "-m", "gas_nas.cli", "train", "--arch", str(arch), "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "empty" in proc.stderr


def test_trial_estimate_extrapolates_a_few_timed_iterations_to_the_budget(mnist, monkeypatch):
    import types

    import gas_nas.trial.train as train_module

    ticks = iter(range(1000))
    monkeypatch.setattr(train_module, "time", types.SimpleNamespace(perf_counter=lambda: 0.5 * next(ticks)))  # 0.5 s per iteration
    budget = dataclasses.replace(TINY, iterations=2000)
    assert train_module.seconds_per_trial(DiscriminatorSpec(base_filters=8), budget, mnist[0]) == pytest.approx(1000.0)
    assert next(ticks) == 4  # it trained 1 warm-up + 3 timed iterations, not the budget


def test_loss_curve_with_one_logged_point_still_shows_d_and_g(tmp_path):
    import numpy as np

    from gas_nas.trial.report import loss_figure

    fig = loss_figure({"log_steps": [3], "d_losses": [0.6], "g_losses": [0.45], "imbalance": 1.0})
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())
    ax = fig.axes[0]
    for y, colour in ((0.6, (31, 119, 180)), (0.45, (255, 127, 14))):  # matplotlib's C0 (D), C1 (G)
        px, py = ax.transData.transform((3, y))
        rgb = pixels[round(pixels.shape[0] - py), round(px), :3]
        assert np.abs(rgb.astype(int) - colour).max() < 40, (y, rgb)


def test_progress_moves_every_iteration_and_the_plot_curve_leaves_the_log_alone():
    """A budget shorter than log_every: the bar still moves each iteration, the plot gets a point
    per iteration, and the log (what the imbalance is computed from) keeps its log_every points."""
    from gas_nas.trial.train import curve_every, train_cohort

    real = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    budget = dataclasses.replace(TINY, iterations=7, batch_size=4, log_every=3)
    calls = []
    _, (hist,) = train_cohort([DiscriminatorSpec(base_filters=8, depth=2)], [0], budget, real, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 7) for i in range(1, 8)]
    assert hist.log_steps == [3, 6, 7] and hist.curve_steps == list(range(1, 8))
    bounds = [0, *hist.log_steps]
    for lo, hi, d, g in zip(bounds, bounds[1:], hist.d_losses, hist.g_losses):  # the curve's points average to the logged means
        inside = [j for j, s in enumerate(hist.curve_steps) if lo < s <= hi]
        assert sum(hist.curve_d[j] for j in inside) / len(inside) == pytest.approx(d, rel=1e-5)
        assert sum(hist.curve_g[j] for j in inside) / len(inside) == pytest.approx(g, rel=1e-5)
    assert [curve_every(n) for n in (1, 3, 40, 200, 201, 2000)] == [1, 1, 1, 1, 2, 10]


def test_loss_curve_of_a_short_run_has_a_point_per_iteration_and_shades_the_imbalance_window():
    from gas_nas.trial.report import loss_figure

    curve = {"steps": list(range(1, 41)), "d_losses": [0.3] * 40, "g_losses": [0.2] * 40}
    fig = loss_figure({"log_steps": [40], "d_losses": [0.3], "g_losses": [0.2], "imbalance": 0.5}, "trial 3", curve)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert len(lines["D loss (per iteration)"].get_xdata()) == 40 and ax.get_xlim()[0] == 0
    assert list(lines["logged means (the imbalance uses these)"].get_xdata()) == [40]
    # one logged mean is the whole run: no window to shade
    assert "imbalance window (last quarter of the log)" not in ax.get_legend_handles_labels()[1]
    assert ax.get_title() == "trial 3: imbalance 0.500"
    # eight logged means: the last two (a quarter) are the window, shaded from the third-last step
    steps = [5 * i for i in range(1, 9)]
    fig = loss_figure({"log_steps": steps, "d_losses": [0.3] * 8, "g_losses": [0.2] * 8, "imbalance": 0.5}, "trial 3", curve)
    (span,) = [p for p in fig.axes[0].patches if p.get_label() == "imbalance window (last quarter of the log)"]
    assert (span.get_x(), span.get_x() + span.get_width()) == (30, 40)
