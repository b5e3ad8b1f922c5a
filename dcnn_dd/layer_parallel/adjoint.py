"""Backward propagation by MGRIT (Guenther et al. 2020, Sec. 3.3) and the ``custom_vjp``.

The adjoint of the forward propagation (2.3) with cotangents c_n of the states u_n (for a loss of
u_N alone, c_N = dL/du_N and c_n = 0 otherwise) is the linear backward-in-time recursion::

    lambda_N = c_N,   lambda_n = c_n + (dPhi/du(u_n; theta_n, h))^T lambda_{n+1}        (3.6)
                                 = c_n + lambda_{n+1} + h (dF/du(u_n; theta_n))^T lambda_{n+1}

and the gradient of every step parameter follows from the stored state and the next adjoint,
independently per layer (batched vjps, no recursion)::

    dL/dtheta_n = (dPhi/dtheta(u_n; theta_n, h))^T lambda_{n+1},   dL/du_0 = lambda_0.     (3.7)

In reversed layer time w_k = lambda_{N-k} this is again (3.1) with the linear step
w -> (dPhi/du(u_{N-1-k}; theta_{N-1-k}))^T w (a vjp of the forward step at the stored forward
state) and right-hand side g_k = c_{N-k}, so :func:`.mgrit.solve` solves it unchanged.  Its coarse
levels use the *forward* coarse step (step m h at the state and weights of the C-point, injection)
linearised at the stored forward state of that C-point, reversed.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from dcnn_dd.layer_parallel import mgrit
from dcnn_dd.layer_parallel.mgrit import Solver


def _rev(tree):
    return jax.tree.map(lambda a: a[::-1], tree)


def forward(model, steps, u0, solver: Solver, u_warm=None):
    """All forward states (N+1, *u0.shape) by MGRIT and its :class:`~.mgrit.SolveInfo`.

    ``u_warm``: the states of a previous solve (warm start); default: u_0 at every layer."""
    model.check_steps(steps)
    N = model.n_layers  # noqa: N806
    g = jnp.zeros((N + 1, *u0.shape), u0.dtype).at[0].set(u0)
    u_init = jnp.broadcast_to(u0, g.shape) if u_warm is None else u_warm
    if u_init.shape != g.shape:
        raise ValueError(f"warm-start states have shape {u_init.shape}, expected {g.shape} (N+1, *u0.shape)")
    g, u_init = (mgrit.shard_batch(solver, a, 1) for a in (g, u_init))  # the batch over ``data``, if any
    return mgrit.solve(model.step, steps, model.h, g, u_init, solver)


def _adjoint_step(model):
    def step(w, p, h):
        u, theta = p
        return jax.vjp(lambda v: model.step(v, theta, h), u)[1](w)[0]

    return step


def backward(model, steps, states, cotangents, solver: Solver, lam_warm=None):
    """Adjoint states lambda (N+1, ...) (in layer order, lambda[n] = dL/du_n) by MGRIT.

    ``cotangents``: c_n for every state (N+1, ...).  ``lam_warm``: previous adjoint states."""
    m = solver.cfactor
    states, cotangents = (mgrit.shard_batch(solver, a, 1) for a in (states, cotangents))
    # reversed step k uses the forward state/weights of layer N-1-k
    params = _rev((states[:-1], steps))

    def coarse(level):
        s = m**level
        return _rev((states[:-1:s], jax.tree.map(lambda a: a[::s], steps)))

    g = cotangents[::-1]
    w_init = jnp.broadcast_to(g[0], g.shape) if lam_warm is None else lam_warm[::-1]
    if w_init.shape != g.shape:
        raise ValueError(f"warm-start adjoint states have shape {w_init.shape}, expected {g.shape}")
    w_init = mgrit.shard_batch(solver, w_init, 1)
    w, info = mgrit.solve(_adjoint_step(model), params, model.h, g, w_init, solver, coarse_params=coarse)
    return w[::-1], info


def param_grads(model, steps, states, lam, solver: Solver | None = None):
    """(3.7): dL/dtheta_n from (u_n, lambda_{n+1}) for all n at once (batched vjps; over the
    ``layers`` axis with ``shard_map`` when ``solver`` says so and the device count divides N; on a
    (``layers``, ``data``) mesh the batch over ``data`` as well)."""
    h = model.h

    def one(u, theta, lam_next):
        return jax.vjp(lambda th: model.step(u, th, h), theta)[1](lam_next)[0]

    fn = jax.vmap(one)
    if solver is not None and solver.strategy == "shard_map":
        D = solver.mesh.shape["layers"]  # noqa: N806
        if model.n_layers % D == 0 and D > 1:
            from jax.sharding import PartitionSpec as P

            # on a (layers, data) mesh only ``layers`` is manual: XLA splits the batch over ``data``
            # and sums the per-layer gradients over it (an all-reduce)
            kw = {} if solver.data_mesh is None else {"axis_names": {"layers"}}
            fn = jax.shard_map(fn, mesh=solver.mesh, in_specs=(P("layers"),) * 3, out_specs=P("layers"), **kw)
    if solver is not None:
        states, lam = (mgrit.shard_batch(solver, a, 1) for a in (states, lam))
    return fn(states[:-1], steps, lam[1:])


def gradients(model, steps, states, cotangents, solver: Solver, lam_warm=None):
    """Reverse mode of the ODE block: the adjoint by MGRIT (3.6), then the step-parameter
    gradients (3.7).  Returns (dL/dsteps, lambda (N+1, ...), the adjoint's :class:`~.mgrit.SolveInfo`);
    lambda[0] is dL/du_0."""
    lam, info = backward(model, steps, states, cotangents, solver, lam_warm)
    return param_grads(model, steps, states, lam, solver), lam, info


# --- the drop-in layer-parallel block ------------------------------------------------------------
@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def layer_states(model, fwd: Solver, bwd: Solver, steps, u0, u_warm=None):
    """All states u_0..u_N of the ODE block, forward by MGRIT (``fwd``), differentiable: reverse
    mode solves the adjoint by MGRIT (``bwd``) and returns dL/dsteps and dL/du0 by (3.6)-(3.7).

    A drop-in for :meth:`ODEResNet.serial_states` under ``jax.grad`` / optax (to the solvers'
    tolerance).  ``u_warm`` (e.g. the states of the previous optimiser step) is a warm start; it
    gets a zero gradient.

    **Convergence is not checked or reported**: both solves' :class:`~.mgrit.SolveInfo` is
    discarded, so a solve that stopped at ``max_iter`` above its tolerance, or on a non-finite
    residual, silently gives inexact (or non-finite) states and gradients.  Where that matters, call
    :func:`forward` / :func:`backward` (+ :func:`param_grads`), which return the ``SolveInfo``
    (:func:`~.mgrit.check_solve` raises on a non-finite residual; compare ``iterations`` with ``max_iter``),
    or :func:`~.train.layer_parallel_loss_and_grad`, which returns both solves' infos."""
    return forward(model, steps, u0, fwd, u_warm)[0]


def _states_fwd(model, fwd, bwd, steps, u0, u_warm=None):
    u, _ = forward(model, steps, u0, fwd, u_warm)
    return u, (steps, u, u_warm)


def _states_bwd(model, fwd, bwd, res, ct):
    steps, u, u_warm = res
    g_steps, lam, _ = gradients(model, steps, u, ct, bwd)
    g_warm = None if u_warm is None else jnp.zeros_like(u_warm)
    return g_steps, lam[0], g_warm


layer_states.defvjp(_states_fwd, _states_bwd)


def final_state(model, fwd: Solver, bwd: Solver, steps, u0):
    """u_N of the ODE block by layer-parallel MGRIT, differentiable (see :func:`layer_states`; does not
    check or report convergence)."""
    return layer_states(model, fwd, bwd, steps, u0)[-1]


def apply_parallel(model, fwd: Solver, bwd: Solver, params, x):
    """Logits of the ODE-ResNet with the layer-parallel block (drop-in for ``model.apply_serial``).

    Does **not** check or report convergence of the forward or adjoint solve (see :func:`layer_states`):
    for the :class:`~.mgrit.SolveInfo` of both solves use :func:`forward` / :func:`backward` or
    :func:`~.train.layer_parallel_loss_and_grad`."""
    return model.classify(params["cls"], final_state(model, fwd, bwd, params["steps"], model.open(params["open"], x)))
