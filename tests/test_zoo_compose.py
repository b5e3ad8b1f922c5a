"""Every paper architecture of the zoo composes and decomposes (tiny widths, real arrays).

Their heads use global average pooling or same padding, so Theorem 2.1 is not exact for them
(tests/test_deviations.py measures that); here we pin the rules the plan infers, the global
shapes, exact zeros off the blocks, and the round trip.
"""

import chex
import jax
import numpy as np
import pytest

import dcnn_dd as dd
from dcnn_dd.tree import leaves_by_path
from dcnn_dd.models.zoo import VGG16, BottleneckResNet, CifarResNet, DogsCatsCNN
from tests.conftest import random_sub_vars

CASES = {
    "vgg16": (VGG16(widths=(8, 16, 16, 32, 32), fc=(32, 32), num_classes=10), (64, 64, 3),
              dict(parts=2), {"params/fc1/kernel": "(2.13) first FC", "params/classifier/kernel": "(2.14) sum",
                              "params/conv1_1/kernel": "(2.11) first layer", "params/conv2_1/kernel": "block-diagonal"}),
    "cifar-resnet8": (CifarResNet(depth=8, widths=(8, 16, 32)), (32, 32, 3), dict(parts=2, size=20),
                      {"params/stage2_block0/proj_conv/kernel": "block-diagonal",
                       "batch_stats/stage1_block0/bn1/var": "concatenated", "params/classifier/bias": "head bias"}),
    "bottleneck-resnet": (BottleneckResNet(stage_sizes=(1, 1), widths=(8, 16), stem_width=8, fc_hidden=16,
                                           num_classes=5), (64, 64, 3), dict(parts=2, size=40),
                          {"params/fc_hidden/kernel": "block-diagonal", "params/conv1/kernel": "(2.11) first layer"}),
    "dogscats": (DogsCatsCNN(widths=(4, 4, 8, 8, 8, 8, 8, 8, 16, 16)), (32, 32, 3), dict(parts=2, size=20),
                 {"params/fc/kernel": "(2.14) sum"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_zoo_models_compose(name):
    model, in_shape, grid_kw, expected = CASES[name]
    K = 4  # noqa: N806
    grid = dd.Grid.uniform(in_shape[:2], **grid_kw)
    sub = model.subnet(K)
    kw = dict(stride=32, strict=False) if name == "vgg16" else {}
    plan = dd.plan_for(model, sub, grid, input_shape=(1, *in_shape), **kw)
    for path, note in expected.items():
        assert note in str(plan.rules[path]), (path, str(plan.rules[path]))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, *in_shape))
    xs = dd.decompose_input(x, grid)
    sub_vars = random_sub_vars(sub, xs[0], K)
    st = dd.stack(sub_vars)
    g = dd.compose(plan, st)
    want = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    chex.assert_trees_all_equal_shapes_and_dtypes(g, want)
    assert np.isfinite(np.asarray(model.apply(g, x))).all()
    back = leaves_by_path(dd.decompose(plan, g))
    for path, leaf in leaves_by_path(st).items():
        if "head bias" not in plan.rules[path].note:
            np.testing.assert_array_equal(back[path], leaf, err_msg=path)
