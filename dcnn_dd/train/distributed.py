"""Multi-process (multi-host) start-up.

Every process runs the same program; ``jax.distributed.initialize`` joins them into one JAX
runtime whose ``jax.devices()`` are all processes' devices.  The training code is unchanged: its
meshes span all devices and every host value becomes a global array
(:func:`dcnn_dd.sharding.put_global`).

* Your own script: call :func:`initialize` first, before any other JAX work::

      from dcnn_dd.train import distributed
      distributed.initialize()                             # Slurm (srun), Open MPI, TPU: detected
      distributed.initialize("10.0.0.1:12355", 2, pid)     # anywhere else: every process, its own pid

* The experiments' command lines (:func:`add_arguments`, :func:`initialize_from_args`):
  loopback / by hand ``--coordinator 127.0.0.1:12355 --num-processes 2 --process-id {0,1}``;
  Slurm ``srun python -m experiments.quickstart --distributed`` (with no address JAX reads the
  Slurm environment, ``SLURM_*``, and picks the coordinator itself).  See docs/engine.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax

__all__ = ["add_arguments", "initialize", "initialize_from_args"]

_joined: dict | None = None  # the arguments this process joined with (None: not through initialize)


def _on_cpu() -> bool:
    platforms = jax.config.jax_platforms
    return platforms in (None, "") or "cpu" in str(platforms)


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None, *,
               local_device_ids: int | Sequence[int] | None = None) -> None:
    """Join this process to a multi-process JAX run; call it first, before any other JAX work.

    ``initialize()``, no arguments: the cluster is detected by ``jax.distributed.initialize``
    (Slurm under ``srun``, Open MPI, Cloud TPU), which picks the coordinator, the number of
    processes and this process's id.  Otherwise give all three: ``coordinator`` (``"HOST:PORT"`` of
    process 0, the same on every process), ``num_processes`` and this process's ``process_id``
    (0 .. num_processes - 1); giving only some of them is a ``ValueError``.
    ``local_device_ids`` restricts this process to some of its host's devices (e.g. one GPU per
    process); by default a process uses all of them.

    When the platform may be the CPU (``JAX_PLATFORMS`` unset or naming ``cpu``), the CPU
    collectives across processes are set to gloo first, so loopback runs work without a GPU.

    Idempotent: a second call in a process that has joined (through this function or by calling
    ``jax.distributed.initialize`` itself) does nothing, unless it names a coordinator, process
    count, process id or devices other than the ones the process joined with: that is a
    ``RuntimeError`` (a process cannot move to another run).
    """
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    if any(v is not None for v in given.values()) and any(v is None for v in given.values()):
        missing = ", ".join(k for k, v in given.items() if v is None)
        raise ValueError(f"initialize: give coordinator, num_processes and process_id together (missing: {missing}), "
                         "or none of them for cluster auto-detection (Slurm, Open MPI, TPU)")
    if coordinator is not None:
        if not isinstance(coordinator, str) or ":" not in coordinator:
            raise ValueError(f"initialize: coordinator must be 'HOST:PORT' of process 0, got {coordinator!r}")
        if int(num_processes) < 1 or not 0 <= int(process_id) < int(num_processes):
            raise ValueError(f"initialize: process_id must be in 0..num_processes-1, got process_id={process_id} "
                             f"with num_processes={num_processes}")
    request = {"coordinator_address": coordinator,
               "num_processes": None if num_processes is None else int(num_processes),
               "process_id": None if process_id is None else int(process_id),
               "local_device_ids": local_device_ids}
    global _joined
    if jax.distributed.is_initialized():
        asked = {k: v for k, v in request.items() if v is not None}
        if not asked:
            return
        have = {k: v for k, v in (_joined or {}).items() if v is not None}
        have.setdefault("num_processes", jax.process_count())  # joined by detection or by JAX directly
        have.setdefault("process_id", jax.process_index())
        conflicts = {k: v for k, v in asked.items() if k in have and have[k] != v}
        if conflicts:
            raise RuntimeError(f"initialize: this process already joined a multi-process run as {_describe(have)}; "
                               f"it cannot join another ({_describe(conflicts)})")
        return
    if _on_cpu():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
    jax.distributed.initialize(**{k: v for k, v in request.items() if v is not None})
    _joined = request


def _describe(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if v is not None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("multi-process")
    g.add_argument("--distributed", action="store_true",
                   help="join a multi-process run (cluster auto-detection, e.g. Slurm, unless --coordinator is given)")
    g.add_argument("--coordinator", help="HOST:PORT of process 0 (implies --distributed)")
    g.add_argument("--num-processes", type=int)
    g.add_argument("--process-id", type=int)


def initialize_from_args(args: argparse.Namespace) -> None:
    """:func:`initialize` from :func:`add_arguments`' flags; nothing unless ``--distributed`` or
    ``--coordinator`` is given."""
    if not (args.distributed or args.coordinator):
        return
    if args.coordinator and (args.num_processes is None or args.process_id is None):
        raise SystemExit("--coordinator needs --num-processes and --process-id")
    if not args.coordinator and (args.num_processes is not None or args.process_id is not None):
        raise SystemExit("--num-processes and --process-id need --coordinator (without it the cluster is detected)")
    try:
        initialize(args.coordinator, args.num_processes, args.process_id)
    except ValueError as e:
        raise SystemExit(str(e).removeprefix("initialize: ")) from None
