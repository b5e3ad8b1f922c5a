"""dcnn_dd.activation_maps: jitted per-layer feature maps, class activation maps and their display
upsampling, against the models' own (op-by-op) methods and hand-made maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcnn_dd.activation_maps import cam_fn, feature_maps_fn, layer_name, upsample_normalized
from dcnn_dd.models import PlainCNN
from dcnn_dd.models.zoo import DogsCatsCNN

MODEL = DogsCatsCNN(widths=(4, 4, 8, 8, 8, 8, 8, 8, 8, 8), num_classes=3)  # last conv: 2x2 at 32x32


@pytest.fixture(scope="module")
def dogscats():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 32, 32, 3)), jnp.float32)
    v = jax.jit(MODEL.init)(jax.random.PRNGKey(1), x)
    rng = np.random.default_rng(2)  # biases away from zero, so the CAM identity checks them
    v = jax.tree.map(lambda a: a + 0.1 * rng.normal(size=a.shape).astype(a.dtype), v)
    return v, x


def test_feature_maps_fn_matches_the_models_maps(dogscats):
    v, x = dogscats
    maps = feature_maps_fn(MODEL, (1, 5, 10))(v, x)
    ref, _ = MODEL.feature_maps(v, x, layers=(1, 5, 10))
    assert set(maps) == {1, 5, 10} and maps[10].shape == (3, 2, 2, 8)
    for i in (1, 5, 10):
        np.testing.assert_allclose(maps[i], ref[i], rtol=1e-5, atol=1e-6)
    assert not np.allclose(maps[1][..., 0], maps[1][..., 1])  # distinct channels: not a constant stand-in
    assert feature_maps_fn(MODEL, (1, 5, 10)) is feature_maps_fn(MODEL, (1, 5, 10))  # compiled once per model
    # names work as well as ints, for any model that sows its spatial layers (PlainCNN: layer0, layer1, ...)
    plain = PlainCNN(features=(2, 4), pool_after=(0,), fc=(), num_classes=2)
    xp = jnp.ones((1, 12, 12, 1))
    vp = plain.init(jax.random.PRNGKey(0), xp)
    _, st = plain.apply(vp, xp, mutable=["intermediates"])
    got = feature_maps_fn(plain, ("layer1", 2))(vp, xp)
    np.testing.assert_array_equal(got["layer1"], st["intermediates"]["layer1"][0])
    np.testing.assert_array_equal(got[2], st["intermediates"][layer_name(2)][0])


def test_cam_fn_is_the_cam_and_the_class_probability(dogscats):
    v, x = dogscats
    cls = np.array([0, 2, 1])
    cam, p = cam_fn(MODEL)(v, x, cls)
    assert cam.shape == (3, 2, 2) and p.shape == (3,)
    _, logits = MODEL.feature_maps(v, x, layers=(10,))
    np.testing.assert_allclose(cam, MODEL.cam(v, x, cls), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p, jax.nn.softmax(logits, -1)[np.arange(3), cls], rtol=1e-5)
    # Zhou et al.: the CAM's spatial mean plus the class's bias is that class's logit
    np.testing.assert_allclose(cam.mean(axis=(1, 2)) + v["params"]["fc"]["bias"][cls], logits[np.arange(3), cls],
                               rtol=1e-4, atol=1e-5)
    other, _ = cam_fn(MODEL)(v, x, (cls + 1) % 3)
    assert np.abs(np.asarray(other) - np.asarray(cam)).max() > 1e-3  # the class matters


def test_upsample_normalized():
    maps = np.zeros((3, 4, 4), np.float32)
    maps[0, 1, 2] = 5.0  # one hot cell
    maps[1] = np.arange(16, dtype=np.float32).reshape(4, 4) - 20  # a ramp, negative values
    maps[2] = 7.0  # constant
    up = upsample_normalized(maps, (16, 16))
    assert up.shape == (3, 16, 16) and up.dtype == np.float32
    assert up[:2].min(axis=(1, 2)).tolist() == [0.0, 0.0]
    np.testing.assert_allclose(up[:2].max(axis=(1, 2)), 1.0, rtol=1e-6)
    r, c = np.unravel_index(np.argmax(up[0]), (16, 16))
    assert 4 <= r < 8 and 8 <= c < 12  # the hot cell's place, scaled by 4
    assert up[1, 15, 15] == 1.0 and up[1, 0, 0] == 0.0  # the ramp keeps its order
    assert (up[2] == 0).all()  # a constant map has nothing to show
