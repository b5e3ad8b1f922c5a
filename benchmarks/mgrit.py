"""Layer-serial against layer-parallel (MGRIT) forward + backward of a narrow ODE-ResNet.

    python -m benchmarks.mgrit            # N = 64, 256, 1024, 4096; this device and 4 simulated CPU devices
    python -m benchmarks.mgrit --quick    # N = 32 (seconds; the test suite)

For each N: the ODE block of width 8 (tanh, T = 5, batch 32, as narrow as the paper's peaks
network), coarsening factor m = 4 and as many levels as keep the coarsest level >= 4 steps (so
the serial coarse solve stays short), F-relaxation on the finest level, FCF below.  Timed (median
of ``--repeats`` jitted calls after one compiling call):

* ``serial_s`` - ``jax.grad`` of a loss of u_N through the ``lax.scan`` forward pass;
* ``mgrit_s`` - MGRIT forward, MGRIT adjoint and the batched parameter gradients, mode ``tol``
  (both solves to ``--rtol`` = 1e-4 of their initial residual, float32, whose rounding floor a tighter
  relative tolerance at N = 4096 would hit) or ``one-shot`` (a fixed
  budget of ``--budget`` iterations each, the paper's simultaneous variant);
* ``speedup`` = serial_s / mgrit_s on this backend;
* ``modeled_speedup`` = 2N / (sequential step applications on the critical path of MGRIT forward
  + adjoint + parameter gradients with P = N/m processors, :func:`~dcnn_dd.layer_parallel.critical_path`),
  counting a forward and an adjoint step alike and no communication; ``processors`` = N/m and
  ``efficiency`` = modeled_speedup / processors;
* ``iterations`` [forward, adjoint] and ``conv_factor``: the forward solve's mean per-iteration
  residual reduction after the first iteration, (r_k / r_1)^(1/(k-1)) (:func:`~dcnn_dd.layer_parallel.conv_factor`;
  the first iteration reflects the initial guess), ``conv_factor_all`` the same including the first
  iteration, ``conv_factor_adjoint`` the adjoint's; ``residual_reduction`` [forward, adjoint] =
  r_k / r_0, the residual left after the solve.  In ``one-shot`` rows these come from 2 iterations
  only; the ``tol`` rows are the measurement.  ``--x64 --rtol 1e-10`` measures them in float64,
  below float32 rounding.

The ``devices=4`` rows run the same in a subprocess with ``JAX_NUM_CPU_DEVICES=4`` and
``strategy="shard_map"`` over a ``layers`` mesh (levels whose chunk count 4 does not divide use
vmap).  Simulated devices share this machine's cores, so those rows show that the sharded program
runs and what it costs, not a parallel speedup.  Writes ``results/bench/mgrit.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _problem(n, width, batch):
    import jax

    import dcnn_dd.layer_parallel as lp

    model = lp.ODEResNet(n_layers=n, width=width, num_classes=5, T=5.0)
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, 2))  # float64 under --x64
    params = jax.tree.map(lambda a: a.astype(x.dtype), model.init(jax.random.PRNGKey(1), x))
    u0 = model.open(params["open"], x)
    w = jax.random.normal(jax.random.PRNGKey(2), u0.shape, u0.dtype)
    return model, params["steps"], u0, w


def bench(n, *, width, batch, cfactor, min_coarse, budget, rtol, repeats, relax="auto", strategy="vmap",
          modes=("tol", "one-shot"), serial_s=None):
    """The rows of ``n`` layers, one per mode of ``modes``; ``serial_s``: the serial time measured
    before (a row's ``serial_s``) instead of measuring it again."""
    import jax
    import jax.numpy as jnp

    import dcnn_dd.layer_parallel as lp
    from dcnn_dd.sharding import median_step_time

    model, steps, u0, w = _problem(n, width, batch)
    mesh = lp.layers_mesh() if strategy == "shard_map" else None
    levels = lp.max_levels(n, cfactor, min_coarse)

    def loss(uN):  # noqa: N803
        return jnp.sum(w * uN)

    serial = jax.jit(jax.grad(lambda st, a: loss(model.serial_final(st, a)), argnums=(0, 1)))
    t_serial = serial_s if serial_s is not None else median_step_time(serial, lambda: (steps, u0), repeats)
    rows = []
    for mode in modes:
        kw = dict(cfactor=cfactor, levels=levels, min_coarse=min_coarse, relax=relax, strategy=strategy, mesh=mesh)
        s = (lp.Solver(rtol=rtol, max_iter=60, **kw) if mode == "tol" else lp.Solver(max_iter=budget, **kw))

        def fwd_bwd(st, a, s=s):
            U, fi = lp.forward(model, st, a, s)  # noqa: N806
            ct = jnp.zeros_like(U).at[-1].set(jax.grad(loss)(U[-1]))
            g, lam, bi = lp.gradients(model, st, U, ct, s)
            return (g, lam[0]), fi, bi

        fn = jax.jit(fwd_bwd)
        t = median_step_time(fn, lambda: (steps, u0), repeats)
        (g_mg, _), fi, bi = fn(steps, u0)
        lp.check_solve(fi, "forward")
        lp.check_solve(bi, "adjoint")
        g_ser = serial(steps, u0)[0]
        err = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
                  for a, b in zip(jax.tree.leaves(g_mg), jax.tree.leaves(g_ser)))
        it_f, it_b = int(fi.iterations), int(bi.iterations)
        path = lp.critical_path(n, s, it_f) + lp.critical_path(n, s, it_b) + cfactor
        rows.append({
            "n_layers": n, "levels": levels, "cfactor": cfactor, "mode": mode, "width": width, "batch": batch,
            "serial_s": t_serial, "mgrit_s": t, "speedup": t_serial / t,
            "modeled_speedup": 2 * n / path, "critical_path_steps": path,
            "iterations": [it_f, it_b], "conv_factor": lp.conv_factor(fi),
            "conv_factor_all": lp.conv_factor(fi, skip_first=False), "conv_factor_adjoint": lp.conv_factor(bi),
            "residual_reduction": [lp.residual_reduction(fi), lp.residual_reduction(bi)],
            "processors": n // cfactor, "efficiency": 2 * n / path / (n // cfactor),
            "grad_rel_error": err, "relax": relax, "strategy": strategy, "devices": jax.device_count(),
            "backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind), "dtype": str(u0.dtype),
        })
        r = rows[-1]
        print(f"N={n:5d} L={levels} m={cfactor} {mode:8s} dev={r['devices']} serial {t_serial * 1e3:9.2f} ms  "
              f"mgrit {t * 1e3:9.2f} ms  speedup {r['speedup']:6.3f}  modeled {r['modeled_speedup']:6.2f}  "
              f"iters {it_f}/{it_b}  conv {r['conv_factor']:.3g}/{r['conv_factor_adjoint']:.3g}  grad err {err:.1e}",
              flush=True)
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="N = 32 only (seconds)")
    p.add_argument("--sizes", type=int, nargs="+", help="numbers of layers (default 64 256 1024 4096)")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--cfactor", type=int, default=4)
    p.add_argument("--min-coarse", type=int, default=4)
    p.add_argument("--budget", type=int, default=2, help="one-shot iterations per solve (default %(default)s)")
    p.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance of the 'tol' rows (default %(default)s)")
    p.add_argument("--relax", choices=("auto", "F", "FCF"), default="auto",
                   help="relaxation on every level ('auto': F on the finest, FCF below; default %(default)s)")
    p.add_argument("--x64", action="store_true", help="float64 (to measure convergence below float32 rounding)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-devices", action="store_true", help="skip the 4-simulated-device subprocess")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default="results/bench")
    args = p.parse_args(argv)
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    sizes = args.sizes or ([32] if args.quick else [64, 256, 1024, 4096])
    kw = dict(width=args.width, batch=args.batch, cfactor=args.cfactor, min_coarse=args.min_coarse,
              budget=args.budget, rtol=args.rtol, repeats=args.repeats, relax=args.relax)
    if args.child:
        rows = [r for n in sizes for r in bench(n, strategy="shard_map", **kw)]
        print("ROWS " + json.dumps(rows))
        return {"rows": rows}
    rows = [r for n in sizes for r in bench(n, **kw)]
    if not args.no_devices:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_FLAGS", "JAX_NUM_CPU_DEVICES"))}
        env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="4", PYTHONPATH=str(ROOT))
        child = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--no-devices"]
        proc = subprocess.run([sys.executable, "-m", "benchmarks.mgrit", "--child", *child], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        sys.stdout.write("".join(line + "\n" for line in proc.stdout.splitlines() if not line.startswith("ROWS ")))
        if proc.returncode != 0:
            raise RuntimeError(f"4-device run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        rows += json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("ROWS "))[5:])
    from benchmarks.common import write_json

    result = {"rows": rows, "settings": {"sizes": sizes, **kw}}
    write_json(args.out, "mgrit.json", result)
    return result


if __name__ == "__main__":
    main()
