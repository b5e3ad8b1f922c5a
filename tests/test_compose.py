"""compose / decompose / make_plan: shapes, exact zeros, inverses, user modules, errors."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dcnn_dd as dd
from dcnn_dd import rules
from dcnn_dd.tree import leaves_by_path
from dcnn_dd.models import PlainCNN
from tests.conftest import random_sub_vars


class UserNet(nn.Module):
    """A user's own module: widths are attributes, a strided conv, a flatten + FC head."""

    width: int = 8
    hidden: int = 16

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(self.width, (3, 3), padding="VALID", name="stem")(x))
        x = nn.relu(nn.Conv(2 * self.width, (3, 3), strides=2, padding="VALID", name="down")(x))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden, name="fc")(x))
        return nn.Dense(10, name="logits")(x)


def _plain_setting(K=4):  # noqa: N803
    model = PlainCNN(features=(8, 8, 16, 16), pool_after=(1, 3), fc=(16,), batchnorm=True)
    grid = dd.Grid.uniform((28, 28), 2, size=16)
    sub = model.subnet(K)
    xs = dd.decompose_input(jnp.ones((1, 28, 28, 1)), grid)
    sub_vars = random_sub_vars(sub, xs[0], K)
    plan = dd.plan_for(model, sub, grid, input_shape=(1, 28, 28, 1), windows=model.windows())
    return model, grid, sub, sub_vars, plan


def test_roundtrip_shapes_and_exact_zeros():
    model, grid, sub, sub_vars, plan = _plain_setting()
    st = dd.stack(sub_vars)
    g = dd.compose(plan, st)
    g_shapes = jax.tree.map(jnp.shape, jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.ones((1, 28, 28, 1)))))
    assert jax.tree.map(jnp.shape, g) == g_shapes
    chex.assert_tree_all_finite(g)
    back = dd.decompose(plan, g)
    for path, rule in plan.rules.items():
        a = leaves_by_path(back)[path]
        b = leaves_by_path(st)[path]
        if "head bias" in rule.note:
            # the one many-to-one rule: decompose returns the equal share, compose restores the sum
            np.testing.assert_allclose(a.sum(0), b.sum(0), rtol=1e-6)
        else:
            np.testing.assert_array_equal(a, b, err_msg=path)  # bitwise exact
        # every entry not placed by some sub-network is exactly zero
        mult = rule.multiplicity(plan.K, plan.sub_shapes[path], plan.global_shapes[path]) if rule.maps else None
        if mult is not None:
            if rule.disjoint:
                assert mult.max() == 1, path
            gl = np.asarray(leaves_by_path(g)[path])
            assert np.all(gl[mult == 0] == 0), path
            if "block-diagonal" in rule.note:
                assert (mult == 0).sum() == mult.size * (plan.K - 1) / plan.K
    # and compose(decompose(g)) == g on a random global network
    g2 = jax.tree.map(lambda a: jax.random.normal(jax.random.PRNGKey(3), a.shape), g)
    g3 = dd.compose(plan, dd.decompose(plan, g2))
    for path, rule in plan.rules.items():
        a = np.asarray(leaves_by_path(g3)[path])
        b = np.asarray(leaves_by_path(g2)[path])
        mult = rule.multiplicity(plan.K, plan.sub_shapes[path], plan.global_shapes[path])
        np.testing.assert_allclose(a[mult > 0], b[mult > 0], rtol=1e-6, err_msg=path)


def test_compose_and_decompose_are_jittable():
    model, grid, sub, sub_vars, plan = _plain_setting()
    st = dd.stack(sub_vars)
    g = jax.jit(lambda s: dd.compose(plan, s))(st)
    back = jax.jit(lambda v: dd.decompose(plan, v))(g)
    chex.assert_trees_all_equal(g, dd.compose(plan, st))  # jit and eager agree bitwise
    drop_head_bias = lambda t: {p: v for p, v in leaves_by_path(t).items() if p != "params/Head/bias"}  # noqa: E731
    chex.assert_trees_all_equal(drop_head_bias(back), drop_head_bias(st))  # the inverse, bitwise


def test_user_defined_module_with_inferred_stride():
    K = 2  # noqa: N806
    grid = dd.Grid.uniform((20, 20), (1, 2), size=(20, 12))  # column origins 0 and 8, stride 2
    model, sub = UserNet(width=8, hidden=16), UserNet(width=4, hidden=8)
    plan = dd.plan_for(model, sub, grid, input_shape=(1, 20, 20, 3))
    text = str(plan)
    assert "(2.11) first layer" in text and "(2.13) first FC" in text and "(2.14) sum" in text
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 20, 20, 3))
    xs = dd.decompose_input(x, grid)
    sub_vars = random_sub_vars(sub, xs[0], K)
    g = dd.compose(plan, dd.stack(sub_vars))
    total = sum(sub.apply(sub_vars[k], xs[k]) for k in range(K))
    np.testing.assert_allclose(model.apply(g, x), total, atol=1e-4, rtol=1e-5)


def test_trace_flatten_shapes_finds_the_flattened_dense_only():
    model = UserNet()
    v = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.ones((1, 20, 20, 3))))
    found = dd.trace_flatten_shapes(model.apply, v, jax.ShapeDtypeStruct((1, 20, 20, 3), jnp.float32))
    assert found == {"params/fc/kernel": (8, 8, 16)}


class WithTemperature(nn.Module):
    width: int = 8

    @nn.compact
    def __call__(self, x, train: bool = False):
        t = self.param("temperature", nn.initializers.ones, ())
        x = nn.relu(nn.Dense(self.width, name="hidden")(x))
        return nn.Dense(3, name="out")(x) / t


def test_ambiguous_leaf_needs_an_override():
    g = jax.eval_shape(lambda: WithTemperature(8).init(jax.random.PRNGKey(0), jnp.ones((1, 5))))
    s = jax.eval_shape(lambda: WithTemperature(2).init(jax.random.PRNGKey(0), jnp.ones((1, 5))))
    with pytest.raises(ValueError, match="cannot infer the rule of leaf params/temperature"):
        dd.make_plan(g, s, 4)
    plan = dd.make_plan(g, s, 4, overrides={"params/temperature": rules.shared(0, 4)})
    subs = [WithTemperature(2).init(jax.random.PRNGKey(k), jnp.ones((1, 5))) for k in range(4)]
    glob = dd.compose(plan, dd.stack(subs))
    assert glob["params"]["temperature"] == 1.0
    np.testing.assert_array_equal(dd.decompose(plan, glob)["params"]["temperature"], jnp.ones(4))


def test_bad_inputs_are_clear_errors():
    model, grid, sub, sub_vars, plan = _plain_setting()
    # widths not divisible by K
    with pytest.raises(ValueError, match=r"width features\[0\]=8 is not divisible by K=3"):
        model.subnet(3)
    # K inconsistent between arguments
    g = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.ones((1, 28, 28, 1))))
    s = jax.eval_shape(lambda: sub.init(jax.random.PRNGKey(0), jnp.ones((1, 16, 16, 1))))
    with pytest.raises(ValueError, match="K inconsistent: K=2 but the grid has 4"):
        dd.make_plan(g, s, 2, grid=grid)
    st = dd.stack(sub_vars[:2])
    with pytest.raises(ValueError, match="K inconsistent: leaf .* stacked over 2 sub-networks, the plan has K=4"):
        dd.compose(plan, st)
    # a parameter tree that does not match the global model: leaf path and both shapes
    wrong = jax.tree.map(lambda a: a, dd.compose(plan, dd.stack(sub_vars)))
    wrong["params"]["Conv_1"]["kernel"] = jnp.zeros((3, 3, 8, 4))
    with pytest.raises(ValueError, match=r"leaf params/Conv_1/kernel .* shape \(3, 3, 8, 4\), expected \(3, 3, 8, 8\)"):
        dd.decompose(plan, wrong)
    s_bad = jax.eval_shape(lambda: PlainCNN(features=(2, 3, 4, 4), pool_after=(1, 3), fc=(4,), batchnorm=True)
                           .init(jax.random.PRNGKey(0), jnp.ones((1, 16, 16, 1))))
    with pytest.raises(ValueError, match=r"leaf \S+: global shape \(8,\) vs sub-network shape \(3,\)"):
        dd.make_plan(g, s_bad, 4, grid=grid, flatten={}, windows=model.windows())
    with pytest.raises(ValueError, match="trees differ"):
        dd.make_plan(g, {"params": {}}, 4)
    # origins not aligned with the total stride where the flatten-FC composition needs it
    bad_grid = dd.Grid.from_origins((30, 30), [(0, 0), (0, 14), (14, 0), (14, 14)], (16, 16))
    with pytest.raises(ValueError, match="not have the sub-network's feature shape|not aligned"):
        dd.plan_for(model, sub, bad_grid, input_shape=(1, 30, 30, 1), windows=model.windows())
    with pytest.raises(ValueError, match="K=0"):
        dd.make_plan(g, s, 0)
    with pytest.raises(ValueError, match="head="):
        dd.make_plan(g, s, 4, head="max")
    with pytest.raises(ValueError, match="even number of convolutions"):
        PlainCNN(features=(2, 2, 2), residual=True).windows()
    with pytest.raises(ValueError, match="rank"):
        PlainCNN().apply(model.init(jax.random.PRNGKey(0), jnp.ones((1, 28, 28, 1))), jnp.ones((28, 28, 1)))


def test_k1_is_the_identity():
    model = PlainCNN(features=(4, 4), pool_after=(), fc=(4,))
    grid = dd.Grid.uniform((10, 10), 1)
    v = model.init(jax.random.PRNGKey(0), jnp.ones((1, 10, 10, 1)))
    plan = dd.plan_for(model, model.subnet(1), grid, input_shape=(1, 10, 10, 1))
    g = dd.compose(plan, dd.stack([v]))
    chex.assert_trees_all_equal(g, v)
    chex.assert_trees_all_equal(dd.decompose(plan, v), dd.stack([v]))
