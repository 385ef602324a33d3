"""`gas-nas search --strategy differentiable` end to end on CPU: supernets propose trials that the
study trains after the six paper cases, once each, and a stop leaves the study resumable."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import write_tiny_space
from gas_nas.models.space import load_space
from gas_nas.models.spec import DiscriminatorSpec, load_arch
from gas_nas.study.record import TrialRecord

CASES = [c.name for c in load_space().cases]


def gas_nas(args, env, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", "gas_nas.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def searched(tmp_path_factory, cli_env):
    """A tiny differentiable search with two supernets (derive 2), then the same command again."""
    root = tmp_path_factory.mktemp("differentiable")
    space = write_tiny_space(root / "tiny.yaml", search={"derive": 2})
    common = ["--space", str(space), "--storage", f"sqlite:///{root}/d.db", "--study", "d", "--artifacts", str(root / "art"), "--device", "cpu",
              "--strategy", "differentiable", "--lambdas", "0,10"]
    first = gas_nas(["search", *common], cli_env, root)
    assert first.returncode == 0, first.stderr[-3000:]
    after_first = len(optuna.load_study(study_name="d", storage=f"sqlite:///{root}/d.db").get_trials())
    second = gas_nas(["search", *common], cli_env, root)
    assert second.returncode == 0, second.stderr[-3000:]
    study = optuna.load_study(study_name="d", storage=f"sqlite:///{root}/d.db")
    return {"root": root, "first": first, "second": second, "after_first": after_first, "study": study, "env": cli_env, "common": common}


@pytest.mark.slow
def test_the_paper_cases_come_first_then_the_proposals_as_ordinary_trials(searched):
    trials = searched["study"].get_trials()
    assert [t.user_attrs.get("case") for t in trials[:6]] == CASES
    proposed = trials[6:]
    assert 1 <= len(proposed) <= 4 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in proposed:
        record = TrialRecord.of(t)
        p = record.provenance
        assert p["strategy"] == "differentiable" and p["lambda"] in (0.0, 10.0) and p["rank"] in (0, 1)
        assert set(p["alpha_probs"]) == {"op", "downsample", "base_filters", "depth"} and p["supernet_seconds"] > 0
        assert record.metrics is not None and record.feasible is not None and len(t.values) == 2  # same objectives and guard
        assert DiscriminatorSpec.from_dict(record.spec).dense_blocks == 0
    specs = [tuple(sorted(TrialRecord.of(t).spec.items())) for t in trials]
    assert len(set(specs)) == len(specs)  # no spec twice
    assert "trials proposed by the supernets" in searched["first"].stdout and "supernet mixes op (4)" in searched["first"].stdout
    assert "fixed at the space's defaults: dense_blocks=0, norm=batch" in searched["first"].stdout


@pytest.mark.slow
def test_a_rerun_runs_no_supernet_again_and_trains_nothing_twice(searched):
    assert "supernet lambda 0:" in searched["first"].stdout and "supernet lambda 10:" in searched["first"].stdout
    assert "supernet lambda 0:" not in searched["second"].stdout and "supernet lambda 10:" not in searched["second"].stdout
    assert len(searched["study"].get_trials()) == searched["after_first"]
    records = searched["study"].user_attrs["gas_nas:supernets"]
    assert [r["key"]["lambda"] for r in records] == [0.0, 10.0] and all(len(r["trials"]) == 2 for r in records)


@pytest.mark.slow
def test_show_lists_every_proposal_with_the_supernet_that_proposed_it(searched, tmp_path):
    import json

    proc = gas_nas(["show", "--storage", f"sqlite:///{searched['root']}/d.db", "--study", "d", "--json"], searched["env"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    listed = {r["trial"]: r["origin"] for r in doc["front"] + doc["proposals"] if not r["case"]}
    proposed = {t.number for t in searched["study"].get_trials() if TrialRecord.of(t).provenance}
    assert set(listed) == proposed and all(origin.startswith("supernet lambda ") for origin in listed.values())


@pytest.mark.slow
def test_a_proposed_trial_exports_and_trains_with_train_arch(searched, tmp_path):
    trial = searched["study"].get_trials()[6]
    out = tmp_path / "proposed.yaml"
    proc = gas_nas(["export", "--storage", f"sqlite:///{searched['root']}/d.db", "--study", "d", "--trial", str(trial.number), "-o", str(out)], searched["env"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    spec, _, _ = load_arch(out)
    assert spec.to_dict() == TrialRecord.of(trial).spec
    proc = gas_nas(["train", "--arch", str(out), "--iterations", "2", "--batch-size", "8", "--device", "cpu", "--out", str(tmp_path / "run")], searched["env"], tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: trained, but fails the default quality guard at 2 iterations
    assert (tmp_path / "run" / "discriminator.pt").is_file()


@pytest.mark.parametrize("args, words", [
    (["--lambdas", "-1"], "--lambdas"),
    (["--lambdas", "nan"], "--lambdas"),
    (["--lambdas", "a,b"], "--lambdas"),
    (["--strategy", "annealing"], "--strategy"),
])
def test_bad_flags_are_one_line_and_exit_2(args, words, tmp_path, cli_env):
    proc = gas_nas(["search", "--storage", f"sqlite:///{tmp_path}/x.db", "--strategy", "differentiable", *args], cli_env, tmp_path)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.db").exists()


def test_a_space_the_supernet_cannot_mix_is_refused_before_the_study_is_written(tmp_path, cli_env):
    space = write_tiny_space(tmp_path / "s.yaml")
    doc = yaml.safe_load(space.read_text())
    doc["axes"]["norm"] = {"choices": ["batch", "spectral"], "default": "spectral"}
    space.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = gas_nas(["search", "--space", str(space), "--storage", f"sqlite:///{tmp_path}/x.db", "--strategy", "differentiable"], cli_env, tmp_path)
    assert proc.returncode == 2 and "norm" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("recipe, words", [("osgan", "one-stage updates"), ("dgl", "teacher")])
def test_a_recipe_the_supernet_cannot_train_is_refused_before_anything_runs(recipe, words, tmp_path, cli_env):
    """The supernet's loop has the recipe's losses, schedule and optimiser only: a recipe with
    one-stage updates or a teacher is refused in one line, no study, no teacher training."""
    proc = gas_nas(["search", "--storage", f"sqlite:///{tmp_path}/x.db", "--strategy", "differentiable", "--recipe", recipe], cli_env, tmp_path)
    assert proc.returncode == 2 and words in proc.stderr and "--strategy optuna" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.db").exists()


@pytest.mark.slow
def test_sigterm_during_the_supernet_phase_leaves_a_clean_resumable_study(tmp_path, cli_env):
    space = write_tiny_space(tmp_path / "slow.yaml", train={"iterations": 30})  # seconds per supernet iteration on one thread: a signal 1 s in lands mid-supernet
    storage = f"sqlite:///{tmp_path}/i.db"
    common = ["--space", str(space), "--storage", storage, "--artifacts", str(tmp_path / "a"), "--strategy", "differentiable", "--lambdas", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "gas_nas.cli", "search", *common], env=cli_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # the supernet has started
        if line.startswith("supernet lambda 1:") or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "during the supernet phase" in err and "Resume with: gas-nas search" in err and "--strategy differentiable" in err
    study = optuna.load_study(study_name="gas", storage=storage)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert [t.user_attrs.get("case") for t in study.get_trials(states=(TrialState.WAITING,))] == CASES
    assert not study.user_attrs.get("gas_nas:supernets")
    proc = gas_nas(["search", "--trials", "1", *common], cli_env, tmp_path)  # the supernet again, then one trial
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="gas", storage=storage)
    trials = study.get_trials()
    assert [t.user_attrs.get("case") for t in trials[:6]] == CASES and trials[0].state == TrialState.COMPLETE
    assert not study.get_trials(states=(TrialState.RUNNING,)) and all(t.state == TrialState.WAITING for t in trials[1:])
    [record] = study.user_attrs["gas_nas:supernets"]
    [number] = record["trials"]  # its proposal: a new trial queued after the cases, or a paper case it coincides with
    assert number < 6 or TrialRecord.of(trials[number]).provenance["lambda"] == 1.0


def _evidence_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("differentiable_page", Path(__file__).resolve().parent.parent / "docs" / "differentiable.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_evidence_pages_hypervolume_and_pareto_ranks():
    page = _evidence_script()
    # two points on a staircase under reference (4, 4): (1, 3) adds 3 x 1, (2, 1) adds 2 x 2
    assert page.hypervolume([(1, 3), (2, 1)], (4, 4)) == pytest.approx(3 + 4)
    assert page.hypervolume([(1, 3), (2, 1), (3, 3.5), (5, 0)], (4, 4)) == pytest.approx(7)  # dominated and outside points add nothing
    assert page.hypervolume([], (4, 4)) == 0
    assert page.pareto_ranks([(1, 3), (2, 1), (3, 3.5), (2, 2), (1, 3)]) == [1, 1, 3, 2, 1]


def test_the_evidence_pages_front_by_compute_counts_a_trial_once_its_compute_fits():
    page = _evidence_script()
    # free paper cases, then a 10 s trial that found nothing and a 20 s one that found (1, 1)
    trials = [(0.0, (2.0, 3.0)), (10.0, None), (20.0, (1.0, 1.0))]
    assert page.hypervolume_by_compute(trials, [0, 29.9, 30], (4, 4)) == pytest.approx([2, 2, 9])
