"""Regional pooling (dcnn_dd.models.pooling): the composed GAP network's logits are the sum of the
sub-networks' logits with valid padding, and differ only through the border cells with SAME padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tests.conftest import random_sub_vars

import dcnn_dd as dd
from dcnn_dd.models import VGG16, CifarResNet, PlainCNN
from dcnn_dd.models.pooling import POOL_INPUT, average_pool, regions_for, with_regional_pool


def _setup(net, grid, seed=0):
    shape = (1, *grid.shape, 1)
    x = jax.random.normal(jax.random.PRNGKey(seed + 7), (6, *grid.shape, 1))
    xs = dd.decompose_input(x, grid)
    sub = net.subnet(grid.K)
    subs = random_sub_vars(sub, xs[0][:1], grid.K, seed=seed)
    subs = [{k: v for k, v in s.items() if k != "intermediates"} for s in subs]
    return shape, x, xs, sub, subs


def _composed_and_sum(net, grid, seed=0):
    shape, x, xs, sub, subs = _setup(net, grid, seed)
    plan = dd.plan_for(net, sub, grid, input_shape=shape)
    gv = dd.compose(plan, dd.stack(subs))
    total = sum(sub.apply(subs[k], xs[k]) for k in range(grid.K))
    return net.apply(gv, x), total


@pytest.mark.parametrize("K,size,features", [(4, 16, (8, 8, 16, 16)), (16, 16, (16, 16, 16, 16))])
def test_regional_pooling_valid_padding_is_exact(K, size, features):  # noqa: N803
    grid = dd.Grid.uniform((28, 28), int(np.sqrt(K)), size=size)
    net = PlainCNN(features=features, pool_after=(1, 3), fc=(), head="gap")
    regional = with_regional_pool(net, grid, (1, 28, 28, 1))
    assert regional.pool_regions is not None and regional.subnet(K).pooling == "global"
    g, total = _composed_and_sum(regional, grid)
    scale = float(jnp.abs(total).max())
    assert float(jnp.abs(g - total).max()) <= 1e-5 * scale + 1e-5
    g_plain, _ = _composed_and_sum(net, grid)  # global average pooling: far from the sum
    assert float(jnp.abs(g_plain - total).max()) > 0.05 * scale


def test_regional_pooling_same_padding_differs_only_on_border_cells():
    """Theorem 2.1 (1) away from the sub-image borders: on sub-network k's region and channel block
    k, the global pooled map equals sub-network k's map on every cell whose 2-conv receptive field
    does not reach a sub-image edge that is interior to the image; the logit gap is the pooled
    difference of the remaining (border) cells times the classifier blocks."""
    grid = dd.Grid.uniform((28, 28), 2, size=16)  # origins 0, 12; stride 1
    net = PlainCNN(features=(8, 8), pool_after=(), fc=(), head="gap", padding="SAME")
    regional = with_regional_pool(net, grid, (1, 28, 28, 1))
    shape, x, xs, sub, subs = _setup(regional, grid)
    plan = dd.plan_for(regional, sub, grid, input_shape=shape)
    gv = dd.compose(plan, dd.stack(subs))
    g_logits, g_inter = regional.apply(gv, x, mutable=["intermediates"])
    gmap = g_inter["intermediates"][POOL_INPUT][0]
    c = gmap.shape[-1] // grid.K
    gap = np.asarray(g_logits - sum(sub.apply(subs[k], xs[k]) for k in range(grid.K)))
    bound = np.zeros_like(gap)
    border_cells = 0
    for k, ((r0, c0), (h, w)) in enumerate(regional.pool_regions):
        _, s_inter = sub.apply(subs[k], xs[k], mutable=["intermediates"])
        smap = np.asarray(s_inter["intermediates"][POOL_INPUT][0])
        block = np.asarray(gmap[:, r0:r0 + h, c0:c0 + w, k * c:(k + 1) * c])
        # cells within 2 of an edge of the sub-image that is not an edge of the image
        border = np.zeros((h, w), bool)
        if r0 > 0:
            border[:2] = True
        if r0 + h < 28:
            border[-2:] = True
        if c0 > 0:
            border[:, :2] = True
        if c0 + w < 28:
            border[:, -2:] = True
        diff = block - smap
        np.testing.assert_allclose(block[:, ~border], smap[:, ~border], atol=1e-5)  # interior: exact
        assert np.abs(diff[:, border]).max() > 1e-3  # the border really differs (the test can fail)
        border_cells += int(border.sum())
        kernel = np.asarray(gv["params"]["Head"]["kernel"][k * c:(k + 1) * c])
        bound += np.abs(np.abs(diff).sum(axis=(1, 2)) / (h * w)) @ np.abs(kernel)
    assert border_cells > 0
    assert np.all(np.abs(gap) <= bound + 1e-5)


def test_regional_pooling_resnet_regions_and_subnet():
    grid = dd.Grid.uniform((28, 28), 2, size=16)
    net = CifarResNet(depth=8, widths=(8, 16, 32))
    regions = regions_for(net, grid, (1, 28, 28, 1))
    # 28 -> 14 -> 7 (global), 16 -> 8 -> 4 (sub): total stride 4, origins 0 and 12 -> 0 and 3
    assert regions == (((0, 0), (4, 4)), ((0, 3), (4, 4)), ((3, 0), (4, 4)), ((3, 3), (4, 4)))
    regional = with_regional_pool(net, grid, (1, 28, 28, 1))
    assert regional.pooling == "regional" and regional.subnet(4).pool_regions is None


def test_regional_pooling_errors():
    x = jnp.ones((2, 4, 4, 6))
    with pytest.raises(ValueError, match="needs the regions"):
        average_pool(x, "regional", None)
    with pytest.raises(ValueError, match="not divisible"):
        average_pool(x, "regional", (((0, 0), (2, 2)),) * 4)
    with pytest.raises(ValueError, match="choose one of"):
        average_pool(x, "max")
    misaligned = dd.Grid.from_origins((28, 28), [(0, 0), (0, 10), (10, 0), (10, 10)], 18)
    with pytest.raises(ValueError, match="stride"):
        regions_for(PlainCNN(features=(8, 8, 16, 16), head="gap"), misaligned, (1, 28, 28, 1))
    with pytest.raises(ValueError, match="pooling"):
        with_regional_pool(VGG16(), dd.Grid.uniform((28, 28), 2, size=16), (1, 28, 28, 1))
