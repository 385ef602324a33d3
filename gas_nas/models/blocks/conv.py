"""Convolutions and the small pieces around them (norm, activation, downsampling)."""

from __future__ import annotations

import math

from torch import nn


def create_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation after a conv. `spectral` and `none` need none here (spectral wraps weights)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":  # no batch statistics: per-sample gradients stay per-sample (OSGAN)
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    return nn.Identity()


def create_act(kind: str) -> nn.Module:
    return nn.LeakyReLU(0.2) if kind == "leaky_relu" else nn.ReLU()


def create_downsample(kind: str) -> nn.Module:
    """Halve H and W, rounding up (TF 'SAME' pooling as in GAS: 28 -> 14 -> 7 -> 4 -> 2 -> 1).

    `strided` downsamples inside the layer itself (stride 2), so nothing is added here.
    """
    if kind == "maxpool":
        return nn.MaxPool2d(3, stride=2, padding=1)  # TensorLayer's MaxPool2d default: 3x3, stride 2
    if kind == "avgpool":
        return nn.AvgPool2d(2, stride=2, ceil_mode=True)
    return nn.Identity()


def conv2d(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """'SAME'-padded conv with bias, as TensorLayer's Conv2d in the GAS code."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups)


class ConvUnit(nn.Sequential):
    """A plain 3x3 convolution (GAS case 1). Norm/activation come after it, from the stage."""

    def __init__(self, in_ch: int, out_ch: int, *, norm: str, stride: int = 1):
        super().__init__(conv2d(in_ch, out_ch, 3, stride))


class SeparableConv(nn.Sequential):
    """Depthwise-separable conv (Xception/MobileNet): 3x3 depthwise + norm, 1x1 pointwise + norm."""

    def __init__(self, in_ch: int, out_ch: int, *, norm: str, stride: int = 1):
        super().__init__(
            conv2d(in_ch, in_ch, 3, stride, groups=in_ch),
            create_norm(norm, in_ch),
            conv2d(in_ch, out_ch, 1),
            create_norm(norm, out_ch),
        )
