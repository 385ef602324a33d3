"""The read-only commands (`show`, `export`, `dashboard`) on a study built without training."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import optuna
import pytest

from gas_nas.dashboard import set_constraints
from gas_nas.record import TrialRecord
from gas_nas.results import TrialMetrics

# (size, imbalance, case, fid): fid > 100 fails the guard
ROWS = [(1.0, 1.0, "1 original", 50.0), (0.5, 0.5, "2 depthwise separable", 400.0), (2.0, 0.4, None, 60.0)]


def make_study(url: str, name: str = "s", rows=ROWS) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(storage=url, study_name=name, directions=["minimize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["d_size_mb", "imbalance"])
    for i, (size, imbalance, case, fid) in enumerate(rows):
        trial = study.ask()
        metrics = TrialMetrics(status="complete", reason="", iterations=40, d_params=int(size * 2**18), d_param_mb=size, imbalance=imbalance,
                               d_loss=0.2, g_loss=0.2, fid=fid, classes=9, entropy=2.1, class_histogram=[200] * 10,
                               classifier_accuracy=0.99, seconds=5.0, device="cpu", seed=i)
        TrialRecord(case=case, spec={"base_filters": 32, "depth": 4}, train={"recipe": "gas", "iterations": 40}, metrics=metrics,
                    feasible=fid <= 100, infeasible_reason="" if fid <= 100 else f"fid {fid:.1f} > 100").write(trial)
        set_constraints(trial, {"fid": fid - 100, "classes": 0.0, "entropy": -1.0, "finished": 0.0})
        study.tell(trial, [size, imbalance])
    return study


def run_main(argv: list[str], cwd: Path) -> dict:
    """`gas-nas ARGV` in a fresh interpreter: exit code, output and which heavy modules it loaded."""
    code = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from gas_nas.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main({argv!r})
        print(json.dumps({{"rc": rc, "out": out.getvalue(), "loaded": sorted(m for m in ("torch", "torchvision", "torchmetrics", "matplotlib") if m in sys.modules)}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1]) | {"err": proc.stderr}


def test_show_and_export_answer_without_importing_torch(tmp_path):
    """Read-only commands load no training stack (it took `show` about 6 s on a 2-core machine)."""
    make_study(f"sqlite:///{tmp_path}/s.db")
    shown = run_main(["show", "--storage", f"sqlite:///{tmp_path}/s.db", "--json"], tmp_path)
    assert shown["rc"] == 0 and shown["loaded"] == []
    assert [r["trial"] for r in json.loads(shown["out"])["front"]] == [0, 2]
    exported = run_main(["export", "--pick", "smallest", "--storage", f"sqlite:///{tmp_path}/s.db", "-o", str(tmp_path / "a.yaml")], tmp_path)
    assert exported["rc"] == 0 and exported["loaded"] == []
    assert "discriminator:" in (tmp_path / "a.yaml").read_text()
