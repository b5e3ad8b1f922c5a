"""Layer- and data-parallel MGRIT on a (``layers``, ``data``) mesh; run by
tests/test_layer_parallel_mesh.py in a subprocess with ``JAX_NUM_CPU_DEVICES=8`` (JAX reads it at
start-up).  Prints one JSON object: for the 2 x 4 and 4 x 2 meshes, the forward and adjoint states,
loss and gradients (and two training steps) against one device (``vmap``, no mesh), where the
arrays live (devices, shard shapes, per-device shapes of the compiled chunk work), the one-line
errors, and what the example of docs/layer_parallel.md prints."""

import contextlib
import io
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax

import dcnn_dd.layer_parallel as lp
from dcnn_dd.layer_parallel.train import layer_parallel_loss_and_grad
from tests.multidevice_checks import max_diff

N, B, WIDTH, M = 16, 8, 3, 2  # 8 chunks on the finest level, 4 on the next, 4 serial steps on the coarsest


def rel_diff(a, b) -> float:
    """max |a - b| / (1e-6 + max |b|) over the leaves (the atol-free part of an rtol check)."""
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))) / (1e-6 + np.max(np.abs(np.asarray(y)))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def shard_shapes(a) -> list:
    return sorted({tuple(s.data.shape) for s in a.addressable_shards})


def dot_shapes(compiled_text: str, inside_shard_map: bool) -> list:
    """Per-device result shapes of the dots of the compiled program (inside the shard_map regions,
    the chunk work, or outside them)."""
    shapes = set()
    for line in compiled_text.splitlines():
        if " dot(" in line and ("shard_map" in line) == inside_shard_map:
            shapes.add(tuple(int(d) for d in re.search(r"= f32\[([\d,]*)\]", line).group(1).split(",") if d))
    return sorted(shapes)


SOLVER = lp.Solver(cfactor=M, levels=3, max_iter=3)  # a fixed budget (tol=0): every run does the same iterations


def run(model, params, x, y, solver):
    """(loss, grads, states, adjoint states), two training steps' (state, losses, batch), and the
    compiled text of the loss and gradient."""
    method = lp.Method("one-shot", solver, solver)
    fn = jax.jit(lambda p, a, b: layer_parallel_loss_and_grad(model, method, p, a, b)[:4])
    lg = fn(params, x, y)
    text = fn.lower(params, x, y).compile().as_text() if solver.mesh is not None else ""
    tx = optax.sgd(0.1)
    state, xb, yb = lp.place(method, lp.init_state(params, tx, model, method, x), x, y)
    step = lp.make_step(model, method, tx)
    losses = []
    for _ in range(2):  # the warm start carried from the first step to the second
        state, met = step(state, xb, yb)
        losses.append(float(met["loss"]))
    return lg, (state, losses, xb), text


def case(model, params, x, y, ref, layers, data):
    mesh = lp.layers_data_mesh(layers, data)
    assert mesh.axis_names == ("layers", "data") and mesh.devices.shape == (layers, data)
    (l2, g2, u2, lam2), (s2, ls2, xb), text = run(model, params, x, y, SOLVER.replace(strategy="shard_map", mesh=mesh))
    (l1, g1, u1, lam1), (s1, ls1, _), _ = ref
    out = {"mesh": list(mesh.devices.shape)}
    out["states_abs"], out["states_rel"] = max_diff(u2, u1), rel_diff(u2, u1)
    out["adjoint_abs"], out["adjoint_rel"] = max_diff(lam2, lam1), rel_diff(lam2, lam1)
    out["loss_abs"] = abs(float(l2) - float(l1))
    out["grads_abs"], out["grads_rel"] = max_diff(g2, g1), rel_diff(g2, g1)
    out["states_devices"] = len(u2.sharding.device_set)
    out["states_shards"] = shard_shapes(u2)  # (N+1, B/data, width): the batch split over data
    out["adjoint_shards"] = shard_shapes(lam2)
    out["grad_K_devices"] = len(g2["steps"]["K"].sharding.device_set)
    out["grad_K_shards"] = shard_shapes(g2["steps"]["K"])  # (N/layers, w, w): the layers split over layers
    out["chunk_dot_shapes"] = dot_shapes(text, True)
    out["other_dot_shapes"] = dot_shapes(text, False)
    out["all_reduce_in_program"] = "all-reduce" in text
    out["step_params_abs"], out["step_params_rel"] = max_diff(s2.params, s1.params), rel_diff(s2.params, s1.params)
    out["step_warm_abs"] = max(max_diff(s2.u_warm, s1.u_warm), max_diff(s2.lam_warm, s1.lam_warm))
    out["step_loss_abs"] = max(abs(a - b) for a, b in zip(ls1, ls2))
    out["step_params_replicated"] = all(a.sharding.is_fully_replicated and len(a.sharding.device_set) == 8
                                        for a in jax.tree.leaves(s2.params))
    out["step_warm_shards"] = shard_shapes(s2.u_warm)
    out["step_batch_shards"] = shard_shapes(xb)
    return out


def errors():
    """The one-line ValueErrors: a batch the data size does not divide, chunks the layers size does not."""
    model = lp.ODEResNet(n_layers=N, width=WIDTH, num_classes=3)
    x = jnp.ones((6, 2))
    params = model.init(jax.random.PRNGKey(0), x)
    s = lp.Solver(cfactor=M, levels=2, max_iter=1, strategy="shard_map", mesh=lp.layers_data_mesh(2, 4))
    msgs = []
    try:
        lp.forward(model, params["steps"], model.open(params["open"], x), s)
    except ValueError as e:
        msgs.append(str(e))
    try:  # N=16, m=8: 2 chunks on 4 layers devices
        lp.forward(model, params["steps"], model.open(params["open"], x[:4]),
                   s.replace(cfactor=8, mesh=lp.layers_data_mesh(4, 2)))
    except ValueError as e:
        msgs.append(str(e))
    try:
        lp.make_step(model, lp.Method("one-shot", s, s), optax.sgd(0.1))(lp.init_state(params, optax.sgd(0.1)), x,
                                                                          jnp.zeros(6, jnp.int32))
    except ValueError as e:
        msgs.append(str(e))
    return msgs


def docs_example() -> str:
    """What the (layers, data) example of docs/layer_parallel.md prints."""
    from tests.docs_pages import layers_data_block

    page, block = layers_data_block()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, page, "exec"), {})  # noqa: S102
    return out.getvalue()


def main():
    model = lp.ODEResNet(n_layers=N, width=WIDTH, num_classes=3, T=2.0)
    x = jax.random.normal(jax.random.PRNGKey(0), (B, 2))
    y = jnp.arange(B) % 3
    params = model.init(jax.random.PRNGKey(1), x)
    ref = run(model, params, x, y, SOLVER)  # one device: vmap, no mesh
    out = {"devices": jax.device_count(), "ref_devices": len(ref[0][2].sharding.device_set),
           "cases": [case(model, params, x, y, ref, *lx) for lx in ((2, 4), (4, 2))], "errors": errors(),
           "docs_example": docs_example()}
    print(json.dumps(out))


if __name__ == "__main__":
    assert jax.device_count() == 8, jax.devices()
    main()
