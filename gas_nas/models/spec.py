"""Specs as frozen dataclasses: what a discriminator is and how one trial trains it.

Every config crosses a file boundary (search space, architecture YAML, Optuna user
attributes), so each dataclass has one `from_dict` that validates and one `to_dict`
(`dataclasses.asdict`) that inverts it. Keys are never listed by hand elsewhere.
"""

from __future__ import annotations

import dataclasses
import types
import math
import os
import stat
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from gas_nas.common.errors import SpaceError
from gas_nas.models.recipes import DEFAULT_RECIPE, OPTIMIZERS, RECIPE_KEYS, TEACHER_KEYS, get_recipe

OVERRIDE_KEYS = RECIPE_KEYS + TEACHER_KEYS  # what a file may change of its recipe, key by key

ARCH_FORMAT = "gas-nas/arch/v1"
MAX_COHORT = 64  # trials trained together; past this the fused kernels gain nothing more
MAX_YAML_BYTES = 4 * 2**20  # a search space is a few KB; anything this big is a mistake
MAX_YAML_DEPTH = 8  # the deepest schema path is seeds[i].arch.key (4 levels)
# Caps that fit one machine, each named in its error: far beyond any sensible trial.
MAX_ITERATIONS = 1_000_000
MAX_BATCH_SIZE = 4096
MAX_Z_DIM = 4096
MAX_STEPS = 100  # d_steps, g_steps
MAX_SAMPLES = 10_000  # MNIST's held-out test set has 10,000 images to compare with
MAX_GAP_STEPS = 100_000  # duality-gap best-response steps; the default 200 costs ~3% of a paper trial
MAX_DERIVE = 20  # differentiable strategy: trials derived per supernet

Conv = Literal["standard", "depthwise_separable"]
Norm = Literal["batch", "none", "spectral", "group"]
Activation = Literal["relu", "leaky_relu"]
Downsample = Literal["maxpool", "strided", "avgpool"]
Output = Literal["sigmoid", "linear"]
SamplerName = Literal["tpe", "gp", "nsgaii", "random"]  # gas_nas.study.samplers.SAMPLERS builds each


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
    density: float = 1.0  # fraction of masked weights kept (gas_nas/models/sparsity.py); 1.0 is dense

    def __post_init__(self) -> None:
        _check_types(self, "discriminator")
        if not (math.isfinite(self.density) and 0 < self.density <= 1):
            raise SpaceError(f"discriminator.density: must be in (0, 1] (the fraction of weights kept), got {self.density}")
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
    """How one LSGAN trial trains: a named recipe (`gas_nas/models/recipes.py`), the recipe keys changed
    from it, and the budget. Defaults: the GAS recipe and the paper's budget.

    Recipe keys (`RECIPE_KEYS`) left None take the recipe's value. `overrides` names those that
    do not come from the recipe (given in a file, or set to another value); `to_dict` writes
    `recipe`, the budget and only those, so flipping `recipe` in a written file changes the
    training. Switch recipes through `from_dict` or `resolve_train`: `dataclasses.replace` of
    `recipe` alone keeps the old recipe's values, as overrides.

    The teacher keys (`TEACHER_KEYS`, and `teacher`, the path of a `discriminator.pt`) exist only
    for a recipe with a teacher (`dgl`); they stay None, and unwritten, for the others.
    """

    recipe: str = DEFAULT_RECIPE
    iterations: int = 2000
    batch_size: int = 32
    d_steps: int | None = None  # recipe key
    g_steps: int | None = None  # recipe key
    optimizer: str | None = None  # recipe key: one of recipes.OPTIMIZERS
    lr: float | None = None  # recipe key
    beta1: float | None = None  # recipe key
    beta2: float | None = None  # recipe key
    z_dim: int = 100
    init_std: float | None = None  # recipe key
    log_every: int = 50
    divergence_loss: float = 1e4
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: forward passes under autocast, losses in fp32
    channels_last: bool = False  # NHWC memory layout for the convolutions (a speed option on CUDA)
    # Sparse discriminators (spec density < 1; gas_nas/models/sparsity.py): how the masks move.
    sparse_mode: Literal["static", "dynamic"] = "dynamic"  # static: the initial ERK masks stay
    sparse_regrow: Literal["random", "gradient"] = "random"  # SET (STU-GAN's D default) or RigL
    sparse_interval: int | None = None  # iterations between prune/regrow; None: a twentieth of the budget
    teacher_weight: float | None = None  # recipe key of a recipe with a teacher: lambda
    teacher_from: float | None = None  # recipe key of a recipe with a teacher: fraction of iterations before it starts
    teacher: str | None = None  # a `discriminator.pt` written by `gas-nas train`; None: the default teacher
    overrides: tuple[str, ...] = field(default=(), metadata={"internal": True})  # never a file key

    def __post_init__(self) -> None:
        recipe = get_recipe(self.recipe, "train.recipe")
        changed = set(self.overrides)
        for key, value in recipe.settings().items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
            elif getattr(self, key) != value:
                changed.add(key)
        object.__setattr__(self, "overrides", tuple(k for k in OVERRIDE_KEYS if k in changed))
        if not recipe.has_teacher:
            for key in (*TEACHER_KEYS, "teacher"):
                if getattr(self, key) is not None:
                    raise SpaceError(f"train.{key}: recipe {self.recipe} trains without a teacher; only a recipe with one uses it ({', '.join(_teacher_recipes())})")
        _check_types(self, "train", optional=(*TEACHER_KEYS, "teacher"))
        if self.optimizer not in OPTIMIZERS:
            raise SpaceError(f"train.optimizer: expected one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        caps = {"iterations": MAX_ITERATIONS, "batch_size": MAX_BATCH_SIZE, "d_steps": MAX_STEPS, "g_steps": MAX_STEPS, "z_dim": MAX_Z_DIM, "log_every": MAX_ITERATIONS}
        for key, cap in caps.items():
            _check_range(f"train.{key}", getattr(self, key), 1, cap)
        for key in ("lr", "init_std", "divergence_loss"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) > 0):
                raise SpaceError(f"train.{key}: must be a finite number > 0, got {getattr(self, key)}")
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise SpaceError(f"train.{key}: must be in [0, 1), got {getattr(self, key)}")
        if self.sparse_interval is not None:
            _check_range("train.sparse_interval", self.sparse_interval, 1, self.iterations)
        if recipe.has_teacher:
            if not (math.isfinite(self.teacher_weight) and self.teacher_weight >= 0):
                raise SpaceError(f"train.teacher_weight: must be a finite number >= 0, got {self.teacher_weight}")
            if not 0 <= self.teacher_from <= 1:
                raise SpaceError(f"train.teacher_from: must be in [0, 1] (a fraction of the iterations), got {self.teacher_from}")
            if self.teacher is not None and not self.teacher.strip():
                raise SpaceError("train.teacher: expected the path of a discriminator.pt, got an empty string")

    @property
    def teacher_start(self) -> int | None:
        """The last iteration without the teacher term (it is on from the next one), or None
        without a teacher recipe."""
        if self.teacher_from is None:
            return None
        return int(self.teacher_from * self.iterations)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "train") -> TrainConfig:
        """Every recipe key given is an override, even one equal to the recipe's value: old files
        spell out all keys, and a file that writes `lr` means that `lr` under any recipe."""
        config = _from_dict(cls, data, where)
        return dataclasses.replace(config, overrides=tuple(k for k in OVERRIDE_KEYS if k in data))

    def to_dict(self) -> dict[str, Any]:
        """`recipe`, the budget and the overrides only: what files and trial attributes record."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in OVERRIDE_KEYS and k != "overrides"}
        if data["teacher"] is None:  # recipes without a teacher write what they always wrote
            del data["teacher"]
        return data | {k: getattr(self, k) for k in self.overrides}


def _teacher_recipes() -> list[str]:
    from gas_nas.models.recipes import RECIPES

    return sorted(name for name, r in RECIPES.items() if r.has_teacher)


TRAIN_PRECEDENCE = "flags > arch file > space"


def resolve_train(layers: list[tuple[str, dict[str, Any]]]) -> tuple[TrainConfig, str]:
    """The one precedence for `train` keys: merge (label, keys) layers given lowest first, key by key.

    `train` and `search` pass the space, then the architecture file, then each command-line
    flag. A layer that names another recipe than the layers below drops their recipe-key
    overrides and their teacher (they were changes to that other recipe). Returns the config and one line saying
    where the recipe, the budget and each override came from.
    """
    merged: dict[str, Any] = {}
    source: dict[str, str] = {}
    for label, data in layers:
        below = merged.get("recipe", DEFAULT_RECIPE)
        if data.get("recipe", below) != below:
            for key in (*OVERRIDE_KEYS, "teacher"):
                merged.pop(key, None)
                source.pop(key, None)
        merged.update(data)
        source.update(dict.fromkeys(data, label))
    train = TrainConfig.from_dict(merged)
    default = TrainConfig().to_dict()
    keys = ["recipe", "iterations", "batch_size"]
    keys += [k for k, v in train.to_dict().items() if k not in keys and (k in train.overrides or v != default.get(k))]
    parts = [f"{k} {_show(getattr(train, k))} ({source.get(k, 'default')})" for k in keys]
    return train, f"training: {', '.join(parts)}; precedence: {TRAIN_PRECEDENCE}"


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class QualityConfig:
    """How sample quality is measured, and the thresholds a feasible trial must meet.

    The FID bound is `max_fid` (absolute) or, under `guard: relative`, `relative_fid` times the
    median FID of the study's paper cases, never above `backstop_fid` (`gas_nas.trial.guard`).
    `guard: auto` is relative below the paper's budget when the space has paper cases, else
    absolute. A file that writes `max_fid` but no `guard` gets `absolute`: the bound it wrote.
    """

    n_samples: int = 2000
    max_fid: float = 60.0
    min_classes: int = 8
    min_entropy: float = 2.0
    duality_gap_steps: int = 200  # best-response steps of gas_nas.trial.balance.duality_gap; 0: not measured
    guard: Literal["auto", "absolute", "relative"] = "auto"
    relative_fid: float = 1.5  # relative guard: this many times the paper cases' median FID
    backstop_fid: float = 150.0  # relative guard: no trial passes above this FID
    min_auc: float = 0.55  # give-up rule (gas_nas.trial.guard): D must rank real over generated at least this often ...
    min_spread: float = 0.01  # ... with outputs that vary at least this much, or its samples must pass the paper bar

    def __post_init__(self) -> None:
        _check_types(self, "quality")
        _check_range("quality.n_samples", self.n_samples, 2, MAX_SAMPLES)
        _check_range("quality.min_classes", self.min_classes, 0, 10)
        for key in ("max_fid", "min_entropy", "backstop_fid", "min_spread"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise SpaceError(f"quality.{key}: must be a finite number >= 0, got {getattr(self, key)}")
        if not (math.isfinite(self.relative_fid) and self.relative_fid > 0):
            raise SpaceError(f"quality.relative_fid: must be a finite number > 0, got {self.relative_fid}")
        if not 0 <= self.min_auc <= 1:
            raise SpaceError(f"quality.min_auc: must be between 0 and 1, got {self.min_auc}")
        _check_range("quality.duality_gap_steps", self.duality_gap_steps, 0, MAX_GAP_STEPS)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "quality") -> QualityConfig:
        data = mapping(data, where)
        if "max_fid" in data and "guard" not in data:  # the bound a file writes is the bound it gets
            data = {**data, "guard": "absolute"}
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
    sampler: SamplerName = "tpe"
    cohort: Literal["auto"] | int = "auto"  # trials trained together in one process; auto: see train.auto_cohort
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retries: int = 2
    strategy: Literal["optuna", "differentiable"] = "optuna"  # differentiable: supernets propose trials (gas_nas/strategies/differentiable.py)
    lambdas: tuple[float, ...] = (0.0001, 0.001, 0.01)  # differentiable: one supernet per size weight (docs/guide-differentiable.md: where from)
    derive: int = 1  # differentiable: trials per supernet, the most probable combinations

    def __post_init__(self) -> None:
        _check_types(self, "search")
        check_lambdas(self.lambdas, "search.lambdas")
        _check_range("search.derive", self.derive, 1, MAX_DERIVE)
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
    train = TrainConfig.from_dict(anchor_paths(mapping(doc["train"], f"{where}: train"), path), f"{where}: train") if "train" in doc else None
    return spec, train, mapping(doc.get("metadata") or {}, f"{where}: metadata")


def train_section(path: str | Path) -> dict[str, Any]:
    """The `train` keys a space or architecture file gives itself (one precedence layer of
    `resolve_train`); call it on a file already validated by `load_space` / `load_arch`."""
    return anchor_paths(dict(read_yaml(path).get("train") or {}), path)


def anchor_paths(section: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """A `train` section whose relative `teacher` path is resolved against the file naming it."""
    teacher = section.get("teacher")
    if isinstance(teacher, str) and teacher.strip() and not Path(teacher).expanduser().is_absolute():
        section = {**section, "teacher": str(Path(path).expanduser().absolute().parent / teacher)}
    elif isinstance(teacher, str) and teacher.strip():
        section = {**section, "teacher": str(Path(teacher).expanduser())}
    return section


def read_yaml(path: str | Path) -> dict:
    """Parse a YAML mapping, turning every failure into one SpaceError line.

    Only regular files up to MAX_YAML_BYTES are opened (a FIFO would block, /dev/zero never
    ends); nesting beyond MAX_YAML_DEPTH and duplicate keys are refused while parsing.
    """
    path = Path(path)
    text = _read_text(path)
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SpaceError(f"{path}: not valid YAML{at}: {' '.join(str(getattr(exc, 'problem', None) or exc).split())}") from None
    except RecursionError:
        raise SpaceError(f"{path}: nested too deeply (at most {MAX_YAML_DEPTH} levels)") from None
    except (ValueError, OverflowError) as exc:  # e.g. a date like 2024-02-30
        raise SpaceError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if _height(doc, {}, 0) > MAX_YAML_DEPTH:  # aliases nest without the parser seeing it
        raise SpaceError(f"{path}: nested deeper than {MAX_YAML_DEPTH} levels (through aliases)")
    return mapping(doc, str(path))


def _height(value: Any, memo: dict[int, int], level: int) -> int:
    """Nesting height of a parsed document; stops past the limit (so cycles end too)."""
    if not isinstance(value, (dict, list)):
        return 0
    if id(value) in memo:
        return memo[id(value)]
    if level > MAX_YAML_DEPTH:
        return MAX_YAML_DEPTH + 1
    children = list(value.keys()) + list(value.values()) if isinstance(value, dict) else value
    memo[id(value)] = height = 1 + max((_height(c, memo, level + 1) for c in children), default=0)
    return height


def _read_text(path: Path) -> str:
    try:
        info = path.stat()
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise SpaceError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise SpaceError(f"{path}: not a regular file (a YAML file is expected)")
    if info.st_size > MAX_YAML_BYTES:
        raise SpaceError(f"{path}: {info.st_size:,} bytes, more than the {MAX_YAML_BYTES:,} a YAML file may have")
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | getattr(os, "O_NONBLOCK", 0))) as f:
            data = f.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise SpaceError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_YAML_BYTES:
        raise SpaceError(f"{path}: more than the {MAX_YAML_BYTES:,} bytes a YAML file may have")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpaceError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (silently last-wins otherwise) and deep nesting."""

    def compose_node(self, parent, index):
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_YAML_DEPTH + 1:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"nested deeper than {MAX_YAML_DEPTH} levels at line {mark.line + 1}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges; SafeLoader resolves it
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: SafeLoader names it below
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


# ---------------------------------------------------------------- validation helpers


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass (strings because of `from __future__`)."""
    hints = typing.get_type_hints(cls, globalns=globals())
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if not f.metadata.get("internal")}


def _arms(tp: Any) -> tuple:
    """The alternatives of a union type (`Literal["auto"] | int`), or () for any other type."""
    if get_origin(tp) not in (typing.Union, types.UnionType):
        return ()
    return tuple(arm for arm in get_args(tp) if arm is not type(None))  # `X | None`: None means "not set"


def allowed(tp: Any) -> str:
    if _arms(tp):
        return " or ".join(allowed(arm) for arm in _arms(tp))
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, get_args(tp)))
    if get_origin(tp) is tuple:
        return "a list of " + allowed(get_args(tp)[0]).removeprefix("a ").removeprefix("an ") + "s"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def coerce(tp: Any, value: Any, where: str) -> Any:
    """Check one value against a field type; ints are accepted where floats are expected, and
    None where the type admits it (`int | None`: not set)."""
    if value is None and get_origin(tp) in (typing.Union, types.UnionType) and type(None) in get_args(tp):
        return None
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
    elif tp is str:
        if isinstance(value, str):
            return value
    elif get_origin(tp) is tuple:  # tuple[X, ...]: a YAML list
        if isinstance(value, (list, tuple)):
            return tuple(coerce(get_args(tp)[0], v, f"{where}[{i}]") for i, v in enumerate(value))
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


def _check_types(obj: Any, where: str, optional: tuple[str, ...] = ()) -> None:
    """Every field against its type; those named in `optional` may also be None (not set)."""
    for name, tp in field_types(type(obj)).items():
        if name in optional and getattr(obj, name) is None:
            continue
        coerce(tp, getattr(obj, name), f"{where}.{name}")


def check_keys(data: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        raise SpaceError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(known))}")


def check_lambdas(values: tuple[float, ...], where: str) -> None:
    """Size weights of the differentiable strategy: at least one, each finite and >= 0."""
    if not values:
        raise SpaceError(f"{where}: expected at least one number")
    for v in values:
        if not (math.isfinite(v) and v >= 0):
            raise SpaceError(f"{where}: each lambda must be a finite number >= 0, got {v}")


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
    "resolve_train",
    "train_section",
    "save_arch",
]
