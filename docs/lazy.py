#!/usr/bin/env python
"""Discriminators that gave up: the evidence behind docs/lazy.md.

- Part `old` retrains trials of the old TPE study (`docs/differentiable/studies.db`, study
  `tpe`, 300 iterations) at its budget, now measuring whether D still tells held-out real
  images from its G's samples (`gas_nas.trial.discrimination`): its feasible front (trials 88, 89,
  186: losses at the LSGAN equilibrium, blurred samples) with three seeds each, and controls
  (paper cases and trials whose D still worked) with their own seed. These runs chose the
  give-up rule's bounds (docs/balance.md).
- The new study is a plain `gas-nas search` (`SEARCH` below) with the rule in force.
- The new study's front is retrained with two more seeds by `gas-nas confirm` (`CONFIRM`
  below), which records each retraining in the study's own storage; the page reads them back.
- Part `page` (the default) writes docs/lazy.md from what is stored.

Resumable and shareable: each run is stored as JSON + PNG under docs/lazy/runs/ as it
finishes, and two workers of the same command split the runs (claim files).

    OMP_NUM_THREADS=1 python docs/lazy.py --part old --threads 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FOLDER = DOCS / "lazy"
OLD_DB = DOCS / "differentiable" / "studies.db"
OLD_STUDY = "tpe"
OLD_FRONT = (88, 89, 186)  # the old study's feasible front (under its loose guard FID <= 150)
CONTROLS = (0, 4, 6, 5, 71, 119)  # paper cases 1, 5, 3, 6; trial 71 (D worked, FID 66); trial 119 (equilibrium losses, FID 62)
SEEDS = 3
SEED_STEP = 10_000  # extra seeds of a trial: its own seed + k * SEED_STEP
OLD_ITERATIONS = 300
PAGE = DOCS / "lazy.md"
NEW_DB = FOLDER / "studies.db"
NEW_STUDY = "tpe"
WINDOW, WINDOWS = 25, 4  # trials beyond the paper cases per window; windows compared (the first 100)
LOSS_NEAR = 0.002  # "at equilibrium": both losses within this of 0.25 and 0.125
# The new study's search (two workers, one core each, code of the commit that added the rule):
SEARCH = ("gas-nas search --iterations 300 --storage sqlite:///docs/lazy/studies.db --study tpe --artifacts docs/lazy/artifacts "
          "--until 106 --device cpu --seed 0 --quiet")
CONFIRM = "gas-nas confirm --storage sqlite:///docs/lazy/studies.db --study tpe --seeds 3 --device cpu"
COMMAND = f"OMP_NUM_THREADS=1 {SEARCH} (x2); OMP_NUM_THREADS=1 python docs/lazy.py --part old --threads 1 (x2); OMP_NUM_THREADS=1 {CONFIRM} (x2); python docs/lazy.py"


def old_trial(number: int) -> dict:
    """A trial of the old study, read straight from its SQLite file (no Optuna needed)."""
    db = sqlite3.connect(f"file:{OLD_DB}?mode=ro", uri=True)
    try:
        (trial_id,) = db.execute(
            "select t.trial_id from trials t join studies s on s.study_id = t.study_id where s.study_name = ? and t.number = ?",
            (OLD_STUDY, number)).fetchone()
        attrs = {k: json.loads(v) for k, v in db.execute("select key, value_json from trial_user_attributes where trial_id = ?", (trial_id,))}
    finally:
        db.close()
    return attrs


def plan_old(space, machine: dict, classifier: str) -> list:
    """The old front's three seeds (seed 0 of each first) and the controls' own seed."""
    from gas_nas.models.spec import DiscriminatorSpec, TrainConfig
    from gas_nas.study.evidence import plan_run

    order = [(n, 0) for n in OLD_FRONT] + [(n, 0) for n in CONTROLS] + [(n, k) for k in range(1, SEEDS) for n in OLD_FRONT]
    runs = []
    for number, k in order:
        attrs = old_trial(number)
        spec, train = DiscriminatorSpec.from_dict(attrs["spec"]), TrainConfig.from_dict(attrs["train"])
        seed = attrs["metrics"]["seed"] + k * SEED_STEP
        name = f"old trial {number}" + (f" ({attrs['case']})" if attrs.get("case") else "")
        runs.append(plan_run(name, f"old-{number}", spec, seed, train, space.quality, machine, classifier))
    return runs


# ---------------------------------------------------------------- the new study and its front


def new_study():
    """The new TPE study (None before its search has started)."""
    from gas_nas.common.errors import GasNasError
    from gas_nas.study.search import load_existing

    if not NEW_DB.is_file():
        return None
    try:
        return load_existing(f"sqlite:///{NEW_DB}", NEW_STUDY)
    except GasNasError:
        return None


def beyond_cases(trials: list) -> list:
    """Complete trials beyond the paper cases, in number order (the order the sampler learned in)."""
    from gas_nas.study.record import TrialRecord

    return sorted((t for t in trials if t.state.name == "COMPLETE" and not TrialRecord.of(t).case), key=lambda t: t.number)


def at_equilibrium(m) -> bool:
    """The old study's only evidence of a D that gave up: both losses at the LSGAN equilibrium."""
    return abs(m.d_loss - 0.25) < LOSS_NEAR and abs(m.g_loss - 0.125) < LOSS_NEAR


def trial_grid(study, trial, folder: Path) -> str | None:
    """The trial's sample grid copied next to the page (from the search's artifact folder)."""
    import shutil

    from gas_nas.study.search import find_artifacts

    artifacts, _ = find_artifacts(study, f"sqlite:///{NEW_DB}", None)
    for key, value in trial.system_attrs.items():
        if key.startswith("artifacts:") and json.loads(value).get("filename") == "samples.png":
            source = artifacts / json.loads(value)["artifact_id"]
            if source.is_file():
                target = folder / f"trial-{trial.number}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                return f"lazy/front/{target.name}"
    return None


# ---------------------------------------------------------------- the page


def write_page(space, old_runs: list, study, env: str) -> None:
    from gas_nas.study.evidence import load_run, pm, write_results
    from gas_nas.study.record import TrialRecord
    from gas_nas.study.search import front, guard_line
    from gas_nas.trial.guard import give_up_violation
    from gas_nas.trial.results import TrialMetrics

    rule = space.quality
    lines = [f"Command: `{COMMAND}`  ",
             f"Budget: {OLD_ITERATIONS} iterations per trial, batch 32, quality on {space.quality.n_samples} samples; discrimination measured on "
             f"16 batches of held-out and generated images; seeds: a trial's own, + {SEED_STEP:,}, + {2 * SEED_STEP:,}; {env}; "
             f"written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
             "### The old front and controls, retrained with the measurement", "",
             "Trials of the old study (`docs/differentiable/studies.db`, `tpe`), retrained at its budget. *Rule*: the give-up rule with "
             f"gas-nas's default bounds (AUC >= {rule.min_auc:g} and spread >= {rule.min_spread:g}, else the samples must pass the paper bar).", "",
             "| trial | seed | D loss | G loss | d_auc | d_spread | D real / generated | FID | digits | entropy | rule |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for run in old_runs:
        rec = load_run(FOLDER / "runs", run)
        if rec is None:
            lines.append(f"| {run.name} | {run.seed} | (not trained yet) | | | | | | | | |")
            continue
        m = TrialMetrics(**rec["metrics"])
        why = give_up_violation(m, rule)
        lines.append(f"| {run.name} | {run.seed} | {m.d_loss:.4f} | {m.g_loss:.4f} | {m.d_auc:.3f} | {m.d_spread:.2g} | {m.d_real:.3f} / {m.d_fake:.3f} | "
                     f"{m.fid:.1f} | {m.classes} | {m.entropy:.2f} | {'infeasible: ' + why if why else 'passes'} |")
    old = beyond_cases(old_study().get_trials(deepcopy=False))[:WINDOWS * WINDOW]
    lines += ["", f"### Trials whose D stopped discriminating, per window of {WINDOW} trials beyond the paper cases", "",
              f"Old study: by its losses (D within {LOSS_NEAR} of 0.25 and G within {LOSS_NEAR} of 0.125: it measured nothing else). "
              "New study: by the give-up rule's measurement (AUC or spread below the bound), and by the same loss criterion.", "",
              "| window | old study: losses at equilibrium | new study: D gave up (measured) | new study: losses at equilibrium |", "|---|---:|---:|---:|"]
    new = beyond_cases(study.get_trials(deepcopy=False)) if study is not None else []
    from gas_nas.trial.guard import gave_up

    for w in range(WINDOWS):
        o = [TrialRecord.of(t).metrics for t in old[w * WINDOW:(w + 1) * WINDOW]]
        n = [TrialRecord.of(t).metrics for t in new[w * WINDOW:(w + 1) * WINDOW]]
        share = lambda ms, f: f"{sum(map(f, ms))}/{len(ms)}" if ms else "–"  # noqa: E731
        lines.append(f"| {w * WINDOW + 1}-{(w + 1) * WINDOW} | {share(o, at_equilibrium)} | {share(n, lambda m: bool(gave_up(m, rule)))} | {share(n, at_equilibrium)} |")
    if study is None:
        lines += ["", "The new study has not started."]
        write_results(PAGE, "\n".join(lines), "docs/lazy.py", "Discriminators that gave up")
        return
    lines += ["", f"### The new study's feasible front ({len(new)} trials beyond the paper cases{'' if len(new) >= WINDOW * WINDOWS else ' so far'})", "", guard_line(study), "",
              "| trial | spec | d_size_mb | imbalance | FID | d_auc | d_spread | seeds | imbalance over seeds | FID over seeds | d_auc over seeds | feasible seeds |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    from gas_nas.study.confirmation import confirmations

    found = confirmations(study)
    grids = []
    for t in front(study):
        r = TrialRecord.of(t)
        m, s = r.metrics, r.spec
        confirmed = found.get(t.number)  # `gas-nas confirm` on this study: its own seed first
        seeds = confirmed.metrics if confirmed else [m]
        values = lambda key: [getattr(x, key) for x in seeds]  # noqa: E731
        spec = (f"{'dw-sep' if s['conv'] == 'depthwise_separable' else 'conv'}{' incept' if s['inception'] else ''}, dense {s['dense_blocks']}, "
                f"base {s['base_filters']}, depth {s['depth']}, {s['norm']}, {s['activation']}, {s['downsample']}, density {s['density']:g}")
        lines.append(f"| {t.number} | {spec} | {t.values[0]:.4f} | {t.values[1]:.4f} | {m.fid:.1f} | {m.d_auc:.3f} | {m.d_spread:.2g} | {len(seeds)} | "
                     f"{pm(values('imbalance'), '.3f')} | {pm(values('fid'), '.1f')} | {pm(values('d_auc'), '.3f')} | "
                     f"{confirmed.passes if confirmed else int(bool(r.feasible))}/{len(seeds)} |")
        grid = trial_grid(study, t, FOLDER / "front")
        if grid:
            grids.append(f"![trial {t.number}]({grid})")
    lines += ["", "Sample grids of the front (64 samples from fixed noise), in the table's order:", "", " ".join(grids)]
    write_results(PAGE, "\n".join(lines), "docs/lazy.py", "Discriminators that gave up")


def old_study():
    from gas_nas.study.search import load_existing

    return load_existing(f"sqlite:///{OLD_DB}", OLD_STUDY)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["old", "page"], default="page")
    p.add_argument("--threads", type=int)
    p.add_argument("--data-dir")
    p.add_argument("--max-runs", type=int)
    args = p.parse_args(argv)

    import torch

    from gas_nas.models.space import load_space
    from gas_nas.study.evidence import classifier_fingerprint, machine_key, stored_cpus, train_missing
    from gas_nas.study.search import load_resources

    if args.threads:
        torch.set_num_threads(args.threads)
    space = load_space(None)
    device = torch.device("cpu")
    res = load_resources(device, args.data_dir)
    machine, classifier = machine_key(device), classifier_fingerprint(res.classifier)
    old_runs = plan_old(space, machine, classifier)
    study = new_study()
    log = lambda s: print(s, flush=True)  # noqa: E731
    if args.part == "old":
        train_missing(old_runs, space.quality, res, FOLDER / "runs", max_runs=args.max_runs, log=log, on_stored=lambda: None)
    env = f"CPU ({stored_cpus(FOLDER / 'runs', old_runs)}), 1 torch thread per worker, torch {torch.__version__}"
    write_page(space, old_runs, study, env)
    log(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
