"""Hostile input: every bad file, flag, path or storage is one stderr line and exit 2, read-only
commands change nothing, and no password reaches any output."""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from gas_nas.cli import main
from gas_nas.common.errors import DataError, SpaceError
from gas_nas.models.space import DEFAULT_SPACE, load_space
from gas_nas.models.spec import DiscriminatorSpec, read_yaml
from gas_nas.trial.data import IMAGE_MAGIC, parse_idx

SECRET = "hunter2secret"


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_refused(argv: list[str], fragment: str) -> str:
    code, out, err = run_cli(argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, err)
    assert fragment in lines[0] and "Traceback" not in out + err, lines[0]
    return lines[0]


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """cwd in tmp, and an empty MNIST folder: any command that got as far as training stops there."""
    empty = tmp_path / "no-mnist"
    empty.mkdir()
    monkeypatch.setenv("GAS_NAS_DATA", str(empty))
    monkeypatch.delenv("GAS_NAS_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------- reading YAML


def _yaml_files(root: Path) -> dict[str, tuple[Path, str]]:
    def write(name: str, data: str | bytes) -> Path:
        path = root / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    fifo = root / "fifo.yaml"
    os.mkfifo(fifo)
    aliases = "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 40))
    return {
        "fifo": (fifo, "not a regular file"),
        "dev-zero": (Path("/dev/zero"), "not a regular file"),
        "directory": (root, "not a regular file"),
        "missing": (root / "missing.yaml", "cannot read"),
        "too-big": (write("big.yaml", "#" * (5 * 2**20)), "bytes"),
        "utf-16": (write("u16.yaml", "name: x\n".encode("utf-16")), "not UTF-8"),
        "latin-1": (write("latin.yaml", "name: caf\xe9\n".encode("latin-1")), "not UTF-8"),
        "deep-flow": (write("deep.yaml", "a: " + "[" * 500 + "]" * 500), "nested deeper than"),
        "deep-block": (write("block.yaml", "".join("  " * i + f"k{i}:\n" for i in range(500))), "nested deeper than"),
        "deep-aliases": (write("alias.yaml", aliases), "nested deeper than"),
        "duplicate-key": (write("dup.yaml", "name: a\ntrain: {lr: 0.1, lr: 0.2}\n"), "duplicate key 'lr'"),
        "bad-date": (write("date.yaml", "name: 2024-02-30\n"), "not valid YAML"),
        "python-tag": (write("tag.yaml", "name: !!python/object/apply:os.system [true]\n"), "not valid YAML"),
    }


@pytest.fixture(scope="module")
def yaml_files(tmp_path_factory):
    return _yaml_files(tmp_path_factory.mktemp("yaml"))


@pytest.mark.parametrize("name", ["fifo", "dev-zero", "directory", "missing", "too-big", "utf-16", "latin-1", "deep-flow",
                                  "deep-block", "deep-aliases", "duplicate-key", "bad-date", "python-tag"])
def test_bad_yaml_file_is_one_line_naming_the_file(yaml_files, name):
    path, fragment = yaml_files[name]
    with pytest.raises(SpaceError) as err:
        read_yaml(path)
    assert str(path) in str(err.value) and fragment in str(err.value) and "\n" not in str(err.value)
    assert_refused(["cases", "--space", str(path)], fragment)


def test_yaml_merge_keys_still_work(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {a: 1}\nother: {<<: *b, c: 2}\n")
    assert read_yaml(path)["other"] == {"a": 1, "c": 2}


# ---------------------------------------------------------------- the schema's ranges


def _space_with(tmp_path: Path, section: str, key: str, value) -> Path:
    doc = yaml.safe_load(DEFAULT_SPACE.read_text())
    doc[section][key] = value
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("section", "key", "value", "fragment"),
    [
        ("quality", "max_fid", math.nan, "quality.max_fid: must be a finite number >= 0"),
        ("quality", "max_fid", -1.0, "quality.max_fid: must be a finite number >= 0"),
        ("quality", "min_entropy", math.inf, "quality.min_entropy: must be a finite number >= 0"),
        ("quality", "n_samples", 10**7, "between 2 and 10000"),
        ("train", "lr", math.inf, "train.lr: must be a finite number > 0"),
        ("train", "lr", math.nan, "train.lr: must be a finite number > 0"),
        ("train", "z_dim", 10**9, "train.z_dim: must be between 1 and 4096"),
        ("train", "batch_size", 10**9, "train.batch_size: must be between 1 and 4096"),
        ("train", "iterations", 10**9, "train.iterations: must be between 1 and 1000000"),
    ],
)
def test_numbers_out_of_range_are_refused_with_their_cap(tmp_path, section, key, value, fragment):
    with pytest.raises(SpaceError, match=fragment.replace(".", r"\.")):
        load_space(_space_with(tmp_path, section, key, value))


def test_paper_case_outside_a_fixed_axis_is_refused(tmp_path):
    doc = yaml.safe_load(DEFAULT_SPACE.read_text())
    doc["seeds"][0]["arch"]["output"] = "linear"  # the axis allows only sigmoid
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert_refused(["cases", "--space", str(path)], "seeds[0].arch.output: 'linear' is outside the space (one of sigmoid)")


def test_space_without_cases_shows_none(tmp_path, capsys):
    path = tmp_path / "bare.yaml"
    path.write_text("name: bare\n")
    assert main(["cases", "--space", str(path)]) == 0
    assert "no paper cases" in capsys.readouterr().out
    assert main(["cases", "--space", str(path), "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"


def test_space_name_with_control_characters_is_refused(tmp_path):
    path = tmp_path / "ctl.yaml"
    path.write_text('name: "evil\\e[2J"\n')
    line = assert_refused(["cases", "--space", str(path)], "name: expected 1 to 200 printable characters")
    assert "\x1b" not in line


def test_idx_file_declaring_zero_items_is_a_data_error(tmp_path):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(IMAGE_MAGIC.to_bytes(4, "big") + (0).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
    with pytest.raises(DataError, match="is empty"):
        parse_idx(path, IMAGE_MAGIC)


# ---------------------------------------------------------------- flags and output paths


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train", "--arch", "a.yaml", "--seed", "-1"], "--seed: expected an integer in 0..4294967295, got -1"),
        (["train", "--arch", "a.yaml", "--seed", "4294967296"], "--seed: expected an integer in 0..4294967295"),
        (["train", "--arch", "a.yaml", "--batch-size", "100000"], "--batch-size: expected an integer in 1..4096"),
        (["search", "--trials", "3", "--until", "5"], "--until: not allowed with argument --trials"),
        (["search", "--study", "evil\x1b[2J"], "--study: expected 1 to 200 printable characters"),
        (["dashboard", "--port", "99999"], "--port: expected an integer in 1..65535"),
        (["search", "--jobs", "100000"], "--jobs: expected an integer in 1..64"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_flags_are_one_line(no_data, argv, fragment):
    line = assert_refused(argv, fragment)
    assert "\x1b" not in line


def test_version_prints_the_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "gas-nas 0.1.0"


def test_help_and_usage_errors_import_neither_torch_nor_optuna():
    for argv in (["--help"], ["--version"], ["search", "--seed", "-1"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "gas_nas.cli", *argv], capture_output=True, text=True)
        modules = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert proc.returncode in (0, 2) and "gas_nas" in modules
        assert not modules & {"torch", "optuna", "numpy"}, argv


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train", "--arch", "a.yaml", "--out", "a-file"], "--out a-file: exists and is not a directory"),
        (["train", "--arch", "a.yaml", "--out", "a-file/run"], "is not a directory"),
        (["cases", "--write", "a-file"], "--write a-file: exists and is not a directory"),
        (["search", "--trials", "1", "--artifacts", "a-file", "--storage", "sqlite:///db/s.db"], "--artifacts a-file: exists and is not a directory"),
        (["export", "--trial", "0", "-o", "a-file", "--storage", "sqlite:///db/s.db"], "--output a-file: file exists; pass --force"),
        (["export", "--trial", "0", "-o", ".", "--storage", "sqlite:///db/s.db"], "--output"),
    ],
)
def test_unusable_output_paths_are_refused_before_any_work(no_data, argv, fragment):
    (no_data / "a-file").write_text("keep me\n")
    assert_refused(argv, fragment)
    assert (no_data / "a-file").read_text() == "keep me\n"
    assert not (no_data / "db").exists() and not (no_data / "studies").exists()  # no storage created


def test_named_mnist_folder_is_checked_before_the_study_is_created(no_data):
    assert_refused(["search", "--trials", "1", "--storage", "sqlite:///db/s.db"], "lacks train-images-idx3-ubyte")
    assert not (no_data / "db").exists()


# ---------------------------------------------------------------- read-only commands


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "argv",
    [["show"], ["show", "--json"], ["export", "--trial", "0", "-o", "out.yaml"], ["dashboard"]],
)
def test_read_only_commands_leave_a_foreign_database_untouched(no_data, argv):
    other = no_data / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE accounts (id INTEGER, name TEXT)")
    con.execute("INSERT INTO accounts VALUES (1, 'alice')")
    con.commit()
    con.close()
    before, files = _sha(other), sorted(os.listdir(no_data))
    assert_refused([*argv, "--storage", f"sqlite:///{other}"], "not a gas-nas/Optuna storage")
    assert _sha(other) == before and sorted(os.listdir(no_data)) == files


@pytest.mark.parametrize("command", [["show"], ["export", "--trial", "0", "-o", "out.yaml"], ["dashboard"]])
@pytest.mark.parametrize("url", ["sqlite:///missing/dir/s.db", "journal:missing/s.journal"])
def test_read_only_commands_never_create_a_missing_storage(no_data, command, url):
    assert_refused([*command, "--storage", url], "does not exist")
    assert not (no_data / "missing").exists() and not (no_data / "studies").exists()


def test_read_only_commands_refuse_files_that_are_not_storages(no_data):
    text = no_data / "notes.txt"
    text.write_text("hello\n")
    before = _sha(text)
    assert_refused(["show", "--storage", f"sqlite:///{text}"], "is not an SQLite database")
    assert_refused(["show", "--storage", f"journal:{text}"], "is not an Optuna journal")
    assert _sha(text) == before


# ---------------------------------------------------------------- export and dashboard on a study made by hand


@pytest.fixture
def made_study(no_data) -> str:
    """A study with a FAIL trial (0) and an infeasible COMPLETE one (1), without training anything."""
    url = f"sqlite:///{no_data / 'made.db'}"
    study = optuna.create_study(storage=url, study_name="made", directions=["minimize", "minimize"])
    spec = DiscriminatorSpec().to_dict()
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"spec": spec, "fail_reason": "diverged at iteration 7"}))
    study.add_trial(optuna.trial.create_trial(values=[1.5, 0.2], user_attrs={"spec": spec, "feasible": False, "infeasible_reason": "fid 300 > 60"}))
    return url


def test_export_refuses_a_failed_trial(made_study, no_data):
    assert_refused(["export", "--trial", "0", "--storage", made_study, "-o", "x.yaml"], "trial 0 is FAIL: diverged at iteration 7")
    assert not (no_data / "x.yaml").exists()


def test_export_warns_once_for_an_infeasible_trial_and_needs_force_to_overwrite(made_study, no_data):
    code, out, err = run_cli(["export", "--trial", "1", "--storage", made_study, "-o", "x.yaml"])
    assert code == 0 and err.strip().splitlines() == ["gas-nas: warning: trial 1 is infeasible (fid 300 > 60); exporting it anyway"]
    first = (no_data / "x.yaml").read_text()
    assert_refused(["export", "--trial", "1", "--storage", made_study, "-o", "x.yaml"], "file exists; pass --force")
    assert run_cli(["export", "--trial", "1", "--storage", made_study, "-o", "x.yaml", "--force"])[0] == 0
    assert (no_data / "x.yaml").read_text() == first


@pytest.fixture
def served(monkeypatch):
    """The dashboard's server (bottle's, as optuna-dashboard runs it) replaced by a recorder, so the command returns at once."""
    import bottle

    calls = []
    monkeypatch.setattr(bottle, "run", lambda app, **kw: calls.append(kw))
    return calls


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_warns_when_listening_beyond_loopback(made_study, served):
    port = _free_port()
    code, out, err = run_cli(["dashboard", "--storage", made_study, "--host", "0.0.0.0", "--port", str(port)])
    assert code == 0 and served[0]["host"] == "0.0.0.0"
    assert err.strip().splitlines() == [f"gas-nas: warning: --host 0.0.0.0 is not loopback: anyone who can reach port {port} can read and change study 'made'"]
    code, out, err = run_cli(["dashboard", "--storage", made_study, "--port", str(port)])
    assert code == 0 and err == ""


def test_dashboard_refuses_busy_ports_and_unknown_hosts(made_study, served):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert_refused(["dashboard", "--storage", made_study, "--port", str(busy.getsockname()[1])], "cannot listen on 127.0.0.1")
    assert_refused(["dashboard", "--storage", made_study, "--host", "no-such-host.invalid"], "--host 'no-such-host.invalid': cannot resolve it")
    assert not served


@pytest.mark.parametrize(
    ("error", "fragment"),
    [
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 400000000000 bytes."), "out of memory"),
        (MemoryError(), "out of memory"),
        (OSError(28, "No space left on device", "runs/train/generator.pt"), "No space left on device (runs/train/generator.pt)"),
    ],
)
def test_resource_failures_during_work_are_one_line(no_data, monkeypatch, error, fragment):
    import gas_nas.study.cases

    def fail(space):
        raise error

    monkeypatch.setattr(gas_nas.study.cases, "case_rows", fail)
    assert_refused(["cases"], fragment)


def test_a_file_written_atomically_is_old_or_new_never_half(tmp_path):
    """Every file others may read meanwhile (checkpoints, evidence records, artifacts, pages) is
    written through `atomic_write`: an error mid-write keeps the old file and leaves no part file."""
    from gas_nas.common.paths import atomic_path, atomic_write

    target = tmp_path / "sub" / "record.json"
    with atomic_write(target) as f:
        f.write("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("ne")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and sorted(p.name for p in target.parent.iterdir()) == ["record.json"]
    with atomic_path(tmp_path / "grid.png") as part:
        assert part.suffix == ".png" and part.parent == tmp_path  # beside it, with the suffix writers pick a format by
        part.write_bytes(b"png")
    assert (tmp_path / "grid.png").read_bytes() == b"png" and not part.exists()
