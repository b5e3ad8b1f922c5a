"""How long does composing K trained sub-networks into the global network take?

    python -m benchmarks.compose            # CIFAR ResNet32 and ResNet50 (1024-FC), K=4
    python -m benchmarks.compose --tiny     # seconds; what the test suite runs

For each network, in one run on the current device: the wall time of jitted ``compose`` and
``decompose`` (median of repeats, after compilation) and of one jitted forward pass of the global
network at batch 32, and their ratio.  Composition happens once per run of Algorithm 1 (step 4),
so a ratio well below one training step means it is negligible.  Writes
``results/bench/compose.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import dcnn_dd as dd
from benchmarks.common import write_json
from dcnn_dd.models import CifarResNet, PlainCNN, ResNet50


def _median_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(name, model, grid, channels, K, batch, repeats):  # noqa: N803
    sub = model.subnet(K)
    in_shape = (1, *grid.shape, channels)
    plan = dd.plan_for(model, sub, grid, input_shape=in_shape)
    x_sub = jnp.zeros((1, *grid.sub_shape, channels))
    stacked = jax.vmap(lambda k: sub.init(k, x_sub))(jax.random.split(jax.random.PRNGKey(0), K))
    compose = jax.jit(lambda s: dd.compose(plan, s))
    decompose = jax.jit(lambda g: dd.decompose(plan, g))
    global_vars = compose(stacked)
    x = jax.random.normal(jax.random.PRNGKey(1), (batch, *grid.shape, channels))
    forward = jax.jit(lambda v, x: model.apply(v, x))
    t_c = _median_time(lambda: compose(stacked), repeats)
    t_d = _median_time(lambda: decompose(global_vars), repeats)
    t_f = _median_time(lambda: forward(global_vars, x), repeats)
    n_params = sum(a.size for a in jax.tree.leaves(global_vars))
    row = dict(network=name, partitions=K, input=list(grid.shape), params=int(n_params), compose_s=t_c,
               decompose_s=t_d, forward_s=t_f, forward_batch=batch, compose_over_forward=t_c / t_f,
               backend=jax.default_backend())
    print(f"{name:<12} K={K}  compose {t_c * 1e3:8.2f} ms  decompose {t_d * 1e3:8.2f} ms  "
          f"forward(batch {batch}) {t_f * 1e3:8.2f} ms  compose/forward {t_c / t_f:6.3f}")
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="a small CNN only (seconds)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="results/bench")
    args = ap.parse_args(argv)
    if args.tiny:
        cases = [("PlainCNN", PlainCNN(features=(8, 8, 16, 16), fc=(32,)), dd.Grid.uniform((28, 28), 2, size=16), 1, 4, 8)]
    else:
        cases = [
            ("ResNet32", CifarResNet(depth=32), dd.paper_grid("cifar-overlap"), 3, 4, 32),
            ("ResNet50", ResNet50(fc_hidden=1024, num_classes=101), dd.paper_grid("food101-4"), 3, 4, 32),
        ]
    rows = [bench(*c, repeats=args.repeats) for c in cases]
    write_json(args.out, "compose.json", {"rows": rows})
    return rows


if __name__ == "__main__":
    main()
