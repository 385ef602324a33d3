"""A small MNIST CNN, used only as the feature space in which generated samples are judged.

Inception features know nothing about digits (and need a download); a CNN trained on MNIST
itself gives a Fréchet distance and a per-class histogram that see mode collapse.

One checkpoint ships with gas-nas (`SHIPPED`): trained once (seeded, about 10 s on one CPU core),
but a classifier trained afresh differs on every CPU (fp32 kernels differ), FIDs from two
classifiers do not compare, and the workers of one shared study run on different machines.
`train_classifier` remains for a classifier of one's own and for an install without the file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from gas_nas.common.errors import GasNasError
from gas_nas.common.paths import atomic_write
from gas_nas.trial.data import cache_root, load_mnist

ENV_CACHE = "GAS_NAS_CACHE"
VERSION = 1
MIN_ACCURACY = 0.98
CHECKPOINT_NAME = f"mnist_classifier_v{VERSION}.pt"
SHIPPED = Path(__file__).resolve().parents[1] / "assets" / CHECKPOINT_NAME
SEED = 0
LR = 5e-3
BATCH = 128


class MnistClassifier(nn.Module):
    """Two strided 5x5 conv stages and a 128-d hidden layer; inputs (N, 1, 28, 28) in [-1, 1].

    Strided convolutions instead of pooling keep one training epoch to a few CPU seconds.
    """

    num_features = 128

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(16, 32, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, self.num_features),
            nn.ReLU(),
        )
        self.head = nn.Linear(self.num_features, 10)
        self.test_accuracy = float("nan")

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (N, 128): the space the Fréchet distance is measured in."""
        return self.body(x.float())

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, 10)."""
        return self.head(self.features(x))


def default_cache_dir() -> Path:
    """`$GAS_NAS_CACHE`, else the shared cache root (`$XDG_CACHE_HOME/gas-nas` or `~/.cache/gas-nas`)."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else cache_root()


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device | str) -> Iterator[None]:
    """Run CPU work on one intra-op thread, restoring the caller's setting afterwards.

    The net is too small for two threads to help, and with another process busy on the
    machine OpenMP's barriers made a 10 s epoch take 30-150 s; one thread is also bit-exact.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_classifier(data_dir: str | Path | None = None, device: torch.device | str = "cpu") -> MnistClassifier:
    """One seeded epoch of Adam with a one-cycle schedule (batch 128); deterministic on CPU.

    One-cycle lets a single epoch reach about 98.6% test accuracy, above the 98% floor.
    """
    x, y = load_mnist(data_dir, train=True, device=device)
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(SEED)
        model = MnistClassifier()
    model.to(device).train()
    generator = torch.Generator().manual_seed(SEED)
    order = torch.randperm(x.shape[0], generator=generator).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    steps = -(-x.shape[0] // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    with _one_cpu_thread(x.device):
        for start in range(0, x.shape[0], BATCH):
            idx = order[start : start + BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            optimizer.step()
            schedule.step()
    return model


@torch.no_grad()
def evaluate_accuracy(model: MnistClassifier, data_dir: str | Path | None = None, batch_size: int = 1000) -> float:
    """Fraction of the 10k test images classified correctly."""
    device = next(model.parameters()).device
    x, y = load_mnist(data_dir, train=False, device=device)
    correct = 0
    with _one_cpu_thread(device):
        for start in range(0, x.shape[0], batch_size):
            correct += int((model(x[start : start + batch_size]).argmax(1) == y[start : start + batch_size]).sum())
    return correct / max(1, x.shape[0])


def _freeze(model: MnistClassifier, accuracy: float) -> MnistClassifier:
    model.eval()
    model.requires_grad_(False)
    model.test_accuracy = float(accuracy)
    return model


def _load_checkpoint(path: Path, device: torch.device | str) -> MnistClassifier | None:
    """The cached classifier, or None when it is absent, unreadable, stale or not good enough."""
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("version") != VERSION or not float(ckpt["test_accuracy"]) >= MIN_ACCURACY:
            return None
        model = MnistClassifier()
        model.load_state_dict(ckpt["state_dict"])
    except Exception:  # noqa: BLE001 - a broken cache is retrained, not fatal
        return None
    return _freeze(model.to(device), float(ckpt["test_accuracy"]))


def _save_atomic(model: MnistClassifier, accuracy: float, path: Path) -> None:
    """Written whole (`atomic_write`), so parallel trials never read half a checkpoint."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_write(path, "wb") as f:
        torch.save({"state_dict": state, "test_accuracy": float(accuracy), "version": VERSION}, f)


def load_classifier(
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
) -> MnistClassifier:
    """The quality classifier on `device` (eval mode, frozen).

    Without `cache_dir`, the one shipped with gas-nas, so every machine judges samples alike.
    With `cache_dir` (or when the shipped file is missing or unreadable), that folder's own,
    trained and cached there on first use. Refuses (GasNasError) a classifier under 98% test
    accuracy: its features would make the quality gate meaningless.
    """
    if cache_dir is None and (model := _load_checkpoint(SHIPPED, device)) is not None:
        return model
    path = Path(cache_dir).expanduser() / CHECKPOINT_NAME if cache_dir is not None else default_cache_dir() / CHECKPOINT_NAME
    model = _load_checkpoint(path, device)
    if model is not None:
        return model
    model = train_classifier(data_dir, device)
    model.eval()
    accuracy = evaluate_accuracy(model, data_dir)
    if not accuracy >= MIN_ACCURACY:
        raise GasNasError(
            f"the MNIST feature classifier reached only {accuracy:.2%} test accuracy (needs {MIN_ACCURACY:.0%}); "
            "check the MNIST files"
        )
    try:
        _save_atomic(model, accuracy, path)
    except OSError as exc:
        raise GasNasError(
            f"cannot write the classifier cache {path} ({exc.strerror or exc}); set {ENV_CACHE}=DIR to a writable folder"
        ) from exc
    return _freeze(model, accuracy)
