"""Storage URLs: password redaction, and every bad storage/study as one line, exit 2, no secret."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import optuna
import pytest
from conftest import write_tiny_space

from gas_nas.cli import main
from gas_nas.common.errors import StorageError
from gas_nas.study.storage import open_storage, redact

PG_URL = os.environ.get("GAS_NAS_TEST_POSTGRES")
needs_postgres = pytest.mark.skipif(not PG_URL, reason="no PostgreSQL: set GAS_NAS_TEST_POSTGRES=postgresql://USER:PASSWORD@HOST:PORT/DB (.ci/run does)")
SECRET = "hunter2secret"
DEAD_PG = f"postgresql://u:{SECRET}@127.0.0.1:1/db"  # nothing listens on port 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:pw@host/db", "postgresql://u:***@host/db"),
        ("postgresql+psycopg://user:p%40ss@10.0.0.1:5432/db", "postgresql+psycopg://user:***@10.0.0.1:5432/db"),
        ("failed: mysql://a:b@h/x and postgresql://c:d@h/y", "failed: mysql://a:***@h/x and postgresql://c:***@h/y"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),  # no password: unchanged
        ("sqlite:///studies/gas.db", "sqlite:///studies/gas.db"),
        ("journal:studies/gas.journal", "journal:studies/gas.journal"),
    ],
)
def test_redact_hides_url_passwords(text, expected):
    assert redact(text) == expected


def test_redact_hides_the_literal_password_anywhere():
    url = f"postgresql://u:{SECRET}@host/db"
    assert redact(f'password authentication failed ("{SECRET}")', url) == 'password authentication failed ("***")'


def test_open_storage_error_is_one_redacted_line():
    with pytest.raises(StorageError) as err:
        open_storage(DEAD_PG)
    message = str(err.value)
    assert SECRET not in message and "\n" not in message and "u:***@127.0.0.1:1" in message


# ---------------------------------------------------------------- the CLI on bad storages and studies


def _cases(root: Path) -> dict[str, tuple[list[str], Path, str]]:
    """name -> (gas-nas arguments, cwd, a fragment the one error line must contain)."""
    file_dir = root / "studies-is-a-file"
    file_dir.mkdir()
    (file_dir / "studies").write_text("not a directory\n")
    db = f"sqlite:///{root / 'other' / 'gas.db'}"
    (root / "other").mkdir()
    optuna.create_study(storage=db, study_name="other")  # read-only commands need an existing storage
    return {
        "not-a-url": (["search", "--storage", "not-a-url", "--trials", "1"], root, "is not a URL"),
        "sqlite-one-slash": (["search", "--storage", "sqlite:/x", "--trials", "1"], root, "is not a URL"),
        "postgres-unreachable": (["search", "--storage", DEAD_PG, "--trials", "1"], root, "cannot open storage postgresql://u:***@127.0.0.1:1/db"),
        "show-postgres-unreachable": (["show", "--storage", DEAD_PG, "--study", "x"], root, "cannot open storage"),
        "studies-is-a-file": (["search", "--trials", "1"], file_dir, "studies exists and is not a directory"),
        "show-missing-study": (["show", "--storage", db, "--study", "nope"], root, "no study 'nope'"),
        "export-missing-study": (["export", "--pick", "smallest", "--storage", db, "--study", "nope", "-o", "x.yaml"], root, "no study 'nope'"),
        "jobs-on-sqlite": (["search", "--jobs", "2", "--trials", "1", "--storage", db], root, "journal:studies/gas.journal"),
    }


SUBPROCESS_CASES = {"postgres-unreachable", "show-missing-study"}  # real processes; the rest run in-process


@pytest.fixture(scope="module")
def cli_errors(tmp_path_factory) -> dict[str, tuple[int, str, str, str]]:
    """name -> (exit code, stdout, stderr, fragment). A few cases run as real `gas-nas` processes
    (started together: each pays torch's import), the others through `main()` in this process,
    with Python warnings counted as stderr lines as an interpreter would print them."""
    root = tmp_path_factory.mktemp("cli-errors")
    # No named MNIST folder (one would be checked before the storage); an empty default cache.
    env = {k: v for k, v in os.environ.items() if k != "GAS_NAS_DATA"} | {"XDG_CACHE_HOME": str(root / "xdg"), "GAS_NAS_CACHE": str(root / "cache"), "OMP_NUM_THREADS": "1"}
    cases = _cases(root)
    assert sorted(cases) == sorted(CASE_NAMES)
    procs = {
        name: subprocess.Popen([sys.executable, "-m", "gas_nas.cli", *args, "--artifacts", str(root / "artifacts")], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (args, cwd, _) in cases.items() if name in SUBPROCESS_CASES
    }
    results = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("GAS_NAS_DATA", raising=False)
        for key in ("XDG_CACHE_HOME", "GAS_NAS_CACHE"):
            mp.setenv(key, env[key])
        for name, (args, cwd, fragment) in cases.items():
            if name in SUBPROCESS_CASES:
                continue
            mp.chdir(cwd)
            out, err = io.StringIO(), io.StringIO()
            with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                warnings.simplefilter("default")
                code = main([*args, "--artifacts", str(root / "artifacts")])
            shown = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
            results[name] = (code, out.getvalue(), err.getvalue() + shown, fragment)
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        results[name] = (proc.returncode, out, err, cases[name][2])
    return results


CASE_NAMES = [
    "not-a-url", "sqlite-one-slash", "postgres-unreachable", "show-postgres-unreachable",
    "studies-is-a-file", "show-missing-study", "export-missing-study", "jobs-on-sqlite",
]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_storage_or_study_is_one_line_exit_2(cli_errors, name):
    code, out, err, fragment = cli_errors[name]
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}: {err[-2000:]}"
    assert len(lines) == 1, err
    assert lines[0].startswith("gas-nas: error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert SECRET not in out + err


# ---------------------------------------------------------------- a real search with a password in its URL


@pytest.mark.postgres
@needs_postgres
def test_password_never_printed_or_written(tmp_path, cli_env, capfd):
    password = urlsplit(PG_URL).password
    if not password:
        pytest.skip("GAS_NAS_TEST_POSTGRES has no password to leak")
    space = write_tiny_space(tmp_path / "tiny.yaml")
    study = f"secret-{uuid.uuid4().hex[:10]}"
    common = ["--storage", PG_URL, "--study", study, "--artifacts", str(tmp_path / "artifacts")]
    run = subprocess.run(
        [sys.executable, "-m", "gas_nas.cli", "search", "--space", str(space), "--trials", "1", "--seed", "0", "--device", "cpu", *common],
        env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "***@" in run.stdout  # the study line names the storage, redacted
    assert main(["show", *common]) == 0
    assert main(["show", *common, "--json"]) == 0
    assert main(["export", "--trial", "0", *common, "-o", str(tmp_path / "arch.yaml")]) == 0
    shown = capfd.readouterr()
    assert (tmp_path / "arch.yaml").is_file() and "***@" in (tmp_path / "arch.yaml").read_text()
    for text in (run.stdout, run.stderr, shown.out, shown.err):
        assert password not in text
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert [p for p in written if "artifacts" in p.parts]  # the trial's sample grid and loss curves
    leaks = [str(p) for p in written if password.encode() in p.read_bytes()]
    assert not leaks, f"password written into {leaks}"


# ---------------------------------------------------------------- every form a password can take

PASSWORD_FORMS = {
    "userinfo": f"postgresql://u:{SECRET}@127.0.0.1:1/db",
    "percent-encoded": f"postgresql://u:p%40{SECRET}%2F@127.0.0.1:1/db",
    "encoded-letters": "postgresql://u:%68%75%6e%74%65%72%32%73%65%63%72%65%74@127.0.0.1:1/db",
    "unencoded-at": f"postgresql://u:p@ss@{SECRET}@127.0.0.1:1/db",
    "unencoded-slash-hash": f"postgresql://u:a/b#{SECRET}@127.0.0.1:1/db",
    "driver-scheme": f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/db",
    "query-password": f"postgresql://u@127.0.0.1:1/db?password={SECRET}",
    "query-upper-case": f"postgresql://u@127.0.0.1:1/db?connect_timeout=2&PASSWORD={SECRET}",
    "query-sslpassword": f"postgresql://u@127.0.0.1:1/db?sslmode=prefer&sslpassword={SECRET}",
    "query-passfile": f"postgresql://u@127.0.0.1:1/db?passfile=/home/{SECRET}/.pgpass",
    "query-encoded-key": f"postgresql://u@127.0.0.1:1/db?pass%77ord={SECRET}",
    "query-and-userinfo": f"postgresql://u:{SECRET}@127.0.0.1:1/db?password={SECRET}x",
    "bad-port": f"postgresql://u:{SECRET}@127.0.0.1:99999/db",
}


@pytest.mark.parametrize("form", sorted(PASSWORD_FORMS))
def test_redact_hides_every_password_form(form):
    url = PASSWORD_FORMS[form]
    for text in (url, f"could not connect to {url} (retrying)", f"{url!r}"):
        shown = redact(text, url)
        assert SECRET not in shown and "hunter" not in shown and "***" in shown, shown
    assert SECRET not in redact(url) and "***" in redact(url)


@pytest.mark.parametrize("form", sorted(PASSWORD_FORMS))
@pytest.mark.parametrize("command", [["show", "--study", "x"], ["search", "--trials", "1"]])
def test_password_from_environment_never_printed(tmp_path, monkeypatch, capsys, form, command):
    monkeypatch.setenv("GAS_NAS_STORAGE", PASSWORD_FORMS[form])
    monkeypatch.setenv("GAS_NAS_DATA", str(tmp_path))  # no MNIST: nothing may get as far as training
    monkeypatch.chdir(tmp_path)
    code = main([*command, "--artifacts", str(tmp_path / "art")])
    captured = capsys.readouterr()
    assert code == 2 and len(captured.err.strip().splitlines()) == 1, captured.err
    assert "hunter" not in captured.out + captured.err
