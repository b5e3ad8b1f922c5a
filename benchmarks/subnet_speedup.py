"""Training-step time of the global network against its K sub-networks (Algorithm 1's speed-up).

    python -m benchmarks.subnet_speedup             # ResNet32 (64/128/256), K=4, 32x32 -> 4 x 16x16
    python -m benchmarks.subnet_speedup --network demo --dtype bfloat16   # make demo's network, bf16 compute
    python -m benchmarks.subnet_speedup --tiny      # seconds; what the test suite runs

In one run on the current device, same batch size for both: one Adam training step of the
global network, and one step of all K sub-networks on their sub-images with each strategy of
:mod:`dcnn_dd.sharding` (median of ``--repeats`` steps after compilation).  Prints

* ``time_ratio``  = t(global step) / t(K sub-network steps, fastest strategy),
* ``flop_ratio``  = FLOPs(global) / (K x FLOPs(sub-network)) by the paper's convention (2.10),
* ``efficiency``  = time_ratio / flop_ratio (1: the sub-networks run as fast as their FLOPs allow),

and the memory of each compiled step (XLA's buffer assignment: arguments + outputs + temporaries
- aliased, the same measure on every backend).  Writes ``results/bench/subnet_speedup.json``.
Targets (issue 3): efficiency >= 0.7 on CPU; time ratio >= 5 on one GPU.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import dcnn_dd as dd
from benchmarks.common import write_json
from dcnn_dd.complexity import count_flops
from dcnn_dd.models import CifarResNet, PlainCNN
from dcnn_dd import sharding
from dcnn_dd.train.state import create_state, default_tx
from dcnn_dd.train.steps import data_parallel_train_step, stacked_sharding, stacked_train_step
from dcnn_dd.tree import init_variables
from dcnn_dd.train.timing import executable_memory


def _data(model, grid, batch, channels):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, *grid.shape, channels)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, model.num_classes, batch).astype(np.int32))
    return x, y


def time_and_memory(step, fresh, repeats) -> tuple[float, int | None]:
    """Seconds per call of the jitted ``step`` on ``fresh()`` arguments (median of ``repeats`` after one
    untimed call, :func:`~dcnn_dd.sharding.median_step_time`) and the memory of its compiled
    program, both from one compilation (``lower().compile()``; the executable is what is timed)."""
    compiled = step.lower(*fresh()).compile()
    return sharding.median_step_time(compiled, fresh, repeats), executable_memory(compiled)


def global_step_time(model, grid, batch, repeats, channels=3) -> tuple[float, int | None]:
    """(seconds, memory bytes) of one Adam training step of the global network on ``batch`` images."""
    tx = default_tx()
    x, y = _data(model, grid, batch, channels)
    g_vars = jax.device_get(init_variables(model, jax.random.PRNGKey(0), (1, *grid.shape, channels)))
    g_host = jax.device_get(create_state(g_vars, tx))
    g_step = data_parallel_train_step(model, tx, sharding.data_mesh(1))  # the engine's global step
    lr = jnp.float32(1e-3)
    return time_and_memory(g_step, lambda: (jax.device_put(g_host), x, y, None, jnp.int32(0), lr), repeats)


def bench(model, grid, K, batch, repeats, strategies, channels=3, global_step=None):  # noqa: N803
    """The global step against the K sub-network steps per strategy.  ``global_step``: its
    (seconds, memory bytes) measured before (:func:`global_step_time`, e.g. shared by two grids)."""
    sub = model.subnet(K)
    tx = default_tx()
    x, y = _data(model, grid, batch, channels)
    t_global, mem_global = global_step or global_step_time(model, grid, batch, repeats, channels)

    keys = jax.random.split(jax.random.PRNGKey(1), K)
    s_vars = [jax.device_get(init_variables(sub, k, (1, *grid.sub_shape, channels))) for k in keys]
    s_host = jax.device_get(jax.vmap(lambda v: create_state(v, tx))(dd.stack(s_vars)))
    lrs = jnp.full((K,), 1e-3)
    mesh = sharding.subnet_mesh(K)
    rows = {}
    for s in strategies:
        step = stacked_train_step(sub, tx, grid, s, mesh=mesh)  # the engine's sub-network step (no preprocessing)
        placed = stacked_sharding(K, s, mesh)
        fresh = lambda sh=placed: (sharding.put_global(s_host, sh), x, y, None, jnp.int32(0), lrs)  # noqa: E731
        t, mem = time_and_memory(step, fresh, repeats)
        rows[s] = {"step_s": t, "time_ratio": t_global / t, "memory_bytes": mem}
        print(f"  K sub-networks, {s:<10}  {t * 1e3:9.1f} ms/step   ratio {t_global / t:6.2f}")
    best = min(rows, key=lambda s: rows[s]["step_s"])
    in_g, in_s = (1, *grid.shape, channels), (1, *grid.sub_shape, channels)
    flop_ratio = count_flops(model, in_g) / (K * count_flops(sub, in_s))
    time_ratio = rows[best]["time_ratio"]
    return {
        "time_ratio": time_ratio, "flop_ratio": flop_ratio, "efficiency": time_ratio / flop_ratio, "strategy": best,
        "backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind), "devices": jax.device_count(),
        "global_step_s": t_global, "global_memory_bytes": mem_global, "strategies": rows, "K": K, "batch": batch,
        "network": _describe(model), "input": list(grid.shape),
        "sub_input": list(grid.sub_shape),
    }


def _describe(model) -> str:
    if isinstance(model, CifarResNet):
        return f"CifarResNet(depth={model.depth}, widths={tuple(model.widths)})"
    if isinstance(model, PlainCNN):
        return f"PlainCNN(features={tuple(model.features)}, fc={tuple(model.fc)})"
    return type(model).__name__


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--strategies", default="sequential,vmap,shard_map")
    p.add_argument("--out", default="results/bench")
    p.add_argument("--network", choices=("resnet32", "demo"), default="resnet32",
                   help="ResNet32 at CIFAR shape (default), or make demo's PlainCNN at Fashion-MNIST shape (28x28x1)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="the compute dtype (Config.dtype; parameters stay float32)")
    args = p.parse_args(argv)
    from dcnn_dd.models.registry import build_model

    strategies = [s for s in args.strategies.split(",") if s != "shard_map" or jax.device_count() > 1 or args.tiny]
    channels = 3
    if args.network == "demo":
        spec = {"name": "plain", "features": [32, 32, 64, 64], "pool_after": [1, 3], "fc": [128]}
        if args.tiny:
            spec = {**spec, "features": [4, 4, 8, 8], "fc": [8]}
        grid, channels = dd.Grid.uniform((28, 28), 2, size=16), 1  # the demo's 2x2 sub-images of 16x16
        batch = 8 if args.tiny else args.batch_size
    else:
        widths = [8, 16, 32] if args.tiny else [64, 128, 256]
        spec = {"name": "cifar_resnet", "depth": 8 if args.tiny else 32, "widths": widths}
        grid, batch = dd.paper_grid("cifar"), 8 if args.tiny else args.batch_size  # 32x32 -> 2x2 of 16x16
    model = build_model(spec, 10, args.dtype)
    print(f"{jax.default_backend()} ({jax.devices()[0].device_kind}, {jax.device_count()} device(s)): "
          f"{_describe(model)} ({args.dtype}), K=4, batch {batch}")
    r = bench(model, grid, 4, batch, args.repeats, strategies, channels=channels)
    r["dtype"] = args.dtype
    mem = r["global_memory_bytes"], r["strategies"][r["strategy"]]["memory_bytes"]
    print(f"  global network              {r['global_step_s'] * 1e3:9.1f} ms/step")
    print(f"time_ratio {r['time_ratio']:.2f}  flop_ratio {r['flop_ratio']:.2f}  efficiency {r['efficiency']:.2f}  "
          f"(strategy {r['strategy']})")
    if None not in mem:
        print(f"memory per step: global {mem[0] / 2**20:.1f} MiB, K sub-networks {mem[1] / 2**20:.1f} MiB")
    name = "subnet_speedup.json" if (args.network, args.dtype) == ("resnet32", "float32") else \
        f"subnet_speedup_{args.network}_{args.dtype}.json"
    write_json(args.out, name, r)
    return r


if __name__ == "__main__":
    main()
