"""How long does composing K trained sub-networks into the global network take?

    python -m benchmarks.compose            # CIFAR ResNet32 and ResNet50 (1024-FC), K=4
    python -m benchmarks.compose --tiny     # seconds; what the test suite runs
    python -m benchmarks.compose --verify   # the cost of plan_for's check: VGG16 and ResNet50 at 224, K=4

For each network, in one run on the current device: the wall time of jitted ``compose`` and
``decompose`` (median of repeats, after compilation) and of one jitted forward pass of the global
network at batch 32, and their ratio.  Composition happens once per run of Algorithm 1 (step 4),
so a ratio well below one training step means it is negligible.  Writes
``results/bench/compose.json``.

With ``--verify``: the wall time of ``plan_for`` with its check (``verify=True``, the default:
random sub-networks composed and compared layer by layer, compilation included, one call in a
fresh process state for each network) against ``verify=False``; writes
``results/bench/compose_verify.json``.
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


def bench_verify(name, model, grid, channels, K):  # noqa: N803
    import warnings

    sub = model.subnet(K)
    in_shape = (1, *grid.shape, channels)
    t0 = time.perf_counter()
    dd.plan_for(model, sub, grid, input_shape=in_shape, verify=False)
    t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        plan = dd.plan_for(model, sub, grid, input_shape=in_shape)
    t_verify = time.perf_counter() - t0
    rep = plan.verification
    row = dict(network=name, partitions=K, input=list(grid.shape), sub_input=list(grid.sub_shape),
               plan_s=t_plain, plan_verified_s=t_verify, verify_extra_s=t_verify - t_plain,
               samples=rep.samples, exact=rep.exact, output_deviation=rep.output_deviation,
               output_relative=rep.output_deviation / max(rep.output_scale, 1e-12),
               backend=jax.default_backend())
    print(f"{name:<10} K={K}  plan_for {t_plain:7.2f} s   with verification {t_verify:7.2f} s   "
          f"extra {t_verify - t_plain:7.2f} s   exact={rep.exact}  output deviation {rep.output_deviation:.3g} "
          f"(relative {row['output_relative']:.2g})")
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="a small CNN only (seconds)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--verify", action="store_true", help="the cost of plan_for's verification instead")
    ap.add_argument("--out", default="results/bench")
    args = ap.parse_args(argv)
    if args.verify:
        from dcnn_dd.models import VGG16

        if args.tiny:
            cases = [("PlainCNN", PlainCNN(features=(8, 8, 16, 16), fc=(32,)), dd.Grid.uniform((28, 28), 2, size=16), 1, 4)]
        else:
            cases = [("VGG16", VGG16(), dd.Grid.uniform((224, 224), 2), 3, 4),
                     ("ResNet50", ResNet50(fc_hidden=1024, num_classes=101), dd.paper_grid("food101-4"), 3, 4)]
        rows = [bench_verify(*c) for c in cases]
        write_json(args.out, "compose_verify.json", {"rows": rows})
        return rows
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
