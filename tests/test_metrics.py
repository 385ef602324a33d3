"""Trial metrics: size, LSGAN balance, and a sample-quality gate that collapsed generators fail."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from gas_nas.common.errors import GasNasError
from gas_nas.models.spec import QualityConfig
from gas_nas.trial import classifier as classifier_module
from gas_nas.trial.classifier import CHECKPOINT_NAME, SHIPPED, MnistClassifier, load_classifier
from gas_nas.trial.data import load_mnist
from gas_nas.trial.guard import violations
from gas_nas.trial.metrics import SampleQuality, imbalance, param_count, param_mb, sample_quality

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


# Which criteria must reject each collapsed generator on any machine. The classifier is trained
# afresh on each machine (fp32, so its weights differ from CPU to CPU): what it makes of
# in-distribution digits is stable, what it makes of out-of-distribution noise is not (on one
# Xeon uniform noise fell into 8 digit classes, on another CPU into fewer). So noise must be
# rejected by its Fréchet distance (hundreds, against a threshold of 60), and its class
# histogram must only be less even than real digits'; its digit count is not asserted.
MUST_REJECT = {
    "constant": ("fid", "classes", "entropy"),  # one image: one class, zero entropy
    "single_digit": ("fid", "classes", "entropy"),  # real 3s: one class on any accurate classifier
    "noise": ("fid",),
}


@pytest.mark.parametrize("collapsed", sorted(MUST_REJECT))
def test_collapsed_generator_cannot_fool_the_gate(qualities: dict[str, SampleQuality], collapsed: str) -> None:
    cfg, healthy, bad = QualityConfig(), qualities["healthy"], qualities[collapsed]
    must = MUST_REJECT[collapsed]
    assert guard_rejects(bad, cfg), f"{collapsed} passed the quality guard: {bad}"
    assert bad.fid > 3 * healthy.fid
    assert bad.entropy < healthy.entropy  # less even than real digits, whatever the classifier
    if "fid" in must:
        assert bad.fid > cfg.max_fid
    if "classes" in must:
        assert bad.classes < healthy.classes and bad.classes < cfg.min_classes
    if "entropy" in must:
        assert bad.entropy < cfg.min_entropy


def guard_rejects(q: SampleQuality, cfg: QualityConfig) -> bool:
    """The guard as the search applies it (`TrialMetrics.violations`): any failing criterion rejects."""
    from gas_nas.trial.train import TrialMetrics

    m = TrialMetrics(status="complete", reason="", iterations=1, d_params=1, d_param_mb=0.0, imbalance=0.0, d_loss=0.25,
                     g_loss=0.125, fid=q.fid, classes=q.classes, entropy=q.entropy, class_histogram=q.histogram,
                     classifier_accuracy=1.0, seconds=0.0, device="cpu", seed=0)
    return bool(violations(m, cfg))


def test_the_guard_rejects_on_any_single_failing_criterion() -> None:
    """Noise need only fail its Fréchet distance: one failing criterion must be enough."""
    cfg = QualityConfig()
    good = SampleQuality(fid=cfg.max_fid / 2, classes=10, entropy=2.3, histogram=[50] * 10)
    assert not guard_rejects(good, cfg)
    for bad in (
        SampleQuality(fid=cfg.max_fid * 10, classes=10, entropy=2.3),
        SampleQuality(fid=cfg.max_fid / 2, classes=cfg.min_classes - 1, entropy=2.3),
        SampleQuality(fid=cfg.max_fid / 2, classes=10, entropy=cfg.min_entropy - 0.1),
    ):
        assert guard_rejects(bad, cfg), bad


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


def test_every_machine_loads_the_shipped_classifier_without_training(
    mnist_classifier: MnistClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A classifier trained afresh differs per CPU, so without a cache_dir every process (and every
    worker of a shared study) loads the shipped checkpoint, whatever $GAS_NAS_CACHE holds."""

    def no_training(*args, **kwargs):
        raise AssertionError("the shipped checkpoint should have been loaded")

    monkeypatch.setattr(classifier_module, "train_classifier", no_training)
    other = MnistClassifier()  # a different classifier in the user's cache must not win
    classifier_module._save_atomic(other, 0.99, tmp_path / CHECKPOINT_NAME)
    monkeypatch.setenv("GAS_NAS_CACHE", str(tmp_path))
    before = SHIPPED.read_bytes()
    again = load_classifier()
    shipped = torch.load(SHIPPED, weights_only=True)
    for name, tensor in shipped["state_dict"].items():
        assert torch.equal(again.state_dict()[name], tensor), name
    assert again.test_accuracy == shipped["test_accuracy"] >= 0.98
    assert SHIPPED.read_bytes() == before
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch.testing.assert_close(again(x), mnist_classifier(x))


def test_own_classifier_is_trained_once_then_comes_from_its_cache(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a cache_dir (or an install without the shipped file) the classifier is trained there on
    first use and read back after."""
    monkeypatch.setattr(classifier_module, "SHIPPED", tmp_path / "missing.pt")
    monkeypatch.setenv("GAS_NAS_CACHE", str(tmp_path / "cache"))
    trained = load_classifier(data_dir=mnist_dir)  # the shipped file is missing: trained into the cache
    assert trained.test_accuracy >= 0.98 and (tmp_path / "cache" / CHECKPOINT_NAME).is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("the cached checkpoint should have been loaded")

    monkeypatch.setattr(classifier_module, "train_classifier", no_training)
    again = load_classifier(data_dir=mnist_dir, cache_dir=tmp_path / "cache")
    assert again.test_accuracy == trained.test_accuracy
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch.testing.assert_close(again(x), trained(x))


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
