"""Trial metrics: size, LSGAN balance, and a sample-quality gate that collapsed generators fail."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from gas_nas import classifier as classifier_module
from gas_nas.classifier import CHECKPOINT_NAME, MnistClassifier, load_classifier
from gas_nas.data import load_mnist
from gas_nas.errors import GasNasError
from gas_nas.metrics import SampleQuality, imbalance, param_count, param_mb, sample_quality
from gas_nas.spec import QualityConfig

N = 500


def test_param_count_and_fp32_megabytes() -> None:
    module = nn.Sequential(nn.Linear(10, 5), nn.Linear(5, 2))
    assert param_count(module) == 10 * 5 + 5 + 5 * 2 + 2
    assert param_mb(module) == pytest.approx(67 * 4 / 2**20)


# --- imbalance -------------------------------------------------------------------------------


def test_imbalance_is_zero_at_lsgan_equilibrium() -> None:
    assert imbalance([0.25] * 8, [0.125] * 8) == pytest.approx(0.0, abs=1e-12)
    assert imbalance(torch.full((8,), 0.25), torch.full((8,), 0.125)) == pytest.approx(0.0, abs=1e-12)


def test_imbalance_grows_as_discriminator_dominates() -> None:
    mild = imbalance([0.15] * 8, [0.25] * 8)
    strong = imbalance([0.01] * 8, [0.45] * 8)
    assert 0 < mild < strong


def test_imbalance_grows_as_generator_dominates() -> None:
    mild = imbalance([0.35] * 8, [0.08] * 8)
    strong = imbalance([0.5] * 8, [0.01] * 8)
    assert 0 < mild < strong


def test_imbalance_is_not_fooled_by_equal_ratios() -> None:
    # Both losses twice their equilibrium: L_D / L_G is still 2, yet this is not equilibrium.
    assert imbalance([0.5] * 8, [0.25] * 8) == pytest.approx(2 * math.log(2))


def test_imbalance_uses_only_the_last_quarter() -> None:
    balanced_end = [5.0] * 6 + [0.0] * 6 + [0.25] * 4
    assert imbalance(balanced_end, [0.001] * 12 + [0.125] * 4) == pytest.approx(0.0, abs=1e-12)
    collapsed_end = [0.25] * 12 + [0.01] * 4
    assert imbalance(collapsed_end, [0.125] * 12 + [0.45] * 4) > 1.0


@pytest.mark.parametrize(
    "d, g",
    [([0.25, float("nan")], [0.125, 0.125]), ([0.25] * 4, [0.125, float("inf")]), ([], [0.125]), ([0.25], [])],
)
def test_imbalance_is_inf_for_diverged_or_empty_histories(d: list[float], g: list[float]) -> None:
    assert imbalance(d, g) == float("inf")


# --- sample quality ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist(mnist_dir: Path) -> dict[str, torch.Tensor]:
    x, y = load_mnist(mnist_dir, train=True)
    xt, _ = load_mnist(mnist_dir, train=False)
    return {"train_x": x, "train_y": y, "real": xt[:N]}


@pytest.fixture(scope="module")
def generators(mnist: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A healthy generator (held-out real digits) and three collapsed ones, N samples each."""
    x, y = mnist["train_x"], mnist["train_y"]
    noise = torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return {
        "healthy": x[50000 : 50000 + N],
        "constant": x[:1].expand(N, 1, 28, 28).clone(),
        "single_digit": x[y == 3][:N],
        "noise": noise,
    }


@pytest.fixture(scope="module")
def qualities(mnist_classifier: MnistClassifier, mnist, generators) -> dict[str, SampleQuality]:
    return {name: sample_quality(mnist_classifier, fake, mnist["real"]) for name, fake in generators.items()}


def test_healthy_generator_passes_the_default_gate(qualities: dict[str, SampleQuality]) -> None:
    cfg, healthy = QualityConfig(), qualities["healthy"]
    assert healthy.fid <= cfg.max_fid
    assert healthy.classes >= cfg.min_classes
    assert healthy.entropy >= cfg.min_entropy
    assert sum(healthy.histogram) == N and len(healthy.histogram) == 10


@pytest.mark.parametrize("collapsed", ["constant", "single_digit", "noise"])
def test_collapsed_generator_cannot_fool_the_gate(qualities: dict[str, SampleQuality], collapsed: str) -> None:
    cfg, healthy, bad = QualityConfig(), qualities["healthy"], qualities[collapsed]
    assert bad.fid > 3 * healthy.fid and bad.fid > cfg.max_fid
    assert bad.classes < healthy.classes and bad.classes < cfg.min_classes
    assert bad.entropy < healthy.entropy and bad.entropy < cfg.min_entropy


def test_single_digit_generator_covers_one_class(qualities: dict[str, SampleQuality]) -> None:
    quality = qualities["single_digit"]
    assert quality.classes == 1 and max(quality.histogram) == quality.histogram[3]


def test_nan_samples_score_infinite_fid_and_no_classes(mnist_classifier: MnistClassifier, mnist) -> None:
    fake = mnist["real"].clone()
    fake[7, 0, 3, 3] = float("nan")
    quality = sample_quality(mnist_classifier, fake, mnist["real"])
    assert quality.fid == float("inf") and quality.classes == 0


def test_quality_does_not_depend_on_chunk_size(mnist_classifier: MnistClassifier, mnist, generators) -> None:
    whole = sample_quality(mnist_classifier, generators["healthy"], mnist["real"], batch_size=N)
    chunked = sample_quality(mnist_classifier, generators["healthy"], mnist["real"], batch_size=64)
    assert chunked.fid == pytest.approx(whole.fid, rel=1e-3)
    assert chunked.histogram == whole.histogram


# --- the classifier and its cache ----------------------------------------------------------


def test_classifier_is_accurate_and_frozen(mnist_classifier: MnistClassifier) -> None:
    assert mnist_classifier.test_accuracy >= 0.98
    assert not mnist_classifier.training
    assert not any(p.requires_grad for p in mnist_classifier.parameters())
    x = torch.zeros(3, 1, 28, 28)
    assert mnist_classifier.features(x).shape == (3, MnistClassifier.num_features)
    assert mnist_classifier(x).shape == (3, 10)


def test_second_load_comes_from_the_cache(
    mnist_classifier: MnistClassifier, mnist_dir: Path, classifier_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_training(*args, **kwargs):
        raise AssertionError("the cached checkpoint should have been loaded")

    monkeypatch.setattr(classifier_module, "train_classifier", no_training)
    assert (classifier_cache / CHECKPOINT_NAME).is_file()
    again = load_classifier(data_dir=mnist_dir, cache_dir=classifier_cache)
    assert again.test_accuracy == mnist_classifier.test_accuracy
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch.testing.assert_close(again(x), mnist_classifier(x))


def test_inaccurate_classifier_is_refused_and_not_cached(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def untrained(*args, **kwargs) -> MnistClassifier:
        model = MnistClassifier()
        for p in model.parameters():
            nn.init.zeros_(p)  # every logit equal: predicts digit 0, about 10% accuracy
        return model

    monkeypatch.setattr(classifier_module, "train_classifier", untrained)
    with pytest.raises(GasNasError, match="98%"):
        load_classifier(data_dir=mnist_dir, cache_dir=tmp_path)
    assert not (tmp_path / CHECKPOINT_NAME).exists()
