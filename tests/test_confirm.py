"""`gas-nas confirm`: front members retrained with more seeds, recorded in a companion study,
resumable, never trained twice; show, export and the plot use the seeds' mean and spread, and
a trial that fails the guard on most seeds leaves gas-nas's front."""

from __future__ import annotations

import json
import warnings

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from gas_nas.cli import main
from gas_nas.common.errors import GasNasError
from gas_nas.common.interrupt import Interrupted
from gas_nas.models.spec import DiscriminatorSpec, QualityConfig, TrainConfig
from gas_nas.study.confirm import _claim, plan_confirm, queue, run_confirm
from gas_nas.study.confirmation import CONFIRMS, SEED, SEED_STEP, companion, confirmations, extra_seeds, trusted_front
from gas_nas.study.dashboard import constraint_attrs, study_figure, trial_note
from gas_nas.study.record import TrialRecord
from gas_nas.study.search import SearchOptions, pick_trial
from gas_nas.study.settings import SETTINGS_ATTR, StudySettings
from gas_nas.trial.guard import CONSTRAINT_NAMES
from gas_nas.trial.results import TrialMetrics

from conftest import write_tiny_space


@pytest.fixture
def cli_here(monkeypatch, cli_env):
    for key in ("GAS_NAS_DATA", "GAS_NAS_CACHE"):
        monkeypatch.setenv(key, cli_env[key])


# ---------------------------------------------------------------- a made-up study (no training)


def _metrics(seed: int, fid: float, imbalance: float) -> TrialMetrics:
    return TrialMetrics(status="complete", reason="", iterations=3, d_params=100, d_param_mb=0.01, imbalance=imbalance, d_loss=0.3, g_loss=0.2,
                        fid=fid, classes=10, entropy=2.2, class_histogram=[1] * 10, classifier_accuracy=0.98, seconds=1.0, device="cpu", seed=seed)


def _tell(study, trial, size: float, imbalance: float, fid: float, seed: int, spec=None) -> None:
    feasible = fid <= 100
    m = _metrics(seed, fid, imbalance)
    constraints = {name: (fid - 100 if name == "fid" else -1.0) for name in CONSTRAINT_NAMES}
    TrialRecord(spec=(spec or DiscriminatorSpec()).to_dict(), train=TrainConfig(iterations=3).to_dict(), metrics=m, feasible=feasible,
                infeasible_reason="" if feasible else f"fid {fid} > 100").write(trial, constraint_attrs(constraints))
    study.tell(trial, [size, imbalance])


@pytest.fixture
def made_up(tmp_path):
    """Trials 0 (small, balanced), 1 (dominated by 0) and 2 (large, most balanced), all feasible
    on their own seed; trial 0 then fails on both retrainings, trial 2 passes both."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/m.db", study_name="m", directions=["minimize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["d_size_mb", "imbalance"])
    study.set_user_attr(SETTINGS_ATTR, StudySettings(TrainConfig(iterations=3), QualityConfig(max_fid=100), 0).to_dict())
    for number, (size, imbalance, fid) in enumerate([(0.01, 0.2, 50), (0.02, 0.3, 60), (0.05, 0.1, 70)]):
        _tell(study, study.ask(), size, imbalance, fid, seed=number)
    comp = companion(study, create=True)
    for number, fids, imbalances in [(0, (300, 400), (0.9, 0.7)), (2, (80, 90), (0.12, 0.14))]:
        for seed, fid, imbalance in zip(extra_seeds(number, 3), fids, imbalances):
            comp.enqueue_trial({}, user_attrs={CONFIRMS: number, SEED: seed})
            _tell(comp, comp.ask(), [0.01, 0.02, 0.05][number], imbalance, fid, seed)
    return study


def test_refuted_trial_leaves_the_front_and_the_one_it_hid_returns(made_up):
    found = confirmations(made_up)
    assert sorted(found) == [0, 2]
    assert found[0].seeds == [0, SEED_STEP, 2 * SEED_STEP] and found[0].passes == 1 and not found[0].kept
    assert found[2].passes == 3 and found[2].kept
    assert found[2].mean(1) == pytest.approx((0.1 + 0.12 + 0.14) / 3) and found[2].spread(1) == pytest.approx(0.02)
    assert [t.number for t in made_up.best_trials] == [0, 2]  # Optuna's own front, one seed each
    assert [t.number for t in trusted_front(made_up)] == [1, 2]  # 0 refuted: 1, which only 0 dominated, is back


def test_show_and_export_use_the_seeds(made_up, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/m.db"
    assert main(["show", "--storage", storage, "--json"]) == 0  # the companion study is not a second study to pick from
    shown = json.loads(capsys.readouterr().out)
    assert [r["trial"] for r in shown["front"]] == [1, 2]
    assert [r["trial"] for r in shown["refuted"]] == [0] and shown["refuted"][0]["confirmed"]["passes"] == 1
    assert shown["front"][1]["confirmed"]["imbalance"]["values"] == [0.1, 0.12, 0.14]
    assert main(["show", "--storage", storage, "--study", "m"]) == 0
    table = capsys.readouterr().out
    assert "refuted" in table and "seeds 3/3" in table and "0.12 ± 0.02" in table
    # balanced: trial 2 by its seeds' mean (0.12) over trial 1's single seed (0.3); the line says which values decided
    trial, used = pick_trial(made_up, "balanced")
    assert trial.number == 2 and "seeds' mean for confirmed trials (2)" in used
    assert main(["export", "--pick", "smallest", "--storage", storage, "--study", "m", "-o", str(tmp_path / "a.yaml")]) == 0
    assert "trial 1, by the seeds' mean" in capsys.readouterr().out  # 0 is smaller but refuted
    assert main(["export", "--pick", "balanced", "--storage", storage, "--study", "m", "-o", str(tmp_path / "b.yaml")]) == 0
    meta = yaml.safe_load((tmp_path / "b.yaml").read_text())["metadata"]
    assert meta["trial"] == 2 and meta["confirmed"]["seeds"] == [2, 2 + SEED_STEP, 2 + 2 * SEED_STEP]


def test_note_and_plot_show_the_spread(made_up):
    found = confirmations(made_up)
    note = trial_note(made_up.trials[0], None, found[0], ["d_size_mb", "imbalance"])
    assert "Refuted by its seeds" in note and "feasible on 1 of 3 seeds" in note
    assert "**Confirmed**" in trial_note(made_up.trials[2], None, found[2], ["d_size_mb", "imbalance"])
    traces = {t.name: t for t in study_figure(made_up).data}
    bars = next(t for name, t in traces.items() if name.startswith("confirmed"))
    assert list(bars.error_y.array) == pytest.approx([found[0].spread(1), found[2].spread(1)])
    assert list(next(t for name, t in traces.items() if name.startswith("refuted")).x) == [0.01]
    assert [x for x in next(t for name, t in traces.items() if name.startswith("feasible Pareto front")).x] == [0.02, 0.05]


def test_two_workers_never_train_one_retraining_twice(made_up, tmp_path):
    plan = plan_confirm(made_up, [1], 3, QualityConfig())
    comp, todo = queue(made_up, plan)
    assert todo == 2
    comp.enqueue_trial({}, user_attrs={CONFIRMS: 1, SEED: 1 + SEED_STEP})  # a rival queued the same retraining at the same time
    rival = optuna.load_study(study_name=comp.study_name, storage=f"sqlite:///{tmp_path}/m.db")
    first, second = _claim(comp, 1), _claim(rival, 3)
    claimed = [(t.user_attrs[CONFIRMS], t.user_attrs[SEED]) for t in first + second]
    assert sorted(claimed) == [(1, 1 + SEED_STEP), (1, 1 + 2 * SEED_STEP)]  # each retraining once; the copy was pruned
    assert [t.state for t in comp.get_trials() if t.user_attrs.get(SEED) == 1 + SEED_STEP].count(TrialState.PRUNED) == 1
    assert _claim(rival, 1) == [] and not comp.get_trials(states=(TrialState.WAITING,))
    assert queue(made_up, plan)[1] == 2  # claimed but unfinished: still to train, not queued again
    assert len(comp.get_trials(states=(TrialState.WAITING,))) == 0


def test_a_stopped_confirm_queues_its_retraining_again(made_up):
    plan = plan_confirm(made_up, [1], 2, QualityConfig())
    with pytest.raises(Interrupted):
        run_confirm(made_up, plan, resources=None, opts=SearchOptions(should_stop=lambda: True))
    comp = companion(made_up)
    mine = [t for t in comp.get_trials() if t.user_attrs.get(CONFIRMS) == 1]
    assert [t.state for t in mine] == [TrialState.FAIL, TrialState.WAITING]
    assert TrialRecord.of(mine[0]).fail_reason == "interrupted"


def test_bad_confirm_input_is_one_line(made_up, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/m.db"
    for args, fragment in [(["--trials", "7"], "no COMPLETE trial 7"), (["--seeds", "1"], "--seeds"), (["--trials", "x"], "comma-separated"),
                           (["--study", "nope"], "no study 'nope'")]:
        code = main(["confirm", "--storage", storage, "--study", "m", *args])
        err = capsys.readouterr().err
        assert code == 2 and fragment in err and err.count("\n") <= 3, (args, err)
    with pytest.raises(GasNasError, match="no feasible front to confirm: name trials with --trials"):
        empty = optuna.create_study(directions=["minimize", "minimize"])
        empty.set_user_attr(SETTINGS_ATTR, StudySettings(TrainConfig(), QualityConfig(), 0).to_dict())
        _tell(empty, empty.ask(), 0.01, 0.1, 500, 0)
        plan_confirm(empty, None, 3, QualityConfig())


# ---------------------------------------------------------------- real retrainings


def test_confirm_retrains_with_the_studys_budget_and_resumes(tmp_path, cli_here, capsys):
    space = write_tiny_space(tmp_path / "tiny.yaml", search={"cohort": 1})
    storage = f"sqlite:///{tmp_path}/s.db"
    study_args = ["--storage", storage, "--study", "s"]
    assert main(["search", "--space", str(space), *study_args, "--trials", "2", "--device", "cpu", "--artifacts", str(tmp_path / "art"), "--quiet", "--seed", "5"]) == 0
    optuna.logging.set_verbosity(optuna.logging.INFO)  # as in a fresh process
    assert main(["confirm", *study_args, "--trials", "0,1", "--seeds", "2", "--device", "cpu"]) == 0
    assert optuna.logging.get_verbosity() == optuna.logging.ERROR  # no "[I ...] A new study created" lines among ours
    out = capsys.readouterr().out
    assert "2 retraining(s) to run" in out and "trial 0 seed 10005:" in out and "trial 1 seed 10006:" in out
    study = optuna.load_study(study_name="s", storage=storage)
    found = confirmations(study)
    assert sorted(found) == [0, 1] and found[0].seeds == [5, 10005]
    for t in companion(study).get_trials():
        m = TrialRecord.of(t).metrics
        assert t.state == TrialState.COMPLETE and m.iterations == 3 and m.seed == t.user_attrs[SEED]  # the study's budget, the asked seed
    assert main(["confirm", *study_args, "--trials", "0,1", "--seeds", "2", "--device", "cpu"]) == 0
    assert "0 retraining(s) to run" in capsys.readouterr().out  # resumed: nothing trained twice
    assert main(["confirm", *study_args, "--trials", "1", "--seeds", "3", "--device", "cpu", "--quiet"]) == 0
    study = optuna.load_study(study_name="s", storage=storage)
    assert confirmations(study)[1].seeds == [6, 10006, 20006] and len(companion(study).get_trials()) == 3
