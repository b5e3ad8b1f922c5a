"""Training-time and memory measurements of one configuration (Tables 3.2 and 3.4 of Gu et al.).

:func:`time_training` trains the global network, or the K sub-networks together with the run's
strategy, for a number of real steps - the real input pipeline, on-device augmentation and
(de)composition of the inputs included - and reports the measured seconds per step, the time of
``epochs`` epochs they imply, and the memory of the compiled step.  The paper times 10 whole
epochs; timing ``steps`` steps and scaling is what makes a 32 ... 32768 batch-size sweep
affordable, and the result says which it is (``timed_steps`` against ``steps_per_epoch``).

Memory: ``compiled_bytes`` is XLA's own account of the compiled step (arguments + outputs +
temporaries - donated aliases), defined on every backend; ``peak_bytes`` is the device's peak
allocation where the backend reports one (GPUs, TPUs; not the CPU).  A batch that does not fit
is reported as ``{"oom": True}`` (the paper's "-").
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from dcnn_dd import sharding
from dcnn_dd.data import pipeline
from dcnn_dd.train.config import Config


def compiled_memory(step, args) -> int | None:
    """Bytes of a jitted ``step`` compiled for ``args``: arguments + outputs + temporaries -
    aliased (donated) buffers.  None where the backend does not report it.  (This compiles
    ``step`` once more; :func:`time_training` uses :func:`executable_memory` on the executable
    it runs instead.)"""
    try:
        return executable_memory(step.lower(*args).compile())
    except Exception:  # not every backend reports it
        return None


def executable_memory(compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)
    except Exception:  # not every backend reports it
        return None


def peak_bytes() -> int | None:
    """The largest peak allocation over the local devices, where reported."""
    peaks = []
    for d in jax.local_devices():
        try:
            stats = d.memory_stats()
        except Exception:
            stats = None
        if stats and "peak_bytes_in_use" in stats:
            peaks.append(int(stats["peak_bytes_in_use"]))
    return max(peaks) if peaks else None


def _is_oom(e: Exception) -> bool:
    text = f"{type(e).__name__} {e}"
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def time_training(config: Config, which: str, *, steps: int = 10, warmup: int = 2, epochs: int = 10,
                  num_devices: int | None = None, data_path=None, data_dir=None, setup=None) -> dict:
    """Seconds per training step of ``which`` ("global" or "subnets") under ``config`` (its
    batch size, augmentation, grid, strategy; ``auto`` measures the candidates first), and the
    time of ``epochs`` epochs they imply.  ``warmup`` steps (compilation) are not timed.
    ``setup``: a :class:`~.setup.Setup` of ``config`` to reuse (its data and models)."""
    from dcnn_dd.train import steps as S  # noqa: N812  (the step builders import the data pipeline)
    from dcnn_dd.train.setup import build_setup
    from dcnn_dd.train.state import phase_rng

    if which not in ("global", "subnets"):
        raise ValueError(f"which={which!r}: choose 'global' or 'subnets'")
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps={steps} must be >= 1 and warmup={warmup} >= 0")
    su = setup or build_setup(config, data_path=data_path, data_dir=data_dir, num_devices=num_devices, plan=False)
    c = su.config
    n = len(su.train_source)
    per_epoch = pipeline.steps_per_epoch(n, c.batch_size)
    if per_epoch == 0:
        raise ValueError(f"batch size {c.batch_size} exceeds the {n} training samples")
    if c.steps_per_epoch is not None:
        per_epoch = min(per_epoch, c.steps_per_epoch)
    key = jax.random.PRNGKey(c.seed)
    strategy = None
    if which == "global":
        state = S.global_state(su, su.global_init(key), phase="gnet_r")
        step = S.global_train_step(su, phase="gnet_r")
        rng = phase_rng(c.seed, "gnet_r")  # the phase's random streams (Dropout), as in training
        batch_sharding = sharding.batch_sharding(su.data_mesh)
        lr = jnp.float32(1e-3)
        devices = su.data_mesh.devices.size
    else:
        compiled = S.Steps(su)
        sub_vars = su.subnet_init(key)
        strategy, _ = S.choose_strategy(su, sub_vars, compiled)
        state = S.subnet_state(su, sub_vars, strategy)
        step = compiled.subnet_train(strategy)
        rng = phase_rng(c.seed, "snets")
        batch_sharding = S.subnet_batch_sharding(su, strategy)
        lr = jnp.full((c.K,), 1e-3, jnp.float32)
        devices = S.subnet_sharding(su, strategy).mesh.devices.size if strategy == "shard_map" else 1

    def batch_stream():
        epoch = 0
        while True:
            it = pipeline.batches(su.train_source, seed=c.seed, epoch=epoch, batch_size=c.batch_size,
                                  sharding=batch_sharding,
                                  steps=per_epoch)
            try:
                yield from ((epoch, b) for b in it)
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
            epoch += 1

    out = {"which": which, "batch_size": c.batch_size, "augment": c.augment, "strategy": strategy,
           "devices": int(devices), "steps_per_epoch": per_epoch, "timed_steps": steps, "epochs": epochs,
           "backend": jax.default_backend(), "oom": False}
    stream = batch_stream()
    try:
        ep, (images, labels, ids) = next(stream)
        step = step.lower(state, images, labels, ids, jnp.int32(ep), lr, rng).compile()  # compiled once, timed below
        out["compiled_bytes"] = executable_memory(step)
        for _ in range(warmup):
            state, m = step(state, images, labels, ids, jnp.int32(ep), lr, rng)
            ep, (images, labels, ids) = next(stream)
        jax.block_until_ready(state)
        t0 = time.perf_counter()
        for i in range(steps):
            state, m = step(state, images, labels, ids, jnp.int32(ep), lr, rng)
            if i + 1 < steps:
                ep, (images, labels, ids) = next(stream)
        jax.block_until_ready((state, m))
        dt = time.perf_counter() - t0
    except Exception as e:
        if _is_oom(e):
            return {**out, "oom": True, "error": str(e).splitlines()[0][:300]}
        raise
    finally:
        stream.close()
    out["s_per_step"] = dt / steps
    out["epoch_s"] = out["s_per_step"] * per_epoch
    out["time_s"] = out["epoch_s"] * epochs
    out["peak_bytes"] = peak_bytes()
    out["final_loss"] = float(np.mean(np.asarray(sharding.to_host(m["loss"]))))
    return out
