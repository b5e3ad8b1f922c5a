"""Where the theorems' assumptions fail, measure and document the deviation, do not pretend.

Each test asserts that exactness really is lost (so a claim of exactness would fail here) and
prints the measured size; where a weaker statement still holds, it asserts that.
"""

import jax
import jax.numpy as jnp
import numpy as np

import dcnn_dd as dd
from dcnn_dd.models import PlainCNN
from tests.conftest import random_sub_vars

K = 4
GRID = dd.Grid.uniform((16, 16), 2, size=10)  # origins 0 and 6, overlap


def _compose(model, x, **plan_kwargs):
    sub = model.subnet(K)
    xs = dd.decompose_input(x, GRID)
    sub_vars = random_sub_vars(sub, xs[0], K)
    plan = dd.plan_for(model, sub, GRID, input_shape=(1, 16, 16, 1), **plan_kwargs)
    return sub, xs, sub_vars, dd.compose(plan, dd.stack(sub_vars))


def test_same_padding_is_exact_inside_and_deviates_at_sub_image_borders():
    model = PlainCNN(features=(8, 8), pool_after=(), fc=(), padding="SAME", head="gap")
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 16, 1))
    sub, xs, sub_vars, g = _compose(model, x)
    _, inter = model.apply(g, x, mutable=["intermediates"])
    G = inter["intermediates"]["layer0"][0]  # noqa: N806  first conv layer
    for k, box in enumerate(GRID.boxes):
        _, ik = sub.apply(sub_vars[k], xs[k], mutable=["intermediates"])
        s = ik["intermediates"]["layer0"][0]
        restricted = G[(slice(None),) + box.slices() + (slice(2 * k, 2 * k + 2),)]
        # the sub-image interior (one pixel away from its border) matches exactly ...
        np.testing.assert_allclose(restricted[:, 1:-1, 1:-1], s[:, 1:-1, 1:-1], atol=1e-5)
        # ... its border does not wherever the sub-image border is not the image border
        dev = float(jnp.abs(restricted - s).max())
        assert dev > 1e-3, dev
        print(f"same padding, subdomain {k}: max deviation at sub-image borders {dev:.3f}")


def test_global_average_pooling_breaks_the_logit_sum():
    model = PlainCNN(features=(8, 8), pool_after=(), fc=(), head="gap")
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 16, 16, 1))
    sub, xs, sub_vars, g = _compose(model, x)
    total = sum(sub.apply(sub_vars[k], xs[k]) for k in range(K))
    dev = float(jnp.abs(model.apply(g, x) - total).max())
    # GAP averages channel block k over the whole map, not over k's field
    assert dev > 1e-3, dev
    print(f"global average pooling: max |global logits - sum of sub logits| = {dev:.3f}")


def test_batchnorm_in_training_mode_deviates():
    model = PlainCNN(features=(8, 8), pool_after=(), fc=(8,), batchnorm=True)
    x = jax.random.normal(jax.random.PRNGKey(2), (8, 16, 16, 1))
    sub, xs, sub_vars, g = _compose(model, x, windows=model.windows())
    # inference mode is exact (tests/test_theorems.py); training mode normalises with batch
    # statistics over the global map, which differ from those over each sub-image
    out, _ = model.apply(g, x, train=True, mutable=["batch_stats"])
    total = sum(sub.apply(sub_vars[k], xs[k], train=True, mutable=["batch_stats"])[0] for k in range(K))
    dev = float(jnp.abs(out - total).max())
    assert dev > 1e-3, dev
    print(f"BatchNorm in training mode: max logit deviation {dev:.3f}")
