"""The jitted training and evaluation steps of Algorithm 1, built from a :class:`~.setup.Setup`.

Each builder returns a new ``jax.jit``-ed function (compiled on first call):

=================================  ==============================================================
:func:`data_parallel_train_step`   one network, batch sharded over a ``data`` mesh, parameters
                                   replicated: ``(state, x, labels, ids, epoch, lr[, rng]) ->
                                   (state, metrics)``
:func:`data_parallel_eval_step`    ``(variables, x, labels, ids, mask) -> (sums, logits)``
:func:`global_train_step`          the above for GNet (or another model on the whole image, e.g.
                                   the coherent CNN-DNN), with the setup's normalisation and
                                   augmentation
:func:`global_eval_step`           the same for evaluation
:func:`stacked_train_step`         K stacked sub-networks on their sub-images, one strategy of
                                   :func:`dcnn_dd.sharding.kmap`; per-network rates ``lrs`` (K,)
                                   and random streams ``fold_in(rng, k)``
:func:`stacked_eval_step`          the same for evaluation
:func:`subnet_train_step`          the above for the setup's sub-network, with its preprocessing
:func:`subnet_eval_step`           the same for evaluation
=================================  ==============================================================

:func:`evaluate` runs an eval step over a data source; :class:`Steps` keeps one compiled step of
each kind for the phases of one pipeline that share it (GNet-R's pipeline and GNet-T's each
have their own: both pay their compilation).  States: :func:`global_state`,
:func:`subnet_state`; strategy choice by measurement: :func:`choose_strategy`.

Optimisers per phase: the builders that take a setup use ``setup.tx_for(phase)`` (the
configuration's ``optimizer``, or the phase's own ``snet_optimizer`` / ``gnet_t_optimizer`` /
``gnet_r_optimizer``); ``phase=None`` is ``setup.tx``, the default one.  Random streams: a train
step takes an optional last argument ``rng`` (a key; the engine's phases bind
:func:`~dcnn_dd.train.state.phase_rng` of their name with :func:`with_rng`), which becomes the
model's Dropout stream per step (and per sub-network); without it the model gets none.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dcnn_dd import sharding
from dcnn_dd.data import pipeline
from dcnn_dd.grid import decompose_input
from dcnn_dd.train.setup import Setup
from dcnn_dd.train.state import create_state, eval_step, phase_rng, train_step
from dcnn_dd.train.tasks import CLASSIFICATION, Task


# ==================================================================== one network, data-parallel
def data_parallel_train_step(model, tx, mesh, prep: Callable | None = None, *, task: Task = CLASSIFICATION):
    """``model``'s training step, data-parallel over ``mesh`` (parameters replicated, the state
    donated); ``prep(x, ids, epoch, train=True)`` is applied to the batch on device first;
    ``task``: the loss (:mod:`~dcnn_dd.train.tasks`).  ``rng`` (optional): the key of the model's random
    streams (:func:`~.state.train_step`)."""
    rep = sharding.replicated(mesh)

    def step(state, x, labels, ids, epoch, lr, rng=None):
        x = x if prep is None else prep(x, ids, epoch, True)
        return train_step(model, tx, state, x, labels, lr, rng, task)

    return jax.jit(step, out_shardings=(rep, rep), donate_argnums=0)


def data_parallel_eval_step(model, mesh, prep: Callable | None = None, *, task: Task = CLASSIFICATION):
    """``(variables, x, labels, ids, mask) -> (sums, logits)``, the sums of ``task``'s metrics, loss
    and count (:func:`~dcnn_dd.train.state.eval_step`), data-parallel over ``mesh``;
    ``prep(x, ids, 0, train=False)`` first if given."""

    def step(v, x, labels, ids, mask):
        x = x if prep is None else prep(x, ids, 0, False)
        return eval_step(model, v, x, labels, mask, task)

    return jax.jit(step, out_shardings=sharding.replicated(mesh))


def global_train_step(setup: Setup, model=None, phase: str | None = None):
    """GNet's data-parallel training step (or ``model``'s, another network on the whole image),
    with the optimiser of ``phase`` (``setup.tx_for(phase)``; None: the default one)."""
    return data_parallel_train_step(setup.model if model is None else model, setup.tx_for(phase), setup.data_mesh,
                                    setup.prep, task=setup.task)


def global_eval_step(setup: Setup, model=None):
    return data_parallel_eval_step(setup.model if model is None else model, setup.data_mesh, setup.prep,
                                   task=setup.task)


def global_state(setup: Setup, variables, opt_state=None, phase: str | None = None):
    """The replicated training state of ``variables`` (a fresh optimiser of ``phase``, or ``opt_state``)."""
    state = create_state(variables, setup.tx_for(phase))
    if opt_state is not None:
        state = state.replace(opt_state=opt_state)
    return sharding.put_global(state, sharding.replicated(setup.data_mesh))


def with_rng(step: Callable, rng) -> Callable:
    """``step`` (a train step built above) with its random-stream key bound:
    ``(state, x, labels, ids, epoch, lr) -> step(state, x, labels, ids, epoch, lr, rng)``, the form
    the epoch loop calls.  ``rng``: e.g. :func:`~dcnn_dd.train.state.phase_rng` (seed, phase)."""

    def bound(state, x, labels, ids, epoch, lr):
        return step(state, x, labels, ids, epoch, lr, rng)

    return bound


# ==================================================================== K sub-networks
def stacked_sharding(K: int, strategy: str, mesh) -> jax.sharding.NamedSharding:  # noqa: N803
    """Where K stacked sub-network states live for ``strategy``, given the ``subnet`` ``mesh``:
    split over it for shard_map (replicated when D does not divide K, shard_map slices them),
    else on one device (or replicated over all devices in a multi-process run, where every
    process must take part)."""
    if strategy == "shard_map":
        if K % mesh.shape["subnet"] == 0:
            return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("subnet"))
        return sharding.replicated(mesh)
    return sharding.replicated(mesh if jax.process_count() > 1 else sharding.subnet_mesh(K, 1))


def stacked_batch_sharding(K: int, strategy: str, mesh) -> jax.sharding.NamedSharding:  # noqa: N803
    """The sub-network phase's batches (whole images, labels, ids): on a (``subnet``, ``data``) mesh
    with shard_map, split over ``data`` (each row of devices holds the batch once, split over its
    devices); otherwise replicated on the devices of the states."""
    out = stacked_sharding(K, strategy, mesh)
    if strategy == "shard_map" and sharding.data_parallel_within(out.mesh) > 1:
        return jax.sharding.NamedSharding(out.mesh, jax.sharding.PartitionSpec("data"))
    return sharding.replicated(out.mesh)


def subnet_sharding(setup: Setup, strategy: str):
    """Where the setup's stacked sub-network states live (:func:`stacked_sharding`)."""
    return stacked_sharding(setup.config.K, strategy, setup.subnet_mesh)


def subnet_batch_sharding(setup: Setup, strategy: str):
    """The sub-network phase's batches (:func:`stacked_batch_sharding`)."""
    return stacked_batch_sharding(setup.config.K, strategy, setup.subnet_mesh)


def subnet_host_state(setup: Setup, stacked_variables):
    """The K fresh training states, stacked, on the host (the SNets' optimiser)."""
    tx = setup.tx_for("snets")
    return jax.device_get(jax.vmap(lambda v: create_state(v, tx))(stacked_variables))


def subnet_state(setup: Setup, stacked_variables, strategy: str):
    return sharding.put_global(subnet_host_state(setup, stacked_variables), subnet_sharding(setup, strategy))


def split_sub_images(K: int, strategy: str, mesh) -> Callable:  # noqa: N803
    """The K stacked sub-image batches (K, B, ...) placed for the step: on a (``subnet``, ``data``)
    mesh with shard_map, sub-network k's on row k with its batch split over ``data``; else as they are."""
    out = stacked_sharding(K, strategy, mesh)
    if strategy != "shard_map" or sharding.data_parallel_within(out.mesh) == 1:
        return lambda xs: xs
    spec = jax.sharding.PartitionSpec("subnet", "data")  # a (subnet, data) mesh has K rows: the states are split
    return lambda xs: jax.lax.with_sharding_constraint(xs, jax.sharding.NamedSharding(out.mesh, spec))


def stacked_train_step(sub, tx, grid, strategy: str, *, mesh, inner: str = "sequential", prep: Callable | None = None,
                       task: Task = CLASSIFICATION):
    """The training step of ``grid.K`` stacked sub-networks ``sub``:
    ``(state, images, labels, ids, epoch, lrs[, rng]) -> (state, metrics)``.  The whole images are
    preprocessed (``prep(images, ids, epoch, train=True)``, e.g. augmented) and then decomposed
    into the K sub-images (2.6); network k steps at its own rate ``lrs[k]`` and (``rng`` given)
    draws its random streams from ``fold_in(rng, k)``; ``strategy`` and ``inner`` as in
    :func:`dcnn_dd.sharding.kmap` over the ``subnet`` ``mesh``.  Every sub-network learns the whole
    target with ``task``'s loss (Algorithm 1, step 1)."""
    K = grid.K  # noqa: N806
    one = lambda st, x, lab, lr: train_step(sub, tx, st, x, lab, lr, None, task)  # noqa: E731
    mapped = sharding.kmap(one, strategy, K=K, in_axes=(0, 0, None, 0), mesh=mesh, inner=inner)
    one_rng = lambda st, x, lab, lr, key: train_step(sub, tx, st, x, lab, lr, key, task)  # noqa: E731
    mapped_rng = sharding.kmap(one_rng, strategy, K=K, in_axes=(0, 0, None, 0, 0), mesh=mesh, inner=inner)
    out = stacked_sharding(K, strategy, mesh)
    split = split_sub_images(K, strategy, mesh)

    def step(state, images, labels, ids, epoch, lrs, rng=None):
        x = images if prep is None else prep(images, ids, epoch, True)
        xs = split(decompose_input(x, grid))  # decomposed after augmentation
        if rng is None:
            return mapped(state, xs, labels, lrs)
        keys = jax.vmap(lambda k: jax.random.fold_in(rng, k))(jnp.arange(K))  # sub-network k's streams
        return mapped_rng(state, xs, labels, lrs, keys)

    return jax.jit(step, out_shardings=(out, sharding.replicated(out.mesh)), donate_argnums=0)


def stacked_eval_step(sub, grid, strategy: str, *, mesh, inner: str = "sequential", prep: Callable | None = None,
                      task: Task = CLASSIFICATION):
    """``(stacked variables, images, labels, ids, mask) -> (sums (K,), logits (K, B, C))``."""
    one = lambda v, x, lab, mask: eval_step(sub, v, x, lab, mask, task)  # noqa: E731
    mapped = sharding.kmap(one, strategy, K=grid.K, in_axes=(0, 0, None, None), mesh=mesh, inner=inner)
    split = split_sub_images(grid.K, strategy, mesh)

    def raw(v, images, labels, ids, mask):
        x = images if prep is None else prep(images, ids, 0, False)
        return mapped(v, split(decompose_input(x, grid)), labels, mask)

    return jax.jit(raw, out_shardings=sharding.replicated(stacked_sharding(grid.K, strategy, mesh).mesh))


def subnet_train_step(setup: Setup, strategy: str):
    """The setup's K sub-networks' training step (:func:`stacked_train_step` with its
    normalisation and augmentation)."""
    c = setup.config
    return stacked_train_step(setup.sub, setup.tx_for("snets"), setup.grid, strategy, mesh=setup.subnet_mesh,
                              inner=c.inner, prep=setup.prep, task=setup.task)


def subnet_eval_step(setup: Setup, strategy: str):
    return stacked_eval_step(setup.sub, setup.grid, strategy, mesh=setup.subnet_mesh, inner=setup.config.inner,
                             prep=setup.prep, task=setup.task)


def choose_strategy(setup: Setup, stacked_variables, steps: Steps | None = None) -> tuple[str, dict]:
    """The configuration's strategy, or (``auto``) the fastest candidate measured on one batch
    (:func:`dcnn_dd.sharding.choose`).  The measured steps are those of ``steps`` (so the chosen
    one is compiled once for the selection and the training).  In a multi-process run every
    process trains with process 0's pick."""
    c = setup.config
    if c.strategy != "auto":
        return c.strategy, {}
    steps = Steps(setup) if steps is None else steps
    ids = np.arange(c.batch_size)
    images, labels = setup.train_source.take(ids)
    lrs = jnp.full((c.K,), 1e-3, jnp.float32)
    rng = phase_rng(c.seed, "snets")  # the SNets' own streams: the step compiled here is the one they train with
    host_state = subnet_host_state(setup, stacked_variables)

    def build(s):
        step = steps.subnet_train(s)
        batch = sharding.put_global((images, labels, ids), subnet_batch_sharding(setup, s))

        def fresh():
            return (sharding.put_global(host_state, subnet_sharding(setup, s)), *batch, jnp.int32(0), lrs, rng)

        return step, fresh

    strategies = sharding.candidates(c.K, setup.subnet_mesh)
    best, timings = sharding.choose(strategies, build)
    return sharding.agree_on_strategy(best, timings, strategies)  # process 0's pick on every process


# ==================================================================== evaluation over a source
def evaluate(eval_step_fn, variables, source, batch_size: int, sharding_, with_logits: bool = False,
             logit_axis: int = 0) -> dict:
    """The mean of every metric of the eval step over ``source`` (arrays of shape () or (K,)):
    ``{'acc', 'top5', 'loss'}`` for classification, ``{<metric>..., 'loss'}`` for any task; and
    ``'logits'``, ``'labels'`` (the outputs and the targets, in source order) if asked;
    ``eval_step_fn`` as built above, batches of ``batch_size`` placed with ``sharding_``;
    ``logit_axis``: the sample axis of the logits (1 for a stack of K networks)."""
    sums: dict = {}
    logits, all_labels = [], []
    for images, labels, ids, mask in pipeline.evaluate_batches(source, batch_size, sharding=sharding_):
        s, lg = eval_step_fn(variables, images, labels, ids, mask)
        for k in s:
            v = np.asarray(sharding.to_host(s[k]))
            sums[k] = v if k not in sums else sums[k] + v
        if with_logits:
            m = np.asarray(sharding.to_host(mask)).astype(bool)
            lg = np.asarray(sharding.to_host(lg))
            logits.append(lg[m] if logit_axis == 0 else lg[:, m])
            all_labels.append(np.asarray(sharding.to_host(labels))[m])
    count = sums.pop("count")
    loss = sums.pop("loss")
    out = {**{k: v / count for k, v in sums.items()}, "loss": loss / count}
    if with_logits:
        out["logits"] = np.concatenate(logits, axis=logit_axis)
        out["labels"] = np.concatenate(all_labels)
    return out


def epoch_metrics(evaluate_fn: Callable[[dict], dict]) -> Callable:
    """A phase's per-epoch ``evaluate(state)``: ``val_<metric>`` (a list, one value per network) for
    every metric :func:`evaluate` gives (classification: ``val_acc``, ``val_top5``, ``val_loss``)."""

    def fn(state):
        out = evaluate_fn(state.variables)
        return {f"val_{k}": list(np.atleast_1d(v)) for k, v in out.items() if k not in ("logits", "labels")}

    return fn


# ==================================================================== one pipeline's compiled steps
class Steps:
    """One compiled step of each kind for a setup's own networks, shared by the phases of one
    pipeline (e.g. the strategy selection and the sub-network phase; GNet-R's training and its
    evaluation).  A pipeline that must pay its own compilation (GNet-T against GNet-R) uses a
    ``Steps`` of its own."""

    def __init__(self, setup: Setup):
        self.setup = setup
        self._built: dict = {}

    def _get(self, key, build):
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    def global_train(self, phase: str | None = None):
        """The global network's training step with ``phase``'s optimiser (None: the default one)."""
        tx = self.setup.tx_for(phase)  # phases with the same optimiser share the compiled step
        return self._get(("global_train", id(tx)), lambda: global_train_step(self.setup, phase=phase))

    def global_eval(self):
        return self._get(("global_eval",), lambda: global_eval_step(self.setup))

    def subnet_train(self, strategy: str):
        return self._get(("subnet_train", strategy), lambda: subnet_train_step(self.setup, strategy))

    def subnet_eval(self, strategy: str):
        return self._get(("subnet_eval", strategy), lambda: subnet_eval_step(self.setup, strategy))

    def global_evaluator(self, with_logits: bool = False, source=None) -> Callable[[dict], dict]:
        """variables -> the task's metrics (:func:`evaluate`; ``{'acc', 'top5', 'loss'}`` for
        classification) on the validation set (``setup.val_source``: the test set unless one is held
        out) or ``source`` (and ``'logits'``, ``'labels'`` if asked)."""
        s = self.setup
        fn, src = self.global_eval(), s.val_source if source is None else source
        bsh = sharding.batch_sharding(s.data_mesh)
        return lambda variables: evaluate(fn, variables, src, s.eval_batch, bsh, with_logits)

    def subnet_evaluator(self, strategy: str, with_logits: bool = False, source=None) -> Callable[[dict], dict]:
        """stacked variables -> the task's metrics per sub-network, shape (K,) (and ``'logits'``
        (K, N, C), ``'labels'`` if asked), on the validation set (``setup.val_source``) or ``source``."""
        s = self.setup
        fn, src = self.subnet_eval(strategy), s.val_source if source is None else source
        rep = subnet_batch_sharding(s, strategy)
        return lambda variables: evaluate(fn, variables, src, s.eval_batch, rep, with_logits, logit_axis=1)
