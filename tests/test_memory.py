"""The memory preflight: absurd architectures are refused at once, the estimate matches what
real trials use, and a search fails (or splits) what would not fit and goes on.

Nothing here depends on how much memory this machine has: refusals set `$GAS_NAS_MEMORY_MB`
or pass the available figure in, and the measured peaks come from fresh child processes
(`VmHWM` of /proc/self/status, reset just before the model is built, minus the resident
memory at that moment), one per architecture, so earlier tests leave nothing behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time

import pytest
import yaml

from gas_nas.models.space import load_space
from gas_nas.models.spec import DiscriminatorSpec, QualityConfig, TrainConfig
from gas_nas.trial.memory import MB, Available, available, check, estimate

SPACE = load_space()
HUGE = {
    "base1024-depth5": {"base_filters": 1024, "depth": 5},
    "base1024-depth5-inception": {"base_filters": 1024, "depth": 5, "inception": True, "norm": "spectral"},
    "base1024-depth4-strided": {"base_filters": 1024, "depth": 4, "downsample": "strided"},
}


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    import contextlib
    import io

    from gas_nas.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", list(HUGE))
def test_huge_architecture_files_are_refused_fast_with_exit_2_and_nothing_written(name, tmp_path, monkeypatch):
    arch = tmp_path / f"{name}.yaml"
    arch.write_text(yaml.safe_dump({"format": "gas-nas/arch/v1", "discriminator": HUGE[name]}))
    empty = tmp_path / "no-mnist"
    empty.mkdir()
    monkeypatch.setenv("GAS_NAS_DATA", str(empty))  # had it got past the check, it would stop at the data
    monkeypatch.setenv("GAS_NAS_MEMORY_MB", "4096")  # the same answer on any machine
    monkeypatch.setenv("GAS_NAS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "runs" / "huge"
    run_cli(["train", "--arch", str(arch), "--out", str(tmp_path / "warm"), "--device", "cpu"])  # imports, once
    start = time.perf_counter()
    code, stdout, stderr = run_cli(["train", "--arch", str(arch), "--out", str(out), "--device", "cpu"])
    seconds = time.perf_counter() - start
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, stderr)
    assert re.search(r"not enough memory: this trial needs at least [\d.]+ GB \(.*\), [\d.]+ [GM]B available \(", lines[0]), lines[0]
    assert seconds < 1.0, seconds  # parameters only: no forward pass, no data
    assert not stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([arch.name, "no-mnist"])  # no --out, no cache, nothing


def test_activations_too_large_for_memory_are_refused_before_any_data_is_read(tmp_path, monkeypatch):
    """Small weights, but dense blocks of growth 256 at 28x28 keep gigabytes for backward at batch 256."""
    arch = tmp_path / "dense.yaml"
    arch.write_text(yaml.safe_dump({"format": "gas-nas/arch/v1", "discriminator": {"dense_blocks": 4, "depth": 4, "base_filters": 64, "growth_rate": 256}}))
    monkeypatch.setenv("GAS_NAS_DATA", str(tmp_path / "missing"))
    monkeypatch.setenv("GAS_NAS_MEMORY_MB", "4096")
    code, _, stderr = run_cli(["train", "--arch", str(arch), "--batch-size", "256", "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 2 and re.search(r"needs about [\d.]+ GB \(.*training activations [\d.]+ GB", stderr), stderr
    assert not (tmp_path / "out").exists()


def test_available_takes_the_least_limit_and_divides_it_among_workers(monkeypatch):
    monkeypatch.delenv("GAS_NAS_MEMORY_SHARE", raising=False)
    monkeypatch.setenv("GAS_NAS_MEMORY_MB", "1")  # far below any machine's free RAM
    assert available("cpu") == Available(MB, "$GAS_NAS_MEMORY_MB")
    monkeypatch.setenv("GAS_NAS_MEMORY_MB", "1000")
    monkeypatch.setenv("GAS_NAS_MEMORY_SHARE", "4")  # what --jobs 4 gives its workers
    assert available("cpu").bytes == 1000 * MB // 4
    assert available("cpu", share=2).bytes == 500 * MB


def test_an_address_space_limit_is_what_a_process_may_use():
    """`ulimit -v`: what is left of it under the process's current size, when that is the least."""
    child = (
        "import re, resource\n"
        "from gas_nas.trial.memory import MB, available\n"
        "size = int(re.search(r'VmSize:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + 300 * MB, resource.RLIM_INFINITY))\n"
        "have = available('cpu', share=1)\n"
        "print(have.source, round(have.bytes / MB))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GAS_NAS_MEMORY_MB", "GAS_NAS_MEMORY_SHARE")}
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    source, mb = run.stdout.strip().rsplit(" ", 1)
    assert source == "address-space limit (ulimit -v)" and 250 <= int(mb) <= 300, run.stdout


def test_a_cohort_is_checked_as_a_whole():
    train, quality = SPACE.train, SPACE.quality
    one = estimate([SPACE.cases[0].spec], train, quality)
    six = estimate([c.spec for c in SPACE.cases], train, quality)
    assert six.peak > one.peak
    room = Available(one.peak + MB, "test")
    assert check([SPACE.cases[0].spec], train, quality, "cpu", room) is None
    assert "a cohort of 6 trials" in check([c.spec for c in SPACE.cases], train, quality, "cpu", room)
    assert check([SPACE.cases[0].spec], train, quality, "cpu", None) is None  # nothing known: not checked


def test_duality_gap_copies_cost_about_seven_times_d_parameters():
    """Training state (value, gradient, RMSprop's square average) plus the gap's frozen and
    trained copies (value, gradient, state): 7x D's parameter bytes, for a D that dominates."""
    spec = DiscriminatorSpec(base_filters=256, depth=5)
    with_gap = estimate([spec], SPACE.train, SPACE.quality, activations=False)
    without = estimate([spec], SPACE.train, dataclasses.replace(SPACE.quality, duality_gap_steps=0), activations=False)
    d_bytes = 100_299_777 * 4  # its parameters
    assert 6.5 < (with_gap.peak - without.peak + 3 * d_bytes) / d_bytes < 7.5


# ---------------------------------------------------------------- estimate against measurement

CHILD = r"""
import json, os, sys
import torch
torch.set_num_threads(1)
from gas_nas.models.spec import DiscriminatorSpec, QualityConfig, TrainConfig
from gas_nas.study.search import load_resources
from gas_nas.trial.train import run_trial

arch, train, quality = (json.loads(a) for a in sys.argv[1:4])
spec, train, quality = DiscriminatorSpec.from_dict(arch), TrainConfig.from_dict(train), QualityConfig(**quality)
res = load_resources(torch.device("cpu"), None)

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the high-water mark starts again here: loading MNIST is not the trial's
base = status("VmRSS")
outcome = run_trial(spec, train, quality, real=res.real, held_out=res.held_out, classifier=res.classifier)
print(json.dumps({"peak": status("VmHWM") - base, "status": outcome.metrics.status}))
"""

PAPER = {"iterations": 2, "batch_size": 32, "log_every": 1}  # the real batch; the quality step as in a real trial
LARGE = {"iterations": 1, "batch_size": 4, "log_every": 1, "g_steps": 1}  # 100M parameters: weights dominate, keep it short
MEASURED = [pytest.param(case.spec.to_dict(), PAPER, {"n_samples": 2000}, id=case.name) for case in SPACE.cases]
MEASURED += [pytest.param({"base_filters": 256, "depth": 5, "downsample": "strided"}, LARGE, {"n_samples": 64}, id="base256-depth5",
                          marks=pytest.mark.slow)]  # strided: a quarter of the convolutions' work; still the longest test here


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _can_reset_peak(), reason="needs Linux's /proc/self/clear_refs to measure a peak")
@pytest.mark.parametrize(("arch", "train", "quality"), MEASURED)
def test_estimate_is_within_a_factor_of_two_of_the_measured_peak(arch, train, quality, cli_env):
    run = subprocess.run([sys.executable, "-c", CHILD, json.dumps(arch), json.dumps(train), json.dumps(quality)],
                         env=cli_env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    assert measured["status"] == "complete"
    predicted = estimate([DiscriminatorSpec.from_dict(arch)], TrainConfig.from_dict(train), QualityConfig(**quality), "cpu").peak
    ratio = predicted / measured["peak"]
    print(f"estimate {predicted / MB:.0f} MB, measured {measured['peak'] / MB:.0f} MB, ratio {ratio:.2f}")
    assert 0.5 <= ratio <= 2.0, (predicted / MB, measured["peak"] / MB)
