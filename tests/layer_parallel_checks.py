"""Layer-parallel MGRIT on several devices; run by tests/test_layer_parallel_runs.py in a subprocess
with ``JAX_NUM_CPU_DEVICES=4`` (JAX reads it at start-up).  Prints one JSON object of measurements:
forward states with ``shard_map`` over the ``layers`` axis against ``vmap`` on one device, states and
gradients against the serial network, and whether the compiled program contains the shard_map."""

import json

import jax
import jax.numpy as jnp

import dcnn_dd.layer_parallel as lp
from tests.multidevice_checks import max_diff


def main():
    jax.config.update("jax_enable_x64", True)
    model = lp.ODEResNet(n_layers=32, width=3, num_classes=3, T=2.0)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 2))
    y = jnp.arange(4) % 3
    params = model.init(jax.random.PRNGKey(1), x)
    mesh = lp.layers_mesh()
    out = {"devices": mesh.devices.size}
    sols = {}
    for strategy in ("vmap", "shard_map"):
        # levels=3, m=2: 16 chunks on the finest level, 8 on the next (both sharded over 4 devices)
        s = lp.Solver(cfactor=2, levels=4, tol=1e-12, max_iter=40, strategy=strategy,
                      mesh=mesh if strategy == "shard_map" else None)
        u0 = model.open(params["open"], x)
        fwd = jax.jit(lambda st, a, s=s: lp.forward(model, st, a, s))
        u, info = fwd(params["steps"], u0)
        grad = None
        if strategy == "shard_map":  # (vmap's gradient: tests/test_layer_parallel.py)
            grad = jax.jit(jax.grad(lambda p, s=s: lp.cross_entropy(lp.apply_parallel(model, s, s, p, x), y)))(params)
        sols[strategy] = (u, grad, int(info.iterations))
        if strategy == "shard_map":
            text = fwd.lower(params["steps"], u0).as_text()
            out["shard_map_in_program"] = "shard_map" in text or "sdy.manual_computation" in text
    ref_u = model.serial_states(params["steps"], model.open(params["open"], x))
    ref_g = jax.grad(lambda p: lp.cross_entropy(model.apply_serial(p, x), y))(params)
    out.update({
        "states_shard_vs_vmap": max_diff(sols["shard_map"][0], sols["vmap"][0]),
        "states_shard_vs_serial": max_diff(sols["shard_map"][0], ref_u),
        "grads_shard_vs_serial": max_diff(sols["shard_map"][1], ref_g),
        "iterations": [sols["vmap"][2], sols["shard_map"][2]],
    })
    print(json.dumps(out))


if __name__ == "__main__":
    assert jax.device_count() == 4, jax.devices()
    main()
