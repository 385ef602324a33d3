"""The YAML search space: axes over DiscriminatorSpec fields, budgets, and the paper cases.

`load_space(path)` validates the whole file up front and names the key path of the first
problem; `sample(trial, space)` is the only place that talks to an Optuna trial (duck-typed,
so this module does not import Optuna).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from gas_nas.common.errors import SpaceError
from gas_nas.models.spec import (
    DiscriminatorSpec,
    QualityConfig,
    SearchConfig,
    TrainConfig,
    allowed,
    anchor_paths,
    check_keys,
    coerce,
    field_types,
    mapping,
    read_yaml,
)

DEFAULT_SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "gas.yaml"
TOP_KEYS = {"name", "description", "axes", "train", "quality", "search", "seeds"}
AXIS_KEYS = {"choices", "low", "high", "step", "default"}
CASE_KEYS = {"name", "paper_mb", "note", "arch"}


@dataclass(frozen=True)
class Axis:
    """One searchable spec field: categorical `choices`, or an integer range low..high."""

    name: str
    choices: tuple | None = None
    low: int | None = None
    high: int | None = None
    step: int = 1
    default: Any = None

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return any(value == c and type(value) is type(c) for c in self.choices)
        return isinstance(value, int) and self.low <= value <= self.high and (value - self.low) % self.step == 0

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        return f"an integer in {self.low}..{self.high}" + (f" step {self.step}" if self.step != 1 else "")


@dataclass(frozen=True)
class PaperCase:
    """A hand-made discriminator of the GAS study, enqueued as one of the first trials."""

    name: str
    paper_mb: float | None
    note: str
    spec: DiscriminatorSpec


@dataclass(frozen=True)
class SearchSpace:
    name: str
    path: Path
    axes: tuple[Axis, ...]
    train: TrainConfig
    quality: QualityConfig
    search: SearchConfig
    cases: tuple[PaperCase, ...]

    def axis(self, name: str) -> Axis | None:
        return next((a for a in self.axes if a.name == name), None)

    def defaults(self) -> dict[str, Any]:
        return {a.name: a.default for a in self.axes}


def load_space(path: str | Path | None = None) -> SearchSpace:
    """Load and fully validate a search-space YAML; every problem is one SpaceError line."""
    path = Path(path) if path is not None else DEFAULT_SPACE
    doc = read_yaml(path)
    where = str(path)
    check_keys(doc, TOP_KEYS, where)
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
        raise SpaceError(f"{where}: name: expected 1 to 200 printable characters (it names the study), got {name!r}")
    axes = tuple(_axis(key, value, f"{where}: axes.{key}") for key, value in mapping(doc.get("axes") or {}, f"{where}: axes").items())
    space = SearchSpace(
        name=name,
        path=path,
        axes=axes,
        train=TrainConfig.from_dict(anchor_paths(mapping(doc.get("train") or {}, f"{where}: train"), path), f"{where}: train"),
        quality=QualityConfig.from_dict(mapping(doc.get("quality") or {}, f"{where}: quality"), f"{where}: quality"),
        search=SearchConfig.from_dict(mapping(doc.get("search") or {}, f"{where}: search"), f"{where}: search"),
        cases=(),
    )
    if space.search.balance == "duality_gap" and space.quality.duality_gap_steps == 0:
        raise SpaceError(f"{where}: search.balance: duality_gap needs quality.duality_gap_steps > 0 (0 turns the gap off)")
    seeds = doc.get("seeds") or []
    if not isinstance(seeds, list):
        raise SpaceError(f"{where}: seeds: expected a list of cases, got {type(seeds).__name__}")
    cases = tuple(_case(space, item, f"{where}: seeds[{i}]") for i, item in enumerate(seeds))
    names = [c.name for c in cases]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise SpaceError(f"{where}: seeds[{i}].name: duplicate case name {n!r}")
    return SearchSpace(**{f.name: getattr(space, f.name) for f in fields(space)} | {"cases": cases})


def _axis(name: str, value: Any, where: str) -> Axis:
    """Parse `[a, b]` (choices), `{low, high[, step]}` (int range), mapping with `choices`, or a scalar (fixed)."""
    tp = field_types(DiscriminatorSpec).get(name)
    if tp is None:
        raise SpaceError(f"{where}: unknown axis; allowed: {', '.join(field_types(DiscriminatorSpec))}")
    if isinstance(value, list):
        value = {"choices": value}
    elif not isinstance(value, dict):
        value = {"choices": [value]}
    check_keys(value, AXIS_KEYS, where)
    if "choices" in value:
        if "low" in value or "high" in value:
            raise SpaceError(f"{where}: give either choices or low/high, not both")
        choices = value["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}.choices: expected a non-empty list of {allowed(tp)}")
        choices = tuple(coerce(tp, c, f"{where}.choices") for c in choices)
        for c in choices:
            _probe(name, c, f"{where}.choices")
        axis = Axis(name, choices=choices)
    else:
        if tp is not int:
            raise SpaceError(f"{where}: {name} is categorical; give choices ({allowed(tp)})")
        if "low" not in value or "high" not in value:
            raise SpaceError(f"{where}: an integer range needs both low and high")
        low, high = (coerce(int, value[k], f"{where}.{k}") for k in ("low", "high"))
        step = coerce(int, value.get("step", 1), f"{where}.step")
        if low > high or step < 1:
            raise SpaceError(f"{where}: impossible range low={low} high={high} step={step}")
        for v in (low, high):
            _probe(name, v, where)
        axis = Axis(name, low=low, high=high, step=step)
    spec_default = getattr(DiscriminatorSpec(), name)
    if "default" in value:
        default = coerce(tp, value["default"], f"{where}.default")
        if not axis.contains(default):
            raise SpaceError(f"{where}.default: {default!r} is not {axis.describe()}")
    else:
        default = spec_default if axis.contains(spec_default) else (axis.choices[0] if axis.choices else axis.low)
    return Axis(axis.name, axis.choices, axis.low, axis.high, axis.step, default)


def _probe(name: str, value: Any, where: str) -> None:
    """Reject a value no spec can take (e.g. odd base_filters) at the axis, not at trial time."""
    extra = {"depth": value} if name == "dense_blocks" and value else {}
    if name == "depth":
        extra = {"dense_blocks": 0}
    try:
        DiscriminatorSpec(**{name: value, **extra})
    except SpaceError as exc:
        raise SpaceError(f"{where}: {str(exc).split(': ', 1)[-1]}") from None


def _case(space: SearchSpace, item: Any, where: str) -> PaperCase:
    item = mapping(item, where)
    check_keys(item, CASE_KEYS, where)
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SpaceError(f"{where}.name: expected a non-empty string")
    paper_mb = item.get("paper_mb")
    if paper_mb is not None and (isinstance(paper_mb, bool) or not isinstance(paper_mb, (int, float))):
        raise SpaceError(f"{where}.paper_mb: expected a number, got {paper_mb!r}")
    arch = mapping(item.get("arch") or {}, f"{where}.arch")
    check_keys(arch, set(field_types(DiscriminatorSpec)), f"{where}.arch")
    values = {**space.defaults(), **arch}
    if values.get("dense_blocks") and "depth" not in arch:
        values["depth"] = values["dense_blocks"]
    spec = DiscriminatorSpec.from_dict(values, f"{where}.arch")
    values = spec.to_dict()
    for axis in space.axes:  # fixed axes too: a value outside one would be shown, then trained as the axis value
        if _active(axis.name, values) and not axis.contains(values[axis.name]):
            raise SpaceError(f"{where}.arch.{axis.name}: {values[axis.name]!r} is outside the space ({axis.describe()})")
    for key, value in spec.to_dict().items():
        if space.axis(key) is None and value != getattr(DiscriminatorSpec(), key):
            raise SpaceError(f"{where}.arch.{key}: {key} is not an axis of the space, so it stays {getattr(DiscriminatorSpec(), key)!r}")
    return PaperCase(name=name, paper_mb=None if paper_mb is None else float(paper_mb), note=str(item.get("note", "")), spec=spec)


def _active(name: str, values: dict[str, Any]) -> bool:
    """Conditional axes: depth only without dense blocks (they set it), growth_rate only with them."""
    dense = values.get("dense_blocks", 0)
    if name == "depth":
        return not dense
    if name == "growth_rate":
        return bool(dense)
    return True


def sampled_params(space: SearchSpace, spec: DiscriminatorSpec) -> dict[str, Any]:
    """The Optuna params a trial of `spec` would have (what `enqueue_trial` must be given)."""
    values = spec.to_dict()
    return {a.name: values[a.name] for a in _ordered(space.axes) if _active(a.name, values) and not _fixed(a)}


def _fixed(axis: Axis) -> bool:
    return axis.choices is not None and len(axis.choices) == 1 or axis.low == axis.high and axis.choices is None


def sample(trial: Any, space: SearchSpace) -> DiscriminatorSpec:
    """Ask an Optuna trial for one spec. Fixed axes are not suggested; conditional ones only when active."""
    values: dict[str, Any] = {}
    for axis in _ordered(space.axes):
        if not _active(axis.name, values):
            continue
        if _fixed(axis):
            values[axis.name] = axis.choices[0] if axis.choices is not None else axis.low
        elif axis.choices is not None:
            values[axis.name] = trial.suggest_categorical(axis.name, list(axis.choices))
        else:
            values[axis.name] = trial.suggest_int(axis.name, axis.low, axis.high, step=axis.step)
    if values.get("dense_blocks"):
        values["depth"] = values["dense_blocks"]
    return DiscriminatorSpec.from_dict(values)


def _ordered(axes: tuple[Axis, ...]) -> list[Axis]:
    """dense_blocks first: whether depth and growth_rate are searched depends on it."""
    return sorted(axes, key=lambda a: a.name != "dense_blocks")


__all__ = ["Axis", "DEFAULT_SPACE", "PaperCase", "SearchSpace", "load_space", "sample", "sampled_params"]
