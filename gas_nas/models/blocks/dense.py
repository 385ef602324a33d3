"""DenseNet blocks (pre-activation: norm, act, layer; concatenate the input) as GAS case 4."""

from __future__ import annotations

import torch
from torch import nn

from gas_nas.models.blocks.conv import create_act, create_downsample, create_norm

LAYERS_PER_BLOCK = 3  # the GAS code's dense blocks have three layers each


class DenseBlock(nn.Module):
    """Each layer adds `growth` channels: out = in + LAYERS_PER_BLOCK * growth."""

    def __init__(self, in_ch: int, growth: int, make_layer, *, norm: str, act: str):
        super().__init__()
        self.layers = nn.ModuleList()
        for i in range(LAYERS_PER_BLOCK):
            ch = in_ch + i * growth
            self.layers.append(
                nn.Sequential(create_norm(norm, ch), create_act(act), make_layer(ch, growth, stride=1))
            )
        self.out_channels = in_ch + LAYERS_PER_BLOCK * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([layer(x), x], dim=1)  # (B, C + growth, H, W)
        return x


class Transition(nn.Sequential):
    """Norm, act, layer down to `out_ch`, then halve the resolution (GAS: 2x2 average pool)."""

    def __init__(self, in_ch: int, out_ch: int, make_layer, *, norm: str, act: str, downsample: str):
        stride = 2 if downsample == "strided" else 1
        super().__init__(
            create_norm(norm, in_ch),
            create_act(act),
            make_layer(in_ch, out_ch, stride=stride),
            create_downsample(downsample),
        )
