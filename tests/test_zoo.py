"""The paper's architectures (dcnn_dd.models.zoo): shapes, sub-networks, parameter trees and counts."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcnn_dd.complexity import KERAS, abstract_variables, count_params
from dcnn_dd.models.zoo import (
    VGG16, BottleneckResNet, CifarResNet, DogsCatsCNN, ResNet50, ResNet101, class_activation_map,
)

# Table 3.4's counts (Keras convention) are checked in test_complexity.py, from the report's rows.

# tiny instances for real forward passes
TINY_VGG = VGG16(widths=(4, 4, 8, 8, 8), fc=(16, 16), num_classes=5)
TINY_CIFAR = CifarResNet(depth=8, widths=(4, 8, 16), num_classes=3)
TINY_BOTTLENECK = BottleneckResNet(stage_sizes=(1, 1, 1, 1), widths=(4, 4, 8, 8), stem_width=8, fc_hidden=8, num_classes=3)
TINY_DOGSCATS = DogsCatsCNN(widths=(4, 4, 8, 8, 8, 8, 8, 8, 8, 8))


def _shapes(tree):
    return jax.tree_util.tree_map(lambda a: tuple(a.shape), tree)


def _paths(tree):
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _rand_vars(model, shape, seed=0):
    """Variables with random values, without jitting ``model.init`` (its RNG code takes seconds to
    compile on CPU): kernels ~ N(0, 1/fan_in), biases/scales ~ N(0, 0.1) + (1 for scales),
    running means 0, running variances 1."""
    rng = np.random.default_rng(seed)

    def leaf(path, a):
        name = jax.tree_util.keystr(path)
        if "var" in name.split("[")[-1]:
            return jnp.ones(a.shape, a.dtype)
        if "mean" in name.split("[")[-1]:
            return jnp.zeros(a.shape, a.dtype)
        if a.ndim >= 2:
            return jnp.asarray(rng.normal(size=a.shape) / np.sqrt(np.prod(a.shape[:-1])), a.dtype)
        return jnp.asarray(("scale" in name) + 0.1 * rng.normal(size=a.shape), a.dtype)

    return jax.tree_util.tree_map_with_path(leaf, abstract_variables(model, shape))


@pytest.mark.parametrize(
    "model, shape, n_out",
    [(TINY_VGG, (2, 64, 64, 3), 5), (TINY_CIFAR, (2, 16, 16, 3), 3),
     (TINY_BOTTLENECK, (1, 32, 32, 3), 3), (TINY_DOGSCATS, (2, 32, 32, 3), 2)],
)
def test_forward_shapes_and_train_mode(model, shape, n_out):
    x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
    v = _rand_vars(model, shape)
    sub = model.subnet(4)
    xs = x[:, : shape[1] // 2, : shape[2] // 2]
    vs = _rand_vars(sub, xs.shape, seed=1)

    @jax.jit
    def run(v, vs, x, xs):
        y = model.apply(v, x)
        y2, upd = model.apply(v, x, train=True, mutable=["batch_stats"])
        return y, y2, upd, sub.apply(vs, xs)

    y, y2, upd, ys = run(v, vs, x, xs)
    assert y.shape == y2.shape == (shape[0], n_out) and bool(jnp.all(jnp.isfinite(y)))
    assert _shapes(upd.get("batch_stats", {})) == _shapes(v.get("batch_stats", {}))
    # the sub-network runs on the sub-image (half the side for K = 4)
    assert ys.shape == (shape[0], n_out)


def test_subnet_widths():
    s = VGG16().subnet(4)
    assert s.widths == (16, 32, 64, 128, 128) and s.fc == (1024, 1024) and s.num_classes == 1000
    s = CifarResNet(56).subnet(4)
    assert s.widths == (16, 32, 64) and s.depth == 56 and s.num_classes == 10
    s = ResNet50(fc_hidden=1024, num_classes=101).subnet(8)
    assert (s.widths, s.stem_width, s.fc_hidden, s.num_classes, s.stage_sizes) == ((8, 16, 32, 64), 8, 128, 101, (3, 4, 6, 3))
    assert ResNet101().subnet(16).fc_hidden is None
    s = DogsCatsCNN().subnet(4)
    assert s.widths == (8, 8, 16, 16, 32, 32, 64, 64, 128, 128) and s.num_classes == 2


@pytest.mark.parametrize(
    "model, K, needle",
    [(VGG16(), 3, "widths[0]=64"), (VGG16(fc=(4096, 4100)), 8, "fc[1]=4100"),
     (CifarResNet(widths=(64, 128, 250)), 4, "widths[2]=250"),
     (ResNet50(stem_width=66, widths=(64, 128, 256, 512)), 4, "stem_width=66"),
     (ResNet50(fc_hidden=1000), 16, "fc_hidden=1000"), (DogsCatsCNN(), 64, "widths[0]=32")],
)
def test_subnet_divisibility_error(model, K, needle):
    with pytest.raises(ValueError, match=r"not divisible by K=" + str(K)) as e:
        model.subnet(K)
    assert needle in str(e.value)


@pytest.mark.parametrize("K", [0, -2, 2.0])
def test_subnet_bad_k(K):
    with pytest.raises(ValueError):
        VGG16().subnet(K)


@pytest.mark.parametrize(
    "model, K, g_shape, s_shape",
    [(VGG16(), 4, (1, 224, 224, 3), (1, 112, 112, 3)),
     (CifarResNet(32), 4, (1, 32, 32, 3), (1, 16, 16, 3)),
     (CifarResNet(32, shortcut="A", conv_bias=False), 4, (1, 32, 32, 3), (1, 20, 20, 3)),
     (ResNet50(fc_hidden=1024, num_classes=101, conv_bias=True), 8, (1, 224, 224, 3), (1, 140, 80, 3)),
     (ResNet101(), 4, (1, 224, 224, 3), (1, 112, 112, 3)),
     (DogsCatsCNN(), 4, (1, 224, 224, 3), (1, 140, 140, 3))],
)
def test_param_tree_structure_identical(model, K, g_shape, s_shape):
    g = abstract_variables(model, g_shape)
    s = abstract_variables(model.subnet(K), s_shape)
    assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(s)
    assert _paths(g) == _paths(s)
    # only the widths differ: every leaf is rank-equal and no larger than the global one
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(s)):
        assert a.ndim == b.ndim and all(y <= x for x, y in zip(a.shape, b.shape))


def test_vgg16_table_2_1_shapes():
    """Kernel sizes of Table 2.1 (global / sub-network, K = 4)."""
    g = abstract_variables(VGG16(), (1, 224, 224, 3))["params"]
    s = abstract_variables(VGG16().subnet(4), (1, 112, 112, 3))["params"]
    assert g["conv1_1"]["kernel"].shape == (3, 3, 3, 64) and s["conv1_1"]["kernel"].shape == (3, 3, 3, 16)
    assert g["conv2_1"]["kernel"].shape == (3, 3, 64, 128) and s["conv2_1"]["kernel"].shape == (3, 3, 16, 32)
    assert g["conv5_3"]["kernel"].shape == (3, 3, 512, 512) and s["conv5_3"]["kernel"].shape == (3, 3, 128, 128)
    # layer 14: 7x7x512x4096 vs 3x3x128x1024 (the first FC adapts to its input, (2.7))
    assert g["fc1"]["kernel"].shape == (7 * 7 * 512, 4096) and s["fc1"]["kernel"].shape == (3 * 3 * 128, 1024)
    assert g["fc2"]["kernel"].shape == (4096, 4096) and s["fc2"]["kernel"].shape == (1024, 1024)
    assert g["classifier"]["kernel"].shape == (4096, 1000) and s["classifier"]["kernel"].shape == (1024, 1000)


def test_resnet_names_and_shortcuts():
    p = abstract_variables(CifarResNet(8, widths=(4, 8, 16)), (1, 32, 32, 3))["params"]
    assert {"conv0", "bn0", "stage1_block0", "stage2_block0", "stage3_block0", "classifier"} <= set(p)
    assert "proj_conv" not in p["stage1_block0"] and "proj_conv" in p["stage2_block0"] and "proj_bn" in p["stage3_block0"]
    assert "bias" in p["conv0"]  # Table 3.1's convention
    p = abstract_variables(CifarResNet(8, widths=(4, 8, 16), shortcut="A"), (1, 32, 32, 3))["params"]
    assert "proj_conv" not in p["stage2_block0"]
    p = abstract_variables(TINY_BOTTLENECK, (1, 32, 32, 3))["params"]
    assert {"conv1", "bn1", "stage1_block0", "stage4_block0", "fc_hidden", "classifier"} <= set(p)
    assert "bias" not in p["conv1"] and p["stage1_block0"]["conv3"]["kernel"].shape == (1, 1, 4, 16)


def test_bottleneck_stride_placement_same_params_and_shapes():
    x = (1, 64, 64, 3)
    a = abstract_variables(TINY_BOTTLENECK, x)
    b = abstract_variables(dataclasses.replace(TINY_BOTTLENECK, stride_on="3x3"), x)
    assert _shapes(a) == _shapes(b)
    y = jax.eval_shape(lambda x: dataclasses.replace(TINY_BOTTLENECK, stride_on="3x3").init_with_output(
        jax.random.PRNGKey(0), x)[0], jax.ShapeDtypeStruct(x, jnp.float32))
    assert y.shape == (1, 3)


def test_dogscats_feature_maps_and_cam():
    m = TINY_DOGSCATS
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    v = _rand_vars(m, x.shape)
    maps, logits = m.feature_maps(v, x, layers=(1, 3, 5, 10))
    assert maps[1].shape == (2, 32, 32, 4) and maps[3].shape == (2, 16, 16, 8) and maps[5].shape == (2, 8, 8, 8)
    assert maps[10].shape == (2, 2, 2, 8)
    # layer 1 = relu(conv1(x))
    ref = jax.nn.relu(jax.lax.conv_general_dilated(
        x, v["params"]["conv1"]["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        + v["params"]["conv1"]["bias"])
    np.testing.assert_allclose(maps[1], ref, rtol=1e-5, atol=1e-5)
    # capture_intermediates works too (pre-ReLU conv outputs)
    _, st = m.apply(v, x, capture_intermediates=True, mutable=["intermediates"])
    assert st["intermediates"]["conv3"]["__call__"][0].shape == (2, 16, 16, 8)
    # CAM: the spatial mean of the map plus the bias is the logit of that class
    cam = m.cam(v, x, cls=1)
    assert cam.shape == (2, 2, 2)
    np.testing.assert_allclose(cam.mean(axis=(1, 2)) + v["params"]["fc"]["bias"][1], logits[:, 1], rtol=1e-4, atol=1e-5)
    pred = m.cam(v, x)
    best = jnp.argmax(logits, -1)
    np.testing.assert_allclose(pred, class_activation_map(maps[10], v["params"]["fc"]["kernel"], best), rtol=1e-6)


# ----------------------------------------------------------------- parameter counts vs the paper
def _m(n):
    return n / 1e6


@pytest.mark.parametrize(
    "model, shape, include, exact, printed",
    [  # Table 2.2 (torchvision convention); VGG16's printed values are truncated
        (VGG16(), (1, 224, 224, 3), ("params",), 138_357_544, "138.35"),
        (VGG16().subnet(4), (1, 112, 112, 3), ("params",), 4_176_056, "4.17"),
        (ResNet50(), (1, 224, 224, 3), ("params",), 25_557_032, "25.56"),
        (ResNet50().subnet(4), (1, 112, 112, 3), ("params",), 1_993_976, "1.99"),
        (ResNet101(), (1, 224, 224, 3), ("params",), 44_549_160, "44.55"),
        (ResNet101().subnet(4), (1, 112, 112, 3), ("params",), 3_190_776, "3.19"),
        # Table 3.1 (Keras convention, projection shortcuts, conv bias); printed values truncated
        (CifarResNet(32), (1, 32, 32, 3), KERAS, 7_442_698, "7.44"),
        (CifarResNet(32).subnet(4), (1, 16, 16, 3), KERAS, 470_602, "0.47"),
        (CifarResNet(56), (1, 32, 32, 3), KERAS, 13_653_770, "13.65"),
        (CifarResNet(56).subnet(4), (1, 20, 20, 3), KERAS, 862_154, "0.86"),
        (CifarResNet(110), (1, 32, 32, 3), KERAS, 27_628_682, "27.62"),
        (CifarResNet(110).subnet(4), (1, 16, 16, 3), KERAS, 1_743_146, "1.74"),
    ],
)
def test_param_counts_match_paper(model, shape, include, exact, printed):
    n = count_params(abstract_variables(model, shape), include)
    assert n == exact
    decimals = len(printed.split(".")[1])
    assert f"{np.floor(_m(n) * 10**decimals) / 10**decimals:.{decimals}f}" == printed or f"{_m(n):.{decimals}f}" == printed
