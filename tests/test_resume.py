"""What a user sees across runs: a resumed study keeps its settings, an export trains back
exactly, every loss plot draws its curve, and bad storage or missing data create nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest

from conftest import write_tiny_space
from test_search import gas_nas
from gas_nas.models.spec import QualityConfig, TrainConfig
from gas_nas.study.record import TrialRecord
from gas_nas.study.settings import SETTINGS_ATTR, StudySettings, keep_settings, stored_settings


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, cli_env):
    """A 1-trial search at 4 iterations and seed 3, then a resume that names nothing."""
    root = tmp_path_factory.mktemp("resume")
    space = write_tiny_space(root / "tiny.yaml")
    storage = f"sqlite:///{root}/r.db"
    first = gas_nas(["search", "--trials", "1", "--iterations", "4", "--seed", "3", "--space", str(space), "--storage", storage,
                     "--study", "demo", "--artifacts", str(root / "a"), "--device", "cpu"], cli_env, root)
    second = gas_nas(["search", "--trials", "1", "--space", str(space), "--storage", storage, "--study", "demo", "--iterations", "4",
                      "--seed", "3", "--artifacts", str(root / "a"), "--device", "cpu"], cli_env, root)
    bare = gas_nas(["search", "--trials", "1", "--storage", storage, "--study", "demo", "--artifacts", str(root / "a"), "--device", "cpu"],
                   cli_env, root, check=False)
    return {"root": root, "space": space, "storage": storage, "first": first, "second": second, "bare": bare, "env": cli_env}


def test_a_resume_that_names_nothing_keeps_the_studys_budget_and_seed(resumed):
    study = optuna.load_study(study_name="demo", storage=resumed["storage"])
    settings = study.user_attrs[SETTINGS_ATTR]
    assert settings["train"]["iterations"] == 4 and settings["seed"] == 3 and settings["quality"]["n_samples"] == 64
    # the bare resume takes the study's settings, not the default space's 2000 iterations and 2000 samples
    assert resumed["bare"].returncode == 0, resumed["bare"].stderr
    assert "iterations 4 (study demo)" in resumed["bare"].stdout
    trials = [t for t in study.get_trials() if TrialRecord.of(t).metrics]
    assert len(trials) == 3
    assert {TrialRecord.of(t).metrics.iterations for t in trials} == {4}
    assert [TrialRecord.of(t).metrics.seed for t in trials] == [3 + t.number for t in trials]


def test_the_resume_hint_repeats_the_settings_the_run_named(resumed, tmp_path):
    import signal
    import time

    root, env = resumed["root"], resumed["env"]
    cmd = [sys.executable, "-m", "gas_nas.cli", "search", "--trials", "20", "--iterations", "30", "--seed", "5", "--space", str(resumed["space"]),
           "--storage", f"sqlite:///{tmp_path}/h.db", "--study", "hint", "--artifacts", str(tmp_path / "a"), "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:  # until a trial trains (the stop handler is in place)
        try:
            if any("spec" in t.user_attrs for t in optuna.load_study(study_name="hint", storage=f"sqlite:///{tmp_path}/h.db").trials):
                break
        except KeyError:
            pass
        time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    hint = err.split("Resume with: ")[1].strip()
    assert f"--space {resumed['space']}" in hint and "--iterations 30" in hint and "--seed 5" in hint


def test_a_resume_that_names_other_settings_is_refused_before_any_write(resumed):
    storage, root, env = resumed["storage"], resumed["root"], resumed["env"]
    before = [t.state for t in optuna.load_study(study_name="demo", storage=storage).trials]
    for flags, words in ((["--iterations", "5"], "train.iterations 4; this run asks train.iterations 5"),
                         (["--seed", "4", "--iterations", "4"], "seed 3; this run asks seed 4")):
        proc = gas_nas(["search", "--trials", "1", "--space", str(resumed["space"]), "--storage", storage, "--study", "demo", *flags,
                        "--artifacts", str(root / "a"), "--device", "cpu"], env, root, check=False)
        assert proc.returncode == 2 and words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert [t.state for t in optuna.load_study(study_name="demo", storage=storage).trials] == before


def test_older_studies_take_their_settings_from_their_first_trained_trial(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db", directions=["minimize", "minimize"])
    train = TrainConfig(iterations=40)
    metrics = {"status": "complete", "reason": "", "iterations": 40, "d_params": 1, "d_param_mb": 0.0, "imbalance": 0.0, "d_loss": 0.25,
               "g_loss": 0.125, "fid": 1.0, "classes": 10, "entropy": 2.3, "class_histogram": [], "classifier_accuracy": 1.0, "seconds": 1.0,
               "device": "cpu", "seed": 7 + 0}
    study.add_trial(optuna.trial.create_trial(values=[1.0, 1.0], user_attrs={"train": train.to_dict(), "metrics": metrics}))
    had = stored_settings(study)
    assert had.train == train and had.seed == 7 and had.quality is None
    wanted = StudySettings(TrainConfig(), QualityConfig(), 0)
    kept = keep_settings(study, wanted, named=set())
    assert kept.train == train and kept.seed == 7 and kept.quality == QualityConfig()
    assert study.user_attrs[SETTINGS_ATTR]["train"]["iterations"] == 40  # stored from now on
    with pytest.raises(Exception, match="train.iterations 40; this run asks train.iterations 2000"):
        keep_settings(study, wanted, named={"train"})


@pytest.mark.slow
def test_a_differentiable_resume_keeps_the_supernets_budget(tmp_path, cli_env):
    space = write_tiny_space(tmp_path / "tiny.yaml")
    storage = f"sqlite:///{tmp_path}/d.db"
    common = ["--space", str(space), "--storage", storage, "--study", "d", "--artifacts", str(tmp_path / "a"), "--device", "cpu", "--strategy", "differentiable"]
    gas_nas(["search", *common, "--iterations", "2", "--lambdas", "0.01", "--trials", "1"], cli_env, tmp_path)
    proc = gas_nas(["search", "--storage", storage, "--study", "d", "--artifacts", str(tmp_path / "a"), "--device", "cpu", "--strategy",
                    "differentiable", "--lambdas", "0.01,1", "--trials", "1"], cli_env, tmp_path)
    assert "iterations 2 (study d)" in proc.stdout
    records = optuna.load_study(study_name="d", storage=storage).user_attrs["gas_nas:supernets"]
    assert len(records) == 2 and {r["key"]["train"]["iterations"] for r in records} == {2}


def test_export_then_train_reproduces_the_trials_metrics_exactly(resumed, tmp_path):
    root, env, storage = resumed["root"], resumed["env"], resumed["storage"]
    gas_nas(["export", "--trial", "1", "--storage", storage, "--study", "demo", "-o", str(tmp_path / "t1.yaml")], env, root)
    proc = gas_nas(["train", "--arch", str(tmp_path / "t1.yaml"), "--space", str(resumed["space"]), "--device", "cpu", "--out", str(tmp_path / "rt"), "--json"], env, root)
    got = json.loads(proc.stdout)
    trial = optuna.load_study(study_name="demo", storage=storage).trials[1]
    want = TrialRecord.of(trial).metrics
    assert got["seed"] == want.seed == 4 and "seed 4 (arch file: trial 1's)" in proc.stderr
    for key in ("iterations", "d_params", "imbalance", "d_loss", "g_loss", "fid", "classes", "entropy", "d_auc", "d_spread", "duality_gap"):
        assert got[key] == getattr(want, key), key
    # --seed still wins, and a seed the file gets wrong is one line
    other = gas_nas(["train", "--arch", str(tmp_path / "t1.yaml"), "--space", str(resumed["space"]), "--seed", "0", "--device", "cpu",
                     "--out", str(tmp_path / "rt0"), "--json"], env, root)
    assert json.loads(other.stdout)["seed"] == 0
    text = (tmp_path / "t1.yaml").read_text().replace("seed: 4", "seed: -4")
    (tmp_path / "bad.yaml").write_text(text)
    bad = gas_nas(["train", "--arch", str(tmp_path / "bad.yaml"), "--device", "cpu", "--out", str(tmp_path / "rb")], env, root, check=False)
    assert bad.returncode == 2 and "metadata.metrics.seed: expected an integer" in bad.stderr


def test_every_search_trial_plots_its_fine_curve(tmp_path, mnist_dir, mnist_classifier, monkeypatch):
    import gas_nas.trial.report
    from gas_nas.models.space import load_space
    from gas_nas.study.search import Resources, SearchOptions, open_study, run_search
    from gas_nas.trial.data import load_mnist

    drawn = []
    original = gas_nas.trial.report.save_loss_plot
    monkeypatch.setattr(gas_nas.trial.report, "save_loss_plot", lambda m, path, title="", curve=None: (drawn.append(curve), original(m, path, title, curve))[1])
    space = load_space(write_tiny_space(tmp_path / "tiny.yaml", train={"iterations": 6, "log_every": 6}))
    study = open_study(space, f"sqlite:///{tmp_path}/c.db", "curve")
    real, _ = load_mnist(mnist_dir, train=True)
    held, _ = load_mnist(mnist_dir, train=False)
    run_search(study, space, SearchOptions(artifacts=str(tmp_path / "a")), Resources(real[:2000], held[:500], mnist_classifier), n_trials=1)
    assert len(drawn) == 1 and drawn[0]["steps"] == [1, 2, 3, 4, 5, 6] and len(drawn[0]["d_losses"]) == 6


def test_the_imbalance_window_is_shaded_only_where_it_is_part_of_the_run():
    from gas_nas.trial.report import loss_figure

    one = {"log_steps": [40], "d_losses": [0.3], "g_losses": [0.2], "imbalance": 0.1}
    curve = {"steps": list(range(1, 41)), "d_losses": [0.3] * 40, "g_losses": [0.2] * 40}
    assert not loss_figure(one, curve=curve).axes[0].patches  # one logged mean is the whole run: nothing to shade
    eight = {"log_steps": list(range(5, 45, 5)), "d_losses": [0.3] * 8, "g_losses": [0.2] * 8, "imbalance": 0.1}
    patches = loss_figure(eight, curve=curve).axes[0].patches
    assert len(patches) == 1 and patches[0].get_x() == 30  # the last quarter: the last 2 of 8 means


@pytest.mark.parametrize("url, words", [("postgres://u:secret@localhost/db", "use postgresql://u:***@localhost/db"),
                                        ("studies/x.db", "for a file use sqlite:///studies/x.db")])
def test_common_storage_misspellings_get_a_hint(tmp_path, cli_env, url, words):
    for cmd in (["show"], ["search", "--trials", "1"]):
        proc = gas_nas([*cmd, "--storage", url], cli_env, tmp_path, check=False)
        assert proc.returncode == 2 and words in proc.stderr and "secret" not in proc.stderr and "SQLAlchemy URL" not in proc.stderr
    assert not list(tmp_path.iterdir())


def test_a_search_without_mnist_creates_no_study(tmp_path, cli_env):
    env = {k: v for k, v in cli_env.items() if k != "GAS_NAS_DATA"} | {"XDG_CACHE_HOME": str(tmp_path / "cache"), "GAS_NAS_CACHE": str(tmp_path / "cache")}
    work = tmp_path / "work"
    work.mkdir()
    proc = gas_nas(["search", "--trials", "1"], env, work, check=False)
    assert proc.returncode == 2 and "MNIST" in proc.stderr
    assert not (work / "studies").exists()
