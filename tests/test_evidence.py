"""Evidence runs shared by several workers: a run claimed by one is skipped by the others."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gas_nas.study.evidence import (classifier_fingerprint, claim, cpu_model, load_run, machine_key, plan_run,
                               release, stored_cpus, train_missing)
from gas_nas.models.spec import DiscriminatorSpec, QualityConfig, TrainConfig

from conftest import TINY_BUDGET, TINY_QUALITY

MACHINE = {"torch": "t", "device": "cpu"}


def tiny_run(seed: int, quality: QualityConfig | None = None):
    train = TrainConfig(**TINY_BUDGET)
    return plan_run("tiny", "tiny", DiscriminatorSpec(base_filters=4, depth=1), seed, train, quality or QualityConfig(), MACHINE, "k")


def test_a_claim_is_exclusive_until_released(tmp_path: Path):
    run = tiny_run(0)
    assert claim(tmp_path, run)
    assert not claim(tmp_path, run)  # a live claim (ours) holds
    assert claim(tmp_path, tiny_run(1))  # another run is free
    release(tmp_path, run)
    assert claim(tmp_path, run)


def test_a_claim_of_a_dead_worker_is_taken_over(tmp_path: Path):
    run = tiny_run(0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert claim(tmp_path, run)
    path = next(tmp_path.glob("*.claim"))
    host = path.read_text().split()[0]
    path.write_text(f"{host} {dead.pid}\n")  # as if a killed worker had left it
    assert claim(tmp_path, run)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path.write_text(f"{host} {alive.pid}\n")
        assert not claim(tmp_path, run)
    finally:
        alive.kill()
        alive.wait()


def test_train_missing_skips_a_run_another_worker_claimed(tmp_path: Path, mnist_dir: Path, classifier_cache: Path, mnist_classifier,
                                                          monkeypatch: pytest.MonkeyPatch):
    import torch

    from gas_nas.study.search import load_resources

    monkeypatch.setenv("GAS_NAS_CACHE", str(classifier_cache))
    quality = dataclasses.replace(QualityConfig(), **TINY_QUALITY)
    runs = [tiny_run(seed, quality) for seed in range(2)]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        assert claim(tmp_path, runs[0])
        path = next(tmp_path.glob("*.claim"))
        path.write_text(f"{path.read_text().split()[0]} {other.pid}\n")  # held by another live worker
        lines: list[str] = []
        res = load_resources(torch.device("cpu"), str(mnist_dir))
        trained = train_missing(runs, quality, res, tmp_path, max_runs=None, log=lines.append, on_stored=lambda: None)
    finally:
        other.kill()
        other.wait()
    assert trained == 1
    assert load_run(tmp_path, runs[0]) is None and load_run(tmp_path, runs[1]) is not None
    assert load_run(tmp_path, runs[1])["cpu"] == cpu_model() == stored_cpus(tmp_path, runs)  # recorded, not keyed
    assert any("claimed by another worker" in line for line in lines)
    assert len(list(tmp_path.glob("*.claim"))) == 1  # only the other worker's claim remains


def test_pages_are_scored_by_the_shipped_classifier_and_keyed_without_the_cpu(mnist_dir: Path):
    """A classifier trained afresh differs between CPUs, so runs stored on different machines pool
    only if every page scores them with the one shipped in gas_nas/assets/ (its fingerprint is in
    every run's key)."""
    import torch

    from gas_nas.study.search import load_resources
    from gas_nas.trial.classifier import SHIPPED, MnistClassifier

    res = load_resources(torch.device("cpu"), str(mnist_dir))
    shipped = MnistClassifier()
    shipped.load_state_dict(torch.load(SHIPPED, weights_only=True)["state_dict"])
    assert classifier_fingerprint(res.classifier) == classifier_fingerprint(shipped)
    stored = sorted((Path(__file__).resolve().parent.parent / "docs" / "gas-reproduction" / "runs").glob("*.json"))
    assert stored and all(json.loads(p.read_text())["key"]["classifier"] == classifier_fingerprint(shipped) for p in stored)
    assert set(machine_key(torch.device("cpu"))) == {"torch", "device"}


def test_a_rewritten_page_keeps_the_hand_written_text_around_its_results(tmp_path: Path):
    from gas_nas.study.evidence import results_markers, write_results

    page = tmp_path / "docs" / "p.md"
    start, end = results_markers("docs/p.py")
    write_results(page, "| 1 run |", "docs/p.py", "P")
    assert page.read_text() == f"# P\n\n{start}\n\n| 1 run |\n\n{end}\n"
    page.write_text(page.read_text().replace("# P\n", "# P\n\nWhat the numbers mean.\n") + "\nSee also.\n")
    write_results(page, "| 2 runs |", "docs/p.py", "P")
    text = page.read_text()
    assert "What the numbers mean." in text and text.endswith("See also.\n")
    assert "| 2 runs |" in text and "| 1 run |" not in text and text.count(start) == 1
