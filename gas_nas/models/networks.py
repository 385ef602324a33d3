"""Spec -> nn.Module: the searched discriminator and the fixed GAS generator.

Imports nothing from training or search, so a spec can be built and inspected alone.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from gas_nas.models.blocks import DenseBlock, Transition, create_act, create_downsample, create_layer, create_norm
from gas_nas.models.recipes import Init, trunc_normal_init
from gas_nas.models.spec import DiscriminatorSpec

IMAGE_SIZE = 28


class Discriminator(nn.Module):
    """(B, 1, 28, 28) images -> (B, 1) scores.

    Without dense blocks: `depth` stages of [layer -> norm (not in stage 1) -> act -> downsample]
    with base_filters * 2**i channels, as GAS. With dense blocks: a stem layer of base_filters
    channels, then per block [dense block -> transition to base_filters // 4 channels, halving
    the resolution] (GAS case 4: 16 -> 4). Then flatten -> linear 1 -> optional sigmoid.
    """

    def __init__(self, spec: DiscriminatorSpec):
        super().__init__()
        self.spec = spec
        make_layer = partial(create_layer, spec.conv, spec.inception, norm=spec.norm)
        stride = 2 if spec.downsample == "strided" else 1
        layers: list[nn.Module] = []
        if spec.dense_blocks == 0:
            ch = 1
            for i in range(spec.depth):
                out = spec.base_filters * 2**i
                norm = create_norm(spec.norm, out) if i else nn.Identity()  # GAS: no norm in stage 1
                layers.append(nn.Sequential(make_layer(ch, out, stride=stride), norm, create_act(spec.activation), create_downsample(spec.downsample)))
                ch = out
        else:
            layers.append(make_layer(1, spec.base_filters, stride=1))  # stem
            ch = spec.base_filters
            for _ in range(spec.dense_blocks):
                block = DenseBlock(ch, spec.growth_rate, make_layer, norm=spec.norm, act=spec.activation)
                ch = max(2, spec.base_filters // 4)
                layers.append(nn.Sequential(block, Transition(block.out_channels, ch, make_layer, norm=spec.norm, act=spec.activation, downsample=spec.downsample)))
        self.features = nn.Sequential(*layers)
        side = feature_side(spec.depth)
        self.head = nn.Linear(ch * side * side, 1)
        self.out = nn.Sigmoid() if spec.output == "sigmoid" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, C, s, s)
        return self.out(self.head(x.flatten(1)))  # (B, 1)


def feature_side(depth: int) -> int:
    """Every downsampling halves the side rounding up: 28 -> 14 -> 7 -> 4 -> 2 -> 1."""
    side = IMAGE_SIZE
    for _ in range(depth):
        side = (side + 1) // 2
    return side


FC_CHANNELS, FC_SIDE = 128, 7  # the generator's first layer: z -> (128, 7, 7)
FC_FEATURES = FC_CHANNELS * FC_SIDE * FC_SIDE


def _generator_body(k: int) -> nn.Sequential:
    """The GAS generator's convolutional body for `k` trials laid along the channel axis.

    k = 1 is the plain generator. For k > 1 every conv is grouped (groups=k), so trial i only
    ever sees its own channels [i*C, (i+1)*C); BatchNorm is per channel, hence per trial; and
    PixelShuffle maps channels 4c..4c+3 to channel c, so each trial's 4C channels stay its own C.
    """
    return nn.Sequential(
        nn.Conv2d(k * 128, k * 4 * 64, 5, padding=2, bias=False, groups=k), nn.BatchNorm2d(k * 4 * 64), nn.ReLU(),
        nn.PixelShuffle(2),  # depth-to-space: (B, 256k, 7, 7) -> (B, 64k, 14, 14)
        nn.Conv2d(k * 64, k * 4 * 32, 5, padding=2, bias=False, groups=k), nn.BatchNorm2d(k * 4 * 32), nn.ReLU(),
        nn.PixelShuffle(2),  # (B, 128k, 14, 14) -> (B, 32k, 28, 28)
        nn.Conv2d(k * 32, k, 5, padding=2, groups=k), nn.Tanh(),
    )


class Generator(nn.Module):
    """The GAS (LSGAN-MNIST) generator, the same for every trial: z -> (B, 1, 28, 28) in [-1, 1]."""

    def __init__(self, z_dim: int = 100):
        super().__init__()
        self.z_dim = z_dim
        self.fc = nn.Sequential(nn.Linear(z_dim, FC_FEATURES, bias=False), nn.BatchNorm1d(FC_FEATURES), nn.ReLU())
        self.body = _generator_body(1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(z).view(-1, FC_CHANNELS, FC_SIDE, FC_SIDE))  # (B, 1, 28, 28)


class FusedGenerator(nn.Module):
    """K GAS generators as one module (HFTA-style fusion): (K, B, z) noise -> (K, B, 1, 28, 28).

    Every trial trains the same generator architecture, so K of them run as one module with K
    times fuller kernels: the first linear layer is a batched matmul (one weight per trial),
    the rest is `_generator_body(K)` with trials along the channel axis. Trial i computes
    exactly what its own `Generator` would; `from_generators` and `generator(i)` convert.
    """

    def __init__(self, k: int, z_dim: int = 100):
        super().__init__()
        self.k, self.z_dim = k, z_dim
        self.fc_weight = nn.Parameter(torch.empty(k, z_dim, FC_FEATURES))  # trial i: its Linear weight, transposed
        self.fc_norm = nn.BatchNorm1d(k * FC_FEATURES)
        self.body = _generator_body(k)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        k, batch = z.shape[:2]
        h = torch.bmm(z, self.fc_weight)  # (K, B, F)
        h = torch.relu(self.fc_norm(h.transpose(0, 1).reshape(batch, k * FC_FEATURES)))  # (B, K*F)
        x = self.body(h.view(batch, k * FC_CHANNELS, FC_SIDE, FC_SIDE))  # (B, K, 28, 28)
        return x.transpose(0, 1).unsqueeze(2)  # (K, B, 1, 28, 28)

    @classmethod
    def from_generators(cls, generators: list[Generator]) -> FusedGenerator:
        """Fuse K generators' weights and BatchNorm statistics, on their device."""
        first = generators[0]
        device = first.fc[0].weight.device
        with torch.device(device):
            fused = cls(len(generators), first.z_dim)
        with torch.no_grad():
            fused.fc_weight.copy_(torch.stack([g.fc[0].weight.t() for g in generators]))
            _fuse_state(fused.fc_norm, [g.fc[1] for g in generators])
            _fuse_state(fused.body, [g.body for g in generators])
        return fused

    def generator(self, i: int) -> Generator:
        """Trial i's own `Generator` (a copy, same device), e.g. to sample or save it alone."""
        device = self.fc_weight.device
        with torch.device(device):
            out = Generator(self.z_dim)
        with torch.no_grad():
            out.fc[0].weight.copy_(self.fc_weight[i].t())
            _split_state(self.fc_norm, out.fc[1], i, self.k)
            _split_state(self.body, out.body, i, self.k)
        return out.train(self.training)


def _fuse_state(fused: nn.Module, parts: list[nn.Module]) -> None:
    """Copy per-trial parameters and buffers into `fused`, concatenated trial-major on dim 0.

    BatchNorm's step counter (`num_batches_tracked`) is one shared scalar, the same for all.
    """
    sources = [p.state_dict(keep_vars=True) for p in parts]
    for name, target in fused.state_dict(keep_vars=True).items():
        shared = name.endswith("num_batches_tracked")
        target.copy_(sources[0][name] if shared else torch.cat([s[name] for s in sources]))


def _split_state(fused: nn.Module, part: nn.Module, index: int, k: int) -> None:
    """The inverse of `_fuse_state` for one trial: copy its slice of `fused` into `part`."""
    source = fused.state_dict(keep_vars=True)
    for name, target in part.state_dict(keep_vars=True).items():
        target.copy_(source[name] if name.endswith("num_batches_tracked") else source[name].chunk(k)[index])


def build_discriminator(spec: DiscriminatorSpec, init_std: float = 0.02, init: Init = trunc_normal_init, device: torch.device | str = "cpu") -> Discriminator:
    """Build on `device`, initialise (`init`: the recipe's, GAS's by default) and (for
    norm=spectral) spectrally normalise every conv and linear."""
    with torch.device(device):  # every parameter and buffer is created on `device`, never the default one
        model = Discriminator(spec)
        init(model, init_std)
        if spec.norm == "spectral":
            for m in list(model.modules()):
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.utils.parametrizations.spectral_norm(m)
    return model


def build_generator(z_dim: int = 100, init_std: float = 0.02, init: Init = trunc_normal_init, device: torch.device | str = "cpu") -> Generator:
    with torch.device(device):
        model = Generator(z_dim)
        init(model, init_std)
    return model
