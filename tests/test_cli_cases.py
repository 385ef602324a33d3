"""`gas-nas cases`: table, JSON, written architecture files, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

from gas_nas.cli import main
from gas_nas.models.networks import build_discriminator
from gas_nas.models.space import load_space
from gas_nas.models.spec import load_arch
from gas_nas.trial.metrics import param_count


def test_cases_json_lists_six_in_paper_order(capsys):
    assert main(["cases", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["paper_mb"] for r in rows] == [777, 199, 489, 393, 361, 297]
    for row, case in zip(rows, load_space().cases):
        assert row["params"] == param_count(build_discriminator(case.spec))
        assert abs(row["param_mb"] - row["params"] * 4 / 2**20) < 1e-5


def test_cases_table_shows_names_and_paper_sizes(capsys):
    assert main(["cases"]) == 0
    out = capsys.readouterr().out
    assert "1 original" in out and "6 inception k=8" in out and "389,761" in out and "777" in out


def test_cases_write_gives_files_that_rebuild_each_case(tmp_path, capsys):
    assert main(["cases", "--write", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    files = sorted(tmp_path.glob("*.yaml"))
    assert len(files) == 6
    for row in rows:
        spec, train, meta = load_arch(tmp_path / f"{row['slug']}.yaml")
        assert param_count(build_discriminator(spec)) == row["params"]
        assert meta["case"] == row["name"] and train.iterations == 2000


def test_bad_space_exits_2_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("axes:\n  conv: {choices: []}\n")
    proc = subprocess.run([sys.executable, "-m", "gas_nas.cli", "cases", "--space", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert str(bad) in proc.stderr and "axes.conv.choices" in proc.stderr


def test_unknown_flag_exits_2():
    proc = subprocess.run([sys.executable, "-m", "gas_nas.cli", "cases", "--colour"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
