"""The K sub-network problems: every strategy computes the same thing (one device here; four
simulated devices in tests/test_multidevice.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcnn_dd.models import PlainCNN
from dcnn_dd import sharding
from dcnn_dd.train.state import create_state, default_tx, train_step
from dcnn_dd.tree import init_variables

K = 3
SUB = PlainCNN(features=(4, 4), pool_after=(1,), fc=(8,), num_classes=5)


def _problem():
    keys = jax.random.split(jax.random.PRNGKey(0), K)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[init_variables(SUB, k, (1, 10, 10, 1)) for k in keys])
    tx = default_tx()
    state = jax.vmap(lambda v: create_state(v, tx))(stacked)
    xs = jax.random.normal(jax.random.PRNGKey(1), (K, 16, 10, 10, 1))
    labels = jax.random.randint(jax.random.PRNGKey(2), (16,), 0, 5)
    lrs = jnp.array([1e-2, 5e-3, 2e-3])
    return tx, state, xs, labels, lrs


def _train(strategy, steps=3, mesh=None):
    tx, state, xs, labels, lrs = _problem()
    one = lambda st, x, lab, lr: train_step(SUB, tx, st, x, lab, lr)  # noqa: E731
    step = jax.jit(sharding.kmap(one, strategy, K=K, in_axes=(0, 0, None, 0), mesh=mesh))
    for _ in range(steps):
        state, metrics = step(state, xs, labels, lrs)
    return state, metrics


def _reference(steps=3):
    """Each sub-network trained on its own, one after another, outside any strategy."""
    tx, state, xs, labels, lrs = _problem()
    step = jax.jit(lambda st, x, lab, lr: train_step(SUB, tx, st, x, lab, lr))
    outs = []
    for k in range(K):
        st = jax.tree.map(lambda a: a[k], state)
        for _ in range(steps):
            st, _ = step(st, xs[k], labels, lrs[k])
        outs.append(st)
    return jax.tree.map(lambda *a: jnp.stack(a), *outs)


@pytest.mark.parametrize("strategy", ["vmap", "sequential", "shard_map"])
def test_every_strategy_equals_independent_training(strategy):
    mesh = sharding.subnet_mesh(K) if strategy == "shard_map" else None
    state, metrics = _train(strategy, mesh=mesh)
    ref = _reference()
    assert metrics["loss"].shape == (K,)
    np.testing.assert_array_equal(state.step, [3] * K)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref.params)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    # different learning rates and sub-images: the K results really differ (no accidental sharing)
    leaf = jax.tree.leaves(state.params)[0]
    assert not np.allclose(leaf[0], leaf[1])


def test_sequential_is_bitwise_independent_training():
    state, _ = _train("sequential")
    ref = _reference()
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref.params)):
        np.testing.assert_array_equal(a, b)


def test_choose_measures_every_candidate_and_returns_the_fastest():
    calls = []

    def build(s):
        def step(x):
            calls.append(s)
            # a deliberately slow 'vmap' so the choice is known
            return jnp.sum(jnp.ones((2000, 2000)) @ jnp.ones((2000, 200))) if s == "vmap" else x + 1

        return step, lambda: (jnp.zeros(()),)

    best, timings = sharding.choose(["vmap", "sequential"], build, repeats=2)
    assert best == "sequential" and set(timings) == {"vmap", "sequential"}
    assert timings["vmap"] > timings["sequential"]
    assert calls.count("vmap") == 3  # one compile call + 2 timed


def test_bad_strategy_and_missing_mesh_are_clear_errors():
    with pytest.raises(ValueError, match="choose one of"):
        sharding.kmap(lambda x: x, "pmap", K=2, in_axes=(0,))
    with pytest.raises(ValueError, match="subnet"):
        sharding.kmap(lambda x: x, "shard_map", K=2, in_axes=(0,))
