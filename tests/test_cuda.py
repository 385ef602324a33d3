"""The CUDA paths: a trial, peak memory and its estimate, CUDA graph vs eager, bf16 cohorts.

Every test is marked `cuda` (`pytest -m cuda`) and skipped where torch sees no CUDA device.
`benchmarks/gpu_check.py` runs them and sets `GAS_NAS_GPU_FIGURES` to a JSON file into which
the tests write what they measured, so its report carries the figures as well as the verdicts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

from gas_nas.models.networks import build_discriminator
from gas_nas.models.space import load_space
from gas_nas.trial.metrics import param_mb
from gas_nas.trial.train import CUDA_COHORT_MAX, auto_cohort, peak_train_memory_mb, run_cohort, run_trial, train_cohort

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from gpu_check import FIGURES_ENV  # noqa: E402

SPACE = load_space()
CUDA = torch.device("cuda")
SHORT = dataclasses.replace(SPACE.train, iterations=40, log_every=10)  # past the graph's 3 warm-up iterations
QUALITY = dataclasses.replace(SPACE.quality, n_samples=500)
CAPTURE_FAILED = "CUDA graph capture failed"  # gas_nas.trial.graphs' warning when it falls back to eager

# Graph vs eager (fp32). Both paths run the same kernels in the same order (the graph records
# them), so they can differ only where a kernel is nondeterministic (atomics in cuDNN's weight
# gradients): fp32 rounding, ~1e-7 relative. RMSprop's normalised steps amplify that, but over
# 12 iterations it stays far below 1e-3; a real fault (a buffer not refilled, a step not
# replayed, a stale optimiser state) moves the losses by 1e-2 or more.
GRAPH_ITERATIONS = 12
GRAPH_RTOL, GRAPH_ATOL = 1e-3, 1e-6


def record(key: str, value) -> None:
    """Add a figure to `$GAS_NAS_GPU_FIGURES` (a JSON object), when gpu_check asks for them."""
    path = os.environ.get(FIGURES_ENV)
    if not path:
        return
    figures = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
    figures[key] = value
    Path(path).write_text(json.dumps(figures, indent=2))


@pytest.fixture(scope="module")
def cuda_data(mnist_dir):
    """MNIST and the shipped quality classifier on the GPU."""
    from gas_nas.trial.classifier import load_classifier
    from gas_nas.trial.data import load_mnist

    real, _ = load_mnist(mnist_dir, train=True, device=CUDA)
    held_out, _ = load_mnist(mnist_dir, train=False, device=CUDA)
    return real, held_out, load_classifier(device=CUDA)


def _finite(m) -> bool:
    return all(math.isfinite(v) for v in (m.imbalance, m.d_loss, m.g_loss, m.fid, m.entropy))


def test_peak_training_memory_of_the_six_paper_cases():
    rows = {}
    for case in SPACE.cases:
        peak = peak_train_memory_mb(case.spec, SPACE.train, CUDA)
        rows[case.name] = {"peak_mb": round(peak, 1), "param_mb": round(param_mb(build_discriminator(case.spec)), 4), "paper_mb": case.paper_mb}
    record("case_peak_mb", {"batch_size": SPACE.train.batch_size, "cases": rows})
    for name, row in rows.items():
        # a training step holds at least D's parameters, gradients and RMSprop state
        assert math.isfinite(row["peak_mb"]) and row["peak_mb"] >= 3 * row["param_mb"], (name, row)


def test_a_trial_runs_on_cuda_through_the_cuda_graph(cuda_data, capsys):
    real, held_out, classifier = cuda_data
    m = run_trial(SPACE.cases[0].spec, SHORT, QUALITY, real=real, held_out=held_out, classifier=classifier, seed=0).metrics
    assert CAPTURE_FAILED not in capsys.readouterr().err
    cohort = auto_cohort(CUDA, SPACE.train)
    record("trial", {"iterations": m.iterations, "seconds": round(m.seconds, 2), "peak_mb": m.peak_mb, "fid": m.fid, "imbalance": m.imbalance, "auto_cohort": cohort})
    assert m.status == "complete" and m.iterations == SHORT.iterations and m.device.startswith("cuda")
    assert _finite(m)
    assert m.peak_mb is not None and m.peak_mb > 0
    assert 1 <= cohort <= CUDA_COHORT_MAX


def test_cohort_cuda_graph_gives_the_eager_losses(cuda_data, capsys):
    real = cuda_data[0]
    specs = [case.spec for case in SPACE.cases[:3]]
    train = dataclasses.replace(SPACE.train, iterations=GRAPH_ITERATIONS, log_every=1)
    losses = {}
    for graph in (True, False):
        _, hists = train_cohort(specs, [0, 1, 2], train, real, cuda_graph=graph)
        assert all(h.status == "complete" for h in hists)
        losses[graph] = torch.tensor([[h.d_losses, h.g_losses] for h in hists], dtype=torch.float64)  # (K, 2, iterations)
    assert CAPTURE_FAILED not in capsys.readouterr().err  # else both runs were eager
    diff = (losses[True] - losses[False]).abs()
    record("graph_vs_eager", {
        "iterations": GRAPH_ITERATIONS, "cohort": len(specs), "rtol": GRAPH_RTOL, "atol": GRAPH_ATOL,
        "max_abs_diff": diff.max().item(), "max_rel_diff": (diff / losses[False].abs().clamp_min(1e-12)).max().item(),
    })
    torch.testing.assert_close(losses[True], losses[False], rtol=GRAPH_RTOL, atol=GRAPH_ATOL)


def test_bf16_channels_last_cohort_of_the_six_cases_finishes_with_finite_metrics(cuda_data, capsys):
    real, held_out, classifier = cuda_data
    train = dataclasses.replace(SHORT, precision="bf16", channels_last=True)
    outcomes = run_cohort([c.spec for c in SPACE.cases], list(range(6)), train, QUALITY, real=real, held_out=held_out, classifier=classifier)
    fell_back = CAPTURE_FAILED in capsys.readouterr().err
    record("bf16", {
        "cuda_graph": not fell_back,
        "cases": {c.name: {"status": o.metrics.status, "fid": o.metrics.fid, "imbalance": o.metrics.imbalance} for c, o in zip(SPACE.cases, outcomes)},
    })
    for case, outcome in zip(SPACE.cases, outcomes):
        m = outcome.metrics
        assert m.status == "complete", (case.name, m.reason)
        assert _finite(m), (case.name, m.to_dict())


def test_the_teacher_stage_switch_keeps_the_cuda_graph(cuda_data, capsys, tmp_path):
    """Recipe dgl on CUDA: the teacher joins after capture (a device scalar filled in place), the
    graph is neither broken nor re-captured, the losses match eager training, the teacher never changes."""
    from conftest import write_teacher

    from gas_nas.models.spec import TrainConfig
    from gas_nas.trial.teacher import load_teacher

    real = cuda_data[0]
    teacher = load_teacher(write_teacher(tmp_path / "teacher.pt"), CUDA)
    before = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    train = TrainConfig.from_dict({"recipe": "dgl", "iterations": GRAPH_ITERATIONS, "log_every": 1, "teacher_weight": 0.5})
    losses = {}
    for graph in (True, False):
        _, hists = train_cohort([c.spec for c in SPACE.cases[3:6]], [0, 1, 2], train, real, cuda_graph=graph, teacher=teacher.module)
        losses[graph] = torch.tensor([[h.d_losses, h.g_losses, h.teacher_losses] for h in hists], dtype=torch.float64)
    assert CAPTURE_FAILED not in capsys.readouterr().err
    start = train.teacher_start  # 6: after the capture at iteration 4
    assert (losses[True][:, 2, :start] == 0).all() and (losses[True][:, 2, start:] > 0).all()
    torch.testing.assert_close(losses[True], losses[False], rtol=GRAPH_RTOL, atol=GRAPH_ATOL)
    for key, value in teacher.module.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_memory_estimate_is_within_a_factor_of_two_of_the_cuda_peak(cuda_data):
    """gas_nas.trial.memory's CUDA estimate of a whole trial (through the CUDA graph, quality and
    duality gap included) against the caching allocator's peak reserved memory over what it
    held before: the six paper cases at the space's batch, and 100M parameters (base 256, depth 5)."""
    from gas_nas.trial.memory import MB, estimate

    real, held_out, classifier = cuda_data
    runs = [(case.name, case.spec, SHORT) for case in SPACE.cases]
    runs.append(("base256-depth5", dataclasses.replace(SPACE.cases[0].spec, base_filters=256, depth=5), SHORT))
    rows = {}
    for name, spec, train in runs:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(CUDA)
        before = torch.cuda.memory_reserved(CUDA)
        run_trial(spec, train, QUALITY, real=real, held_out=held_out, classifier=classifier, seed=0)
        measured = (torch.cuda.max_memory_reserved(CUDA) - before) / MB
        predicted = estimate([spec], train, QUALITY, CUDA).peak / MB
        rows[name] = {"estimate_mb": round(predicted, 1), "measured_mb": round(measured, 1), "ratio": round(predicted / measured, 2)}
    record("memory_estimate", {"batch_size": SHORT.batch_size, "n_samples": QUALITY.n_samples, "cases": rows})
    for name, row in rows.items():
        assert 0.5 <= row["ratio"] <= 2.0, (name, row)
