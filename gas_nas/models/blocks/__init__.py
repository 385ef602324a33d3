"""Reusable discriminator blocks, looked up by name so builders never branch on strings.

`create_layer(spec, in_ch, out_ch, stride)` gives the spec's feature layer (plain or
depthwise-separable, with or without inception); `create_norm`/`create_act`/`create_downsample`
give the pieces between layers. `DenseBlock` and `Transition` compose those.
"""

from __future__ import annotations

from gas_nas.models.blocks.conv import ConvUnit, SeparableConv, create_act, create_downsample, create_norm
from gas_nas.models.blocks.dense import DenseBlock, Transition
from gas_nas.models.blocks.inception import Inception, SeparableInception

LAYERS = {
    ("standard", False): ConvUnit,
    ("standard", True): Inception,
    ("depthwise_separable", False): SeparableConv,
    ("depthwise_separable", True): SeparableInception,
}


def create_layer(conv: str, inception: bool, in_ch: int, out_ch: int, *, norm: str, stride: int = 1):
    """The feature layer for a (conv type, inception) pair; 3x3 receptive field, `stride` 1 or 2."""
    return LAYERS[(conv, inception)](in_ch, out_ch, norm=norm, stride=stride)


__all__ = [
    "ConvUnit",
    "DenseBlock",
    "Inception",
    "LAYERS",
    "SeparableConv",
    "SeparableInception",
    "Transition",
    "create_act",
    "create_downsample",
    "create_layer",
    "create_norm",
]
