"""Device meshes and global arrays: one code path for 1 device, N devices and N processes.

* ``data`` mesh (the global fine-tune): the batch is sharded on its leading axis, parameters are
  replicated, and ``jax.jit`` (the modern pjit) inserts the all-reduces.  BatchNorm's batch mean
  is a mean over the *global* batch, so its statistics agree across devices.
* ``subnet`` mesh (the sub-network phase with ``strategy='shard_map'``): stacked sub-network
  states are sharded on their leading K axis.

Host values become global arrays through ``jax.make_array_from_callback``: each process only
materialises the shards of its own devices, which is what multi-process runs need.
"""

from __future__ import annotations

import numpy as np
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def line_mesh(axis: str, num_devices: int | None = None) -> Mesh:
    """A 1-D mesh named ``axis`` over the first ``num_devices`` devices (default: all)."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices={n}: this run has {len(devices)} device(s)")
    return Mesh(np.array(devices[:n]), (axis,))


def data_mesh(num_devices: int | None = None) -> Mesh:
    return line_mesh("data", num_devices)


def subnet_mesh(K: int, num_devices: int | None = None) -> Mesh:  # noqa: N803
    """A ``subnet`` mesh of ``min(K, devices)`` devices (more devices than sub-networks would idle)."""
    devices = jax.devices()
    n = min(K, len(devices) if num_devices is None else num_devices)
    return Mesh(np.array(devices[:n]), ("subnet",))


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
