"""A trial's peak memory, predicted before it is built, and the memory this process may use.

Why predicted: a discriminator too large for the machine is not stopped by a MemoryError. On a
CPU the kernel's out-of-memory killer ends the process without Python seeing it (no message,
and other programs on the machine are at risk), so the only place to refuse it is before any
of it is allocated. The estimate builds the networks on PyTorch's meta device (shapes, no
memory), counts their parameters, and runs their forward passes there to size what autograd
keeps for backward.

What a cohort of K trials holds at its peak (`MemoryEstimate`; `peak` = state + the larger of
training and after training + runtime):

- state: D and G parameters, gradients and optimiser state (RMSprop 1 slot, Adam 2), all K;
- training: what autograd saves during one step of every trial (G's forward and two of D's:
  the D step saves D on real and on fake images, the G step G and D, OSGAN all three);
- after training (each trial measured in turn while all K stay alive): a copy of each G, the
  duality gap's frozen and trained copies of one trial's D and G with their own gradients and
  optimiser state (with the trial's own, about 7x D's parameter bytes), the gap's steps, its
  pool of held-out images, and sample generation in chunks of 500 without gradients (on CUDA
  also `peak_mb`'s one iteration of each spec alone);
- runtime: a constant for what no tensor shape shows (kernel workspaces, allocator slack),
  measured (`tests/test_memory.py` checks the whole estimate against the peak resident memory
  of real trials).
"""

from __future__ import annotations

import os
import re
import resource
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gas_nas.models.spec import DiscriminatorSpec, QualityConfig, TrainConfig

MEMORY_SHARE_VAR = "GAS_NAS_MEMORY_SHARE"  # set by gas_nas.study.workers for --jobs: what this process finds is divided by it
MB = 2**20
GB = 2**30
IMAGE_BYTES = 28 * 28 * 4  # one fp32 MNIST image
HELD_OUT_IMAGES = 10_000  # MNIST's test set: the duality gap trains on a copy of most of it
MNIST_IMAGES = 70_000  # training and test images, all on the training device
GENERATION_CHUNK = 500  # gas_nas.trial.train.generate's default chunk
OPTIMIZER_SLOTS = {"rmsprop": 1, "adam": 2}  # per-parameter state tensors
# Not shown by any tensor shape. CPU, measured on 2 cores (torch 2.x): allocator slack and
# convolution workspaces (a no-gradient pass holds about twice its largest layer's input and
# output there). CUDA, not yet measured (tests/test_cuda.py checks it on a GPU): cuDNN
# workspaces and the caching allocator's rounding.
RUNTIME_BYTES = {"cpu": 96 * MB, "cuda": 128 * MB}
TRANSIENT_FACTOR = {"cpu": 2.0, "cuda": 1.0}
# A CUDA graph keeps the captured iteration's tensors in its own pool beside the cached ones
# of the eager warm-up iterations: activations twice.
TRAINING_FACTOR = {"cpu": 1, "cuda": 2}
ENV_MEMORY_MB = "GAS_NAS_MEMORY_MB"  # a user's cap on what gas-nas may use on this machine


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes of a cohort over the process's memory before it is built (see the module doc).

    `partial`: from parameter counts alone (activations not sized yet), so a lower bound.
    """

    trials: int
    state: int
    training: int
    after: int
    runtime: int
    data: int = 0  # MNIST on the device, when it is not loaded yet
    partial: bool = False

    @property
    def peak(self) -> int:
        return self.state + max(self.training, self.after) + self.runtime + self.data

    def describe(self) -> str:
        parts = [f"parameters, gradients and optimiser state {size(self.state)}"]
        parts += [f"after training {size(self.after)}"] if self.partial else [f"training activations {size(self.training)}", f"after training {size(self.after)}"]
        parts += [f"MNIST {size(self.data)}"] if self.data else []
        return f"{'at least' if self.partial else 'about'} {size(self.peak)} ({', '.join(parts)})"


@dataclass(frozen=True)
class Available:
    """What this process may use: bytes, and where that figure comes from (for messages)."""

    bytes: int
    source: str

    def describe(self) -> str:
        return f"{size(self.bytes)} available ({self.source})"


def size(n: int) -> str:
    return f"{n / GB:.1f} GB" if n >= GB else f"{n / MB:.0f} MB"


def estimate(
    specs: list[DiscriminatorSpec], train: TrainConfig, quality: QualityConfig, device: torch.device | str = "cpu",
    *, activations: bool = True, data_loaded: bool = True,
) -> MemoryEstimate:
    """The peak of training `specs` as one cohort (one trial: a list of one) and measuring them.

    `activations=False` counts parameters only (modules built on the meta device: milliseconds,
    where the first meta forward pass in a process imports parts of torch for seconds), a lower
    bound that already refuses architectures that cannot even hold their weights.
    `data_loaded=False` adds MNIST, for a check made before it is loaded.
    """
    from gas_nas.models.networks import Discriminator, Generator, build_discriminator, build_generator

    kind = torch.device(device).type
    k, batch = len(specs), train.batch_size
    per_param = 4 * (2 + OPTIMIZER_SLOTS[train.optimizer])  # value, gradient, optimiser state (fp32)
    with torch.device("meta"):
        g_params = _param_count(Generator(train.z_dim))
        d_params = [_param_count(Discriminator(spec)) for spec in specs]
    g_saved, d_saved, generation = 0, [0] * k, 0
    if activations:
        G = build_generator(train.z_dim, device="meta")
        Ds = [build_discriminator(spec, device="meta") for spec in specs]  # spectral norm included
        with torch.device("meta"):
            g_saved = saved_bytes(G, torch.zeros(batch, train.z_dim))
            d_saved = [saved_bytes(D, torch.zeros(batch, 1, 28, 28)) for D in Ds]
            generation = transient_bytes(G, torch.zeros(min(GENERATION_CHUNK, quality.n_samples), train.z_dim))
    buffers = k * (train.d_steps + train.g_steps) * batch * train.z_dim * 4 + 2 * k * batch * IMAGE_BYTES  # noise, real and fake batches
    state = (k * g_params + sum(d_params)) * per_param + buffers
    training = (k * g_saved + 2 * sum(d_saved)) * TRAINING_FACTOR.get(kind, 1)  # G and D twice: any step of any recipe keeps at most this
    kept = k * g_params * 4 + 2 * quality.n_samples * IMAGE_BYTES  # after training: each trial's G copy; generated and real samples
    one_at_a_time = [int(generation * TRANSIENT_FACTOR.get(kind, 1.0))]  # then each trial in turn: sampling, ...
    if quality.duality_gap_steps:  # ... the gap's frozen D and G and trained D' and G' with gradients and state, ...
        pool = max(0, HELD_OUT_IMAGES - 16 * batch) * IMAGE_BYTES
        one_at_a_time += [(g_params + d) * (per_param + 4) + g_saved + 2 * s + pool for d, s in zip(d_params, d_saved)]
    if kind == "cuda":  # ... and peak_mb's eager iteration of the spec alone
        one_at_a_time += [(g_params + d) * per_param + g_saved + 2 * s for d, s in zip(d_params, d_saved)]
    data = 0 if data_loaded else MNIST_IMAGES * IMAGE_BYTES
    return MemoryEstimate(trials=k, state=state, training=training, after=kept + max(one_at_a_time), runtime=RUNTIME_BYTES.get(kind, 0),
                          data=data, partial=not activations)


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def saved_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for backward in `module(x)`, parameters excluded; each storage
    counted once (a ReLU's output that the next pooling saves again is one tensor). Run on meta."""
    params = {p.untyped_storage()._cdata for p in module.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in params:
            seen[storage._cdata] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return sum(seen.values())


def transient_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Peak bytes of `module(x)` without gradients: the largest input plus output of one layer."""
    peak = 0

    def hook(m, args, out) -> None:
        nonlocal peak
        peak = max(peak, sum(a.numel() * a.element_size() for a in args if isinstance(a, torch.Tensor)) + out.numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return peak


# ---------------------------------------------------------------- what this process may use


def available(device: torch.device | str = "cpu", share: int | None = None) -> Available | None:
    """The memory this process may use on `device`, split `share` ways (default:
    $GAS_NAS_MEMORY_SHARE, which `--jobs` sets, else 1); None when nothing can be read.

    CPU: the least of the kernel's available RAM, a cgroup's limit left and the address-space
    limit (ulimit -v) left. CUDA: the device's free memory. $GAS_NAS_MEMORY_MB caps either.
    """
    device = torch.device(device)
    figures: list[tuple[int, str]] = []
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        figures.append((free, f"free memory on {device}"))
    elif device.type == "cpu":
        figures += _cpu_limits()
    cap = os.environ.get(ENV_MEMORY_MB, "").strip()
    if cap:
        figures.append((_env_int(ENV_MEMORY_MB, cap) * MB, f"${ENV_MEMORY_MB}"))
    if not figures:
        return None
    limit, source = min(figures)
    if share is None:
        share = _env_int(MEMORY_SHARE_VAR, os.environ.get(MEMORY_SHARE_VAR, "1"))
    if share > 1:
        return Available(limit // share, f"1/{share} of {size(limit)}, {source}, for {share} workers")
    return Available(limit, source)


def _env_int(name: str, text: str) -> int:
    from gas_nas.common.errors import GasNasError

    try:
        value = int(text)
    except ValueError:
        raise GasNasError(f"${name}: expected a positive integer, got {text!r}") from None
    if value < 1:
        raise GasNasError(f"${name}: expected a positive integer, got {value}")
    return value


def _cpu_limits() -> list[tuple[int, str]]:
    """(bytes, source) for every limit that applies on this machine."""
    out = []
    meminfo = _read("/proc/meminfo")
    found = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.M)
    if found:
        out.append((int(found.group(1)) * 1024, "available RAM"))
    else:
        try:
            out.append((os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free RAM"))
        except (ValueError, OSError, AttributeError):
            pass
    cgroup = _cgroup_left()
    if cgroup is not None:
        out.append((cgroup, "cgroup memory limit"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = re.search(r"^VmSize:\s+(\d+) kB", _read("/proc/self/status"), re.M)
        out.append((max(0, soft - (int(used.group(1)) * 1024 if used else 0)), "address-space limit (ulimit -v)"))
    return out


def _cgroup_left() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2, else v1), or None without one."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read(limit_file).strip(), _read(usage_file).strip()
        if limit.isdigit() and usage.isdigit() and int(limit) < 2**60:  # v1 writes a huge number for "none"
            return max(0, int(limit) - int(usage))
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


# ---------------------------------------------------------------- the check


def too_big(need: MemoryEstimate, have: Available) -> str:
    """The one line a refused trial gets."""
    what = "a cohort of {} trials".format(need.trials) if need.trials > 1 else "this trial"
    return f"not enough memory: {what} needs {need.describe()}, {have.describe()}; use a smaller architecture or --batch-size"


def check(
    specs: list[DiscriminatorSpec], train: TrainConfig, quality: QualityConfig, device: torch.device | str, have: Available | None,
    *, data_loaded: bool = True,
) -> str | None:
    """Why `specs` cannot be trained as one cohort within `have` (None: it fits, or nothing is known).

    Parameters first (milliseconds): an architecture that cannot hold its weights is refused
    without a forward pass; then the whole estimate."""
    if have is None:
        return None
    for activations in (False, True):
        need = estimate(specs, train, quality, device, activations=activations, data_loaded=data_loaded)
        if need.peak > have.bytes:
            return too_big(need, have)
    return None


__all__ = ["Available", "MemoryEstimate", "available", "check", "estimate", "saved_bytes", "too_big", "transient_bytes"]
