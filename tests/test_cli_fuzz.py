"""Property: `gas-nas` itself, given generated flags, paths and files, exits 0 or 2, says at most
one stderr line when it refuses, and never shows a traceback. Nothing trains: the named MNIST
folder is empty, so a command that gets that far stops with its one-line data error."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import traceback
from pathlib import Path

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gas_nas.cli import main
from gas_nas.models.space import DEFAULT_SPACE
from gas_nas.models.spec import DiscriminatorSpec, save_arch


def _files(root: Path) -> list[str]:
    """Inputs a hostile user might pass as any path flag."""
    root.mkdir()
    (root / "plain.txt").write_text("just text\n")
    (root / "empty.yaml").write_text("")
    (root / "list.yaml").write_text("- a\n- b\n")
    (root / "utf16.yaml").write_bytes("name: x\n".encode("utf-16"))
    (root / "deep.yaml").write_text("a: " + "[" * 300 + "]" * 300)
    (root / "dup.yaml").write_text("name: a\nname: b\n")
    (root / "noseeds.yaml").write_text("name: bare\n")
    doc = yaml.safe_load(DEFAULT_SPACE.read_text())
    doc["train"].update(iterations=2, batch_size=4)
    (root / "space.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    doc["quality"]["max_fid"] = -1
    (root / "negative.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    save_arch(root / "arch.yaml", DiscriminatorSpec())
    os.mkfifo(root / "fifo")
    con = sqlite3.connect(root / "foreign.db")
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    study = optuna.create_study(storage=f"sqlite:///{root / 'study.db'}", study_name="s", directions=["minimize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[1.0, 0.5], user_attrs={"spec": DiscriminatorSpec().to_dict(), "feasible": True}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    paths = [str(p) for p in sorted(root.iterdir())]
    return paths + [str(root), str(root / "missing" / "x.yaml"), str(root / "plain.txt" / "below"), "/dev/zero", "/dev/null", "", "."]


def _urls(root: Path) -> list[str]:
    return [
        f"sqlite:///{root / 'study.db'}", f"sqlite:///{root / 'foreign.db'}", f"sqlite:///{root / 'plain.txt'}",
        f"sqlite:///{root / 'missing' / 'x.db'}", "sqlite://", "sqlite:/x", f"journal:{root / 'plain.txt'}",
        "postgresql://u:pw@127.0.0.1:1/db", "postgresql://u:p@w@127.0.0.1:1/db", "postgresql://u@127.0.0.1:99999/db?password=pw",
        "mysql://u:pw@127.0.0.1:1/db", "not-a-url", "http://example.invalid/", "",
    ]


TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
NUMBER = st.integers(-(2**40), 2**40).map(str)


def _argv(paths: list[str], urls: list[str]):
    path = st.sampled_from(paths) | TEXT
    value = st.one_of(path, NUMBER, TEXT)
    flags = {
        "cases": {"--space": path, "--write": path, "--json": None},
        "train": {"--arch": path, "--space": path, "--out": path, "--seed": NUMBER, "--iterations": NUMBER, "--batch-size": NUMBER,
                  "--device": st.sampled_from(["cpu", "cuda", "auto", "tpu", "cuda:0", "cuda:7", "cuda:"]), "--data-dir": path, "--json": None},
        "search": {"--trials": NUMBER, "--until": NUMBER, "--jobs": NUMBER, "--space": path, "--storage": st.sampled_from(urls) | TEXT,
                   "--study": st.sampled_from(["s", "fresh"]) | TEXT, "--artifacts": path, "--seed": NUMBER, "--sampler": st.sampled_from(["tpe", "gp", "x"]), "--quiet": None},
        "show": {"--storage": st.sampled_from(urls), "--study": st.sampled_from(["s", "nope"]) | TEXT, "--json": None},
        "export": {"--trial": NUMBER | st.sampled_from(["0", "1"]), "--pick": st.sampled_from(["smallest", "balanced", "worst"]),
                   "--storage": st.sampled_from(urls), "--study": st.sampled_from(["s"]) | TEXT, "-o": path, "--force": None},
        "dashboard": {"--storage": st.sampled_from(urls), "--host": st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "no-such.invalid", "999.0.0.1"]) | TEXT,
                      "--port": NUMBER | st.sampled_from(["0", "65535", "65536"])},
    }

    @st.composite
    def argv(draw):
        command = draw(st.sampled_from(sorted(flags)))
        required = {"train": ["--arch"], "export": ["-o"]}.get(command, []) if draw(st.integers(0, 9)) else []
        chosen = required + draw(st.lists(st.sampled_from(sorted(set(flags[command]) - set(required))), max_size=5, unique=True))
        out = [command]
        for flag in chosen:
            out.append(flag)
            if flags[command][flag] is not None:
                out.append(draw(flags[command][flag]))
        if draw(st.booleans()):  # sometimes a stray word or flag
            out.insert(draw(st.integers(0, len(out))), draw(value))
        return out

    return argv()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    files = root / "files"
    return root, _files(files), _urls(files)


def test_cli_exits_0_or_2_with_one_line_and_no_traceback(world, monkeypatch):
    import bottle

    root, paths, urls = world
    (root / "no-mnist").mkdir(exist_ok=True)
    (root / "cwd").mkdir(exist_ok=True)
    monkeypatch.setenv("GAS_NAS_DATA", str(root / "no-mnist"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "xdg"))
    monkeypatch.delenv("GAS_NAS_STORAGE", raising=False)
    monkeypatch.chdir(root / "cwd")
    monkeypatch.setattr(bottle, "run", lambda *a, **k: None)  # a valid dashboard returns at once

    @settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(argv=_argv(paths, urls))
    def check(argv):
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
        except BaseException:  # noqa: BLE001 - the property is that nothing escapes main()
            pytest.fail(f"gas-nas {argv!r} raised:\n{traceback.format_exc()}")
        lines = err.getvalue().strip().splitlines()
        assert code in (0, 2), (argv, code, err.getvalue())
        assert code == 0 or len(lines) == 1, (argv, err.getvalue())
        assert "Traceback" not in out.getvalue() + err.getvalue()

    check()
