"""Specs as frozen dataclasses: what a discriminator is and how one trial trains it.

Every config crosses a file boundary (search space, architecture YAML, Optuna user
attributes), so each dataclass has one `from_dict` that validates and one `to_dict`
(`dataclasses.asdict`) that inverts it. Keys are never listed by hand elsewhere.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from gas_nas.errors import SpaceError

ARCH_FORMAT = "gas-nas/arch/v1"
MAX_COHORT = 64  # trials trained together; past this the fused kernels gain nothing more
MAX_GAP_STEPS = 100_000  # duality-gap best-response steps; the default 200 costs ~3% of a paper trial

Conv = Literal["standard", "depthwise_separable"]
Norm = Literal["batch", "none", "spectral", "group"]
Activation = Literal["relu", "leaky_relu"]
Downsample = Literal["maxpool", "strided", "avgpool"]
Output = Literal["sigmoid", "linear"]


@dataclass(frozen=True)
class DiscriminatorSpec:
    """One discriminator. Defaults are the original GAS/LSGAN discriminator (paper case 1).

    With `dense_blocks > 0` the stages are dense blocks, each ending in a transition that
    halves the resolution, so `depth` (the number of downsampling stages) must equal it.
    """

    conv: Conv = "standard"
    inception: bool = False
    dense_blocks: int = 0
    base_filters: int = 32
    depth: int = 4
    norm: Norm = "batch"
    activation: Activation = "relu"
    downsample: Downsample = "maxpool"
    growth_rate: int = 16
    output: Output = "sigmoid"

    def __post_init__(self) -> None:
        _check_types(self, "discriminator")
        _check_range("discriminator.dense_blocks", self.dense_blocks, 0, 4)
        _check_range("discriminator.depth", self.depth, 1, 5)
        _check_range("discriminator.base_filters", self.base_filters, 2, 1024)
        _check_range("discriminator.growth_rate", self.growth_rate, 2, 256)
        for key in ("base_filters", "growth_rate"):
            if getattr(self, key) % 2:
                raise SpaceError(f"discriminator.{key}: must be even (inception splits it in two halves), got {getattr(self, key)}")
        if self.dense_blocks and self.depth != self.dense_blocks:
            raise SpaceError(
                f"discriminator.depth: with dense_blocks={self.dense_blocks} each block's transition is a "
                f"downsampling stage, so depth must be {self.dense_blocks}, got {self.depth}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "discriminator") -> DiscriminatorSpec:
        data = dict(data)
        if data.get("dense_blocks") and "depth" not in data:
            data["depth"] = data["dense_blocks"]
        return _from_dict(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """The budget and optimiser of one LSGAN trial. Defaults are the GAS paper's.

    `recipe: dcgan` swaps in DCGAN's optimiser (Adam 2e-4, beta1 0.5); keys given next to
    it still win. DCGAN's LeakyReLU is a discriminator choice: set `activation`.
    """

    recipe: Literal["gas", "dcgan"] = "gas"
    iterations: int = 2000
    batch_size: int = 32
    d_steps: int = 1
    g_steps: int = 4
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    lr: float = 1e-3
    beta1: float = 0.5
    beta2: float = 0.999
    z_dim: int = 100
    init_std: float = 0.02
    log_every: int = 50
    divergence_loss: float = 1e4
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: forward passes under autocast, losses in fp32
    channels_last: bool = False  # NHWC memory layout for the convolutions (a speed option on CUDA)

    def __post_init__(self) -> None:
        _check_types(self, "train")
        for key in ("iterations", "batch_size", "d_steps", "g_steps", "z_dim", "log_every"):
            _check_range(f"train.{key}", getattr(self, key), 1, 10**9)
        for key in ("lr", "init_std", "divergence_loss"):
            if not getattr(self, key) > 0:
                raise SpaceError(f"train.{key}: must be > 0, got {getattr(self, key)}")
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise SpaceError(f"train.{key}: must be in [0, 1), got {getattr(self, key)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "train") -> TrainConfig:
        data = dict(data)
        if data.get("recipe") == "dcgan":
            data = {"optimizer": "adam", "lr": 2e-4, "beta1": 0.5, "beta2": 0.999, **data}
        return _from_dict(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class QualityConfig:
    """How sample quality is measured, and the thresholds a feasible trial must meet."""

    n_samples: int = 2000
    max_fid: float = 60.0
    min_classes: int = 8
    min_entropy: float = 2.0
    duality_gap_steps: int = 200  # best-response steps of gas_nas.balance.duality_gap; 0: not measured

    def __post_init__(self) -> None:
        _check_types(self, "quality")
        _check_range("quality.n_samples", self.n_samples, 2, 10**7)
        _check_range("quality.min_classes", self.min_classes, 0, 10)
        _check_range("quality.duality_gap_steps", self.duality_gap_steps, 0, MAX_GAP_STEPS)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "quality") -> QualityConfig:
        return _from_dict(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SearchConfig:
    """How the Optuna study runs: objectives, sampler, fault tolerance.

    `size` picks the size objective: fp32 parameter MB (any device) or peak training memory MB
    (CUDA only; falls back to parameter MB on CPU). `balance` picks the second objective: the
    loss-based `imbalance` or the `duality_gap` (needs quality.duality_gap_steps > 0).
    `quality_objective: fid` adds the Fréchet distance as a third objective to minimise.
    """

    size: Literal["param_mb", "peak_mb"] = "param_mb"
    balance: Literal["imbalance", "duality_gap"] = "imbalance"
    quality_objective: Literal["none", "fid"] = "none"
    sampler: Literal["tpe", "nsgaii", "random", "gp"] = "tpe"
    cohort: Literal["auto"] | int = "auto"  # trials trained together in one process; auto: see train.auto_cohort
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retries: int = 2

    def __post_init__(self) -> None:
        _check_types(self, "search")
        if self.cohort != "auto":
            _check_range("search.cohort", self.cohort, 1, MAX_COHORT)
        _check_range("search.heartbeat_interval", self.heartbeat_interval, 1, 3600)
        _check_range("search.max_retries", self.max_retries, 0, 100)
        if self.grace_period <= self.heartbeat_interval:
            raise SpaceError(f"search.grace_period: must exceed heartbeat_interval ({self.heartbeat_interval}), got {self.grace_period}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "search") -> SearchConfig:
        return _from_dict(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- architecture files


def arch_document(spec: DiscriminatorSpec, train: TrainConfig | None = None, metadata: dict | None = None) -> dict:
    """The architecture YAML document that `cases --write`, `export` and `train --arch` share."""
    doc: dict[str, Any] = {"format": ARCH_FORMAT, "discriminator": spec.to_dict()}
    if train is not None:
        doc["train"] = train.to_dict()
    if metadata:
        doc["metadata"] = metadata
    return doc


def save_arch(path: str | Path, spec: DiscriminatorSpec, train: TrainConfig | None = None, metadata: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(arch_document(spec, train, metadata), sort_keys=False))
    return path


def load_arch(path: str | Path) -> tuple[DiscriminatorSpec, TrainConfig | None, dict]:
    """Read an architecture YAML; returns (spec, train config or None, metadata)."""
    doc = read_yaml(path)
    where = str(path)
    check_keys(doc, {"format", "discriminator", "train", "metadata"}, where)
    if doc.get("format") != ARCH_FORMAT:
        raise SpaceError(f"{where}: format: expected {ARCH_FORMAT!r}, got {doc.get('format')!r}")
    if not isinstance(doc.get("discriminator"), dict):
        raise SpaceError(f"{where}: discriminator: expected a mapping of architecture keys")
    spec = DiscriminatorSpec.from_dict(doc["discriminator"], f"{where}: discriminator")
    train = TrainConfig.from_dict(mapping(doc["train"], f"{where}: train"), f"{where}: train") if "train" in doc else None
    return spec, train, mapping(doc.get("metadata") or {}, f"{where}: metadata")


def read_yaml(path: str | Path) -> dict:
    """Parse a YAML mapping, turning every failure into one SpaceError line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpaceError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SpaceError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    return mapping(doc, str(path))


# ---------------------------------------------------------------- validation helpers


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass (strings because of `from __future__`)."""
    hints = typing.get_type_hints(cls, globalns=globals())
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _arms(tp: Any) -> tuple:
    """The alternatives of a union type (`Literal["auto"] | int`), or () for any other type."""
    return get_args(tp) if get_origin(tp) in (typing.Union, types.UnionType) else ()


def allowed(tp: Any) -> str:
    if _arms(tp):
        return " or ".join(allowed(arm) for arm in _arms(tp))
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, get_args(tp)))
    return {bool: "true or false", int: "an integer", float: "a number"}.get(tp, str(tp))


def coerce(tp: Any, value: Any, where: str) -> Any:
    """Check one value against a field type; ints are accepted where floats are expected."""
    for arm in _arms(tp):
        try:
            return coerce(arm, value, where)
        except SpaceError:
            continue
    if get_origin(tp) is Literal:
        if value in get_args(tp) and type(value) is type(get_args(tp)[0]):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    raise SpaceError(f"{where}: expected {allowed(tp)}, got {value!r}")


def _from_dict(cls: type, data: Any, where: str) -> Any:
    types_ = field_types(cls)
    data = mapping(data, where)
    check_keys(data, set(types_), where)
    values = {k: coerce(types_[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except SpaceError as exc:  # cross-field checks name their own section ("train.lr: ..."): re-anchor at `where`
        section, _, rest = str(exc).partition(".")
        raise SpaceError(f"{where}.{rest}" if rest and " " not in section else str(exc)) from None


def _check_types(obj: Any, where: str) -> None:
    for name, tp in field_types(type(obj)).items():
        coerce(tp, getattr(obj, name), f"{where}.{name}")


def check_keys(data: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        raise SpaceError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(known))}")


def _check_range(where: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise SpaceError(f"{where}: must be between {low} and {high}, got {value}")


def mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise SpaceError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


__all__ = [
    "ARCH_FORMAT",
    "DiscriminatorSpec",
    "QualityConfig",
    "SearchConfig",
    "TrainConfig",
    "arch_document",
    "load_arch",
    "read_yaml",
    "save_arch",
]
