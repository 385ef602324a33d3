"""benchmarks/gpu_check.py on a CPU: its dry run goes through every step and reports each one,
a failing or hanging step is recorded while the others run, and a real run needs CUDA."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(SCRIPT.parent))
import gpu_check  # noqa: E402

MAIN_STEPS = ["environment", "classifier", "cuda_tests", "cases", "trial_speed", "search_speed", "supernet", "search", "show"]


def _run(args: list[str], env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, cli_env) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("gpu-check")
    return _run(["--dry-run", "--out", str(out)], cli_env), out


@pytest.mark.slow
def test_dry_run_runs_and_reports_every_step(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "gpu_check.json").read_text())
    assert doc["dry_run"] is True
    steps = {s["name"]: s for s in doc["steps"]}
    assert [s["name"] for s in doc["steps"]] == MAIN_STEPS
    for name, step in steps.items():
        expected = "skipped" if name == "cuda_tests" and not torch.cuda.is_available() else "ok"
        assert step["status"] == expected, (name, step["error"])
        assert step["seconds"] > 0
    assert steps["environment"]["figures"]["torch"] == torch.__version__
    tests = steps["cuda_tests"]["figures"]
    assert tests["failed"] == tests["error"] == 0 and tests["passed"] + tests["skipped"] == len(tests["tests"]) >= 4
    assert [c["paper_mb"] for c in steps["cases"]["figures"]["cases"]] == [777, 199, 489, 393, 361, 297]
    assert steps["trial_speed"]["figures"]["speedup"] > 0
    assert set(steps["search_speed"]["figures"]["cohorts"]) == {"1", "2"}
    assert steps["supernet"]["figures"]["iterations"] == gpu_check.DRY["iterations"] and steps["supernet"]["figures"]["ms_per_iteration"] > 0
    search = steps["search"]["figures"]
    assert search["complete"] == search["paper_cases_complete"] == gpu_check.DRY["trials"]
    assert len(steps["show"]["figures"]["cases"]) == gpu_check.DRY["trials"]
    assert (out / "search.db").is_file()


def test_dry_run_markdown_and_log_have_every_step(dry_run):
    _, out = dry_run
    md = (out / "gpu_check.md").read_text()
    assert "DRY RUN" in md
    for name in MAIN_STEPS:
        assert any(line.startswith(f"| {name} | ") for line in md.splitlines()), f"no table row for {name}"
        assert f"===== {name}: exit" in (out / "gpu_check.log").read_text()
    assert "| 1 original | 389,761 |" in md


def test_a_failing_step_is_recorded_and_the_next_still_runs(tmp_path, cli_env):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run(["--dry-run", "--out", str(tmp_path / "out"), "--only", "classifier,cases,trial_speed,supernet", "--data-dir", str(empty)], cli_env)
    assert proc.returncode == 1
    steps = {s["name"]: s for s in json.loads((tmp_path / "out" / "gpu_check.json").read_text())["steps"]}
    assert steps["classifier"]["status"] == steps["cases"]["status"] == "ok"  # the shipped classifier needs no MNIST
    for name in ("trial_speed", "supernet"):  # supernet ran after trial_speed had failed
        assert steps[name]["status"] == "failed" and "MNIST" in steps[name]["error"], steps[name]


def test_a_step_past_its_limit_is_stopped_and_a_search_stopped_so_counts_as_done(tmp_path):
    hang = gpu_check.Step("hang", [sys.executable, "-c", "import time; time.sleep(60)"], 1)
    r = gpu_check.run_step(hang, 1, {}, tmp_path, lambda text: None)
    assert r.status == "timeout" and r.seconds < 20 and "limit" in r.error
    boom = gpu_check.Step("boom", [sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"], 10)
    r = gpu_check.run_step(boom, 10, {}, tmp_path, lambda text: None)
    assert r.status == "failed" and r.returncode == 3 and "boom" in r.error
    # like `gas-nas search`: SIGTERM is a clean stop with exit 143; what it did so far is its result
    search = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(143)); print('{\"complete\": 7}', flush=True); time.sleep(60)"
    step = gpu_check.Step("search", [sys.executable, "-c", search], 1, gpu_check._last_json, stop_ok=True)
    r = gpu_check.run_step(step, 1, {}, tmp_path, lambda text: None)
    assert r.status == "ok" and r.figures == {"complete": 7} and "SIGTERM" in r.note


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_real_run_without_cuda_says_so_and_writes_nothing(tmp_path, cli_env):
    proc = _run(["--out", str(tmp_path / "out")], cli_env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--dry-run" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_bad_flags_exit_2_before_any_work(tmp_path):
    for args in (["--out", str(tmp_path), "--only", "cases,bogus"], ["--out", str(tmp_path), "--budget", "0"]):
        proc = _run(args, {}, timeout=60)
        assert proc.returncode == 2 and "error:" in proc.stderr


def test_reproduction_is_packed_as_laid_out_in_the_repository(tmp_path):
    repro = tmp_path / "reproduction"
    (repro / "gas-reproduction").mkdir(parents=True)
    (repro / "gas-reproduction.md").write_text("# page\n\n- **Conclusion 1** smaller D: SUPPORTED\n")
    (repro / "gas-reproduction" / "pareto.png").write_bytes(b"png")
    figures = gpu_check._reproduction(repro, tmp_path / "r.tar.gz", dry=True)
    with tarfile.open(tmp_path / "r.tar.gz") as tar:
        names = tar.getnames()
    assert {"smoke/docs/gas-reproduction.md", "smoke/docs/gas-reproduction/pareto.png"} <= set(names)  # a smoke page never lands in docs/
    assert figures["verdicts"] == ["**Conclusion 1** smaller D: SUPPORTED"]
    (repro / "gas-reproduction.md").unlink()
    with pytest.raises(gpu_check.StepFailed):
        gpu_check._reproduction(repro, tmp_path / "r.tar.gz", dry=True)
