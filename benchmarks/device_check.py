"""One prepared device check: every accelerator claim of the project, measured in one short run.

    PYTHONPATH=. python -m benchmarks.device_check --out OUT --data DIR   # a bare GPU machine: <= 8 min
    python -m benchmarks.device_check --dry-run --out /tmp/dc             # tiny sizes on the CPU (the tests)
    make device-check                                                     # the venv's python, else python3

Nothing to install and nothing to download: JAX, Flax and Optax, and the project directory on
``PYTHONPATH`` (no ``pip install``; TensorFlow-Datasets is never imported - the timings use
synthetic CIFAR-shaped data, :func:`dcnn_dd.data.load_synthetic`).  It prints the versions it runs
with (Python, JAX, jaxlib, Flax, Optax, the backend and device kind) and stores them in the JSON.

Six parts, measured in this order, each with its own time budget (``--budget-s``, default 480 s,
split in the proportions of :data:`BUDGET_SHARES`; ``--part-budget NAME=SECONDS`` sets one part's
budget; time a part leaves unused carries over to the next part whose budget was not set, and no
part runs past the total).  A part checks its budget before each measurement and skips the rest,
with a note, when the budget is spent or when its previous measurement took longer than what is
left.  ``OUT/device_check.json`` and ``OUT/device_check.md`` are rewritten after every
measurement, so a run killed at any point leaves everything measured so far (the part in progress
then has status ``running``).  A part ends ``ok`` (something measured), ``skipped`` (nothing
measured, the note says why) or ``failed`` (errors; the note has the error's last lines).

1. ``subnet_phase`` - one Adam step of the global ResNet32 (64/128/256) against one step of its
   K=4 sub-networks on their sub-images, CIFAR shape (32x32x3, synthetic), sub-images 16x16
   (``cifar``) and 20x20 (``cifar-overlap``), batch 128 and 512, strategies ``vmap`` and
   ``sequential``, each in float32 and in bfloat16 (``Config.dtype``: bf16 compute, float32
   parameters), and the demo network (``make demo``'s PlainCNN, 28x28x1, 2x2 sub-images of
   16x16) at batch 128 in both dtypes: step times, time ratio, FLOP ratio (2.10), efficiency,
   XLA's memory of each compiled step and the device's peak allocation so far
   (:func:`benchmarks.subnet_speedup.bench`).  Order: batch 128 (float32, bfloat16), the demo
   network, batch 512 - what the budget cuts is the last.
2. ``table_3_2`` - Table 3.2 in short form (:func:`experiments.cifar.sweep_entries`): the time of
   10 epochs of the global network and of the 4 sub-networks (overlap and non-overlap) from timed
   steps through the real input pipeline, synthetic CIFAR-10-sized data (50,000 images, 390 steps
   per epoch at batch 128), no augmentation, batch 128, 1024, 8192, each in float32 and bfloat16,
   the strategy part 1 found fastest.
3. ``mgrit`` - MGRIT forward + adjoint + gradients against ``jax.grad`` through the serial
   ``lax.scan`` (:func:`benchmarks.mgrit.bench`), N = 256, 1024, 4096 layers of width 8, batch 32
   (one layer is a 32x8 product: far below what a GPU needs to be busy), one-shot (2 + 2
   iterations) and to tolerance (1e-4), with iteration counts and the modeled speedup.
4. ``backend_paths`` - correctness on the real backend, float32 matmuls at full precision: the
   ``shard_map`` sub-network path (1-device ``subnet`` mesh) and ``vmap`` against ``sequential``
   (:func:`tests.multidevice_checks.subnet_strategies`), and the data-parallel global step on a
   1-device ``data`` mesh (:func:`tests.multidevice_checks.steps_on_data_mesh`) against the same
   steps on the CPU backend.  (Part 2 times the engine's data-parallel step itself.)
5. ``time_to_accuracy`` - if the four Fashion-MNIST IDX files are in ``--data``, the honest
   time-to-accuracy protocol for one seed: ``python -m experiments.payoff --preset device --seeds 1
   --networks exact`` (``--dry-run``: the ``tiny`` preset's ``base`` variant only)
   in a subprocess with the part's remaining budget as its timeout (and ``XLA_PYTHON_CLIENT_PREALLOCATE=false``:
   this process holds JAX's preallocated GPU memory); its ``results.json`` is copied in.

6. ``converged`` - if the data are there, one seed of the paper's comparison at convergence in
   its GPU form: ``python -m experiments.payoff --preset converged-gpu --seeds 1 --networks exact
   --variants paper,restart-late`` (all 60,000 training images, E = 20; ``--dry-run``: the
   ``converged-tiny`` preset's ``restart`` variant), likewise in a subprocess.

What it should reach (issue 18):

* sub-network phase: time ratio >= 5 for ResNet32, K=4, CIFAR shape on one GPU (the paper needed
  4 GPUs, one per sub-network, for 2.2-2.7x);
* MGRIT: wall-time speedup > 1 for N >= 1024, growing with N;
* backend paths: the sharded and data-parallel results equal their references to float32 rounding;
* time to accuracy: the GNet-T pipeline reaches GNet-R's final accuracy sooner (``ratio_mean`` < 1 in
  ``payoff``; on 2 CPU cores ``snets=32+warmup`` measured 0.54 and 0.76 on two machines, see
  docs/payoff.md).
* converged: no target; the question is issue 25's (does GNet-T end higher than GNet-R, as in
  Table 3.3?).  On 2 CPU cores, 20,000 images, it did not (docs/payoff.md, "At convergence").

Cost: at most ``--budget-s`` (480 s) after the imports.  ``--dry-run``: tiny sizes (a small
PlainCNN instead of ResNet32, N = 32, one batch size, K=2 in part 4) compiled with most XLA
optimisations off (``jax_disable_most_optimizations``; its timings mean nothing), about 30 s on 2
CPU cores.
``--parts`` runs a subset (e.g. re-run ``mgrit`` after a partial run).  Status: as of 2026-12-07
this has never run on a GPU (none has been lent to the project), so every GPU figure above is
still unmeasured.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("subnet_phase", "table_3_2", "mgrit", "backend_paths", "time_to_accuracy", "converged")
DEFAULT_BUDGET_S = 480.0
BUDGET_SHARES = {"subnet_phase": 140, "table_3_2": 90, "mgrit": 60, "backend_paths": 30, "time_to_accuracy": 50,
                 "converged": 110}
GRIDS = {"nonoverlap": "cifar", "overlap": "cifar-overlap"}  # dd.paper_grid names: 2x2 of 16x16 / 20x20
CHECK_TOL = 1e-4  # part 4: max abs difference of the parameters after 3 steps


@dataclasses.dataclass(frozen=True)
class Sizes:
    model: dict  # dcnn_dd.train.config.build_model spec (10 classes)
    subnet_batches: tuple
    strategies: tuple
    repeats: int
    sweep_batches: tuple
    sweep_steps: int
    sweep_warmup: int
    sweep_train_size: int | None
    mgrit_sizes: tuple
    mgrit_width: int
    mgrit_batch: int
    check_K: int  # noqa: N815  (part 4: sub-networks in the strategy check)
    payoff_preset: str
    payoff_variants: str | None = None  # None: every variant of the preset
    converged_preset: str = "converged-gpu"  # part 6: one seed of the converged protocol, the exact network
    converged_variants: str = "paper,restart-late"
    demo_model: dict | None = None  # part 1: the demo's network at Fashion-MNIST shape (28x28x1, 2x2 of 16x16)
    dtypes: tuple = ("float32", "bfloat16")  # parts 1 and 2: each measurement in each compute dtype


FULL = Sizes(model={"name": "cifar_resnet", "depth": 32, "widths": [64, 128, 256]}, subnet_batches=(128, 512),
             strategies=("vmap", "sequential"), repeats=5, sweep_batches=(128, 1024, 8192), sweep_steps=5,
             sweep_warmup=2, sweep_train_size=None, mgrit_sizes=(256, 1024, 4096), mgrit_width=8, mgrit_batch=32,
             check_K=4, payoff_preset="device",
             demo_model={"name": "plain", "features": [32, 32, 64, 64], "pool_after": [1, 3], "fc": [128]})
DRY = Sizes(model={"name": "plain", "features": [4], "pool_after": [0], "fc": []}, subnet_batches=(8,),
            strategies=("vmap", "sequential"), repeats=1, sweep_batches=(16,), sweep_steps=1, sweep_warmup=1,
            sweep_train_size=256, mgrit_sizes=(32,), mgrit_width=8, mgrit_batch=32, check_K=2,
            payoff_preset="tiny", payoff_variants="base", converged_preset="converged-tiny", converged_variants="restart",
            demo_model={"name": "plain", "features": [4, 4], "pool_after": [1], "fc": [8]})


# ------------------------------------------------------------------------------------------ bookkeeping
class Clock:
    """A part's budget: ``refuses()`` says why the next measurement must not start (or None)."""

    def __init__(self, budget_s: float):
        self.budget_s, self.t0, self.last = float(budget_s), time.perf_counter(), None

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def remaining(self) -> float:
        return self.budget_s - self.elapsed()

    def refuses(self) -> str | None:
        left = self.remaining()
        if left <= 0:
            return f"budget of {self.budget_s:.0f} s spent"
        if self.last is not None and self.last > left:
            return f"the previous measurement took {self.last:.0f} s, {left:.0f} s of {self.budget_s:.0f} s left"
        return None


class Report:
    """The JSON document and its markdown rendering, rewritten after every measurement."""

    def __init__(self, out: Path, doc: dict):
        self.out, self.doc = out, doc

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.doc["wall_s"] = round(time.perf_counter() - _T0[0], 1)
        for name, text in (("device_check.json", json.dumps(self.doc, indent=2, default=_jsonable) + "\n"),
                           ("device_check.md", markdown(self.doc))):
            tmp = self.out / (name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.out / name)  # a kill never leaves half a file


_T0 = [time.perf_counter()]


def _jsonable(x):
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
    except ImportError:
        pass
    return str(x)


def measure_each(part: dict, clock: Clock, report: Report, items) -> None:
    """Run ``items`` [(label, thunk)] in order while the budget allows; a failing thunk is noted
    (error and traceback tail) and the next one runs."""
    for i, (label, thunk) in enumerate(items):
        reason = clock.refuses()
        if reason:
            part["notes"].append(f"skipped ({reason}): {', '.join(lb for lb, _ in items[i:])}")
            return
        t = time.perf_counter()
        print(f"[{part['name']}] {label} ...", flush=True)
        try:
            thunk()
        except Exception as e:  # recorded, and the check goes on
            part["errors"].append(label)
            tail = traceback.format_exc().strip().splitlines()[-6:]
            part["notes"].append(f"{label} failed: {type(e).__name__}: {str(e)[:300]}\n" + "\n".join(tail))
        clock.last = time.perf_counter() - t
        report.save()


def peak_bytes():
    from dcnn_dd.train.timing import peak_bytes as peak

    return peak()


# ------------------------------------------------------------------------------------------ the parts
def part_subnet_phase(part, clock, report, sz: Sizes, ctx: dict) -> None:
    import dcnn_dd as dd
    from benchmarks import subnet_speedup
    from dcnn_dd.models.registry import build_model

    part["network"] = sz.model
    part["demo_network"] = sz.demo_model
    part["dtypes"] = list(sz.dtypes)
    global_steps = {}
    nets = {"resnet32": (sz.model, 3, {label: dd.paper_grid(g) for label, g in GRIDS.items()}),
            "demo": (sz.demo_model, 1, {"nonoverlap": dd.Grid.uniform((28, 28), 2, size=16)})}

    def glob(net, dtype, batch):
        spec, channels, grids = nets[net]
        model = build_model(spec, 10, dtype)
        t, mem = subnet_speedup.global_step_time(model, next(iter(grids.values())), batch, sz.repeats, channels)
        global_steps[net, dtype, batch] = (t, mem)
        part.setdefault("global_steps", []).append({"network": net, "dtype": dtype, "batch": batch, "step_s": t,
                                                     "memory_bytes": mem, "peak_bytes_so_far": peak_bytes()})

    def subnets(net, dtype, batch, label):
        spec, channels, grids = nets[net]
        model = build_model(spec, 10, dtype)
        r = subnet_speedup.bench(model, grids[label], 4, batch, sz.repeats, list(sz.strategies), channels=channels,
                                 global_step=global_steps.get((net, dtype, batch)))
        part["rows"].append({**r, "network_spec": r["network"], "network": net, "dtype": dtype, "grid": label,
                             "peak_bytes_so_far": peak_bytes()})
        if net == "resnet32" and dtype == "float32" and label == "nonoverlap" and "best_strategy" not in ctx:
            ctx["best_strategy"] = r["strategy"]

    items = []
    for batch in sz.subnet_batches:  # each batch: float32, then bfloat16 beside it
        for dtype in sz.dtypes:
            items.append((f"global step, batch {batch}, {dtype}", lambda b=batch, d=dtype: glob("resnet32", d, b)))
            items += [(f"K=4 sub-networks, {label}, batch {batch}, {dtype}",
                       lambda b=batch, lb=label, d=dtype: subnets("resnet32", d, b, lb)) for label in GRIDS]
        if batch == sz.subnet_batches[0] and sz.demo_model is not None:  # the demo network after the first batch
            for dtype in sz.dtypes:
                items.append((f"demo network: global step, batch {batch}, {dtype}",
                              lambda b=batch, d=dtype: glob("demo", d, b)))
                items.append((f"demo network: K=4 sub-networks, batch {batch}, {dtype}",
                              lambda b=batch, d=dtype: subnets("demo", d, b, "nonoverlap")))
    measure_each(part, clock, report, items)


def part_table_3_2(part, clock, report, sz: Sizes, ctx: dict) -> None:
    from dcnn_dd.train.config import Config
    from experiments import cifar

    strategy = ctx.get("best_strategy") or "vmap"
    part["strategy"] = strategy
    if "best_strategy" not in ctx:
        part["notes"].append("part 1 measured no strategy; the sub-networks run with vmap")
    base = Config(dataset="synthetic_cifar", train_size=sz.sweep_train_size, test_size=sz.sweep_train_size,
                  model=sz.model, K=4, strategy=strategy)
    grids = {True: {"paper": GRIDS["overlap"]}, False: {"paper": GRIDS["nonoverlap"]}}
    part["entries"] = []

    def sweep(bs, dtype):
        args = argparse.Namespace(out=report.out / f"table_3_2_{dtype}", restart=True, num_devices=None, data=None,
                                  data_dir=None)
        plan = cifar.Preset(cases=[], complexity=[], sweep={
            "base": base.replace(dtype=dtype), "batch_sizes": [bs], "augments": ["none"], "grids": grids,
            "steps": sz.sweep_steps, "warmup": sz.sweep_warmup})
        rows, entries = cifar.sweep_entries(plan, args)
        for r in rows:
            r["peak_bytes_so_far"] = peak_bytes()
            r["dtype"] = dtype
        part["rows"] += rows
        part["entries"] += [{**e, "dtype": dtype} for e in entries]

    measure_each(part, clock, report, [(f"batch {bs}, {dtype}", lambda b=bs, d=dtype: sweep(b, d))
                                       for bs in sz.sweep_batches for dtype in sz.dtypes])


def part_mgrit(part, clock, report, sz: Sizes, ctx: dict) -> None:
    from benchmarks import mgrit

    kw = dict(width=sz.mgrit_width, batch=sz.mgrit_batch, cfactor=4, min_coarse=4, budget=2, rtol=1e-4,
              repeats=sz.repeats)
    part["settings"] = kw
    serial = {}

    def one(n, mode):
        rows = mgrit.bench(n, modes=(mode,), serial_s=serial.get(n), **kw)
        serial[n] = rows[0]["serial_s"]
        part["rows"] += rows

    measure_each(part, clock, report, [(f"N={n} {mode}", lambda n=n, m=mode: one(n, m))
                                       for n in sz.mgrit_sizes for mode in ("one-shot", "tol")])


def _data_parallel_check() -> dict:
    """3 plain gradient steps of a BatchNorm CNN on a 1-device data mesh of the default backend,
    against the same steps jitted on the CPU backend."""
    import jax
    import optax

    from dcnn_dd.models import PlainCNN
    from dcnn_dd.train.state import create_state, train_step
    from dcnn_dd.tree import init_variables
    from tests import multidevice_checks as mdc

    model = PlainCNN(features=(8, 8), pool_after=(1,), fc=(16,), num_classes=10, batchnorm=True, padding="SAME")
    tx = optax.identity()
    variables = init_variables(model, jax.random.PRNGKey(0), (1, 12, 12, 1))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 32, 12, 12, 1))
    y = jax.random.randint(jax.random.PRNGKey(2), (3, 32), 0, 10)
    host, loss, _ = mdc.steps_on_data_mesh(model, tx, variables, x, y, 1)
    cpu = jax.devices("cpu")[0]
    step = jax.jit(lambda st, xb, yb: train_step(model, tx, st, xb, yb, 0.1))
    ref = jax.device_put(create_state(variables, tx), cpu)
    for i in range(len(x)):
        ref, m = step(ref, jax.device_put(x[i], cpu), jax.device_put(y[i], cpu))
    ref = jax.device_get(ref)
    return {"params_diff": mdc.max_diff(host.params, ref.params),
            "batch_stats_diff": mdc.max_diff(host.model_state, ref.model_state),
            "loss_diff": abs(loss - float(m["loss"]))}


def part_backend_paths(part, clock, report, sz: Sizes, ctx: dict) -> None:
    import jax

    def check(name, fn, keys):
        with jax.default_matmul_precision("float32"):
            r = fn()
        ok = all(r[k] <= CHECK_TOL for k in keys)
        part["rows"].append({"check": name, "backend": jax.default_backend(), **r, "tolerance": CHECK_TOL,
                             "passed": ok})
        if not ok:
            part["errors"].append(name)
            part["notes"].append(f"{name}: a difference above {CHECK_TOL:g}: " + ", ".join(f"{k} {r[k]:.2e}" for k in keys))

    def subnets():
        from tests import multidevice_checks as mdc

        check(f"sub-network strategies (K={sz.check_K}, 3 Adam steps)", lambda: mdc.subnet_strategies(sz.check_K),
              ("vmap_vs_sequential", "shard_map_vs_sequential"))

    def data():
        check("data-parallel global step (1-device data mesh vs CPU backend, 3 steps)", _data_parallel_check,
              ("params_diff", "batch_stats_diff", "loss_diff"))

    measure_each(part, clock, report, [("shard_map / vmap / sequential", subnets), ("data-parallel step", data)])


def _payoff(part, clock, ctx: dict, args: list, run_dir: Path) -> None:
    """``python -m experiments.payoff ARGS --seeds 1 --networks exact`` on the Fashion-MNIST files of
    ``--data``, in a subprocess with the part's remaining budget as its timeout; its ``results.json``
    is copied in (``part["result"]``, its cases as the rows)."""
    import importlib.util

    from dcnn_dd.data.sources import DatasetNotFoundError, find_fashion_mnist

    data = ctx.get("data")
    if not data:
        part["status"] = "skipped"
        part["notes"].append("skipped: no --data folder given (the four Fashion-MNIST IDX .gz files)")
        return
    try:
        find_fashion_mnist(data)
    except DatasetNotFoundError as e:
        part["status"] = "skipped"
        part["notes"].append(f"skipped: the Fashion-MNIST IDX files are not in {data}: {str(e).splitlines()[0]}")
        return
    if importlib.util.find_spec("experiments.payoff") is None:
        part["status"] = "skipped"
        part["notes"].append("skipped: module experiments.payoff missing (the time-to-accuracy protocols)")
        return
    reason = clock.refuses()
    if reason:
        part["status"] = "skipped"
        part["notes"].append(f"skipped ({reason})")
        return
    cmd = [sys.executable, "-m", "experiments.payoff", *args, "--seeds", "1", "--networks", "exact",
           "--data", str(data), "--out", str(run_dir), "--no-progress"]
    part["command"] = " ".join(map(shlex.quote, cmd))
    # this process keeps the GPU memory JAX preallocated (75%); the child takes what it needs of the rest
    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", **os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    timeout = max(1.0, clock.remaining())
    print(f"[{part['name']}] {part['command']} (timeout {timeout:.0f} s) ...", flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        part["status"] = "skipped"
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        part["notes"].append(f"skipped: budget spent (the protocol ran past its {timeout:.0f} s timeout; its finished "
                             f"pipelines are in {run_dir / 'cache'}: --parts {part['name']} resumes from them)\n"
                             + "\n".join(out.strip().splitlines()[-5:]))
        return
    if proc.returncode != 0:
        part["status"] = "failed"
        part["errors"].append("payoff")
        part["notes"].append(f"experiments.payoff failed (exit {proc.returncode}):\n"
                             + "\n".join(proc.stderr.strip().splitlines()[-15:]))
        return
    try:
        part["result"] = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError) as e:
        part["status"] = "failed"
        part["errors"].append("payoff results")
        part["notes"].append(f"experiments.payoff wrote no readable {run_dir / 'results.json'}: {e}")
        return
    part["rows"] = list(part["result"].get("cases", []))


def part_time_to_accuracy(part, clock, report, sz: Sizes, ctx: dict) -> None:
    args = ["--preset", sz.payoff_preset] + (["--variants", sz.payoff_variants] if sz.payoff_variants else [])
    _payoff(part, clock, ctx, args, report.out / "payoff")


def part_converged(part, clock, report, sz: Sizes, ctx: dict) -> None:
    """One seed of the converged protocol's GPU form (issue 25's preset on all 60,000 images, issue 26).
    A run cut by the budget leaves its finished pipelines in ``OUT/converged/cache``: the same
    command with ``--parts converged`` resumes from them."""
    _payoff(part, clock, ctx, ["--preset", sz.converged_preset, "--variants", sz.converged_variants],
            report.out / "converged")


RUNNERS = {"subnet_phase": part_subnet_phase, "table_3_2": part_table_3_2, "mgrit": part_mgrit,
           "backend_paths": part_backend_paths, "time_to_accuracy": part_time_to_accuracy,
           "converged": part_converged}


# ------------------------------------------------------------------------------------------ output
def versions() -> dict:
    import importlib.metadata as md

    import jax

    v = {"python": platform.python_version(), "jax": jax.__version__}
    for dist in ("jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "numpy", "jax-cuda12-plugin",
                 "jax-cuda13-plugin"):
        try:
            v[dist] = md.version(dist)
        except md.PackageNotFoundError:
            v[dist] = None
    if v["jaxlib"] is None:
        with contextlib.suppress(Exception):
            import jaxlib.version

            v["jaxlib"] = jaxlib.version.__version__
    devs = jax.devices()
    v.update(backend=jax.default_backend(), device_kind=str(devs[0].device_kind), device_count=len(devs),
             platform_version=None, default_matmul_precision=None)
    with contextlib.suppress(Exception):  # attributes that are not a documented API: where present
        v["platform_version"] = str(devs[0].client.platform_version)
    with contextlib.suppress(Exception):
        v["default_matmul_precision"] = str(jax.config.jax_default_matmul_precision)
    return v


def _ms(s):
    return None if s is None else f"{s * 1e3:.2f} ms"


def _mib(b):
    return None if b is None else f"{b / 2**20:.0f} MiB"


def _part_md(p: dict) -> list[str]:
    from experiments.tables import md_table

    name, rows = p["name"], p["rows"]
    lines = []
    if name == "subnet_phase" and rows:
        strategies = sorted({s for r in rows for s in r["strategies"]})
        lines.append(md_table(
            ["network", "dtype", "grid", "batch", "global step", *[f"K sub-nets {s}" for s in strategies],
             "time ratio (best)", "FLOP ratio", "efficiency", "memory global / sub-nets (XLA)", "device peak so far"],
            [[r.get("network", "resnet32"), r.get("dtype", "float32"), r["grid"], r["batch"], _ms(r["global_step_s"]),
              *[_ms(r["strategies"].get(s, {}).get("step_s")) for s in strategies],
              f"{r['time_ratio']:.2f} ({r['strategy']})", f"{r['flop_ratio']:.2f}", f"{r['efficiency']:.2f}",
              f"{_mib(r['global_memory_bytes'])} / {_mib(r['strategies'][r['strategy']]['memory_bytes'])}",
              _mib(r.get("peak_bytes_so_far"))] for r in rows]))
    elif name == "table_3_2" and rows:
        from experiments import cifar

        for dtype in dict.fromkeys(r.get("dtype", "float32") for r in rows):
            lines += [f"{dtype}:", "", cifar.sweep_table([r for r in rows if r.get("dtype", "float32") == dtype]), ""]
    elif name == "mgrit" and rows:
        lines.append(md_table(
            ["N", "levels", "mode", "serial", "MGRIT", "speedup", "modeled", "iterations fwd/adj", "conv",
             "grad rel. error"],
            [[r["n_layers"], r["levels"], r["mode"], _ms(r["serial_s"]), _ms(r["mgrit_s"]), f"{r['speedup']:.3f}",
              f"{r['modeled_speedup']:.2f}", "/".join(map(str, r["iterations"])), f"{r['conv_factor']:.3g}",
              f"{r['grad_rel_error']:.1e}"] for r in rows]))
    elif name == "backend_paths" and rows:
        body = []
        for r in rows:
            diffs = {k: v for k, v in r.items() if k.endswith(("_diff", "_vs_sequential"))}
            body.append([r["check"], r["backend"], ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()),
                         f"{r['tolerance']:g}", "yes" if r["passed"] else "**no**"])
        lines.append(md_table(["check", "backend", "max abs differences", "tolerance", "passed"], body))
    elif name == "time_to_accuracy" and rows:
        keys = [k for k in ("network", "variant", "ratio_mean", "gnet_t_first_hit_s", "gnet_r_first_hit_s")
                if any(k in r for r in rows)]
        lines.append(md_table(keys, [[r.get(k) for k in keys] for r in rows]))
    elif name == "converged" and rows:
        from experiments.payoff import converged

        lines += [converged.table(rows), "", "To GNet-T's final accuracy:", "", converged.reverse_table(rows)]
    return lines


def verdicts(doc: dict) -> list[str]:
    """The issue's targets against what this run measured (only meaningful at full size)."""
    if doc["dry_run"]:
        return ["dry run: tiny sizes, the targets do not apply."]
    out = []
    sub = [r for r in doc["parts"].get("subnet_phase", {}).get("rows", [])
           if r["grid"] == "nonoverlap" and r.get("network", "resnet32") == "resnet32" and r.get("dtype") != "bfloat16"]
    if sub:
        r = min(sub, key=lambda r: r["batch"])
        out.append(f"sub-network phase, ResNet32 K=4, batch {r['batch']}: time ratio {r['time_ratio']:.2f} "
                   f"({r['strategy']}; target >= 5 on one GPU): {'met' if r['time_ratio'] >= 5 else 'not met'}")
    for r in doc["parts"].get("subnet_phase", {}).get("rows", []):
        if r.get("network") == "demo" or r.get("dtype") == "bfloat16":
            out.append(f"sub-network phase, {r.get('network', 'resnet32')} {r['grid']} batch {r['batch']} "
                       f"{r.get('dtype', 'float32')}: time ratio {r['time_ratio']:.2f}, efficiency "
                       f"{r['efficiency']:.2f} ({r['strategy']}; no target)")
    for r in doc["parts"].get("converged", {}).get("rows", []):
        out.append(f"converged payoff, {r['network']} {r['variant']}, seed {r['seeds'][0]}: GNet-T "
                   f"{r['gnet_t_final']['mean']:.4f} after {r['epochs']['gnet_t']} epochs against GNet-R "
                   f"{r['gnet_r_final']['mean']:.4f} after {r['E']} (validation); time ratio "
                   + ("- (GNet-T does not reach it)" if r["ratio_mean"] is None else f"{r['ratio_mean']:.2f}")
                   + " (issue 25: no target; Table 3.3 has GNet-T ahead)")
    mg = [r for r in doc["parts"].get("mgrit", {}).get("rows", []) if r["n_layers"] >= 1024]
    for mode in ("one-shot", "tol"):
        rs = sorted((r for r in mg if r["mode"] == mode), key=lambda r: r["n_layers"])
        if rs:
            sp = ", ".join(f"N={r['n_layers']}: {r['speedup']:.2f}" for r in rs)
            ok = all(r["speedup"] > 1 for r in rs) and all(a["speedup"] <= b["speedup"] for a, b in zip(rs, rs[1:]))
            out.append(f"MGRIT {mode} wall-time speedup {sp} (target > 1 for N >= 1024, growing with N): "
                       f"{'met' if ok else 'not met'}")
    return out


def markdown(doc: dict) -> str:
    v = doc["versions"]
    lines = [f"# Device check ({'dry run, ' if doc['dry_run'] else ''}{v['backend']}, {v['device_kind']})", "",
             f"{doc['date']}, `{doc['command']}`, {doc.get('wall_s', 0):.0f} s of a {doc['budget_s']:.0f} s budget.", "",
             "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val is not None), ""]
    if doc["notes"]:
        lines += [f"- {n}" for n in doc["notes"]] + [""]
    verdict = verdicts(doc)
    if verdict:
        lines += ["## Targets", ""] + [f"- {t}" for t in verdict] + [""]
    for p in doc["parts"].values():
        lines += [f"## {p['name']}: {p['status']}", "",
                  f"budget {p['budget_s']:.0f} s, used {p.get('elapsed_s', 0):.0f} s", ""]
        lines += [f"- {n}".replace("\n", "\n  ") for n in p["notes"]]
        lines += [""] + _part_md(p) + [""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main
def _part_budget(text: str) -> tuple[str, float]:
    name, _, sec = text.partition("=")
    if name not in PARTS:
        raise argparse.ArgumentTypeError(f"{text!r}: the part is one of {', '.join(PARTS)}")
    try:
        return name, float(sec)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=SECONDS, e.g. mgrit=120") from None


def _parts(text: str) -> list[str]:
    names = [s for s in text.split(",") if s]
    bad = [s for s in names if s not in PARTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: choose parts among {', '.join(PARTS)}")
    return names


def budgets(total: float, overrides: dict) -> dict:
    """Each part's own budget: its share of ``total`` (:data:`BUDGET_SHARES`), or the override."""
    scale = total / sum(BUDGET_SHARES.values())
    return {name: float(overrides.get(name, BUDGET_SHARES[name] * scale)) for name in PARTS}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/device_check"),
                   help="folder for device_check.json and device_check.md (default %(default)s)")
    p.add_argument("--data", help="folder with the four Fashion-MNIST IDX .gz files (parts 5 and 6; skipped without it)")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes (seconds on a CPU): checks that it runs")
    p.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="total time budget (default %(default)s)")
    p.add_argument("--part-budget", type=_part_budget, action="append", default=[], metavar="NAME=SECONDS",
                   help=f"one part's budget (repeatable); parts: {', '.join(PARTS)}")
    p.add_argument("--parts", type=_parts, default=list(PARTS), metavar="P1,P2",
                   help="run only these parts (default: all)")
    p.add_argument("--cache-dir", help="a persistent XLA compilation cache (a re-run on the same machine compiles less)")
    args = p.parse_args(argv)
    _T0[0] = time.perf_counter()

    import jax

    if args.cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(Path(args.cache_dir).resolve()))
        with contextlib.suppress(Exception):
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    sz = DRY if args.dry_run else FULL
    # the dry run's timings mean nothing: XLA with most optimisations off compiles it in half the time
    before = _fast_compile(True) if args.dry_run else None
    try:
        return _run(args, argv, sz, fast_compile=before is not None)
    finally:
        if before is not None:
            _fast_compile(before)


def _fast_compile(on: bool) -> bool | None:
    """Set ``jax_disable_most_optimizations``; its previous value, or None where unsupported."""
    import jax

    try:
        before = bool(jax.config.read("jax_disable_most_optimizations"))
        jax.config.update("jax_disable_most_optimizations", on)
        return before
    except Exception:
        return None


def _run(args, argv, sz: Sizes, fast_compile: bool) -> dict:
    own = dict(args.part_budget)
    plan = budgets(args.budget_s, own)
    v = versions()
    print("device check: " + ", ".join(f"{k} {val}" for k, val in v.items() if val is not None), flush=True)
    doc = {
        "schema": 1, "dry_run": args.dry_run, "fast_compile": fast_compile,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python", "-m", "benchmarks.device_check", *map(shlex.quote, argv if argv is not None
                                                                              else sys.argv[1:])]),
        "versions": v, "budget_s": args.budget_s, "budgets": plan, "sizes": dataclasses.asdict(sz),
        "notes": [], "parts": {},
    }
    if v["backend"] == "cpu" and not args.dry_run:
        doc["notes"].append("backend cpu: these are CPU figures, not the GPU measurements the issue asks for")
    report = Report(args.out, doc)
    ctx = {"data": args.data}
    carry = 0.0
    for name in PARTS:
        part = {"name": name, "status": "running", "budget_s": 0.0, "notes": [], "errors": [], "rows": []}
        doc["parts"][name] = part
        if name not in args.parts:
            part.update(status="skipped", notes=["not selected (--parts)"])
            continue
        left = args.budget_s - (time.perf_counter() - _T0[0])
        budget = max(0.0, min(plan[name] + (0.0 if name in own else carry), left))
        part["budget_s"] = budget
        report.save()
        clock = Clock(budget)
        try:
            RUNNERS[name](part, clock, report, sz, ctx)
        except Exception as e:  # a part's own set-up failed
            part["errors"].append(name)
            part["notes"].append(f"failed: {type(e).__name__}: {str(e)[:300]}\n"
                                 + "\n".join(traceback.format_exc().strip().splitlines()[-6:]))
        part["elapsed_s"] = clock.elapsed()
        if part["status"] == "running":
            part["status"] = "ok" if part["rows"] and not part["errors"] else ("failed" if part["errors"] else "skipped")
        if part["status"] == "skipped" and not part["notes"]:
            part["notes"].append("nothing measured within the budget")
        if name not in own:
            carry = max(0.0, budget - part["elapsed_s"])
        report.save()
        print(f"[{name}] {part['status']} in {part['elapsed_s']:.0f} s of {budget:.0f} s", flush=True)
    report.save()
    for t in verdicts(doc):
        print(t)
    print(f"wrote {args.out / 'device_check.json'} and {args.out / 'device_check.md'}")
    return doc


if __name__ == "__main__":
    main()
