"""docs/reproduce.py end to end on a CPU-sized budget (--tiny), and its refusal to overwrite docs/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "reproduce.py"
PAPER_MB = {"1 original": "777", "2 depthwise+inception": "199", "3 inception k=32": "489",
            "4 depthwise+inception+dense": "393", "5 inception k=16": "361", "6 inception k=8": "297"}

pytestmark = pytest.mark.slow  # minutes of CPU: the full suite runs it, `-m "not slow"` skips it


def _run(args: list[str], env: dict, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_page(tmp_path_factory: pytest.TempPathFactory, cli_env: dict) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("reproduction")
    proc = _run(["--tiny", "--out", str(out), "--storage", f"sqlite:///{out}/r.db", "--device", "cpu"], cli_env, cwd=out)
    return out, proc


def test_tiny_run_writes_the_page(tiny_page):
    out, proc = tiny_page
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = out / "gas-reproduction.md"
    text = page.read_text()
    assert "SMOKE TEST — tiny CPU budget, not a reproduction" in text
    rows = {line.split("|")[1].strip(): line for line in case_table(text)}
    for name, mb in PAPER_MB.items():
        assert name in rows, f"no table row for {name!r}"
        assert rows[name].split("|")[2].strip() == mb
    assert "1 original + leaky_relu" in rows
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "gas-reproduction/pareto.png" in images
    assert len(images) >= 8  # seven sample grids and the front
    for rel in images:
        assert (out / rel).is_file(), f"page references missing {rel}"
    for n in (1, 2, 3):
        assert re.search(rf"^- \*\*Conclusion {n}\*\* .*: (HOLDS|CONTRADICTED|PENDING)", text, re.M), f"no verdict line {n}"
    assert not (ROOT / "docs" / "gas-reproduction.md").exists() or "SMOKE TEST" not in (ROOT / "docs" / "gas-reproduction.md").read_text()
    assert not list(out.glob("search_spaces/found/*.yaml")), "--tiny must not export architectures"


def section(text: str, heading: str) -> str:
    """The page's text from `heading` to the next heading."""
    start = text.index(heading) + len(heading)
    end = text.find("\n#", start)
    return text[start:] if end < 0 else text[start:end]


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| case")]


def case_table(text: str) -> list[str]:
    return table_rows(section(text, "## The six GAS discriminators"))


def run_rows(text: str) -> list[str]:
    """Every run's row without its last column (minutes: wall time, which differs between runs)."""
    return [line.rsplit("|", 2)[0] for line in table_rows(section(text, "### Every run"))]


def test_a_stopped_run_resumes_with_only_the_missing_runs_and_the_same_tables(tiny_page, cli_env: dict, tmp_path: Path):
    """Stopped after 5 of its 14 runs (--max-runs), the same command trains the other 9 only, and
    its page's tables equal those of the uninterrupted run (the fixture's; its search aside)."""
    reference = (tiny_page[0] / "gas-reproduction.md").read_text()
    args = ["--tiny", "--trials", "0", "--out", str(tmp_path), "--device", "cpu"]
    first = _run([*args, "--max-runs", "5"], cli_env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    runs = tmp_path / "gas-reproduction" / "runs"
    stored = {p.name: p.read_bytes() for p in runs.glob("*.json")}
    assert len(stored) == 5 and len(list(runs.glob("*.png"))) == 5
    partial = (tmp_path / "gas-reproduction.md").read_text()
    assert "runs stored:** 5 of 14" in partial and "PENDING" in partial
    assert len(run_rows(partial)) == 5
    second = _run(args, cli_env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "5 of 14 runs stored" in second.stdout and "training 9 now" in second.stdout
    assert {p.name: p.read_bytes() for p in runs.glob("*.json") if p.name in stored} == stored  # not retrained
    assert len(list(runs.glob("*.json"))) == 14
    page = (tmp_path / "gas-reproduction.md").read_text()
    assert case_table(page) == case_table(reference)
    assert run_rows(page) == run_rows(reference) and len(run_rows(page)) == 14
    assert section(page, "## Verdicts") == section(reference, "## Verdicts")
    assert "runs stored:** 14 of 14" in page and "Not run (`--trials 0`)" in page
    third = _run(args, cli_env, cwd=tmp_path)  # everything stored: nothing to train
    assert third.returncode == 0 and "training 0 now" in third.stdout


def test_tiny_refuses_the_docs_folder(cli_env: dict, tmp_path: Path):
    proc = _run(["--tiny", "--out", str(ROOT / "docs"), "--storage", f"sqlite:///{tmp_path}/r.db", "--device", "cpu"], cli_env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "--tiny" in proc.stderr
    default = _run(["--tiny", "--device", "cpu"], cli_env, cwd=ROOT, timeout=120)  # --out defaults to docs
    assert default.returncode == 2
    assert not (tmp_path / "r.db").exists()
