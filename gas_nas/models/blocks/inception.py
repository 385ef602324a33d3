"""GAS inception layers: two branches of out/2 channels each, concatenated on channels."""

from __future__ import annotations

import torch
from torch import nn

from gas_nas.models.blocks.conv import SeparableConv, conv2d


class _TwoBranch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x)], dim=1)  # (B, out, H', W')


class Inception(_TwoBranch):
    """1x1 branch + 3x3 branch (GAS cases 3, 5, 6).

    The GAS code also builds a 1x1 conv meant to feed the 3x3 branch but discards it; we
    follow what ran: the 3x3 conv sees the layer input directly.
    """

    def __init__(self, in_ch: int, out_ch: int, *, norm: str, stride: int = 1):
        super().__init__()
        self.branch1 = conv2d(in_ch, out_ch // 2, 1, stride)
        self.branch2 = conv2d(in_ch, out_ch - out_ch // 2, 3, stride)


class SeparableInception(_TwoBranch):
    """1x1 branch + [1x1 then depthwise-separable 3x3] branch (GAS cases 2 and 4)."""

    def __init__(self, in_ch: int, out_ch: int, *, norm: str, stride: int = 1):
        super().__init__()
        half = out_ch // 2
        self.branch1 = conv2d(in_ch, half, 1, stride)
        self.branch2 = nn.Sequential(
            conv2d(in_ch, out_ch - half, 1),
            SeparableConv(out_ch - half, out_ch - half, norm=norm, stride=stride),
        )
