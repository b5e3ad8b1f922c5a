"""Checks that need several devices; run by tests/test_multidevice.py in a subprocess with
``JAX_NUM_CPU_DEVICES=4`` (JAX reads it at start-up).  Prints one JSON object of measurements."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dcnn_dd.models import PlainCNN
from dcnn_dd import sharding
from dcnn_dd.train.state import create_state, default_tx, train_step
from dcnn_dd.train.steps import data_parallel_train_step
from dcnn_dd.tree import init_variables


def max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def subnet_strategies(K):  # noqa: N803
    sub = PlainCNN(features=(4, 4), pool_after=(1,), fc=(8,), num_classes=5)
    tx = default_tx()
    keys = jax.random.split(jax.random.PRNGKey(0), K)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[init_variables(sub, k, (1, 10, 10, 1)) for k in keys])
    xs = jax.random.normal(jax.random.PRNGKey(1), (K, 16, 10, 10, 1))
    labels = jax.random.randint(jax.random.PRNGKey(2), (16,), 0, 5)
    lrs = jnp.linspace(1e-2, 1e-3, K)
    one = lambda st, x, lab, lr: train_step(sub, tx, st, x, lab, lr)  # noqa: E731
    out = {}
    for s in ("sequential", "vmap", "shard_map"):
        mesh = sharding.subnet_mesh(K)
        step = jax.jit(sharding.kmap(one, s, K=K, in_axes=(0, 0, None, 0), mesh=mesh))
        state = jax.vmap(lambda v: create_state(v, tx))(stacked)
        if s == "shard_map" and K % mesh.devices.size == 0:
            state = sharding.put_global(jax.device_get(state), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("subnet")))
        for _ in range(3):
            state, m = step(state, xs, labels, lrs)
        out[s] = state
        if s == "shard_map":
            devices = {d.id for leaf in jax.tree.leaves(state.params) for d in leaf.devices()}
    return {
        "K": K, "mesh": sharding.subnet_mesh(K).devices.size, "shard_map_devices": len(devices),
        "vmap_vs_sequential": max_diff(out["vmap"].params, out["sequential"].params),
        "shard_map_vs_sequential": max_diff(out["shard_map"].params, out["sequential"].params),
        "distinct": float(np.abs(np.asarray(jax.tree.leaves(out["sequential"].params)[0][0])
                                 - np.asarray(jax.tree.leaves(out["sequential"].params)[0][-1])).max()),
    }


def steps_on_data_mesh(model, tx, variables, x, y, n: int):
    """``len(x)`` training steps (lr 0.1) of ``model`` on an ``n``-device ``data`` mesh, batch sharded,
    state replicated: (the state on the host, the last loss, the state on the devices)."""
    mesh = sharding.data_mesh(n)
    rep, bat = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    step = data_parallel_train_step(model, tx, mesh)  # the engine's global step, without preprocessing
    state = sharding.put_global(create_state(variables, tx), rep)
    for i in range(len(x)):
        xb, yb = sharding.put_global(np.asarray(x[i]), bat), sharding.put_global(np.asarray(y[i]), bat)
        state, m = step(state, xb, yb, None, jnp.int32(0), jnp.float32(0.1))
    return jax.device_get(state), float(m["loss"]), state


def data_parallel():
    """Three steps of a BatchNorm CNN on a 4-device data mesh against one device.

    Plain gradient steps (``optax.identity``): Adam divides each gradient by its own magnitude,
    so on parameters whose exact gradient is zero (a conv bias right before BatchNorm) it turns
    float noise of either sign into a full +-lr step, and no tolerance would separate a real
    difference from that."""
    model = PlainCNN(features=(8, 8), pool_after=(1,), fc=(16,), num_classes=10, batchnorm=True, padding="SAME")
    tx = optax.identity()
    variables = init_variables(model, jax.random.PRNGKey(0), (1, 12, 12, 1))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 32, 12, 12, 1))
    y = jax.random.randint(jax.random.PRNGKey(2), (3, 32), 0, 10)
    res = {n: steps_on_data_mesh(model, tx, variables, x, y, n) for n in (1, 4)}
    st4 = res[4][2]
    bs_leaf = jax.tree.leaves(st4.model_state)[0]
    return {
        "params_diff": max_diff(res[1][0].params, res[4][0].params),
        "batch_stats_diff": max_diff(res[1][0].model_state, res[4][0].model_state),
        "loss_diff": abs(res[1][1] - res[4][1]),
        "replicated": bool(bs_leaf.sharding.is_fully_replicated),
        "devices": len(bs_leaf.devices()),
    }


def partitions_timing():
    """experiments.partitions' timing path (Table 3.4: "on 1 device and on as many as there are")
    with the tiny preset's K=4 case: the K sub-networks on all 4 devices run with shard_map."""
    import argparse
    import tempfile
    from pathlib import Path

    from experiments import partitions

    plan = partitions.tiny()
    plan.cases = [c for c in plan.cases if c[2] == 4]
    with tempfile.TemporaryDirectory() as tmp:
        args = argparse.Namespace(out=Path(tmp), restart=False, data=None, data_dir=None)
        rows, entries = partitions.timing_entries(plan, args)
    return {"rows": [{k: r.get(k) for k in ("which", "row", "devices", "strategy", "s_per_step", "time_s", "oom")}
                     for r in rows],
            "entries": [{k: e[k] for k in ("row", "K", "devices", "value")} for e in entries]}


if __name__ == "__main__":
    assert jax.device_count() == 4, jax.devices()
    which = sys.argv[1:] or ["subnets", "data", "timing"]
    out = {}
    if "subnets" in which:
        out["subnets"] = [subnet_strategies(K) for K in (4, 6)]
    if "data" in which:
        out["data"] = data_parallel()
    if "timing" in which:
        out["timing"] = partitions_timing()
    print(json.dumps(out))
