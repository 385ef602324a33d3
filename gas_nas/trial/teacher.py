"""The frozen teacher discriminator of teacher-guided training (recipe `dgl`, after DGL-GAN).

A teacher is a `discriminator.pt` written by `gas-nas train` (it carries its spec), read with
`weights_only=True` so a file from elsewhere cannot run code, or, when `train.teacher` names
none, the default teacher: paper case 1 trained with the `gas` recipe at the paper budget
(whatever the trial's budget), trained once on first use and cached like the quality
classifier, keyed by what it was trained with. Either way it comes back frozen
(`requires_grad_(False)`, eval mode, no optimiser) with its file's sha256 and size, which every
trial and the study record. Every problem with a teacher file is one GasNasError line.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gas_nas.common.errors import GasNasError
from gas_nas.common.events import Events, human_time
from gas_nas.common.paths import atomic_write
from gas_nas.models import sparsity
from gas_nas.models.recipes import get_recipe
from gas_nas.models.spec import DiscriminatorSpec, TrainConfig
from gas_nas.trial.metrics import param_count
from gas_nas.trial.report import discriminator_from_checkpoint

VERSION = 1  # bump when the default teacher's training changes in a way its key does not see
MAX_BYTES = 512 * 2**20  # the largest discriminator of the shipped space is ~20 MB
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Teacher:
    """A frozen discriminator and where it came from."""

    module: nn.Module  # eval mode, no gradients of its own; gradients flow through it to G
    spec: DiscriminatorSpec
    sha256: str  # of the checkpoint file
    params: int
    mb: float  # stored MB, as d_param_mb: a training cost, never part of the deployed size
    path: str

    def identity(self) -> dict:
        """What a study records and compares on resume."""
        return {"teacher_sha256": self.sha256, "teacher_params": self.params, "teacher_mb": self.mb, "teacher_path": self.path}


def needs_teacher(train: TrainConfig) -> bool:
    """Whether training with `train` runs a teacher (a teacher recipe with a weight above 0)."""
    return get_recipe(train.recipe).has_teacher and bool(train.teacher_weight)


def load_teacher(path: str | Path, device: torch.device | str = "cpu") -> Teacher:
    """The teacher in `path` (a `discriminator.pt` of `gas-nas train`), frozen on `device`."""
    path = Path(path).expanduser()
    where = f"train.teacher: {path}"
    try:
        if not path.exists():
            raise GasNasError(f"{where}: no such file (give a discriminator.pt written by `gas-nas train`)")
        if not path.is_file():
            raise GasNasError(f"{where}: not a regular file (give a discriminator.pt written by `gas-nas train`)")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise GasNasError(f"{where}: {size:,} bytes, more than the {MAX_BYTES:,} a discriminator checkpoint may have")
        data = path.read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise GasNasError(f"{where}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickles that need code, truncated files, not a checkpoint at all
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise GasNasError(f"{where}: not a checkpoint that loads with weights_only=True ({first[:160]})") from None
    weights = ckpt.get("state_dict", ckpt.get("sparse_state")) if isinstance(ckpt, dict) else None
    if not isinstance(weights, dict) or not isinstance(ckpt.get("spec"), dict):
        raise GasNasError(f"{where}: not a discriminator.pt written by `gas-nas train` (it needs its weights and the spec it was built from)")
    try:
        module, spec = discriminator_from_checkpoint(ckpt, where, device)
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        first = " ".join(str(exc).split())
        raise GasNasError(f"{where}: its weights do not match its spec ({first[:200]})") from None
    if not all(torch.isfinite(t).all() for t in module.state_dict().values() if t.is_floating_point()):
        raise GasNasError(f"{where}: its weights are not finite")
    module.eval().requires_grad_(False)
    return Teacher(module=module, spec=spec, sha256=hashlib.sha256(data).hexdigest(), params=param_count(module),
                   mb=sparsity.stored_bytes(module) / 2**20, path=str(path))


# ---------------------------------------------------------------- the default teacher


def default_recipe() -> tuple[DiscriminatorSpec, TrainConfig, int]:
    """What the default teacher is: paper case 1 (the original GAS discriminator), the `gas`
    recipe at the paper budget (2000 iterations, batch 32), seed 0."""
    return DiscriminatorSpec(), TrainConfig(), DEFAULT_SEED


def default_key(spec: DiscriminatorSpec, train: TrainConfig, seed: int) -> str:
    """The cache key: everything the default teacher was trained with."""
    what = {"version": VERSION, "spec": spec.to_dict(), "train": train.to_dict(), "seed": seed}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def default_teacher_path(cache_dir: str | Path | None = None) -> Path:
    """Where the default teacher is cached: `$GAS_NAS_CACHE`, else `~/.cache/gas-nas` (as the classifier)."""
    from gas_nas.trial.classifier import default_cache_dir

    spec, train, seed = default_recipe()
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return folder / f"teacher-case1-{default_key(spec, train, seed)}.pt"


class _Stderr(Events):
    """A script's default: the line on stderr, no bar."""

    def say(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)


def load_default_teacher(
    data_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    cache_dir: str | Path | None = None,
    *,
    events: Events | None = None,
) -> Teacher:
    """The cached default teacher on `device`, training it first (one line saying how long it
    will take, then a bar over its iterations, both told to `events`) when the cache has none. A broken cache
    file is retrained."""
    path = default_teacher_path(cache_dir)
    if path.is_file():
        try:
            return load_teacher(path, device)
        except GasNasError:
            pass
    from gas_nas.trial.data import load_mnist
    from gas_nas.trial.train import seconds_per_trial, train_gan

    events = events or _Stderr()

    spec, train, seed = default_recipe()
    real, _ = load_mnist(data_dir, train=True, device=device)
    seconds = seconds_per_trial(spec, train, real)
    events.say(f"gas-nas: training the default teacher once (paper case 1, recipe {train.recipe}, {train.iterations} iterations, "
        f"batch {train.batch_size}, seed {seed}): about {human_time(seconds)} on this machine; cached in {path}")
    with events.training(train.iterations) as bar:
        _, D, hist = train_gan(spec, train, real, seed=seed, progress=bar.on_iteration)
    if hist["status"] != "complete":
        raise GasNasError(f"the default teacher's training {hist['status']}: {hist['reason']}; give one with train.teacher: PATH")
    state = {k: v.detach().cpu() for k, v in D.state_dict().items()}
    try:
        _save_atomic({"state_dict": state, "spec": spec.to_dict(), "train": train.to_dict(), "seed": seed, "version": VERSION}, path)
    except OSError as exc:
        raise GasNasError(f"cannot write the default teacher {path} ({exc.strerror or exc}); set GAS_NAS_CACHE=DIR to a writable folder") from None
    return load_teacher(path, device)


def _save_atomic(obj: dict, path: Path) -> None:
    """Written whole (`atomic_write`): parallel workers never read half a checkpoint."""
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def resolve_teacher(train: TrainConfig, device: torch.device | str = "cpu", data_dir: str | Path | None = None, *, events: Events | None = None) -> Teacher | None:
    """The teacher `train` trains with: None when it needs none, the file `train.teacher`, else
    the default teacher (trained on first use). A named file is checked even at weight 0."""
    if train.teacher is not None:
        teacher = load_teacher(train.teacher, device)
        return teacher if needs_teacher(train) else None
    if not needs_teacher(train):
        return None
    return load_default_teacher(data_dir, device, events=events)


__all__ = ["Teacher", "default_teacher_path", "load_default_teacher", "load_teacher", "needs_teacher", "resolve_teacher"]
