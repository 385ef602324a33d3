"""A discriminator supernet for one-shot differentiable search (alphaGAN, DARTS, FBNetV2).

Every candidate of the space's mixable axes lives in one network, mixed by per-axis weights
(probability vectors, one set per axis shared by every stage, as the space is global):

- `op`: conv type x inception, one mixed layer per stage (each candidate its own weights);
- `downsample`: pooling after the layer, or `strided`, the same layer's weights at stride 2;
- `base_filters`: channel masks on the widest network (FBNetV2): candidate b keeps the
  channels the discrete discriminator with b filters has, masked inside a layer wherever a
  channel-wise stage (a depthwise conv, a norm) would carry biases into masked channels;
- `depth`: a mixture of exits, one head after each candidate depth.

Axes that change topology or statistics (dense blocks, norm, activation, output, growth rate,
density) are fixed in one run at the space's defaults. With one-hot weights the supernet
computes exactly what `build_discriminator(spec)` computes with the same weights
(`discretize` copies them; tests/test_supernet.py checks every candidate).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from gas_nas.common.errors import SpaceError
from gas_nas.models.blocks import ConvUnit, Inception, SeparableConv, SeparableInception, create_act, create_downsample, create_layer, create_norm
from gas_nas.models.networks import Discriminator, feature_side
from gas_nas.models.spec import DiscriminatorSpec

AXES = ("op", "downsample", "base_filters", "depth")  # the mixed axes, in the order of `param_table`'s dims
FIXED = ("dense_blocks", "norm", "activation", "growth_rate", "output", "density")  # held at the space's defaults
NORMS = ("batch", "none")  # spectral norm of a wide weight is not its slice's; group norm's groups depend on the width


@dataclass(frozen=True)
class SupernetSpace:
    """The candidates of each mixed axis, in the space YAML's order, and the fixed spec fields."""

    ops: tuple[tuple[str, bool], ...]  # (conv, inception)
    downsamples: tuple[str, ...]
    base_filters: tuple[int, ...]
    depths: tuple[int, ...]
    fixed: dict[str, Any]

    def candidates(self, axis: str) -> tuple:
        return {"op": self.ops, "downsample": self.downsamples, "base_filters": self.base_filters, "depth": self.depths}[axis]

    def candidate_lists(self, axes: tuple[str, ...] = AXES) -> dict[str, list]:
        """`axes`' candidates as JSON values (tuples become lists): what records and keys store."""
        return {a: [list(c) if isinstance(c, tuple) else c for c in self.candidates(a)] for a in axes}

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(self.candidates(a)) for a in AXES)

    @property
    def mixed(self) -> tuple[str, ...]:
        """The axes with more than one candidate (the others need no weights)."""
        return tuple(a for a in AXES if len(self.candidates(a)) > 1)

    def spec(self, choice: dict[str, int]) -> DiscriminatorSpec:
        """The discrete discriminator of one candidate index per axis."""
        conv, inception = self.ops[choice["op"]]
        return DiscriminatorSpec.from_dict(
            {"conv": conv, "inception": inception, "downsample": self.downsamples[choice["downsample"]],
             "base_filters": self.base_filters[choice["base_filters"]], "depth": self.depths[choice["depth"]]} | self.fixed
        )

    def choices(self) -> Iterator[dict[str, int]]:
        """Every combination, as index dicts."""
        for index in itertools.product(*(range(n) for n in self.sizes)):
            yield dict(zip(AXES, index))


def supernet_space(space) -> SupernetSpace:
    """The supernet of a `SearchSpace`: candidates from its axes (an axis it leaves out has the
    spec's default as its only candidate); a space the supernet cannot represent is one line."""
    defaults = DiscriminatorSpec().to_dict()

    def values(name: str) -> tuple:
        axis = space.axis(name)
        if axis is None:
            return (defaults[name],)
        return tuple(axis.choices) if axis.choices is not None else tuple(range(axis.low, axis.high + 1, axis.step))

    def default(name: str) -> Any:
        axis = space.axis(name)
        return defaults[name] if axis is None or axis.default is None else axis.default

    fixed = {name: default(name) for name in FIXED}
    where = f"{space.path}: search.strategy differentiable"
    if fixed["dense_blocks"] != 0:
        raise SpaceError(f"{where}: the supernet has no dense blocks; set axes.dense_blocks.default to 0 (it is {fixed['dense_blocks']})")
    if fixed["norm"] not in NORMS:
        raise SpaceError(f"{where}: the supernet supports norm {' or '.join(NORMS)}; set axes.norm.default to one (it is {fixed['norm']})")
    result = SupernetSpace(
        ops=tuple(itertools.product(values("conv"), values("inception"))),
        downsamples=values("downsample"),
        base_filters=values("base_filters"),
        depths=values("depth"),
        fixed=fixed,
    )
    if not result.mixed:
        raise SpaceError(f"{where}: no axis can be mixed (conv, inception, downsample, base_filters and depth each have one value)")
    return result


# ---------------------------------------------------------------- the network

_STRIDED = "strided"


def _conv(m: nn.Conv2d, x: torch.Tensor, stride: int) -> torch.Tensor:
    """`m` at `stride` (its weights are shared between the strided and pooled candidates)."""
    return F.conv2d(x, m.weight, m.bias, stride, m.padding, m.dilation, m.groups)


def _mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask.view(1, -1, 1, 1)


def _conv_unit(m: ConvUnit, x, stride, in_mask, inner):
    return _conv(m[0], x, stride)


def _separable(m: SeparableConv, x, stride, in_mask, inner):
    h = _mask(m[1](_conv(m[0], x, stride)), in_mask)  # depthwise: a masked channel holds its bias and norm shift
    return m[3](_conv(m[2], h, 1))


def _inception(m: Inception, x, stride, in_mask, inner):
    return torch.cat([_conv(m.branch1, x, stride), _conv(m.branch2, x, stride)], dim=1)


def _separable_inception(m: SeparableInception, x, stride, in_mask, inner):
    branch2 = _separable(m.branch2[1], _conv(m.branch2[0], x, 1), stride, inner, None)
    return torch.cat([_conv(m.branch1, x, stride), branch2], dim=1)


FORWARDS = {ConvUnit: _conv_unit, SeparableConv: _separable, Inception: _inception, SeparableInception: _separable_inception}


def _out_positions(layer: nn.Module, wide: int, width: int) -> list[int]:
    """Where the `width` channels of a discrete layer sit in the wide layer's output: a prefix,
    or for inception each branch's prefix (branch 1 holds the first half of the channels)."""
    if isinstance(layer, (Inception, SeparableInception)):
        return list(range(width // 2)) + [wide // 2 + j for j in range(width - width // 2)]
    return list(range(width))


def _inner_width(layer: nn.Module, width: int) -> int | None:
    """The width of a separable inception's second branch (masked inside it); None for the others."""
    return width - width // 2 if isinstance(layer, SeparableInception) else None


class SuperDiscriminator(nn.Module):
    """(B, 1, 28, 28) images and per-axis weights -> (B, 1) scores, mixed over every candidate."""

    def __init__(self, sspace: SupernetSpace):
        super().__init__()
        self.sspace = sspace
        norm, widest = sspace.fixed["norm"], max(sspace.base_filters)
        self.act = create_act(sspace.fixed["activation"])
        self.pools = nn.ModuleDict({d: create_downsample(d) for d in sspace.downsamples if d != _STRIDED})
        self.stages = nn.ModuleList()
        ch = 1
        for i in range(max(sspace.depths)):
            out = widest * 2**i
            stage = nn.Module()
            stage.ops = nn.ModuleList(create_layer(conv, inception, ch, out, norm=norm, stride=1) for conv, inception in sspace.ops)
            stage.norms = nn.ModuleList(create_norm(norm, out) if i else nn.Identity() for _ in sspace.ops)  # GAS: none in stage 1
            for o, layer in enumerate(stage.ops):  # (base_filters, width) 0/1 masks of the output (and of the inner branch)
                masks = torch.zeros(len(sspace.base_filters), out)
                inner = torch.zeros(len(sspace.base_filters), out - out // 2)
                for b, base in enumerate(sspace.base_filters):
                    masks[b, _out_positions(layer, out, base * 2**i)] = 1
                    inner[b, : _inner_width(layer, base * 2**i) or 0] = 1
                stage.register_buffer(f"mask{o}", masks, persistent=False)
                stage.register_buffer(f"inner{o}", inner, persistent=False)
            self.stages.append(stage)
            ch = out
        self.heads = nn.ModuleList(nn.Linear(widest * 2 ** (d - 1) * feature_side(d) ** 2, 1) for d in sspace.depths)
        self.out = nn.Sigmoid() if sspace.fixed["output"] == "sigmoid" else nn.Identity()

    def forward(self, x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """`weights[axis]`: a probability vector over the axis's candidates (a one-hot vector
        gives one discrete discriminator)."""
        w_op, w_ds, w_base, w_depth = (weights[a] for a in AXES)
        in_mask, exits = None, []
        for i, stage in enumerate(self.stages):
            y, out_mask = 0, 0
            for o, (layer, norm) in enumerate(zip(stage.ops, stage.norms)):
                mask, inner = w_base @ getattr(stage, f"mask{o}"), w_base @ getattr(stage, f"inner{o}")
                forward = FORWARDS[type(layer)]
                mixed = 0
                if len(self.pools):
                    h = self.act(norm(forward(layer, x, 1, in_mask, inner)))
                    for d, pool in self.pools.items():
                        mixed = mixed + w_ds[self.sspace.downsamples.index(d)] * pool(h)
                if _STRIDED in self.sspace.downsamples:
                    h = self.act(norm(forward(layer, x, 2, in_mask, inner)))
                    mixed = mixed + w_ds[self.sspace.downsamples.index(_STRIDED)] * h
                y = y + w_op[o] * _mask(mixed, mask)
                out_mask = out_mask + w_op[o] * mask
            x, in_mask = y, out_mask
            if i + 1 in self.sspace.depths:
                exits.append(x)
        scores = [self.out(head(h.flatten(1))) for head, h in zip(self.heads, exits)]
        return sum(w * s for w, s in zip(w_depth, scores))  # (B, 1)


def one_hot(sspace: SupernetSpace, choice: dict[str, int], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The weights that select one candidate per axis."""
    return {a: F.one_hot(torch.tensor(choice[a], device=device), n).to(torch.get_default_dtype()) for a, n in zip(AXES, sspace.sizes)}


# ---------------------------------------------------------------- size


def param_table(sspace: SupernetSpace) -> torch.Tensor:
    """Parameters of every combination's discrete discriminator (built on the meta device, so
    nothing is allocated), indexed [op, downsample, base_filters, depth]."""
    table = torch.zeros(sspace.sizes, dtype=torch.float64, device="cpu")
    for choice in sspace.choices():
        with torch.device("meta"):
            model = Discriminator(sspace.spec(choice))
        table[tuple(choice[a] for a in AXES)] = sum(p.numel() for p in model.parameters())
    return table


def expected_params(table: torch.Tensor, probs: dict[str, torch.Tensor]) -> torch.Tensor:
    """E[parameters] when each axis is drawn independently from `probs` (exact: a sum over every
    combination), differentiable in the probabilities."""
    p = [probs[a].to(table) for a in AXES]
    return torch.einsum("o,s,b,d,osbd->", *p, table)


# ---------------------------------------------------------------- weights of one candidate


def discretize(supernet: SuperDiscriminator, choice: dict[str, int]) -> Discriminator:
    """The discrete discriminator of `choice` holding the supernet's weights for it (its slice of
    every wide tensor), so that both compute the same."""
    from gas_nas.models.networks import build_discriminator

    sspace = supernet.sspace
    spec = sspace.spec(choice)
    first = next(supernet.parameters())
    model = build_discriminator(spec, device=first.device).to(first.dtype)
    o, base = choice["op"], spec.base_filters
    slices: dict[str, tuple] = {}  # discrete module path -> (supernet module path, output rows, input columns)
    in_pos = [0]
    for i in range(spec.depth):
        layer = supernet.stages[i].ops[o]
        wide, width = max(sspace.base_filters) * 2**i, base * 2**i
        out_pos = _out_positions(layer, wide, width)
        slices |= _layer_slices(layer, f"features.{i}.0", f"stages.{i}.ops.{o}", in_pos, width)
        slices[f"features.{i}.1"] = (f"stages.{i}.norms.{o}", out_pos, None)
        in_pos = out_pos
    side2 = feature_side(spec.depth) ** 2
    head_cols = [c * side2 + k for c in in_pos for k in range(side2)]  # flatten is channel-major
    slices["head"] = (f"heads.{choice['depth']}", None, head_cols)
    source = dict(supernet.named_parameters()) | dict(supernet.named_buffers())
    prefixes = sorted(slices, key=len, reverse=True)  # the most specific module path first
    with torch.no_grad():
        for name, target in itertools.chain(model.named_parameters(), model.named_buffers()):
            prefix = next(k for k in prefixes if name.startswith(k + "."))
            wide_path, rows, cols = slices[prefix]
            tensor = source[wide_path + name[len(prefix):]]
            if tensor.dim() and rows is not None:
                tensor = tensor[rows]
            if tensor.dim() > 1 and cols is not None:
                tensor = tensor[:, cols]
            target.copy_(tensor)
    return model


def _layer_slices(layer: nn.Module, path: str, wide_path: str, in_pos: list[int], width: int) -> dict[str, tuple]:
    """(supernet path, rows, columns) of each conv and norm of a discrete layer of `width`
    channels whose input channels sit at `in_pos` of the wide input."""
    if isinstance(layer, ConvUnit):
        return {f"{path}.0": (f"{wide_path}.0", list(range(width)), in_pos)}
    if isinstance(layer, SeparableConv):
        return _separable_slices(path, wide_path, in_pos, list(range(width)))
    half = list(range(width // 2))
    rest = list(range(width - width // 2))
    if isinstance(layer, Inception):
        return {f"{path}.branch1": (f"{wide_path}.branch1", half, in_pos), f"{path}.branch2": (f"{wide_path}.branch2", rest, in_pos)}
    return {f"{path}.branch1": (f"{wide_path}.branch1", half, in_pos), f"{path}.branch2.0": (f"{wide_path}.branch2.0", rest, in_pos)} | _separable_slices(
        f"{path}.branch2.1", f"{wide_path}.branch2.1", rest, rest
    )


def _separable_slices(path: str, wide_path: str, in_pos: list[int], out_pos: list[int]) -> dict[str, tuple]:
    return {
        f"{path}.0": (f"{wide_path}.0", in_pos, None),  # depthwise: (in, 1, 3, 3)
        f"{path}.1": (f"{wide_path}.1", in_pos, None),
        f"{path}.2": (f"{wide_path}.2", out_pos, in_pos),
        f"{path}.3": (f"{wide_path}.3", out_pos, None),
    }


def entropy(probs: dict[str, torch.Tensor]) -> float:
    """Nats summed over the axes: 0 when every axis has decided, log(n) per undecided axis of n."""
    return float(sum(-(p * p.clamp_min(1e-12).log()).sum() for p in probs.values()).detach())


def uniform_entropy(sspace: SupernetSpace) -> float:
    return sum(math.log(n) for n in sspace.sizes)


__all__ = ["AXES", "FIXED", "SuperDiscriminator", "SupernetSpace", "discretize", "entropy", "expected_params", "one_hot", "param_table", "supernet_space"]
