"""Is the input pipeline fast enough not to slow training down?

    python -m benchmarks.input_pipeline                  # Fashion-MNIST + PlainCNN, CIFAR-shaped + ResNet8
    python -m benchmarks.input_pipeline --tiny           # Fashion-MNIST only, a few steps (what the tests run)
    python -m benchmarks.input_pipeline --batch-size 256
    python -m benchmarks.input_pipeline --grain          # also Grain's pipeline (pip install grain)

For each case, in one run on the current device, images per second of

* the input pipeline, run synchronously (nothing overlapped): host gather of a shuffled batch
  (``source.take``) + transfer of the uint8 batch + on-device normalise, augment and decompose
  into K = 4 sub-images (one jitted function), ``block_until_ready``; also its two halves;
* one Adam training step of the network on the same (normalised) batch, jitted, parameters
  donated: the work the pipeline has to keep up with.

``pipeline / step`` much larger than 1 means the pipeline is not the bottleneck (in training it
also runs in a background thread, :class:`dcnn_dd.data.pipeline.Prefetcher`, overlapped with the
steps).  Throughputs are medians over ``--repeats`` timings of ``--steps`` steps each (fewer, at least
2, where a step is so slow that they would exceed ``--budget`` seconds), after a warm-up
(compilation).  Writes ``results/bench/input_pipeline.json``.

``--grain`` (needs ``pip install grain``; skipped with a message without it) adds, per case, the
same measurements of Grain's pipeline (:mod:`benchmarks.grain_pipeline`): ``grain`` (Grain's
per-record source, shuffle, batch) and ``grain-order`` (Grain over our own batch order and
``source.take``), each run synchronously and prefetched; ours prefetched (``prefetched``: the
:class:`~dcnn_dd.data.pipeline.Prefetcher` of training, 2 batches ahead) against Grain's
``grain.experimental.device_put`` (host and device buffers of 2); and the checks of our
pipeline's guarantees for Grain's (:func:`benchmarks.grain_pipeline.check_guarantees`).

Cases: ``fashion`` - Fashion-MNIST 28x28x1 (the installed IDX files; uniform random bytes of the
same shape if they are missing, reported as such), ``augment.FASHION``, 2x2 sub-images of 16x16,
``PlainCNN(features=(32, 32, 64, 64), fc=(128,))``; ``cifar`` - random uint8 32x32x3,
``augment.CIFAR``, the paper's 2x2 sub-images of 20x20, ``CifarResNet(depth=8)`` (BatchNorm in
training mode).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.common import write_json
from dcnn_dd.data import augment, pipeline, sources
from dcnn_dd.grid import Grid, decompose_input, paper_grid
from dcnn_dd.models import CifarResNet, PlainCNN


def fashion_source(n: int):
    try:
        return sources.load_fashion_mnist("train"), "fashion-mnist (IDX files)"
    except sources.DatasetNotFoundError:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
        src = sources.ArraySource(images, rng.integers(0, 10, n), 10, "random")
        return src, "random uint8 28x28x1 (Fashion-MNIST not found)"


def random_source(n: int, shape, num_classes: int = 10):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    return sources.ArraySource(images, rng.integers(0, num_classes, n), num_classes, "random")


def _throughput(run_steps, steps: int, batch: int, repeats: int, budget_s: float) -> float:
    """images/s: median over ``repeats`` of ``n * batch / wall time of run_steps(n)``, where n is
    ``steps``, or fewer (at least 2) when a warm step says n steps would exceed ``budget_s``."""
    run_steps(1)  # compile, warm up
    t0 = time.perf_counter()
    run_steps(1)
    n = max(2, min(steps, int(budget_s / max(time.perf_counter() - t0, 1e-9))))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_steps(n)
        rates.append(n * batch / (time.perf_counter() - t0))
    return statistics.median(rates)


def make_train_step(model, tx, batchnorm: bool):
    def loss_fn(params, extra, x, y):
        if batchnorm:
            logits, updates = model.apply({"params": params, **extra}, x, train=True, mutable=["batch_stats"])
        else:
            logits, updates = model.apply({"params": params}, x), extra
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates

    def step(state, x, y):
        params, extra, opt_state = state
        (loss, extra), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, extra, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), extra, opt_state), loss

    return jax.jit(step, donate_argnums=0)


def bench(name, source, data_desc, model, grid, cfg, batchnorm, batch, steps, repeats, budget_s, grain=None):
    mean = sources.channel_mean(source, max_samples=2000)
    order = pipeline.epoch_order(0, 0, len(source), batch)
    if len(order) == 0:
        raise ValueError(f"{name}: batch size {batch} exceeds the {len(source)} samples")
    prep = jax.jit(lambda im, ids, epoch: decompose_input(
        augment.preprocess(im, ids, seed=0, epoch=epoch, mean=mean, cfg=cfg, train=True), grid))
    counter = iter(range(10**9))

    def next_indices():
        return order[next(counter) % len(order)]

    def host_steps(n):
        for _ in range(n):
            jax.block_until_ready(pipeline.device_put_batch(source, next_indices()))

    images, labels, ids = pipeline.device_put_batch(source, order[0])

    def device_steps(n):
        for s in range(n):
            jax.block_until_ready(prep(images, ids, jnp.int32(s)))

    def pipeline_steps(n):
        for s in range(n):
            im, _, i = pipeline.device_put_batch(source, next_indices())
            jax.block_until_ready(prep(im, i, jnp.int32(s)))

    x = augment.normalize(images, mean)
    variables = model.init(jax.random.PRNGKey(0), x[:1])
    params = variables["params"]
    extra = {k: v for k, v in variables.items() if k != "params"}
    tx = optax.adam(1e-3)
    train_step = make_train_step(model, tx, batchnorm)
    state = [(params, extra, tx.init(params))]

    def train_steps(n):
        for _ in range(n):
            state[0], loss = train_step(state[0], x, labels)
        jax.block_until_ready(loss)

    host, device, full, step = (_throughput(f, steps, batch, repeats, budget_s)
                                for f in (host_steps, device_steps, pipeline_steps, train_steps))
    more = {} if grain is None else bench_grain(grain, source, prep, batch, steps, repeats, budget_s)
    n_params = sum(int(a.size) for a in jax.tree.leaves(params))
    row = dict(case=name, data=data_desc, image_shape=list(source.image_shape), batch=batch, K=grid.K,
               sub_shape=list(grid.sub_shape), augment=str(cfg), network=type(model).__name__, params=n_params,
               host_take_transfer_ips=host, device_preprocess_ips=device, pipeline_ips=full, train_step_ips=step,
               pipeline_over_step=full / step, max_steps=steps, repeats=repeats, backend=jax.default_backend(),
               device=str(jax.devices()[0].device_kind), **more)
    return row


def bench_grain(grain, source, prep, batch, steps, repeats, budget_s):
    """images/s of our pipeline prefetched and of Grain's two pipelines (synchronous, prefetched),
    each with the same on-device preprocessing ``prep``, the step counter as the epoch."""
    from benchmarks import grain_pipeline as gp

    def consume(it, put):
        counter = iter(range(10**9))

        def run(n):
            for _ in range(n):
                b = next(it)
                if put:
                    b = jax.device_put(b)
                jax.block_until_ready(prep(b["image"], b["index"], jnp.int32(next(counter))))
        return run

    def ours(n_epochs=gp.EPOCHS):  # the training path: pipeline.batches' generator in a Prefetcher
        for epoch in range(n_epochs):
            for idx in pipeline.epoch_order(0, epoch, len(source), batch):
                images, labels, ids = pipeline.device_put_batch(source, idx)
                yield {"image": images, "label": labels, "index": ids}

    out = {}
    with pipeline.Prefetcher(ours(), 2) as it:
        out["prefetched_ips"] = _throughput(consume(it, False), steps, batch, repeats, budget_s)
    for name, ds in (("grain", gp.dataset(grain, source, seed=0, batch=batch)),
                     ("grain_order", gp.order_dataset(grain, source, seed=0, batch=batch))):
        out[f"{name}_pipeline_ips"] = _throughput(consume(gp.iterator(grain, ds), True), steps, batch, repeats,
                                                  budget_s)
        for key, how in (("prefetched", "device_put"), ("reader_thread", "threads")):
            it = gp.iterator(grain, ds, prefetch=2, how=how)
            out[f"{name}_{key}_ips"] = _throughput(consume(it, how == "threads"), steps, batch, repeats, budget_s)
            it.close()
    return out


def print_grain_table(rows, grain_version, guarantees):
    print(f"\ngrain {grain_version}, the same on-device preprocessing: images/s (ratio to ours)")
    head = f"{'case':<8} {'pipeline':<12} {'synchronous':>18} {'prefetched':>18} {'reader thread':>18}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        s, p = r["pipeline_ips"], r["prefetched_ips"]
        print(f"{r['case']:<8} {'ours':<12} {s:>10,.0f} (1.00) {p:>10,.0f} (1.00) {'-':>18}")
        for name in ("grain", "grain_order"):
            a, b, c = (r[f"{name}_{k}_ips"] for k in ("pipeline", "prefetched", "reader_thread"))
            print(f"{'':<8} {name.replace('_', '-'):<12} {a:>10,.0f} ({a / s:.2f}) {b:>10,.0f} ({b / p:.2f}) "
                  f"{c:>10,.0f} ({c / p:.2f})")
    print("prefetched: ours, the training Prefetcher (2 ahead); Grain, grain.experimental.device_put (2 + 2 ahead).\n"
          "reader thread: Grain's ReadOptions(num_threads=1, prefetch_buffer_size=2), transfer in the consumer.")
    print("guarantees, Grain's pipeline:")
    for k, v in guarantees.items():
        print(f"  {k}: {v}")


def print_table(rows):
    head = (f"{'case':<8} {'batch':>5} {'host take+put':>14} {'device prep':>12} {'pipeline':>10} {'train step':>11} "
            f"{'pipeline/step':>14}")
    print(head + "\n" + "-" * len(head) + "   (images/s)")
    for r in rows:
        print(f"{r['case']:<8} {r['batch']:>5} {r['host_take_transfer_ips']:>14,.0f} "
              f"{r['device_preprocess_ips']:>12,.0f} "
              f"{r['pipeline_ips']:>10,.0f} {r['train_step_ips']:>11,.0f} {r['pipeline_over_step']:>14.1f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="Fashion-MNIST case only, few steps (seconds)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default 20, --tiny 3)")
    ap.add_argument("--repeats", type=int, default=None, help="timings per measurement (default 3, --tiny 1)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds per timing: fewer steps (>= 2) when one is slow (default 10, --tiny 2)")
    ap.add_argument("--grain", action="store_true",
                    help="also measure Grain's pipeline and check its guarantees (needs: pip install grain)")
    ap.add_argument("--out", default="results/bench")
    args = ap.parse_args(argv)
    steps = args.steps or (3 if args.tiny else 20)
    repeats = args.repeats or (1 if args.tiny else 3)
    budget = args.budget or (2.0 if args.tiny else 10.0)
    b = args.batch_size
    source, desc = fashion_source(max(4 * b, 1024))
    cases = [("fashion", source, desc, PlainCNN(features=(32, 32, 64, 64), fc=(128,)),
              Grid.uniform((28, 28), 2, size=16), augment.FASHION, False)]
    if not args.tiny:
        cases.append(("cifar", random_source(max(4 * b, 1024), (32, 32, 3)), "random uint8 32x32x3",
                      CifarResNet(depth=8), paper_grid("cifar-overlap"), augment.CIFAR, True))
    grain = None
    if args.grain:
        from benchmarks import grain_pipeline

        grain = grain_pipeline.import_grain()
        if grain is None:
            print("--grain: skipped, grain is not installed (pip install grain, or pip install 'dcnn-dd[grain]')")
    rows = [bench(*c, batch=b, steps=steps, repeats=repeats, budget_s=budget, grain=grain) for c in cases]
    print(f"device: {rows[0]['device']} ({rows[0]['backend']}); pipeline run synchronously, K=4 sub-images")
    print_table(rows)
    payload = {"rows": rows}
    if grain is not None:
        payload["grain"] = {"version": grain_pipeline.version(grain),
                            "guarantees": grain_pipeline.check_guarantees(grain)}
        print_grain_table(rows, payload["grain"]["version"], payload["grain"]["guarantees"])
    write_json(args.out, "input_pipeline.json", payload)
    return rows


if __name__ == "__main__":
    main()
