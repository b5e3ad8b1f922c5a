"""The training step's optimiser: optax's Adam with the learning rate as optimiser state
(``optax.inject_hyperparams``), set per step and per sub-network by the host."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dcnn_dd.models import PlainCNN
from dcnn_dd.train.state import create_state, default_tx, train_step, with_learning_rate
from dcnn_dd.tree import init_variables


def _setup():
    model = PlainCNN(features=(4, 4), pool_after=(1,), fc=(8,), num_classes=5)
    variables = init_variables(model, jax.random.PRNGKey(0), (1, 10, 10, 1))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 16, 10, 10, 1))
    y = jax.random.randint(jax.random.PRNGKey(2), (3, 16), 0, 5)
    return model, variables, x, y


def test_step_is_adam_at_the_given_rate_bitwise():
    """The same numbers as Adam's direction scaled by -lr by hand (the engine before optax applied the
    rate): the measured results of earlier runs stay what they were."""
    model, variables, x, y = _setup()
    tx = default_tx()
    state = create_state(variables, tx)
    adam = optax.scale_by_adam()
    params, adam_state = state.params, adam.init(state.params)
    for i, lr in enumerate((1e-3, 3e-4, 1e-3)):
        state, _ = train_step(model, tx, state, x[i], y[i], lr)

        def loss(p, i=i):
            logits = model.apply({"params": p}, x[i], train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y[i]).mean()

        u, adam_state = adam.update(jax.grad(loss)(params), adam_state, params)
        params = jax.tree.map(lambda p, d, lr=lr: p - (jnp.float32(lr) * d).astype(p.dtype), params, u)
        assert float(state.opt_state.hyperparams["learning_rate"]) == np.float32(lr)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_each_network_of_a_stack_steps_at_its_own_rate():
    model, variables, x, y = _setup()
    tx = default_tx()
    one = create_state(variables, tx)
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), one)
    lrs = jnp.array([1e-2, 0.0], jnp.float32)
    new, _ = jax.vmap(lambda s, lr: train_step(model, tx, s, x[0], y[0], lr))(stacked, lrs)
    np.testing.assert_array_equal(np.asarray(new.opt_state.hyperparams["learning_rate"]), np.asarray(lrs))
    moved = [float(jnp.abs(a[0] - b[0]).max()) for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(stacked.params))]
    still = [float(jnp.abs(a[1] - b[1]).max()) for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(stacked.params))]
    assert max(moved) > 0 and max(still) == 0.0  # rate 0: the second network does not move


def test_with_learning_rate_leaves_other_optimisers_alone():
    params = {"w": jnp.ones(3)}
    plain = optax.sgd(0.1).init(params)
    assert with_learning_rate(plain, 0.5) is plain
    injected = default_tx().init(params)
    assert float(with_learning_rate(injected, 0.5).hyperparams["learning_rate"]) == 0.5
    assert float(injected.hyperparams["learning_rate"]) == 0.0  # a new state; the old one unchanged


def test_a_direction_optimiser_steps_by_minus_lr_times_it():
    """Any optimiser without an injected rate gives a direction (here plain gradient steps with
    ``optax.identity()``): the step is -lr times it, as the multi-device checks rely on."""
    model, variables, x, y = _setup()
    tx = optax.identity()
    state = create_state(variables, tx)
    new, _ = train_step(model, tx, state, x[0], y[0], 0.1)

    def loss(p):
        logits = model.apply({"params": p}, x[0], train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[0]).mean()

    want = jax.tree.map(lambda p, g: p - (jnp.float32(0.1) * g).astype(p.dtype), state.params, jax.grad(loss)(state.params))
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
