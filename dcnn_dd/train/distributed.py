"""Multi-process (multi-host) start-up.

Every process runs the same command; ``jax.distributed.initialize`` joins them into one JAX
runtime whose ``jax.devices()`` are all processes' devices.  The training code is unchanged: its
meshes span all devices and every host value becomes a global array
(:func:`dcnn_dd.sharding.put_global`).

* Loopback / by hand: ``--coordinator 127.0.0.1:12355 --num-processes 2 --process-id {0,1}``.
* Slurm: ``srun python -m experiments.quickstart --distributed`` - with no address JAX reads the
  Slurm environment (``SLURM_*``) and picks the coordinator itself.  See docs/engine.md.
"""

from __future__ import annotations

import argparse

import jax


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("multi-process")
    g.add_argument("--distributed", action="store_true",
                   help="join a multi-process run (cluster auto-detection, e.g. Slurm, unless --coordinator is given)")
    g.add_argument("--coordinator", help="HOST:PORT of process 0 (implies --distributed)")
    g.add_argument("--num-processes", type=int)
    g.add_argument("--process-id", type=int)


def initialize_from_args(args: argparse.Namespace) -> None:
    if not (args.distributed or args.coordinator):
        return
    if args.coordinator and (args.num_processes is None or args.process_id is None):
        raise SystemExit("--coordinator needs --num-processes and --process-id")
    kwargs = {}
    if args.coordinator:
        kwargs = dict(coordinator_address=args.coordinator, num_processes=args.num_processes,
                      process_id=args.process_id)
    if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
    jax.distributed.initialize(**kwargs)
