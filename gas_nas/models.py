"""Spec -> nn.Module: the searched discriminator and the fixed GAS generator.

Imports nothing from training or search, so a spec can be built and inspected alone.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from gas_nas.blocks import DenseBlock, Transition, create_act, create_downsample, create_layer, create_norm
from gas_nas.recipes import Init, trunc_normal_init
from gas_nas.spec import DiscriminatorSpec

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


class Generator(nn.Module):
    """The GAS (LSGAN-MNIST) generator, the same for every trial: z -> (B, 1, 28, 28) in [-1, 1]."""

    def __init__(self, z_dim: int = 100):
        super().__init__()
        self.z_dim = z_dim
        self.fc = nn.Sequential(nn.Linear(z_dim, 7 * 7 * 128, bias=False), nn.BatchNorm1d(7 * 7 * 128), nn.ReLU())
        self.body = nn.Sequential(
            nn.Conv2d(128, 4 * 64, 5, padding=2, bias=False), nn.BatchNorm2d(4 * 64), nn.ReLU(),
            nn.PixelShuffle(2),  # depth-to-space: (B, 256, 7, 7) -> (B, 64, 14, 14)
            nn.Conv2d(64, 4 * 32, 5, padding=2, bias=False), nn.BatchNorm2d(4 * 32), nn.ReLU(),
            nn.PixelShuffle(2),  # (B, 128, 14, 14) -> (B, 32, 28, 28)
            nn.Conv2d(32, 1, 5, padding=2), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(z).view(-1, 128, 7, 7))  # (B, 1, 28, 28)


def build_discriminator(spec: DiscriminatorSpec, init_std: float = 0.02, init: Init = trunc_normal_init) -> Discriminator:
    """Build, initialise (`init`: the recipe's, GAS's by default) and (for norm=spectral)
    spectrally normalise every conv and linear."""
    model = Discriminator(spec)
    init(model, init_std)
    if spec.norm == "spectral":
        for m in list(model.modules()):
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.utils.parametrizations.spectral_norm(m)
    return model


def build_generator(z_dim: int = 100, init_std: float = 0.02, init: Init = trunc_normal_init) -> Generator:
    model = Generator(z_dim)
    init(model, init_std)
    return model
