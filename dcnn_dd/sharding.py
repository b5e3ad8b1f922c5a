"""Devices: meshes, global arrays, and the K sub-network problems run concurrently.

Meshes and arrays - one code path for 1 device, N devices and N processes:

* ``data`` mesh (the global fine-tune): the batch is sharded on its leading axis, parameters are
  replicated, and ``jax.jit`` (the modern pjit) inserts the all-reduces.  BatchNorm's batch mean
  is a mean over the *global* batch, so its statistics agree across devices.
* ``subnet`` mesh (the sub-network phase with ``strategy='shard_map'``): stacked sub-network
  states are sharded on their leading K axis; with as many devices as 2K or more, a (``subnet``,
  ``data``) mesh also splits each sub-network's batch over the devices of its row.

Host values become global arrays through ``jax.make_array_from_callback`` (:func:`put_global`):
each process only materialises the shards of its own devices, which is what multi-process runs
need; :func:`to_host` gathers them back.

The K independent sub-network problems, run concurrently (Algorithm 1, step 2), by :func:`kmap`.

A *strategy* turns a function of one sub-network into a function of the K stacked ones
(leading axis K on the arguments marked ``0`` in ``in_axes``, the others shared):

* ``vmap``        - ``jax.vmap``: one batched program (FBPINNs-style).  On XLA:CPU a vmapped
  convolution becomes a grouped convolution, which can be several times slower.
* ``sequential``  - one program that runs the K steps one after another inside a single ``jit``
  (unrolled), leaving XLA free to schedule them.
* ``shard_map``   - ``jax.shard_map`` over a ``subnet`` mesh axis: device d runs ceil(K/D)
  sub-networks with the ``inner`` strategy.  When D does not divide K the stack is padded with
  copies of the last sub-network whose results are dropped, so the critical path is still
  ceil(K/D) sub-networks.  On a (``subnet``, ``data``) mesh (:func:`subnet_mesh`, D >= 2K) each
  sub-network runs on a row of D/K devices, its batch split over them.
* ``auto``        - :func:`choose` measures the candidates on the current backend and picks the
  fastest (the best strategy differs per backend: measure, do not guess).

There is no communication between sub-networks in any strategy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dcnn_dd.tree import pad, stack, take

STRATEGIES = ("vmap", "sequential", "shard_map")


# ==================================================================== meshes and global arrays
def first_devices(num_devices: int | None = None) -> list:
    """The first ``num_devices`` devices (default: all); a one-line error for more than there are."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices={n}: this run has {len(devices)} device(s)")
    return devices[:n]


def line_mesh(axis: str, num_devices: int | None = None) -> Mesh:
    """A 1-D mesh named ``axis`` over the first ``num_devices`` devices (default: all)."""
    return Mesh(np.array(first_devices(num_devices)), (axis,))


def data_mesh(num_devices: int | None = None) -> Mesh:
    return line_mesh("data", num_devices)


SUBNET_LAYOUTS = ("auto", "subnet", "subnet_data")


def subnet_mesh(K: int, num_devices: int | None = None, layout: str = "auto") -> Mesh:  # noqa: N803
    """The sub-network phase's mesh over D devices (``num_devices``, default all):

    * ``subnet`` - a 1-D ``subnet`` mesh of ``min(K, D)`` devices (with D > K the others idle);
    * ``subnet_data`` - a (``subnet``, ``data``) mesh of K x D/K devices (K must divide D, D >= 2K):
      sub-network k on row k, its batch split over the row's D/K devices (data parallel, the
      gradient all-reduced over ``data``);
    * ``auto`` - ``subnet_data`` where it applies (D >= 2K, K dividing D), else ``subnet``."""
    devices = first_devices(num_devices)
    d = len(devices)
    if layout not in SUBNET_LAYOUTS:
        raise ValueError(f"subnet_layout={layout!r}: choose one of {list(SUBNET_LAYOUTS)}")
    two_axes = d >= 2 * K and d % K == 0
    if layout == "subnet_data" and not two_axes:
        raise ValueError(f"subnet_layout='subnet_data' needs the device count to be a multiple of K, at least 2K: "
                         f"{d} device(s), K={K} (use 'subnet' or 'auto')")
    if layout != "subnet" and two_axes:
        return Mesh(np.array(devices).reshape(K, d // K), ("subnet", "data"))
    return Mesh(np.array(devices[:min(K, d)]), ("subnet",))


def data_parallel_within(mesh: Mesh | None) -> int:
    """How many devices each sub-network's batch is split over (the ``data`` axis of a sub-network
    mesh; 1 without one)."""
    return 1 if mesh is None or "data" not in mesh.axis_names else mesh.shape["data"]


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(mesh.axis_names[0]))


def check_batch(batch_size: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(
            f"batch size {batch_size} is not divisible by the {n} devices of the data mesh; "
            f"use a multiple of {n} or fewer devices (num_devices=)"
        )


def put_global(tree, sharding):
    """Host (numpy or jax) leaves -> global arrays with ``sharding`` (a sharding or a pytree of
    them).  Every process must hold the same full host value."""
    if isinstance(sharding, jax.sharding.Sharding):
        sharding = jax.tree.map(lambda _: sharding, tree)

    def put(x, s):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, s, lambda idx: x[idx])

    return jax.tree.map(put, tree, sharding)


def to_host(tree):
    """Global arrays -> numpy, gathering shards that live on other processes."""

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.sharding.is_fully_replicated:
                return np.asarray(x.addressable_shards[0].data)
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(get, tree)


# ==================================================================== K sub-networks at once
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
            outs = [fn(*(take(a, k) if ax == 0 else a for a, ax in zip(args, in_axes))) for k in range(K)]
            return stack(outs)

        return run
    if strategy == "shard_map":
        if mesh is None or "subnet" not in mesh.axis_names:
            raise ValueError("strategy='shard_map' needs a mesh with a 'subnet' axis (subnet_mesh)")
        if inner not in ("vmap", "sequential"):
            raise ValueError(f"inner={inner!r}: choose 'vmap' or 'sequential'")
        D = mesh.shape["subnet"]  # noqa: N806
        Kp = -(-K // D) * D  # noqa: N806
        local = kmap(fn, inner, K=Kp // D, in_axes=in_axes)
        specs = tuple(P("subnet") if ax == 0 else P() for ax in in_axes)
        # only `subnet` is manual: on a (subnet, data) mesh XLA splits each sub-network's batch over `data` (from
        # the arguments' shardings) and inserts the all-reduces of a data-parallel step itself
        mapped = jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P("subnet"), axis_names={"subnet"},
                               check_vma=False)

        def run(*args):
            padded = [pad(a, Kp) if ax == 0 else a for a, ax in zip(args, in_axes)]
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
    choice does not change the training itself.  In a multi-process run, pass the result through
    :func:`agree_on_strategy`."""
    timings = {s: median_step_time(*build(s), repeats=repeats) for s in strategies}
    best = min(timings, key=timings.get)
    return best, timings


def agree_on_strategy(best: str, timings: dict, strategies: list[str]) -> tuple[str, dict]:
    """Process 0's pick and timings on every process.  Each process measures for itself and the
    timings can be close (0.0222 s vs 0.0226 s), so without this processes could run different
    programs: a hang, or silently different "replicated" arrays."""
    if jax.process_count() == 1:
        return best, timings
    mine = np.asarray([strategies.index(best), *(timings[s] for s in strategies)], np.float32)
    agreed = np.asarray(multihost_utils.broadcast_one_to_all(mine))
    return strategies[int(agreed[0])], {s: float(t) for s, t in zip(strategies, agreed[1:])}


def process0_flag(flag: bool) -> bool:
    """Process 0's answer on every process (files are written by process 0 only, so e.g. "does
    this result file exist" must be asked of process 0)."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))
