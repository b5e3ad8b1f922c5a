"""Training state and the pure training / evaluation steps for one network.

A network's variables are split into ``params`` (trained) and ``model_state`` (the other
mutable collections, e.g. BatchNorm's ``batch_stats``); the ``intermediates`` that the models
``sow`` are never kept.  The optimiser is optax's Adam (the paper's) with its learning rate as
optimiser state (``optax.inject_hyperparams``, :func:`default_tx`): :func:`train_step` takes the
rate as an argument and writes it into that state before the update
(:func:`with_learning_rate`), so the host can apply any schedule and the plateau rule per epoch
(and per sub-network: the K states of a stack hold K rates) without recompiling.  What the steps
minimise and measure is a :class:`~dcnn_dd.train.tasks.Task` (default: classification, softmax
cross-entropy, top-1 and top-5).
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from dcnn_dd.train.tasks import CLASSIFICATION, Task, cross_entropy, top_k_correct  # noqa: F401 (re-exported)
from dcnn_dd.tree import split_variables

@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any

    @property
    def variables(self) -> dict:
        return {"params": self.params, **self.model_state}


def default_tx() -> optax.GradientTransformation:
    """Adam (optax's defaults: b1 0.9, b2 0.999, eps 1e-8) with the learning rate injected as
    optimiser state; :func:`train_step` sets it every step (:func:`with_learning_rate`).  Only the
    rate is injected: injected as float32 arrays, b1, b2 and eps would round differently from
    optax's Python constants and change every trained number in the last digits."""
    return optax.inject_hyperparams(optax.adam, static_args=("b1", "b2", "eps", "eps_root"))(learning_rate=0.0)


def has_learning_rate(opt_state) -> bool:
    """Whether ``opt_state`` holds an injected ``learning_rate`` (``optax.inject_hyperparams``)."""
    hyper = getattr(opt_state, "hyperparams", None)
    return isinstance(hyper, dict) and "learning_rate" in hyper


def with_learning_rate(opt_state, lr):
    """``opt_state`` (of an ``optax.inject_hyperparams`` optimiser) with its ``learning_rate`` set to
    ``lr``; any other optimiser state is returned as it is."""
    if not has_learning_rate(opt_state):
        return opt_state
    hyper = opt_state.hyperparams
    old = hyper["learning_rate"]
    return opt_state._replace(hyperparams={**hyper, "learning_rate": jnp.asarray(lr, old.dtype).reshape(old.shape)})


def create_state(variables, tx: optax.GradientTransformation) -> TrainState:
    params, model_state = split_variables(variables)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state, opt_state=tx.init(params))


def params_plan(plan, params):
    """``plan`` restricted to the ``params`` collection (for trees shaped like ``{"params": params}``)."""
    from dcnn_dd.composition import Plan

    keep = [p for p in plan.rules if p.startswith("params/")]
    return Plan(plan.K, {p: plan.rules[p] for p in keep}, {p: plan.global_shapes[p] for p in keep},
                {p: plan.sub_shapes[p] for p in keep}, jax.tree.structure({"params": params}))


def compose_opt_state(plan, stacked_opt_state, params):
    """The K sub-networks' optimiser state composed like their parameters (beyond the paper): every
    part of ``stacked_opt_state`` shaped like the parameters (Adam's moments ``mu`` and ``nu``) by
    the plan's rules (2.11)-(2.14) - block-diagonal, zeros elsewhere, the output bias's moments
    summed - and every other leaf (step counts) taken from sub-network 0 (the K counts are equal).
    ``params``: the global parameters (their structure is matched).  So GNet-T continues Adam
    where the sub-networks left it instead of restarting it cold (``Config.compose_opt_state``)."""
    from dcnn_dd.composition import compose

    pplan = params_plan(plan, params)
    pdef = jax.tree.structure(params)

    def like_params(node) -> bool:
        return jax.tree.structure(node) == pdef

    def one(node):
        if like_params(node):
            return compose(pplan, {"params": node})["params"]
        return jax.tree.map(lambda a: a[0], node)

    return jax.tree.map(one, stacked_opt_state, is_leaf=like_params)


def train_step(model, tx, state: TrainState, x, labels, lr, task: Task = CLASSIFICATION):
    """One optimiser step on a batch: the mean of ``task``'s per-sample loss (default: softmax
    cross-entropy with integer labels, :mod:`~dcnn_dd.train.tasks`), ``tx`` at learning rate ``lr``,
    ``optax.apply_updates``.  With an injected rate (:func:`default_tx`) ``lr`` is written into the
    optimiser state (:func:`with_learning_rate`); any other ``tx`` gives an update *direction*
    (e.g. ``optax.scale_by_adam()``, ``optax.identity()`` for plain gradient steps), scaled by
    ``-lr``.  ``labels``: the batch's targets (class labels, or the task's float targets).

    Returns the new state and ``{'loss', 'accuracy'}`` of the batch (before the update; ``accuracy``
    is the batch mean of the task's ``train_metric``, top-1 for classification, and absent where the
    task has none).  Pure; BatchNorm statistics are the batch's (its mean over the global batch when
    ``x`` is sharded, so data-parallel runs keep them consistent across devices)."""
    mutable = list(state.model_state)

    def loss_fn(params):
        variables = {"params": params, **state.model_state}
        if mutable:
            logits, new_ms = model.apply(variables, x, train=True, mutable=mutable)
        else:
            logits, new_ms = model.apply(variables, x, train=True), {}
        return task.loss(logits, labels).mean(), (logits, new_ms)

    (loss, (logits, new_ms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if has_learning_rate(state.opt_state):
        updates, opt_state = tx.update(grads, with_learning_rate(state.opt_state, lr), state.params)
    else:  # a direction: the step is -lr times it
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        lr = jnp.asarray(lr, jnp.float32)
        updates = jax.tree.map(lambda u: (-lr * u).astype(u.dtype), updates)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss}
    if task.train_metric is not None:
        metrics["accuracy"] = jnp.mean(task.metrics[task.train_metric](logits, labels))
    new = state.replace(step=state.step + 1, params=params, model_state={**state.model_state, **new_ms}, opt_state=opt_state)
    return new, metrics


def eval_step(model, variables, x, labels, mask, task: Task = CLASSIFICATION):
    """Sums over the unmasked samples (``mask``) of each of ``task``'s per-sample metrics, of its
    loss, and their ``count``: ``{<metric>: ..., 'loss', 'count'}`` (classification: ``acc``,
    ``top5``, ``loss``, ``count``); and the outputs (logits)."""
    logits = model.apply(variables, x, train=False)
    m = mask.astype(jnp.float32)
    sums = {name: jnp.sum(fn(logits, labels) * m) for name, fn in task.metrics.items()}
    sums["loss"] = jnp.sum(task.loss(logits, labels) * m)
    return {**sums, "count": jnp.sum(m)}, logits
