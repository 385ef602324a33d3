"""Blocks and builders: every block's shapes, a grid of specs over all axes, pinned param counts."""

from __future__ import annotations

import itertools

import pytest
import torch

from gas_nas.models.blocks import LAYERS, DenseBlock, Transition, create_downsample, create_layer
from gas_nas.models.blocks.dense import LAYERS_PER_BLOCK
from gas_nas.models.networks import build_discriminator, build_generator, feature_side
from gas_nas.models.space import load_space
from gas_nas.models.spec import DiscriminatorSpec
from gas_nas.trial.metrics import param_count


@pytest.mark.parametrize("conv,inception", sorted(LAYERS))
@pytest.mark.parametrize("stride", [1, 2])
def test_every_layer_maps_channels_and_resolution(conv, inception, stride):
    layer = create_layer(conv, inception, 6, 10, norm="batch", stride=stride)
    y = layer(torch.randn(2, 6, 7, 7))
    assert y.shape == (2, 10, 4 if stride == 2 else 7, 4 if stride == 2 else 7)


@pytest.mark.parametrize("kind", ["maxpool", "avgpool"])
def test_downsampling_halves_rounding_up(kind):
    pool = create_downsample(kind)
    for side in (28, 14, 7, 4, 2):
        assert pool(torch.randn(1, 3, side, side)).shape[-1] == (side + 1) // 2


def test_dense_block_grows_by_growth_rate_and_transition_halves():
    make = lambda i, o, stride: create_layer("standard", True, i, o, norm="batch", stride=stride)  # noqa: E731
    block = DenseBlock(8, 4, make, norm="batch", act="relu")
    y = block(torch.randn(2, 8, 7, 7))
    assert y.shape == (2, 8 + LAYERS_PER_BLOCK * 4, 7, 7) == (2, block.out_channels, 7, 7)
    t = Transition(block.out_channels, 2, make, norm="batch", act="relu", downsample="avgpool")
    assert t(y).shape == (2, 2, 4, 4)


def test_separable_conv_is_depthwise_then_pointwise():
    layer = create_layer("depthwise_separable", False, 4, 8, norm="batch")
    convs = [m for m in layer.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.groups, c.kernel_size) for c in convs] == [(4, (3, 3)), (1, (1, 1))]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in layer.modules()) == 2


def _grid():
    """Every value of every axis appears, combined pairwise with conv/inception/dense."""
    base = dict(base_filters=8)
    for conv, inc, dense in itertools.product(["standard", "depthwise_separable"], [False, True], [0, 2]):
        for norm, act, down in [("batch", "relu", "maxpool"), ("none", "leaky_relu", "strided"), ("spectral", "relu", "avgpool"), ("group", "leaky_relu", "maxpool")]:
            depth = dense or (2 if norm == "none" else 5 if norm == "spectral" else 4)
            yield DiscriminatorSpec(conv=conv, inception=inc, dense_blocks=dense, depth=depth, norm=norm, activation=act, downsample=down, output="linear" if norm == "none" else "sigmoid", **base)


@pytest.mark.parametrize("spec", list(_grid()), ids=lambda s: f"{s.conv[:3]}-i{int(s.inception)}-d{s.dense_blocks}-{s.norm}-{s.downsample}")
def test_spec_grid_builds_runs_forward_and_backward(spec):
    torch.manual_seed(0)
    model = build_discriminator(spec)
    x = torch.randn(3, 1, 28, 28, requires_grad=True)
    y = model(x)
    assert y.shape == (3, 1) and torch.isfinite(y).all()
    if spec.output == "sigmoid":
        assert ((y > 0) & (y < 1)).all()
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters())


def test_spectral_norm_wraps_every_conv_and_linear():
    model = build_discriminator(DiscriminatorSpec(norm="spectral", base_filters=8))
    weighted = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert weighted and all(hasattr(m, "parametrizations") for m in weighted)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def _plain_params(base: int, inception: bool) -> int:
    """Independent count for the GAS 4-stage skeleton: 28 -> 14 -> 7 -> 4 -> 2, final 2x2 x 8k."""
    total, ch = 0, 1
    for i in range(4):
        out = base * 2**i
        if inception:  # 1x1 and 3x3 branches, out/2 each, with biases
            total += ch * out // 2 + out // 2 + 9 * ch * out // 2 + out // 2
        else:
            total += 9 * ch * out + out
        total += 2 * out if i else 0  # BN scale and shift, not in stage 1
        ch = out
    return total + ch * 2 * 2 + 1


@pytest.mark.parametrize("index,base,inception", [(0, 32, False), (2, 32, True), (4, 16, True), (5, 8, True)])
def test_paper_case_param_counts_match_independent_formula(index, base, inception):
    case = load_space().cases[index]
    assert (case.spec.base_filters, case.spec.inception) == (base, inception)
    assert param_count(build_discriminator(case.spec)) == _plain_params(base, inception)


def test_paper_cases_are_smaller_than_original_in_paper_order():
    counts = [param_count(build_discriminator(c.spec)) for c in load_space().cases]
    assert counts[0] == max(counts)  # the original is the largest discriminator
    assert counts[2] > counts[4] > counts[5]  # inception k = 32 > 16 > 8


def test_feature_side_matches_forward():
    for depth in range(1, 6):
        feats = build_discriminator(DiscriminatorSpec(depth=depth, base_filters=4)).features
        assert feats(torch.randn(2, 1, 28, 28)).shape[-1] == feature_side(depth)


def test_generator_is_the_gas_port():
    torch.manual_seed(0)
    G = build_generator(100)
    x = G(torch.randn(4, 100))
    assert x.shape == (4, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    convs = [m for m in G.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(128, 256, (5, 5)), (64, 128, (5, 5)), (32, 1, (5, 5))]
    assert sum(isinstance(m, torch.nn.PixelShuffle) for m in G.modules()) == 2
