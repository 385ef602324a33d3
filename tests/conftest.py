"""Shared fixtures: the real MNIST (skipped when absent) and one classifier per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _has_mnist(folder: Path) -> bool:
    return all((folder / name).is_file() or (folder / f"{name}.gz").is_file() for name in MNIST_FILES)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST: `$GAS_NAS_DATA`, else the checkout's sibling `shared/data/mnist`."""
    candidates = [Path(os.environ["GAS_NAS_DATA"])] if os.environ.get("GAS_NAS_DATA") else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared/data/mnist")
    for folder in candidates:
        if _has_mnist(folder) or _has_mnist(folder / "MNIST" / "raw"):
            return folder
    pytest.skip(f"real MNIST not found (looked in {', '.join(map(str, candidates))}); set GAS_NAS_DATA")


@pytest.fixture
def float64():
    """Exact-arithmetic stand-in for tests that compare trials across cohorts: in fp32, the
    cohort size changes which conv kernels run, and RMSprop's normalised steps amplify their
    rounding differences (see docs/guide-cohorts.md)."""
    import torch

    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.fixture(scope="session")
def classifier_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cache dir ($GAS_NAS_CACHE of the CLI tests), so tests never read or write the user's ~/.cache."""
    return tmp_path_factory.mktemp("classifier-cache")


@pytest.fixture(scope="session")
def mnist_classifier():
    """The feature classifier shipped with gas-nas, as every command loads it (the same on any CPU)."""
    from gas_nas.trial.classifier import load_classifier

    return load_classifier(device="cpu")


TINY_BUDGET = {"iterations": 3, "batch_size": 8, "log_every": 1}
# A guard every tiny trial passes on any machine: a 3-iteration generator's Fréchet distance
# depends on the classifier trained on that machine (924-1264 seen on one CPU), so the tiny
# budget must not hinge on it. Tests of the guard itself set their own thresholds.
# The give-up rule is off too (a 3-iteration D tells nothing), and the FID bound absolute.
TINY_QUALITY = {"n_samples": 64, "max_fid": 1e6, "min_classes": 0, "min_entropy": 0.0, "duality_gap_steps": 2, "guard": "absolute", "min_auc": 0.0, "min_spread": 0.0}


def write_tiny_space(path: Path, train: dict | None = None, quality: dict | None = None, search: dict | None = None) -> Path:
    """The default space with a CPU-sized budget (and, unless given, a permissive quality guard)."""
    import yaml

    from gas_nas.models.space import DEFAULT_SPACE

    doc = yaml.safe_load(DEFAULT_SPACE.read_text())
    doc["train"].update(TINY_BUDGET | (train or {}))
    doc["quality"].update(TINY_QUALITY | (quality or {}))
    doc["search"].update(search or {})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def tiny_space(tmp_path: Path) -> Path:
    return write_tiny_space(tmp_path / "tiny.yaml")


@pytest.fixture(scope="session")
def cli_env(mnist_dir: Path, classifier_cache: Path, mnist_classifier) -> dict:
    """Environment for gas-nas subprocesses: the real MNIST, the session's trained classifier, and
    one torch thread each (tiny batches on two shared cores only lose from OpenMP's barriers)."""
    return {**os.environ, "GAS_NAS_DATA": str(mnist_dir), "GAS_NAS_CACHE": str(classifier_cache), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


TEACHER_SPEC = {"base_filters": 8, "depth": 2}  # small, with batch norm: cheap, and eval mode matters


def write_teacher(path: Path, seed: int = 0, spec: dict | None = None) -> Path:
    """A `discriminator.pt` as `gas-nas train` writes it, with non-trivial batch-norm running
    statistics (so eval mode differs from each batch's statistics)."""
    import torch

    from gas_nas.models.networks import build_discriminator
    from gas_nas.models.spec import DiscriminatorSpec, TrainConfig

    spec_obj = DiscriminatorSpec(**(spec or TEACHER_SPEC))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        D = build_discriminator(spec_obj).float()
        for m in D.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    state = {k: v.float() if v.is_floating_point() else v for k, v in D.state_dict().items()}
    torch.save({"state_dict": state, "spec": spec_obj.to_dict(), "train": TrainConfig().to_dict()}, path)
    return path


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_teacher(tmp_path_factory.mktemp("teacher") / "discriminator.pt")
