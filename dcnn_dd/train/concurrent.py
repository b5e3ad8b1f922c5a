"""The K independent sub-network problems, run concurrently (Algorithm 1, step 2).

A *strategy* turns a function of one sub-network into a function of the K stacked ones
(leading axis K on the arguments marked ``0`` in ``in_axes``, the others shared):

* ``vmap``        - ``jax.vmap``: one batched program (FBPINNs-style).  On XLA:CPU a vmapped
  convolution becomes a grouped convolution, which can be several times slower.
* ``sequential``  - one program that runs the K steps one after another inside a single ``jit``
  (unrolled), leaving XLA free to schedule them.
* ``shard_map``   - ``jax.shard_map`` over a ``subnet`` mesh axis: device d runs ceil(K/D)
  sub-networks with the ``inner`` strategy.  When D does not divide K the stack is padded with
  copies of the last sub-network whose results are dropped, so the critical path is still
  ceil(K/D) sub-networks.
* ``auto``        - :func:`choose` measures the candidates on the current backend and picks the
  fastest (the best strategy differs per backend: measure, do not guess).

There is no communication between sub-networks in any strategy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

STRATEGIES = ("vmap", "sequential", "shard_map")


def _take(tree, k):
    return jax.tree.map(lambda a: a[k], tree)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _pad(tree, Kp):  # noqa: N803
    def pad(a):
        extra = Kp - a.shape[0]
        return a if extra == 0 else jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)])

    return jax.tree.map(pad, tree)


def kmap(
    fn: Callable,
    strategy: str,
    *,
    K: int,  # noqa: N803
    in_axes: Sequence[int | None],
    mesh: Mesh | None = None,
    inner: str = "sequential",
) -> Callable:
    """``fn`` for one sub-network -> the same over K stacked sub-networks; outputs stacked on axis 0."""
    in_axes = tuple(in_axes)
    if strategy == "vmap":
        return jax.vmap(fn, in_axes=in_axes)
    if strategy == "sequential":

        def run(*args):
            if len(args) != len(in_axes):
                raise TypeError(f"expected {len(in_axes)} arguments, got {len(args)}")
            outs = [fn(*(_take(a, k) if ax == 0 else a for a, ax in zip(args, in_axes))) for k in range(K)]
            return _stack(outs)

        return run
    if strategy == "shard_map":
        if mesh is None or "subnet" not in mesh.axis_names:
            raise ValueError("strategy='shard_map' needs a mesh with a 'subnet' axis (parallel.subnet_mesh)")
        if inner not in ("vmap", "sequential"):
            raise ValueError(f"inner={inner!r}: choose 'vmap' or 'sequential'")
        D = mesh.shape["subnet"]  # noqa: N806
        Kp = -(-K // D) * D  # noqa: N806
        local = kmap(fn, inner, K=Kp // D, in_axes=in_axes)
        specs = tuple(P("subnet") if ax == 0 else P() for ax in in_axes)
        mapped = jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P("subnet"), check_vma=False)

        def run(*args):
            padded = [_pad(a, Kp) if ax == 0 else a for a, ax in zip(args, in_axes)]
            out = mapped(*padded)
            return out if Kp == K else jax.tree.map(lambda a: a[:K], out)

        return run
    raise ValueError(f"strategy={strategy!r}: choose one of {STRATEGIES} or 'auto'")


def candidates(K: int, mesh: Mesh | None) -> list[str]:  # noqa: N803
    """The strategies worth measuring here: shard_map only when the mesh has several devices."""
    out = ["sequential", "vmap"]
    if mesh is not None and mesh.devices.size > 1:
        out.append("shard_map")
    return out


def median_step_time(step: Callable, fresh: Callable[[], tuple], repeats: int = 3) -> float:
    """Seconds per call of ``step(*fresh())``: one untimed call (compilation), then the median of
    ``repeats`` timed calls, each on fresh arguments made outside the timer (steps may donate)."""
    jax.block_until_ready(step(*fresh()))
    ts = []
    for _ in range(repeats):
        args = jax.block_until_ready(fresh())
        t0 = time.perf_counter()
        jax.block_until_ready(step(*args))
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def choose(strategies: Sequence[str], build: Callable[[str], tuple[Callable, Callable[[], tuple]]],
           repeats: int = 3) -> tuple[str, dict[str, float]]:
    """Measure each strategy and return the fastest with all timings (seconds per step).

    ``build(s)`` returns ``(step, fresh)``: the jitted step of strategy ``s`` and a function that
    returns fresh arguments for it (steps may donate their state).  One untimed call compiles;
    the median of ``repeats`` timed calls counts (:func:`median_step_time`).  The measured steps are thrown away, so the
    choice does not change the training itself."""
    timings = {s: median_step_time(*build(s), repeats=repeats) for s in strategies}
    best = min(timings, key=timings.get)
    return best, timings
