"""Training the ODE-ResNet: layer-serial, exact layer-parallel, simultaneous (one-shot) layer-parallel.

Guenther et al. (2020), Sec. 3.4 / Algorithm 2.  All three minimise the same objective, the
cross-entropy of the classifier on u_N plus the regularisation (2.6), with the same parameters:

* ``serial``   - reverse-mode AD of the ``lax.scan`` forward pass (the reference);
* ``exact``    - forward and adjoint by MGRIT iterated to a tolerance (``Solver(tol=..., max_iter=...)``):
  gradients equal the serial ones to the tolerance;
* ``one-shot`` - the paper's most efficient variant: a fixed small budget of forward and adjoint
  MGRIT iterations per optimiser step (``Solver(tol=0, max_iter=budget)``), i.e. inexact states and
  gradients, with the forward and adjoint states warm-started from the previous optimiser step.
  The warm start is meaningful when the samples do not change between steps (full-batch
  training, as for peaks); with ``warm_start=False`` every solve starts from u_0 at every layer.

The layer-parallel gradient is computed explicitly here (open -> MGRIT forward -> classifier vjp ->
:func:`.adjoint.gradients`, the reverse mode the ``custom_vjp`` of :mod:`.adjoint` uses too ->
opening vjp), so that the adjoint states can be kept for the warm start and both solves'
iteration counts and residuals are reported.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dcnn_dd.layer_parallel import adjoint
from dcnn_dd.layer_parallel.mgrit import Solver
from dcnn_dd.layer_parallel.model import ODEResNet, cross_entropy, tikhonov, time_derivative

METHODS = ("serial", "exact", "one-shot")


@dataclasses.dataclass(frozen=True)
class Method:
    """How gradients are computed; ``alpha``/``beta``: Tikhonov and time-derivative weights (2.6)."""

    name: str = "serial"
    fwd: Solver | None = None
    bwd: Solver | None = None
    warm_start: bool = True
    alpha: float = 0.0
    beta: float = 0.0

    def __post_init__(self):
        if self.name not in METHODS:
            raise ValueError(f"method={self.name!r}: choose one of {METHODS}")
        if self.name != "serial" and (self.fwd is None or self.bwd is None):
            raise ValueError(f"method={self.name!r} needs the forward and adjoint solvers (fwd=, bwd=)")
        meshes = {s.data_mesh for s in (self.fwd, self.bwd) if s is not None} - {None}
        if len(meshes) > 1:
            raise ValueError("the forward and adjoint solvers split the batch over different (layers, data) meshes")

    @property
    def data_mesh(self):
        """The (``layers``, ``data``) mesh the solvers split the batch over (None: no data parallelism)."""
        return next((s.data_mesh for s in (self.fwd, self.bwd) if s is not None and s.data_mesh is not None), None)


class LayerParallelState(NamedTuple):
    params: Any
    opt_state: Any
    u_warm: Any = None  # forward states of the previous step (one-shot / exact warm start)
    lam_warm: Any = None  # adjoint states of the previous step


def regulariser(model: ODEResNet, params, method: Method):
    return tikhonov(params, method.alpha) + time_derivative(params["steps"], method.beta, model.h)


def serial_loss_and_grad(model: ODEResNet, method: Method, params, x, y):
    def loss(p):
        return cross_entropy(model.apply_serial(p, x), y) + regulariser(model, p, method)

    return jax.value_and_grad(loss)(params)


def layer_parallel_loss_and_grad(model: ODEResNet, method: Method, params, x, y, u_warm=None, lam_warm=None):
    """(loss, grads, forward states, adjoint states, forward info, adjoint info) by MGRIT."""
    u0, open_vjp = jax.vjp(lambda po: model.open(po, x), params["open"])
    U, finfo = adjoint.forward(model, params["steps"], u0, method.fwd, u_warm)  # noqa: N806
    ce, (g_cls, ct_uN) = jax.value_and_grad(lambda pc, uN: cross_entropy(model.classify(pc, uN), y),  # noqa: N806
                                            argnums=(0, 1))(params["cls"], U[-1])
    ct = jnp.zeros_like(U).at[-1].set(ct_uN)
    g_steps, lam, binfo = adjoint.gradients(model, params["steps"], U, ct, method.bwd, lam_warm)
    grads = {"open": open_vjp(lam[0])[0], "steps": g_steps, "cls": g_cls}
    reg, g_reg = jax.value_and_grad(lambda p: regulariser(model, p, method))(params)
    grads = jax.tree.map(jnp.add, grads, g_reg)
    return ce + reg, grads, U, lam, finfo, binfo


def init_state(params, tx: optax.GradientTransformation, model: ODEResNet | None = None, method: Method | None = None,
               x=None) -> LayerParallelState:
    """The optimiser state; for a warm-starting layer-parallel method (give ``model``, ``method`` and a
    batch ``x``) also the initial warm states: u_0 at every layer, zero adjoints.  Then the state
    has the same structure before and after a step (one compilation)."""
    state = LayerParallelState(params, tx.init(params))
    if method is not None and method.name != "serial" and method.warm_start:
        u0 = model.open(params["open"], x)
        shape = (model.n_layers + 1, *u0.shape)
        state = state._replace(u_warm=jnp.broadcast_to(u0, shape), lam_warm=jnp.zeros(shape, u0.dtype))
    return state


def shardings(method: Method, state: LayerParallelState | None = None):
    """(state, batch) shardings for data parallelism on the method's (``layers``, ``data``) mesh:
    parameters and optimiser state replicated, the batch and the warm states' batch axis split
    over ``data``; (None, None) without one.  ``state``: the state the shardings are for (its
    ``u_warm`` / ``lam_warm`` may be None)."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    mesh = method.data_mesh
    if mesh is None:
        return None, None
    rep, states = NamedSharding(mesh, P()), NamedSharding(mesh, P(None, "data"))
    warm = states if state is None or state.u_warm is not None else None
    return LayerParallelState(rep, rep, warm, warm), NamedSharding(mesh, P("data"))


def place(method: Method, state: LayerParallelState | None, *batch):
    """``(state, *batch)`` placed for the method (see :func:`shardings`; a ``state`` of None stays
    None); unchanged without a (``layers``, ``data``) mesh."""
    st, bt = shardings(method, state)
    if bt is None:
        return (state, *batch)
    _check_batch(method, batch[0].shape[0] if batch else None)
    return (None if state is None else jax.device_put(state, st), *(jax.device_put(b, bt) for b in batch))


def _check_batch(method: Method, size: int | None):
    mesh = method.data_mesh
    if mesh is not None and size is not None and size % mesh.shape["data"]:
        raise ValueError(f"batch {size} is not divisible by the 'data' axis size {mesh.shape['data']}")


def make_step(model: ODEResNet, method: Method, tx: optax.GradientTransformation):
    """A jitted ``step(state, x, y) -> (state, metrics)`` for the method.

    With solvers on a (``layers``, ``data``) mesh (:func:`.mgrit.layers_data_mesh`) the step is
    layer- and data-parallel: the batch is split over ``data`` and the parameters replicated
    (sharding constraints, so any input placement works; :func:`place` places them so), MGRIT's
    chunks go over ``layers``, and XLA sums the gradients over the whole batch (all-reduce)."""
    st_sh, batch_sh = shardings(method)

    def step(state: LayerParallelState, x, y):
        metrics = {}
        if batch_sh is not None:
            _check_batch(method, x.shape[0])
            x, y = (jax.lax.with_sharding_constraint(a, batch_sh) for a in (x, y))
            state = state._replace(params=jax.lax.with_sharding_constraint(state.params, st_sh.params))
        if method.name == "serial":
            loss, grads = serial_loss_and_grad(model, method, state.params, x, y)
            u_warm = lam_warm = None
        else:
            warm = method.warm_start
            loss, grads, U, lam, fi, bi = layer_parallel_loss_and_grad(  # noqa: N806
                model, method, state.params, x, y, state.u_warm if warm else None, state.lam_warm if warm else None)
            u_warm, lam_warm = (U, lam) if warm else (None, None)
            metrics = {"fwd_iters": fi.iterations, "bwd_iters": bi.iterations,
                       "fwd_res": fi.residuals[fi.iterations], "bwd_res": bi.residuals[bi.iterations],
                       "fwd_nonfinite_level": fi.nonfinite_level, "bwd_nonfinite_level": bi.nonfinite_level,
                       "fwd_nonfinite_iteration": fi.nonfinite_iteration,
                       "bwd_nonfinite_iteration": bi.nonfinite_iteration}
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = LayerParallelState(params, opt_state, u_warm, lam_warm)
        if st_sh is not None:  # the same placement out as in: one compilation
            new = jax.lax.with_sharding_constraint(new, shardings(method, new)[0])
        return new, {"loss": loss, **metrics}

    return jax.jit(step)


def check_metrics(metrics: dict, step: int) -> None:
    """Raise on a non-finite loss or a solve that stopped on a non-finite residual (host side)."""
    from dcnn_dd.layer_parallel.mgrit import NonFiniteResidualError

    for which in ("fwd", "bwd"):
        lev = int(metrics.get(f"{which}_nonfinite_level", -1))
        if lev >= 0:
            raise NonFiniteResidualError(
                f"optimiser step {step}: {'forward' if which == 'fwd' else 'adjoint'} MGRIT hit a non-finite residual "
                f"at iteration {int(metrics[f'{which}_nonfinite_iteration'])} on level {lev}")
    if not jnp.isfinite(metrics["loss"]):
        raise FloatingPointError(f"optimiser step {step}: non-finite loss {float(metrics['loss'])}")


@functools.partial(jax.jit, static_argnums=0)
def _predict(model: ODEResNet, params, x):
    return jnp.argmax(model.apply_serial(params, x), -1)


def accuracy(model: ODEResNet, params, x, y, batch: int = 2000) -> float:
    """Validation accuracy with the layer-serial forward pass (the same function for every method;
    compiled once per model and batch shape, not at every call)."""
    correct = sum(int(jnp.sum(_predict(model, params, x[i:i + batch]) == y[i:i + batch])) for i in range(0, len(x), batch))
    return correct / len(x)


def fit(model: ODEResNet, method: Method, tx: optax.GradientTransformation, params, data, *, steps: int,
        batch: int | None = None, eval_every: int, progress: bool = False, desc: str = "", seed: int = 0) -> dict:
    """Train ``params`` with ``method`` for ``steps`` optimiser steps; returns the run's record.

    ``data = (x, y, x_val, y_val)`` (host arrays).  ``batch=None``: full-batch steps (the setting
    where the one-shot warm start is meaningful); else mini-batches of an epoch permutation drawn
    from ``seed`` (a new one each pass).  The step is compiled before the clock starts; ``wall_s``
    counts the steps only (evaluation excluded; the same for every method).  Every
    ``eval_every`` steps (and at the end) the history records the step, the wall clock, the loss
    and the validation accuracy (:func:`accuracy`, the serial forward pass for every method).
    For the layer-parallel methods the record also has the solves' iteration counts
    (:func:`convergence`)."""
    import time

    import numpy as np
    from tqdm.auto import tqdm

    x, y, xv, yv = data
    size = batch or len(x)
    state, x0, y0 = place(method, init_state(params, tx, model, method, x[:size]), x[:size], y[:size])
    step = make_step(model, method, tx).lower(state, x0, y0).compile()
    hist, wall = [], 0.0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_batches = len(x) // size
    fwd_it, bwd_it = [], []
    for i in tqdm(range(steps), desc=desc or method.name, disable=not progress):
        b = i % n_batches
        if b == 0 and i > 0:
            order = rng.permutation(len(x))
        idx = order[b * size:(b + 1) * size] if batch else slice(None)
        _, xb, yb = place(method, None, x[idx], y[idx]) if method.data_mesh is not None else \
            (None, jax.device_put(x[idx]), jax.device_put(y[idx]))  # as before: one device
        t0 = time.perf_counter()
        state, met = step(state, xb, yb)
        met = jax.device_get(met)
        wall += time.perf_counter() - t0
        check_metrics(met, i)
        if "fwd_iters" in met:
            fwd_it.append(int(met["fwd_iters"]))
            bwd_it.append(int(met["bwd_iters"]))
        if (i + 1) % eval_every == 0 or i + 1 == steps:
            hist.append({"step": i + 1, "wall_s": wall, "loss": float(met["loss"]),
                         "val_acc": accuracy(model, state.params, xv, yv)})
    return {
        "history": hist, "wall_s": wall, "final_loss": hist[-1]["loss"], "final_val_acc": hist[-1]["val_acc"],
        "mean_fwd_iters": float(np.mean(fwd_it)) if fwd_it else None,
        "mean_bwd_iters": float(np.mean(bwd_it)) if bwd_it else None,
        **convergence(method, fwd_it, bwd_it),
    }


def convergence(method: Method, fwd_it: list[int], bwd_it: list[int]) -> dict:
    """Whether the solves of a layer-parallel method stopped before ``max_iter`` (host side: the
    training step reports the iterations of both solves).  For ``exact`` a solve that used all
    ``max_iter`` iterations may not have reached ``rtol`` (its gradient is then not the serial one to
    the tolerance): counted, and warned about.  ``one-shot`` always uses its whole budget."""
    import warnings

    if not fwd_it:
        return {}
    r = {"max_fwd_iters": max(fwd_it), "max_bwd_iters": max(bwd_it), "max_iter": method.fwd.max_iter,
         "fwd_hit_max_iter": sum(k >= method.fwd.max_iter for k in fwd_it),
         "bwd_hit_max_iter": sum(k >= method.bwd.max_iter for k in bwd_it)}
    if method.name == "exact" and (r["fwd_hit_max_iter"] or r["bwd_hit_max_iter"]):
        warnings.warn(f"exact layer-parallel: {r['fwd_hit_max_iter']} forward and {r['bwd_hit_max_iter']} adjoint "
                      f"solve(s) of {len(fwd_it)} used all max_iter={method.fwd.max_iter} iterations (possibly not "
                      "converged to rtol)", RuntimeWarning, stacklevel=3)
    return r
