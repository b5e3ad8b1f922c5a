"""Algorithm 1 of Gu et al. end to end, with the paper's GNet-R baseline, as a list of phases.

    gnet_r    : the global network from random initialisation (the baseline)
    snet_init : the K sub-networks' initial variables (K independent keys)
    strategy  : how the K sub-networks run concurrently (``auto`` measures; :mod:`dcnn_dd.sharding`)
    snets     : K sub-networks, each on its own sub-images of the same samples, concurrently
    composed  : the SNets composed by the setup's plan (2.11)-(2.14) -> GNet-T's initial parameters
    compose   : the SNets and the composed network on the test set; Theorem 2.1 and 2.2 checked
    gnet_t    : the composed global network fine-tuned (data-parallel)

:func:`algorithm1_phases` builds the list from a :class:`~.setup.Setup` (which holds the data,
the models and the checked plan); each entry is one of the functions below, in the order of the
list.  :func:`run_algorithm1` runs it with :func:`~.phases.run_phases` (every phase checkpointed at each epoch end;
re-running the same command resumes; one process at a time, :func:`~.checkpoint.run_lock`), writes the
summary, ``metrics.jsonl`` and the plots, and returns an :class:`Algorithm1Result`: the summary with
the three trained networks' variables.
The global phases are data-parallel ``jax.jit`` over a ``data`` mesh (batch sharded,
parameters replicated).  Multi-process runs call ``jax.distributed.initialize`` first
(:func:`dcnn_dd.train.distributed.initialize`); everything here is then global.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial

import jax
import numpy as np

from dcnn_dd import sharding
from dcnn_dd.composition import compose
from dcnn_dd.theorems import logit_sum_gap, theorem_2_2
from dcnn_dd.train import plots
from dcnn_dd.train.checkpoint import RunDir, run_lock, write_json
from dcnn_dd.train.config import Config
from dcnn_dd.train.loop import TrainData
from dcnn_dd.train.phases import Compute, Deferred, Train, run_phases
from dcnn_dd.train.schedules import Piecewise
from dcnn_dd.train.setup import Setup, build_setup
from dcnn_dd.train.state import compose_opt_state
from dcnn_dd.train.steps import (
    Steps, choose_strategy, epoch_metrics, global_state, subnet_batch_sharding, subnet_state,
)
from dcnn_dd.train.trained import Trained, check_network, write_preprocessing

PHASES = ("gnet_r", "snet_init", "strategy", "snets", "composed", "compose", "gnet_t")


def phase_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """The PRNG keys of a run's random initialisations: ``(gnet_r, snets)``.  GNet-R's initial
    variables are ``setup.global_init(gnet_r)``; the K sub-networks' ``setup.subnet_init(snets)``."""
    k_r, k_s = jax.random.split(jax.random.PRNGKey(seed))
    return k_r, k_s


def algorithm1_phases(setup: Setup, steps: Steps | None = None) -> list:
    """GNet-R, strategy, SNets, compose, GNet-T (:data:`PHASES`) for ``setup``: each entry one of
    the phase functions below, bound to the setup and its steps (no phase runs here).
    ``steps``: the compiled steps GNet-R's pipeline and the SNets share (default: new ones);
    GNet-T compiles its own, so each pipeline of the time-to-accuracy comparison pays its
    compilation."""
    if setup.plan is None:
        raise ValueError("the setup was built without its plan (build_setup(..., plan=False)): Algorithm 1 composes")
    k_r, k_s = phase_keys(setup.config.seed)
    steps = Steps(setup) if steps is None else steps
    steps_t = Steps(setup)
    return [
        Deferred("gnet_r", partial(gnet_r_phase, setup, steps, k_r)),
        Compute("snet_init", partial(snet_init, setup, k_s)),
        Compute("strategy", partial(select_strategy, setup, steps), cache=True, describe=strategy_line),
        Deferred("snets", partial(snets_phase, setup, steps)),
        Compute("composed", partial(compose_snets, setup)),
        Compute("compose", partial(theorem_check, setup, steps, steps_t), cache=True, record=True,
                describe=compose_line),
        Deferred("gnet_t", partial(gnet_t_phase, setup, steps_t)),
    ]


# ==================================================================== the phases, in their order
def global_data(setup: Setup) -> TrainData:
    """The global phases' training batches (GNet-R and GNet-T see the same ones)."""
    c = setup.config
    return TrainData(setup.train_source, c.batch_size, c.seed, sharding.batch_sharding(setup.data_mesh),
                     c.steps_per_epoch)


def gnet_r_phase(setup: Setup, steps: Steps, key, results: dict) -> Train:
    """The baseline: GNet from random initialisation (``key``), data-parallel; skipped at 0 epochs."""
    c = setup.config
    return Train("gnet_r", c.gnet_r_epochs, Piecewise.from_json(c.gnet_r_lr), steps.global_train(),
                 epoch_metrics(steps.global_evaluator()), global_data(setup),
                 init=lambda r: global_state(setup, setup.global_init(key)), plateau_patience=c.plateau_patience,
                 optional=True, keep=host_variables)


def snet_init(setup: Setup, key, results: dict) -> dict:
    """The K sub-networks' initial variables, from K independent keys split from ``key``."""
    return setup.subnet_init(key)


def select_strategy(setup: Setup, steps: Steps, results: dict) -> dict:
    """How the K sub-networks run concurrently: the configured strategy, or (``auto``) the fastest
    measured on one batch with the SNets' own steps (timed: ``selection_s``, charged to GNet-T's
    pipeline)."""
    t0 = time.perf_counter()
    s, timings = choose_strategy(setup, results["snet_init"], steps)
    return {"strategy": s, "measured_s_per_step": timings, "selection_s": time.perf_counter() - t0,
            "backend": jax.default_backend(), "devices": len(jax.devices())}


def snets_phase(setup: Setup, steps: Steps, results: dict) -> Train:
    """Algorithm 1, step 1: the K sub-networks, each on its own sub-images (2.6) of the same
    samples, concurrently with the chosen strategy.  Keeps their variables (and Adam states, for
    ``compose_opt_state``) on the host."""
    c = setup.config
    strategy = results["strategy"]["strategy"]
    return Train("snets", c.snet_epochs, Piecewise.from_json(c.snet_lr), steps.subnet_train(strategy),
                 epoch_metrics(steps.subnet_evaluator(strategy)),
                 TrainData(setup.train_source, c.batch_size, c.seed, subnet_batch_sharding(setup, strategy),
                           c.steps_per_epoch),
                 init=lambda r: subnet_state(setup, r["snet_init"], strategy), num_nets=c.K,
                 plateau_patience=c.plateau_patience,
                 keep=lambda state: (sharding.to_host(state.variables),
                                     sharding.to_host(state.opt_state) if c.compose_opt_state else None))


def compose_snets(setup: Setup, results: dict) -> dict:
    """Algorithm 1, step 2: the trained SNets composed by the setup's plan ((2.11)-(2.14)) into
    GNet-T's initial variables.  Timed (``compose_s``: the plan's derivation and check when the
    setup was built, ``setup.plan_s``, and the composition); not cached (cheap, and big)."""
    t0 = time.perf_counter()
    global_vars = jax.device_get(jax.jit(lambda s: compose(setup.plan, s))(results["snets"][0]))
    return {"variables": global_vars, "compose_s": setup.plan_s + time.perf_counter() - t0}


def theorem_check(setup: Setup, steps: Steps, steps_t: Steps, results: dict) -> dict:
    """The SNets and the composed network on the test set: Theorem 2.1 (the composed logits are the
    sum of the sub-networks', (2.16)) and Theorem 2.2.  GNet-T's evaluation before fine-tuning
    (with its own compiled step, ``steps_t``) is timed (``eval_s``) and charged to its pipeline."""
    strategy = results["strategy"]["strategy"]
    trained = sharding.put_global(results["snets"][0], subnet_batch_sharding(setup, strategy))
    s_out = steps.subnet_evaluator(strategy, with_logits=True)(trained)
    gvars = sharding.put_global(results["composed"]["variables"], sharding.replicated(setup.data_mesh))
    t0 = time.perf_counter()
    g_out = steps_t.global_evaluator(with_logits=True)(gvars)
    t_eval = time.perf_counter() - t0
    sub_logits, g_logits = s_out["logits"], g_out["logits"]
    return {"phase": "compose", "compose_s": results["composed"]["compose_s"], "eval_s": t_eval,
            "snet_acc": [float(a) for a in s_out["acc"]],
            "snet_top5": [float(a) for a in s_out["top5"]],
            "gnet_t_init_acc": float(g_out["acc"]), "gnet_t_init_top5": float(g_out["top5"]),
            "theorem_2_1_max_abs_diff": logit_sum_gap(g_logits, sub_logits),
            "logit_scale": float(np.max(np.abs(g_logits))),
            "theorem_2_2": theorem_2_2(sub_logits, g_logits, g_out["labels"])}


def gnet_t_phase(setup: Setup, steps_t: Steps, results: dict) -> Train:
    """Algorithm 1, step 3: GNet-T, the composed network fine-tuned (data-parallel, its own
    compiled steps); a fresh Adam state, or (``compose_opt_state``) the SNets' composed.  Beyond its
    epochs (``extra_epochs``) it trains until it reaches GNet-R's final accuracy."""
    c = setup.config

    def init(r):
        global_vars, trained_opt = r["composed"]["variables"], r["snets"][1]
        opt = None
        if trained_opt is not None:
            opt = jax.device_get(compose_opt_state(setup.plan, trained_opt, global_vars["params"]))
        return global_state(setup, global_vars, opt)

    return Train("gnet_t", c.gnet_t_epochs, Piecewise.from_json(c.gnet_t_lr), steps_t.global_train(),
                 epoch_metrics(steps_t.global_evaluator()), global_data(setup), init=init,
                 plateau_patience=c.plateau_patience, extra_epochs=c.extra_epochs, until=reach_gnet_r,
                 keep=host_variables)


def host_variables(state) -> dict:
    """A global phase's final variables, on the host (what :class:`Algorithm1Result` returns)."""
    return sharding.to_host(state.variables)


def reach_gnet_r(results: dict):
    """GNet-T's stopping rule beyond its epochs: GNet-R's final accuracy (None without GNet-R)."""
    gnet_r = results["histories"].get("gnet_r")
    if not gnet_r:
        return None
    target = gnet_r[-1]["val_acc"]
    return lambda h: any(r["val_acc"] >= target for r in h)


@dataclasses.dataclass(frozen=True, eq=False)
class Algorithm1Result:
    """What :func:`run_algorithm1` returns.  ``summary``: the summary (also ``summary.json``);
    ``setup``: the :class:`~.setup.Setup` it ran on (data, models, grid, plan, the training mean);
    ``gnet_t``, ``gnet_r``, ``snets``: the final variables of the three trained networks as host
    (numpy) arrays - GNet-T (the composed network, fine-tuned), GNet-R (None when
    ``gnet_r_epochs`` is 0) and the K sub-networks stacked on axis 0 - the same as their last
    checkpoints; ``histories``: every phase's epoch records (``metrics.jsonl``)."""

    summary: dict
    setup: Setup
    gnet_t: dict
    gnet_r: dict | None
    snets: dict
    histories: dict

    def trained(self, network: str) -> Trained:
        """``network`` (``"gnet_t"``, ``"gnet_r"``, ``"snets"``) as a :class:`~.trained.Trained`
        (``predict(images)`` with the training preprocessing), as :func:`~.trained.load_trained`
        would read it from the run directory."""
        check_network(network)
        variables = getattr(self, network)
        if variables is None:
            raise ValueError(f"{network} was not trained ({network}_epochs=0)")
        return Trained.from_setup(self.setup, network, variables)


def run_algorithm1(config: Config, run_dir, *, restart: bool = False, progress: bool = True, data_path=None,
                   data_dir=None, num_devices: int | None = None, log=print, setup: Setup | None = None,
                   steps: Steps | None = None) -> Algorithm1Result:
    """Run (or resume) Algorithm 1 and the GNet-R baseline; returns an :class:`Algorithm1Result`
    (the summary, also written to ``<run_dir>/summary.json`` with ``metrics.jsonl`` and the PNG
    plots, and the trained networks' variables).  ``setup`` (and ``steps``): a
    :class:`~.setup.Setup` of this configuration to reuse (its data, and its compiled steps), e.g.
    by a caller that trains more phases on the same data afterwards (:mod:`dcnn_dd.cnn_dnn`).  The
    run holds ``<run_dir>/run.lock`` while it runs (:func:`~.checkpoint.run_lock`): a second
    process on the same directory is refused with the holder's pid, host and start time."""
    c = config
    if setup is not None and setup.config != c:
        raise ValueError("run_algorithm1(config, setup=...): the setup was built for another configuration")
    # meshes, data, models, grid and the checked plan first: a configuration that cannot run leaves no run directory
    setup = setup or build_setup(c, data_path=data_path, data_dir=data_dir, num_devices=num_devices)
    phases = algorithm1_phases(setup, steps)  # the phase list (nothing runs or compiles yet)
    with run_lock(run_dir):  # before RunDir: a second process must not even --restart the directory
        rd = RunDir(run_dir, {"config": c.to_json()}, restart=restart)
        write_preprocessing(rd.path, setup)  # what load_trained needs besides the checkpoints
        main = jax.process_index() == 0
        log = log if main else (lambda *a, **k: None)
        gdp = f"{setup.data_mesh.devices.size} device(s), {jax.process_count()} process(es)"
        log(f"dcnn-dd Algorithm 1: {c.dataset} ({len(setup.train_source)} train / {len(setup.test_source)} test, "
            f"{setup.image_shape}), K={c.K}, grid {setup.grid}, data-parallel on {gdp}, backend {jax.default_backend()}")

        results, histories = run_phases(phases, rd, restart=restart, progress=progress, log=log)

        summary = summarize(c, histories, {"strategy": results["strategy"]})
        if main:
            log(summary_table(summary))
            write_json(rd.path / "summary.json", summary)
            plots.accuracy_curves(histories, rd.path / "accuracy.png")
            plots.phase_times(summary, rd.path / "phase_times.png")
    return Algorithm1Result(summary, setup, results["gnet_t"], results.get("gnet_r"), results["snets"][0], histories)


def strategy_line(choice: dict) -> str:
    return f"sub-network strategy: {choice['strategy']}" + (
        f" (measured s/step: {choice['measured_s_per_step']})" if choice.get("measured_s_per_step") else "")


def compose_line(comp: dict) -> str:
    return (f"composed: GNet-T before fine-tuning {comp['gnet_t_init_acc']:.4f} (sub-networks "
            + ", ".join(f"{a:.4f}" for a in comp["snet_acc"])
            + f"); Theorem 2.1 max |global - sum of sub logits| = {comp['theorem_2_1_max_abs_diff']:.2e}")


def summarize(c: Config, histories: dict, extra: dict) -> dict:
    comp = histories["compose"][0]
    snets, gt, gr = histories["snets"], histories["gnet_t"], histories.get("gnet_r", [])
    t_sub = snets[-1]["elapsed_s"] if snets else 0.0
    protocol = gt[: c.gnet_t_epochs]
    out = {
        "snet_acc": comp["snet_acc"],
        "gnet_t_init_acc": comp["gnet_t_init_acc"],
        "theorem_2_1_max_abs_diff": comp["theorem_2_1_max_abs_diff"],
        "gnet_t_trained_acc": protocol[-1]["val_acc"] if protocol else comp["gnet_t_init_acc"],
        "gnet_r_trained_acc": gr[-1]["val_acc"] if gr else None,
        "snet_top5": comp.get("snet_top5"),
        "gnet_t_init_top5": comp.get("gnet_t_init_top5"),
        "gnet_t_trained_top5": protocol[-1].get("val_top5") if protocol else comp.get("gnet_t_init_top5"),
        "gnet_r_trained_top5": gr[-1].get("val_top5") if gr else None,
        "theorem_2_2": comp.get("theorem_2_2"),
        "time_subnets_s": t_sub,
        "time_compose_s": comp["compose_s"],
        "time_gnet_t_s": protocol[-1]["elapsed_s"] if protocol else 0.0,
        "time_gnet_r_s": gr[-1]["elapsed_s"] if gr else None,
        "time_to_gnet_r_acc_s": None,
        "epochs": {"snets": c.snet_epochs, "gnet_t": c.gnet_t_epochs, "gnet_r": c.gnet_r_epochs,
                   "gnet_t_run": len(gt)},
        "strategy": extra.get("strategy"),
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "processes": jax.process_count(),
    }
    out.update(time_to_target(comp, snets, gt, gr, (extra.get("strategy") or {}).get("selection_s", 0.0)))
    return out


def time_to_target(comp: dict, snets: list, gnet_t: list, gnet_r: list, selection_s: float = 0.0) -> dict:
    """The time-to-accuracy figures of one run, with the same rule on both sides: the target is
    GNet-R's final accuracy, and each pipeline is charged its *first* evaluation at or above it.

    * GNet-T pipeline: strategy selection + the SNets (compilation and per-epoch evaluation
      included) + plan and compose + the composed network's evaluation + GNet-T's epochs up to the
      first hit (compilation, which GNet-T does not share with GNet-R, and evaluation included).
    * GNet-R: its epochs up to its own first hit (compilation and evaluation included).

    ``payoff_ratio`` = GNet-T pipeline / GNet-R (below 1: the method saved time).  One seed: for
    the multi-seed protocol see :mod:`experiments.payoff`.  None where a side never reached it."""
    out = {"time_strategy_s": selection_s, "time_to_gnet_r_acc_s": None, "gnet_r_first_hit_s": None,
           "payoff_ratio": None}
    if not gnet_r:
        return out
    target = gnet_r[-1]["val_acc"]
    out["gnet_r_first_hit_s"] = next(r["elapsed_s"] for r in gnet_r if r["val_acc"] >= target)
    base = selection_s + (snets[-1]["elapsed_s"] if snets else 0.0) + comp["compose_s"] + comp.get("eval_s", 0.0)
    if comp["gnet_t_init_acc"] >= target:
        out["time_to_gnet_r_acc_s"] = base
    else:
        hit = next((r for r in gnet_t if r["val_acc"] >= target), None)
        out["time_to_gnet_r_acc_s"] = None if hit is None else base + hit["elapsed_s"]
    if out["time_to_gnet_r_acc_s"] is not None:
        out["payoff_ratio"] = out["time_to_gnet_r_acc_s"] / out["gnet_r_first_hit_s"]
    return out


def summary_table(s: dict) -> str:
    def f(v, fmt="{:.4f}"):
        if v is None:
            return "-"
        if isinstance(v, list):
            return " ".join(fmt.format(x) for x in v)
        return fmt.format(v)

    rows = [
        ("SNet-1..K test accuracy", f(s["snet_acc"])),
        ("GNet-T before fine-tuning", f(s["gnet_t_init_acc"])),
        ("Theorem 2.1 max |diff|", f(s["theorem_2_1_max_abs_diff"], "{:.2e}")),
        (f"GNet-T trained ({s['epochs']['snets']}+{s['epochs']['gnet_t']} epochs)", f(s["gnet_t_trained_acc"])),
        (f"GNet-R trained ({s['epochs']['gnet_r']} epochs)", f(s["gnet_r_trained_acc"])),
        ("time SNets [s]", f(s["time_subnets_s"], "{:.1f}")),
        ("time compose [s]", f(s["time_compose_s"], "{:.2f}")),
        ("time GNet-T [s]", f(s["time_gnet_t_s"], "{:.1f}")),
        ("time GNet-R [s]", f(s["time_gnet_r_s"], "{:.1f}")),
        ("strategy selection [s]", f(s.get("time_strategy_s"), "{:.1f}")),
        ("GNet-T pipeline to GNet-R's accuracy [s]", f(s["time_to_gnet_r_acc_s"], "{:.1f}")),
        ("GNet-R to its own final accuracy [s]", f(s.get("gnet_r_first_hit_s"), "{:.1f}")),
        ("ratio (GNet-T pipeline / GNet-R)", f(s.get("payoff_ratio"), "{:.2f}")),
    ]
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{w}}  {b}" for a, b in rows)
