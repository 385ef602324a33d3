"""Sparse discriminators trained sparse from scratch (STU-GAN, after RigL and SET).

A discriminator with `density < 1` keeps a fixed budget of nonzero weights in its masked
tensors (every convolution and the linear head; biases and norms stay dense). Per-layer
densities come from ERK. Masks are float buffers registered beside the weights
(`<module>.weight_mask`), so they travel with `state_dict`, deep copies and devices, and two
verbs act on them: `apply` (after every D update, in place: what a CUDA graph replays) and
`update` (prune the smallest weights and regrow as many elsewhere, between iterations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

MASK = "weight_mask"  # buffer name on each masked module
UPDATE_FRACTION = 0.5  # STU-GAN/RigL: the fraction of each layer's nonzeros moved at the first update
LAST_UPDATE = 0.75  # no prune/regrow in the last quarter of training (the masks settle)
UPDATES_PER_RUN = 20  # default interval: a twentieth of the budget
SEED_OFFSET = 7919  # mask draws use their own stream, apart from the trial's data and init


def masked_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose weight is masked: every Conv2d and Linear."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def raw_weight(module: nn.Module) -> torch.Tensor:
    """The trained weight tensor (under spectral norm, the parametrization's original)."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def erk_densities(shapes: list[tuple[int, ...]], density: float) -> list[float]:
    """RigL's Erdős-Rényi-Kernel densities: layer l keeps eps * sum(dims) / prod(dims) of its
    weights, eps chosen so the whole keeps `density`; a layer that would exceed 1 is dense and
    eps is solved again for the rest."""
    sizes = [math.prod(s) for s in shapes]
    if density >= 1:
        return [1.0] * len(shapes)
    raw = [sum(s) / math.prod(s) for s in shapes]
    dense: set[int] = set()
    while True:
        rest = [i for i in range(len(sizes)) if i not in dense]
        budget = density * sum(sizes) - sum(sizes[i] for i in dense)
        eps = budget / sum(raw[i] * sizes[i] for i in rest)
        over = {i for i in rest if eps * raw[i] > 1}
        if not over:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(sizes))]
        dense |= over


def keep_counts(shapes: list[tuple[int, ...]], density: float) -> list[int]:
    """Nonzeros per layer from the ERK densities, rounded so that they sum to round(density *
    total) exactly (largest remainders get the spare ones), at least one per layer."""
    sizes = [math.prod(s) for s in shapes]
    exact = [d * n for d, n in zip(erk_densities(shapes, density), sizes)]
    counts = [max(1, math.floor(x)) for x in exact]
    spare = round(density * sum(sizes)) - sum(counts)
    for i in sorted(range(len(sizes)), key=lambda i: exact[i] - math.floor(exact[i]), reverse=True):
        if spare <= 0:
            break
        if counts[i] < sizes[i]:
            counts[i] += 1
            spare -= 1
    return counts


@dataclass
class SparseMasks:
    """One discriminator's masked weights and their masks (the module buffers themselves)."""

    weights: list[torch.Tensor]
    masks: list[torch.Tensor]

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every masked-out weight, in place (after each optimiser step)."""
        for w, m in zip(self.weights, self.masks):
            w.mul_(m)

    @torch.no_grad()
    def update(self, fraction: float, regrow: str, generator: torch.Generator) -> None:
        """Prune `fraction` of each layer's nonzeros by magnitude and regrow as many among the
        positions that were already off: at random (SET) or by gradient magnitude (RigL).
        The nonzero count never changes; regrown weights start at zero."""
        for w, m in zip(self.weights, self.masks):
            mask, flat = m.view(-1), w.detach().reshape(-1)  # reshape: a channels_last weight is read in logical order
            active = mask.bool()
            n = min(int(fraction * int(active.sum())), int((~active).sum()))
            if n == 0:
                continue
            pruned = torch.topk(torch.where(active, flat.abs(), math.inf), n, largest=False).indices
            if regrow == "gradient":
                grad = w.grad.reshape(-1).abs() if w.grad is not None else torch.zeros_like(flat)
                grown = torch.topk(torch.where(active, -math.inf, grad), n).indices
            else:
                off = (~active).nonzero().view(-1)
                grown = off[torch.randperm(off.numel(), generator=generator)[:n].to(off.device)]
            mask[pruned] = 0
            mask[grown] = 1  # a grown weight is zero already: masked-out weights stay zero between updates
        self.apply()

    def nonzero(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks))


def attach(model: nn.Module, density: float, generator: torch.Generator) -> SparseMasks | None:
    """Give `model` ERK masks at `density` (random positions from `generator`) and apply them;
    None (and nothing attached) for a dense model."""
    if density >= 1:
        return None
    modules = masked_modules(model)
    weights = [raw_weight(m) for m in modules]
    masks = []
    for module, w, keep in zip(modules, weights, keep_counts([tuple(w.shape) for w in weights], density)):
        mask = torch.zeros(w.numel(), dtype=w.dtype, device=w.device)
        mask[torch.randperm(w.numel(), generator=generator)[:keep].to(w.device)] = 1
        module.register_buffer(MASK, mask.view_as(w))
        masks.append(getattr(module, MASK))
    found = SparseMasks(weights, masks)
    found.apply()
    return found


def masks_of(model: nn.Module) -> SparseMasks | None:
    """The masks attached to `model` (None for a dense one)."""
    modules = [m for m in masked_modules(model) if hasattr(m, MASK)]
    if not modules:
        return None
    return SparseMasks([raw_weight(m) for m in modules], [getattr(m, MASK) for m in modules])


def mask_generator(seed: int) -> torch.Generator:
    """The trial's own stream for mask positions and random regrowth (so cohorts stay independent)."""
    return torch.Generator().manual_seed(seed + SEED_OFFSET)


# ---------------------------------------------------------------- the schedule


def update_interval(train) -> int:
    """`train.sparse_interval`, else a twentieth of the budget (at least 1)."""
    return train.sparse_interval or max(1, train.iterations // UPDATES_PER_RUN)


def update_fraction(iteration: int, train) -> float:
    """Cosine decay from UPDATE_FRACTION at iteration 0 to 0 where updates stop."""
    end = LAST_UPDATE * train.iterations
    return UPDATE_FRACTION * 0.5 * (1 + math.cos(math.pi * min(iteration, end) / end))


def update_due(iteration: int, train) -> bool:
    """Dynamic mode, every `update_interval` iterations, never in the last quarter. A run of fewer
    than UPDATES_PER_RUN iterations without an explicit interval stays static (a quick look)."""
    if train.sparse_mode != "dynamic" or (train.sparse_interval is None and train.iterations < UPDATES_PER_RUN):
        return False
    return iteration % update_interval(train) == 0 and iteration < LAST_UPDATE * train.iterations


# ---------------------------------------------------------------- stored size and checkpoints


def stored_bytes(model: nn.Module) -> int:
    """What the parameters cost stored: fp32 values of every dense parameter and of each masked
    tensor's nonzeros, plus one bit per masked weight. Dense: 4 bytes per parameter."""
    masks = masks_of(model)
    masked = {id(w) for w in masks.weights} if masks else set()
    dense = sum(p.numel() for p in model.parameters() if id(p) not in masked)
    if masks is None:
        return 4 * dense
    return 4 * (dense + masks.nonzero()) + sum(math.ceil(m.numel() / 8) for m in masks.masks)


def nonzero_params(model: nn.Module) -> int:
    """Parameters stored as values: dense ones plus the masked tensors' nonzeros."""
    masks = masks_of(model)
    total = sum(p.numel() for p in model.parameters())
    return total if masks is None else total - sum(m.numel() for m in masks.masks) + masks.nonzero()


_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A 0/1 tensor as uint8 bytes, 8 positions per byte (big-endian, zero-padded)."""
    flat = mask.detach().reshape(-1).to("cpu", torch.uint8)
    flat = torch.cat([flat, flat.new_zeros(-flat.numel() % 8)])
    return (flat.view(-1, 8) * _BITS).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, numel: int) -> torch.Tensor:
    return ((packed.unsqueeze(1) & _BITS) > 0).reshape(-1)[:numel]


def sparse_state(model: nn.Module) -> dict:
    """`model.state_dict()` with each masked weight (and its mask) stored as its nonzero values
    plus packed mask bits: what `discriminator.pt` holds for a sparse discriminator."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    packed = {}
    for name, module in model.named_modules():
        if not hasattr(module, MASK):
            continue
        prefix = f"{name}." if name else ""
        weight_key = next(k for k in state if k.startswith(prefix) and k[len(prefix):] in ("weight", "parametrizations.weight.original"))
        mask = state.pop(prefix + MASK).bool()
        weight = state.pop(weight_key)
        packed[weight_key] = {"shape": list(weight.shape), "mask": pack_bits(mask), "values": weight.reshape(-1)[mask.reshape(-1)].clone()}
    return {"dense": state, "sparse": packed}


def load_sparse_state(model: nn.Module, stored: dict, density: float) -> None:
    """Load `sparse_state`'s output into a freshly built `model` (masks attached here first)."""
    if masks_of(model) is None:
        attach(model, density, torch.Generator().manual_seed(0))
    state = dict(stored["dense"])
    for weight_key, entry in stored["sparse"].items():
        shape = entry["shape"]
        mask = unpack_bits(entry["mask"], math.prod(shape))
        weight = torch.zeros(math.prod(shape), dtype=entry["values"].dtype)
        weight[mask] = entry["values"]
        state[weight_key] = weight.view(shape)
        prefix = weight_key.removesuffix("parametrizations.weight.original").removesuffix("weight")
        state[prefix + MASK] = mask.to(weight.dtype).view(shape)
    model.load_state_dict(state)


def payload_bytes(stored: dict) -> int:
    """The parameter bytes a `sparse_state` holds (the masks' bits and values, and the dense
    parameters; BatchNorm running statistics are buffers, not parameters, and are left out)."""
    total = sum(e["values"].numel() * e["values"].element_size() + e["mask"].numel() for e in stored["sparse"].values())
    return total + sum(v.numel() * v.element_size() for k, v in stored["dense"].items() if not _is_buffer_key(k))


def _is_buffer_key(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked") or key.endswith(("._u", "._v"))


__all__ = [
    "SparseMasks", "attach", "erk_densities", "load_sparse_state", "masks_of", "nonzero_params", "payload_bytes",
    "sparse_state", "stored_bytes", "update_due", "update_fraction", "update_interval",
]
