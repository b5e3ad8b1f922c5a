"""Training state and the pure training / evaluation steps for one network.

A network's variables are split into ``params`` (trained) and ``model_state`` (the other
mutable collections, e.g. BatchNorm's ``batch_stats``); the ``intermediates`` that the models
``sow`` are never kept.  The optimiser is optax's Adam by default (the paper's), or any optax
optimiser by name (:func:`~dcnn_dd.train.optimizers.make_tx`), with its learning rate as
optimiser state (``optax.inject_hyperparams``, :func:`default_tx`): :func:`train_step` takes the
rate as an argument and writes it into that state before the update
(:func:`with_learning_rate`), so the host can apply any schedule and the plateau rule per epoch
or per step (and per sub-network: the K states of a stack hold K rates) without recompiling.  What the steps
minimise and measure is a :class:`~dcnn_dd.train.tasks.Task` (default: classification, softmax
cross-entropy, top-1 and top-5).

Random streams (Dropout): :func:`train_step` given a key ``rng`` passes the model
``rngs={"dropout": fold_in(rng, state.step)}``; the engine's key of a phase is
:func:`phase_rng` (seed, phase name) and sub-network k of a stack gets ``fold_in(rng, k)``
(:func:`~dcnn_dd.train.steps.stacked_train_step`), so a resumed run draws the same masks and the K
sub-networks draw different ones.  Evaluation is deterministic (``train=False``, no streams).
"""

from __future__ import annotations

import zlib
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dcnn_dd.train.tasks import CLASSIFICATION, Task, cross_entropy, top_k_correct  # noqa: F401 (re-exported)
from dcnn_dd.tree import call_kwargs, path_str, split_variables

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
    optax's Python constants and change every trained number in the last digits.  The same as
    ``make_tx("adam")`` (:mod:`~dcnn_dd.train.optimizers`: any optax optimiser by name)."""
    from dcnn_dd.train.optimizers import make_tx

    return make_tx("adam")


def phase_rng(seed: int, phase: str) -> np.ndarray:
    """The base key of a phase's random streams (Dropout), from the run's ``seed`` and the
    phase's name only (a raw ``uint32[2]`` key, on the host): step ``t`` of the phase draws with
    ``fold_in(key, t)``, sub-network k of a stack with ``fold_in(fold_in(key, k), t)``."""
    salt = zlib.crc32(f"dropout/{phase}".encode()) & 0x7FFFFFFF
    return np.asarray(_phase_key(np.uint32(seed), np.uint32(salt)))


_phase_key = jax.jit(lambda seed, salt: jax.random.fold_in(jax.random.PRNGKey(seed), salt))  # one program, not two


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


def params_shaped(params, stacked: bool = False):
    """A predicate: whether a subtree of an optimiser state is shaped like ``params`` (the same tree
    structure and leaf shapes; ``stacked``: K networks' states, compared without their axis 0)."""
    pdef = jax.tree.structure(params)
    shapes = [tuple(np.shape(a)) for a in jax.tree.leaves(params)]
    lead = 1 if stacked else 0

    def like(node) -> bool:
        return jax.tree.structure(node) == pdef and [tuple(np.shape(a))[lead:] for a in jax.tree.leaves(node)] == shapes

    return like


def opt_state_parts(opt_state, params, stacked: bool = False) -> list[tuple[str, str, Any]]:
    """``(path, kind, node)`` of every part of an optimiser state: ``"params"`` for a subtree shaped
    like ``params`` (Adam's ``mu``/``nu``, SGD's momentum ``trace``), ``"scalar"`` for a scalar leaf
    (step counts, the injected rate), ``"other"`` for anything else (e.g. adafactor's factored
    moments ``v_row``/``v_col``, a masked subtree).  ``stacked``: the state of K networks stacked
    on axis 0."""
    like, lead, out = params_shaped(params, stacked), 1 if stacked else 0, []

    def visit(path, node):
        kind = "params" if like(node) else "scalar" if np.ndim(node) == lead else "other"
        out.append((path_str(path), kind, node))
        return node

    jax.tree_util.tree_map_with_path(visit, opt_state, is_leaf=like)
    return out


def uncomposable_error(path: str, shape, whose: str) -> ValueError:
    """The one-line refusal of an optimiser state leaf that cannot be composed."""
    return ValueError(f"compose_opt_state: the {whose} optimiser state leaf {path!r} (shape {tuple(shape)}) is neither "
                      "shaped like the parameters nor a scalar, so it cannot be composed like the weights; set "
                      "compose_opt_state=False (GNet-T then starts with a fresh optimiser, as in the paper)")


def check_composable(tx, params, whose: str = "") -> None:
    """A ``ValueError`` (:func:`uncomposable_error`) where ``tx``'s state for ``params`` has a part
    that :func:`compose_opt_state` cannot compose; abstract (no arrays are made)."""
    for path, kind, node in opt_state_parts(jax.eval_shape(tx.init, params), params):
        if kind == "other":
            raise uncomposable_error(path, np.shape(node), whose)


def compose_opt_state(plan, stacked_opt_state, params):
    """The K sub-networks' optimiser state composed like their parameters (beyond the paper): every
    part of ``stacked_opt_state`` shaped like the parameters (Adam's and AdamW's moments ``mu`` and
    ``nu``, SGD's momentum ``trace``, ...) by the plan's rules (2.11)-(2.14) - block-diagonal,
    zeros elsewhere, the output bias's moments summed - and every scalar leaf (step counts, the
    injected rate) taken from sub-network 0 (the K counts are equal).  Any other leaf (e.g.
    adafactor's factored moments) is a one-line ``ValueError`` that names it
    (:func:`uncomposable_error`).  ``params``: the global parameters (their structure is matched).
    So GNet-T continues the optimiser where the sub-networks left it instead of restarting it cold
    (``Config.compose_opt_state``)."""
    from dcnn_dd.composition import compose

    pplan = params_plan(plan, params)
    sub = jax.tree_util.tree_map_with_path(
        lambda p, a: jax.ShapeDtypeStruct(pplan.sub_shapes["params/" + path_str(p)], a.dtype), params)
    like = params_shaped(sub, stacked=True)

    def one(path, node):
        if like(node):
            return compose(pplan, {"params": node})["params"]
        if np.ndim(node) == 1:
            return node[0]
        raise uncomposable_error(path_str(path), np.shape(node)[1:], "sub-networks'")

    return jax.tree_util.tree_map_with_path(one, stacked_opt_state, is_leaf=like)


def as_float32(x):
    """``x`` in float32 (a lower-precision network's outputs, for the loss and the metrics); a float32
    array is returned as it is."""
    return x if x.dtype == jnp.float32 else x.astype(jnp.float32)


def train_step(model, tx, state: TrainState, x, labels, lr, rng=None, task: Task = CLASSIFICATION):
    """One optimiser step on a batch: the mean of ``task``'s per-sample loss (default: softmax
    cross-entropy with integer labels, :mod:`~dcnn_dd.train.tasks`), ``tx`` at learning rate ``lr``,
    ``optax.apply_updates``.  With an injected rate (:func:`default_tx`) ``lr`` is written into the
    optimiser state (:func:`with_learning_rate`); any other ``tx`` gives an update *direction*
    (e.g. ``optax.scale_by_adam()``, ``optax.identity()`` for plain gradient steps), scaled by
    ``-lr``.  ``labels``: the batch's targets (class labels, or the task's float targets).
    ``rng``: a key for the model's random streams (Dropout: ``rngs={"dropout": fold_in(rng,
    state.step)}``); None passes none.  The model gets ``train=True`` where its ``__call__`` takes
    it (:func:`~dcnn_dd.tree.call_kwargs`).

    Returns the new state and ``{'loss', 'accuracy'}`` of the batch (before the update; ``accuracy``
    is the batch mean of the task's ``train_metric``, top-1 for classification, and absent where the
    task has none).  Pure; BatchNorm statistics are the batch's (its mean over the global batch when
    ``x`` is sharded, so data-parallel runs keep them consistent across devices)."""
    mutable = list(state.model_state)
    kw = call_kwargs(model, True, None if rng is None else jax.random.fold_in(rng, state.step))

    def loss_fn(params):
        variables = {"params": params, **state.model_state}
        if mutable:
            logits, new_ms = model.apply(variables, x, mutable=mutable, **kw)
        else:
            logits, new_ms = model.apply(variables, x, **kw), {}
        logits = as_float32(logits)  # a bfloat16 network's outputs: the loss is computed in float32
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
    logits = as_float32(model.apply(variables, x, **call_kwargs(model, False)))
    m = mask.astype(jnp.float32)
    sums = {name: jnp.sum(fn(logits, labels) * m) for name, fn in task.metrics.items()}
    sums["loss"] = jnp.sum(task.loss(logits, labels) * m)
    return {**sums, "count": jnp.sum(m)}, logits
