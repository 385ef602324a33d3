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

from optuna.artifacts import FileSystemArtifactStore

from gas_nas.cli import main
from gas_nas.study.dashboard import set_constraints
from gas_nas.study.record import TrialRecord
from gas_nas.study.search import ARTIFACTS_ATTR, record_artifacts
from gas_nas.trial.results import TrialMetrics

# (size, imbalance, case, fid): fid > 100 fails the guard
PNG = b"\x89PNG\r\n\x1a\n-not-a-real-image"
ROWS = [(1.0, 1.0, "1 original", 50.0), (0.5, 0.5, "2 depthwise separable", 400.0), (2.0, 0.4, None, 60.0)]


def make_study(url: str, name: str = "s", rows=ROWS, artifacts: Path | None = None) -> optuna.Study:
    """A study as a search leaves it; with `artifacts`, each trial uploads a PNG there and the
    study records the folder as `gas-nas search` does."""
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
        if artifacts is not None:
            artifacts.mkdir(parents=True, exist_ok=True)
            png = artifacts.parent / "samples.png"
            png.write_bytes(PNG)
            optuna.artifacts.upload_artifact(artifact_store=FileSystemArtifactStore(str(artifacts)), file_path=str(png), study_or_trial=trial)
        study.tell(trial, [size, imbalance])
    if artifacts is not None:
        record_artifacts(study, url, artifacts)
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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(monkeypatch):
    """`gas-nas dashboard` with the server replaced: what it would serve, and its stderr."""
    import gas_nas.study.dashboard

    seen = {}
    monkeypatch.setattr(gas_nas.study.dashboard, "serve", lambda storage, host, port, artifact_store=None: seen.update(store=artifact_store))

    def run(argv, capsys):
        assert main(["dashboard", "--port", str(free_port()), *argv]) == 0
        seen["err"] = capsys.readouterr().err
        return seen

    return run


def _first_artifact(study: optuna.Study) -> str:
    return optuna.artifacts.get_all_artifact_meta(study.trials[0], storage=study._storage)[0].artifact_id


def test_dashboard_finds_the_artifacts_the_search_recorded_from_any_folder(tmp_path, monkeypatch, served, capsys):
    """The folder is stored relative to the SQLite file, so a copy of both works elsewhere."""
    (tmp_path / "studies").mkdir()
    study = make_study(f"sqlite:///{tmp_path}/studies/s.db", artifacts=tmp_path / "studies" / "artifacts")
    assert study.user_attrs[ARTIFACTS_ATTR] == "artifacts"
    moved = tmp_path / "moved"
    (tmp_path / "studies").rename(moved)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    seen = served(["--storage", f"sqlite:///{moved}/s.db"], capsys)
    assert seen["err"] == ""
    with seen["store"].open_reader(_first_artifact(study)) as f:
        assert f.read() == PNG


def test_dashboard_says_in_one_line_which_folder_lacks_the_artifacts(tmp_path, monkeypatch, served, capsys):
    study = make_study(f"sqlite:///{tmp_path}/s.db", artifacts=tmp_path / "art")
    monkeypatch.chdir(tmp_path)
    seen = served(["--storage", "sqlite:///s.db", "--artifacts", "nowhere"], capsys)  # --artifacts wins over the record
    assert seen["store"] is None
    assert seen["err"].count("\n") == 1 and "warning: no artifact folder nowhere (--artifacts)" in seen["err"]
    (tmp_path / "empty").mkdir()
    seen = served(["--storage", "sqlite:///s.db", "--artifacts", "empty"], capsys)
    assert "empty (--artifacts) holds none of the study's 3 artifacts" in seen["err"] and seen["err"].count("\n") == 1
    (tmp_path / "art" / _first_artifact(study)).unlink()
    seen = served(["--storage", "sqlite:///s.db"], capsys)
    assert f"{tmp_path / 'art'} (recorded by the study's search) holds only 2 of the study's 3 artifacts" in seen["err"]


def test_a_study_without_a_record_falls_back_to_the_default_folder(tmp_path, monkeypatch, served, capsys):
    """Studies from before the record: studies/artifacts under the current folder, as before."""
    study = make_study(f"sqlite:///{tmp_path}/s.db", artifacts=tmp_path / "studies" / "artifacts")
    study.set_user_attr(ARTIFACTS_ATTR, "")
    monkeypatch.chdir(tmp_path)
    seen = served(["--storage", "sqlite:///s.db"], capsys)
    assert seen["err"] == "" and seen["store"] is not None
