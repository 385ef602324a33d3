#!/usr/bin/env python
"""Discriminators that gave up: the evidence behind docs/lazy.md.

Part `old` retrains, at the old study's budget, trials of the old TPE study
(`docs/differentiable/studies.db`, study `tpe`, 300 iterations): its feasible front
(trials 88, 89, 186: losses at the LSGAN equilibrium, blurred samples) with three seeds each,
and controls (paper cases and trials whose D still worked, one seed each), measuring what the
old study could not: whether D still tells held-out real images from its G's samples
(`gas_nas.discrimination`). These runs chose the rule's bound (docs/balance.md).

Resumable and shareable: each run is stored as JSON + PNG under docs/lazy/runs/ as it
finishes; two workers of the same command split the runs (claim files).

    OMP_NUM_THREADS=1 python docs/lazy.py --part old --threads 1
"""

from __future__ import annotations

import argparse
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
    from gas_nas.evidence import plan_run
    from gas_nas.spec import DiscriminatorSpec, TrainConfig

    order = [(n, 0) for n in OLD_FRONT] + [(n, 0) for n in CONTROLS] + [(n, k) for k in range(1, SEEDS) for n in OLD_FRONT]
    runs = []
    for number, k in order:
        attrs = old_trial(number)
        spec, train = DiscriminatorSpec.from_dict(attrs["spec"]), TrainConfig.from_dict(attrs["train"])
        seed = attrs["metrics"]["seed"] + k * SEED_STEP
        name = f"old trial {number}" + (f" ({attrs['case']})" if attrs.get("case") else "")
        runs.append(plan_run(name, f"old-{number}", spec, seed, train, space.quality, machine, classifier))
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["old"], default="old")
    p.add_argument("--threads", type=int)
    p.add_argument("--data-dir")
    p.add_argument("--max-runs", type=int)
    args = p.parse_args(argv)

    import torch

    from gas_nas.evidence import classifier_fingerprint, machine_key, train_missing
    from gas_nas.search import load_resources
    from gas_nas.space import load_space

    if args.threads:
        torch.set_num_threads(args.threads)
    space = load_space(None)
    device = torch.device("cpu")
    res = load_resources(device, args.data_dir)
    runs = plan_old(space, machine_key(device), classifier_fingerprint(res.classifier))
    train_missing(runs, space.quality, res, FOLDER / "runs", max_runs=args.max_runs, log=lambda s: print(s, flush=True), on_stored=lambda: None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
