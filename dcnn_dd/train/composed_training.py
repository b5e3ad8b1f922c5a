"""Algorithm 1 of Gu et al. end to end, with the paper's GNet-R baseline, as a list of phases.

    gnet_r    : the global network from random initialisation (the baseline)
    snet_init : the K sub-networks' initial variables (K independent keys)
    strategy  : how the K sub-networks run concurrently (``auto`` measures; :mod:`dcnn_dd.sharding`)
    snets     : K sub-networks, each on its own sub-images of the same samples, concurrently
    composed  : the SNets composed by the setup's plan (2.11)-(2.14) -> GNet-T's initial parameters
    compose   : the SNets and the composed network on the validation set; Theorem 2.1 (the sum (2.16), or
                for regression the mean (2.22), of the sub-networks) and 2.2 checked
    gnet_t    : the composed global network fine-tuned (data-parallel)

Validation (the per-epoch evaluation: plateau rule, GNet-T's stopping rule, time-to-target, and
the ``compose`` check) is ``setup.val_source``: the test set (the paper's protocol) unless a
validation split is held out (``Config.val_fraction``) or given (``val=``).  Then each trained
network is also evaluated once on the test set after its phase, outside the timed epochs
(``gnet_r_test``, ``snets_test``, ``gnet_t_test``: cached, recorded, and in the summary as
``gnet_r_test_acc``, ``snet_test_acc``, ``gnet_t_test_acc``, ...).

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
import types
from functools import partial

import jax
import numpy as np

from dcnn_dd import sharding
from dcnn_dd.composition import compose
from dcnn_dd.theorems import output_gap, theorem_2_2
from dcnn_dd.train import plots
from dcnn_dd.train.checkpoint import RunDir, check_data, run_lock, write_json
from dcnn_dd.train.config import Config
from dcnn_dd.train.loop import TrainData
from dcnn_dd.train.phases import Compute, Deferred, Train, run_phases
from dcnn_dd.train.schedules import schedule_from_json
from dcnn_dd.train.setup import Setup, build_setup
from dcnn_dd.train.state import compose_opt_state, phase_rng
from dcnn_dd.train.steps import (
    Steps, choose_strategy, epoch_metrics, global_state, subnet_batch_sharding, subnet_sharding, subnet_state, with_rng,
)
from dcnn_dd.train.tasks import get_task, monitor_of, reached
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

    def tested(phase: str, steps_: Steps) -> list:  # its test-set evaluation, where validation is not the test set
        if not setup.held_out or (phase == "gnet_r" and setup.config.gnet_r_epochs <= 0):
            return []
        return [Compute(f"{phase}_test", partial(final_test, setup, steps_, phase), cache=True, record=True,
                        describe=test_line)]

    return [
        Deferred("gnet_r", partial(gnet_r_phase, setup, steps, k_r)),
        *tested("gnet_r", steps),
        Compute("snet_init", partial(snet_init, setup, k_s)),
        Compute("strategy", partial(select_strategy, setup, steps), cache=True, describe=strategy_line),
        Deferred("snets", partial(snets_phase, setup, steps)),
        *tested("snets", steps),
        Compute("composed", partial(compose_snets, setup)),
        Compute("compose", partial(theorem_check, setup, steps, steps_t), cache=True, record=True,
                describe=partial(compose_line, key=monitor_of(setup.config)[0])),
        Deferred("gnet_t", partial(gnet_t_phase, setup, steps_t)),
        *tested("gnet_t", steps_t),
    ]


# ==================================================================== the phases, in their order
def monitored(setup: Setup) -> dict:
    """The ``monitor``/``monitor_mode`` arguments of a phase: the configuration's monitored
    validation metric and its direction (:func:`~dcnn_dd.train.tasks.monitor_of`)."""
    key, mode = monitor_of(setup.config)
    return {"monitor": key, "monitor_mode": mode}


def global_data(setup: Setup) -> TrainData:
    """The global phases' training batches (GNet-R and GNet-T see the same ones)."""
    c = setup.config
    return TrainData(setup.train_source, c.batch_size, c.seed, sharding.batch_sharding(setup.data_mesh),
                     c.steps_per_epoch)


def gnet_r_phase(setup: Setup, steps: Steps, key, results: dict) -> Train:
    """The baseline: GNet from random initialisation (``key``), data-parallel; skipped at 0 epochs."""
    c = setup.config
    return Train("gnet_r", c.gnet_r_epochs, schedule_from_json(c.gnet_r_lr),
                 with_rng(steps.global_train("gnet_r"), phase_rng(c.seed, "gnet_r")),
                 epoch_metrics(steps.global_evaluator()), global_data(setup),
                 init=lambda r: global_state(setup, setup.global_init(key), phase="gnet_r"),
                 plateau_patience=c.plateau_patience, optional=True, keep=host_variables, **monitored(setup))


def host_variables(state) -> dict:
    """A global phase's final variables, on the host (what :class:`Algorithm1Result` returns and the
    test-set evaluation after the phase reads)."""
    return sharding.to_host(state.variables)


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
    samples, concurrently with the chosen strategy.  Keeps their variables (and optimiser states,
    for ``compose_opt_state``) on the host."""
    c = setup.config
    strategy = results["strategy"]["strategy"]
    return Train("snets", c.snet_epochs, schedule_from_json(c.snet_lr),
                 with_rng(steps.subnet_train(strategy), phase_rng(c.seed, "snets")),
                 epoch_metrics(steps.subnet_evaluator(strategy)),
                 TrainData(setup.train_source, c.batch_size, c.seed, subnet_batch_sharding(setup, strategy),
                           c.steps_per_epoch),
                 init=lambda r: subnet_state(setup, r["snet_init"], strategy), num_nets=c.K,
                 plateau_patience=c.plateau_patience, **monitored(setup),
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
    """The SNets and the composed network on the validation set (the test set unless one
    is held out), every metric of the task
    (``snet_<metric>``, ``gnet_t_init_<metric>``): Theorem 2.1 (the composed outputs are the sum of
    the sub-networks', (2.16), or for the task's head ``mean`` their mean, (2.22)) and, for class
    labels with the sum head, Theorem 2.2 (else None).  GNet-T's evaluation before fine-tuning
    (with its own compiled step, ``steps_t``) is timed (``eval_s``) and charged to its pipeline."""
    strategy = results["strategy"]["strategy"]
    trained = sharding.put_global(results["snets"][0], subnet_sharding(setup, strategy))
    s_out = steps.subnet_evaluator(strategy, with_logits=True)(trained)
    gvars = sharding.put_global(results["composed"]["variables"], sharding.replicated(setup.data_mesh))
    t0 = time.perf_counter()
    g_out = steps_t.global_evaluator(with_logits=True)(gvars)
    t_eval = time.perf_counter() - t0
    sub_logits, g_logits = s_out["logits"], g_out["logits"]
    task, names = setup.task, [k for k in s_out if k not in ("logits", "labels")]
    return {"phase": "compose", "compose_s": results["composed"]["compose_s"], "eval_s": t_eval,
            **{f"snet_{m}": [float(a) for a in s_out[m]] for m in names},
            **{f"gnet_t_init_{m}": float(g_out[m]) for m in names},
            "head": task.head,
            "theorem_2_1_max_abs_diff": output_gap(g_logits, sub_logits, task.head),
            "logit_scale": float(np.max(np.abs(g_logits))),
            "theorem_2_2": (theorem_2_2(sub_logits, g_logits, g_out["labels"])
                            if task.targets == "labels" and task.head == "sum" else None)}


def gnet_t_phase(setup: Setup, steps_t: Steps, results: dict) -> Train:
    """Algorithm 1, step 3: GNet-T, the composed network fine-tuned (data-parallel, its own
    compiled steps); a fresh optimiser state, or (``compose_opt_state``) the SNets' composed.  Beyond
    its epochs (``extra_epochs``) it trains until it reaches GNet-R's final accuracy (the monitored
    metric, in its direction)."""
    c = setup.config
    key, mode = monitor_of(c)

    def init(r):
        global_vars, trained_opt = r["composed"]["variables"], r["snets"][1]
        opt = None
        if trained_opt is not None:
            opt = jax.device_get(compose_opt_state(setup.plan, trained_opt, global_vars["params"]))
        return global_state(setup, global_vars, opt, phase="gnet_t")

    return Train("gnet_t", c.gnet_t_epochs, schedule_from_json(c.gnet_t_lr),
                 with_rng(steps_t.global_train("gnet_t"), phase_rng(c.seed, "gnet_t")),
                 epoch_metrics(steps_t.global_evaluator()), global_data(setup), init=init,
                 plateau_patience=c.plateau_patience, extra_epochs=c.extra_epochs,
                 until=partial(reach_gnet_r, monitor=key, mode=mode), monitor=key, monitor_mode=mode,
                 keep=host_variables)


def final_test(setup: Setup, steps: Steps, phase: str, results: dict) -> dict:
    """A trained network (``phase``: ``gnet_r``, ``snets`` or ``gnet_t``) on the test set, once,
    after its phase and outside its timed epochs: the metrics of its per-epoch evaluation, named
    ``test_*`` instead of ``val_*`` (per sub-network for ``snets``).  Only where validation is not
    the test set (``setup.held_out``); otherwise its last validation is this."""
    if phase == "snets":
        strategy = results["strategy"]["strategy"]
        variables = sharding.put_global(results["snets"][0], subnet_sharding(setup, strategy))
        evaluator = steps.subnet_evaluator(strategy, source=setup.test_source)
    else:
        variables = sharding.put_global(results[phase], sharding.replicated(setup.data_mesh))
        evaluator = steps.global_evaluator(source=setup.test_source)
    metrics = epoch_metrics(evaluator)(types.SimpleNamespace(variables=variables))
    record = {"phase": f"{phase}_test"}
    for k, v in metrics.items():
        v = [float(x) for x in v]
        record["test_" + k.removeprefix("val_")] = v if phase == "snets" else v[0]
    return record


def reach_gnet_r(results: dict, monitor: str = "val_acc", mode: str = "max"):
    """GNet-T's stopping rule beyond its epochs: GNet-R's final value of the monitored metric
    (``monitor``; reached at or above it for ``mode='max'``, at or below for ``'min'``); None
    without GNet-R."""
    gnet_r = results["histories"].get("gnet_r")
    if not gnet_r:
        return None
    target = gnet_r[-1][monitor]
    return lambda h: any(reached(r[monitor], target, mode) for r in h)


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


def run_algorithm1(config: Config, run_dir, *, train=None, test=None, val=None, restart: bool = False,
                   progress: bool = True, data_path=None, data_dir=None, num_devices: int | None = None, log=print,
                   setup: Setup | None = None, steps: Steps | None = None) -> Algorithm1Result:
    """Run (or resume) Algorithm 1 and the GNet-R baseline; returns an :class:`Algorithm1Result`
    (the summary, also written to ``<run_dir>/summary.json`` with ``metrics.jsonl`` and the PNG
    plots, and the trained networks' variables).  ``train``, ``test`` (together) and ``val``: data
    sources of your own (:func:`dcnn_dd.data.from_arrays`, :func:`~dcnn_dd.data.image_folder`,
    :func:`~dcnn_dd.data.tfds_source`; ``config.dataset`` is then a label), see
    :func:`~.setup.load_data`.  The run directory records the data's fingerprints (``data.json``);
    resuming on other data is refused.  ``setup`` (and ``steps``): a
    :class:`~.setup.Setup` of this configuration to reuse (its data, and its compiled steps), e.g.
    by a caller that trains more phases on the same data afterwards (:mod:`dcnn_dd.cnn_dnn`).  The
    run holds ``<run_dir>/run.lock`` while it runs (:func:`~.checkpoint.run_lock`): a second
    process on the same directory is refused with the holder's pid, host and start time."""
    c = config
    if setup is not None and setup.config != c:
        raise ValueError("run_algorithm1(config, setup=...): the setup was built for another configuration")
    if setup is not None and any(d is not None for d in (train, test, val)):
        raise ValueError("run_algorithm1: pass the data either in setup= or as train=/test=/val=, not both")
    # meshes, data, models, grid and the checked plan first: a configuration that cannot run leaves no run directory
    setup = setup or build_setup(c, train=train, test=test, val=val, data_path=data_path, data_dir=data_dir,
                                 num_devices=num_devices)
    phases = algorithm1_phases(setup, steps)  # the phase list (nothing runs or compiles yet)
    data = setup.data_record()  # the data's fingerprints
    with run_lock(run_dir):  # before RunDir: a second process must not even --restart the directory
        rd = RunDir(run_dir, {"config": c.to_json()}, restart=restart, defaults={"config": Config.defaults_json()})
        check_data(rd.path, data)  # a resume on other data is refused
        write_preprocessing(rd.path, setup)  # what load_trained needs besides the checkpoints
        main = jax.process_index() == 0
        log = log if main else (lambda *a, **k: None)
        gdp = f"{setup.data_mesh.devices.size} device(s), {jax.process_count()} process(es)"
        n_val = f" / {len(setup.val_source)} validation" if setup.held_out else ""
        log(f"dcnn-dd Algorithm 1: {c.dataset} ({len(setup.train_source)} train{n_val} / {len(setup.test_source)} "
            f"test, {setup.image_shape}), K={c.K}, grid {setup.grid}, data-parallel on {gdp}, backend "
            f"{jax.default_backend()}")

        results, histories = run_phases(phases, rd, restart=restart, progress=progress, log=log)

        summary = summarize(c, histories, {"strategy": results["strategy"], "held_out": setup.held_out})
        if main:
            log(summary_table(summary))
            write_json(rd.path / "summary.json", summary)
            plots.accuracy_curves(histories, rd.path / "accuracy.png", key=summary["monitor"])
            plots.phase_times(summary, rd.path / "phase_times.png")
    return Algorithm1Result(summary, setup, results["gnet_t"], results.get("gnet_r"), results["snets"][0], histories)


def strategy_line(choice: dict) -> str:
    return f"sub-network strategy: {choice['strategy']}" + (
        f" (measured s/step: {choice['measured_s_per_step']})" if choice.get("measured_s_per_step") else "")


def compose_line(comp: dict, key: str = "val_acc") -> str:
    m = key[len("val_"):]
    init, subs = comp.get(f"gnet_t_init_{m}"), comp.get(f"snet_{m}") or []
    what = "GNet-T before fine-tuning" + ("" if m == "acc" else f" {key}")
    ref = "mean of sub outputs" if comp.get("head") == "mean" else "sum of sub logits"
    return (f"composed: {what} " + ("-" if init is None else f"{init:.4f}") + " (sub-networks "
            + ", ".join(f"{a:.4f}" for a in subs)
            + f"); Theorem 2.1 max |global - {ref}| = {comp['theorem_2_1_max_abs_diff']:.2e}")


def test_line(record: dict) -> str:
    return f"{record['phase'].removesuffix('_test')} on the test set: " + ", ".join(
        f"{k.removeprefix('test_')} " + (" ".join(f"{x:.4f}" for x in v) if isinstance(v, list) else f"{v:.4f}")
        for k, v in record.items() if k.startswith("test_"))


def test_results(histories: dict, held_out: bool, names=("acc", "top5", "loss")) -> dict:
    """The trained networks on the test set, as summary entries ``snet_test_<metric>`` (per
    sub-network), ``gnet_r_test_<metric>``, ``gnet_t_test_<metric>`` for each of the task's
    metrics ``names`` (``acc``, ``top5``, ``loss`` for classification): with a held-out validation
    split, their ``*_test`` records; without, their last validation (which is the test set: for
    GNet-T its last epoch, extra epochs included, where ``gnet_t_trained_*`` is the protocol's
    epoch).  A network without epochs: its values in the ``compose`` record (the sub-networks as
    initialised, GNet-T as composed); GNet-R without epochs: None."""
    comp = histories["compose"][0]
    out = {}
    for net, phase in (("snet", "snets"), ("gnet_r", "gnet_r"), ("gnet_t", "gnet_t")):
        if held_out:
            rec, prefix = (histories.get(f"{phase}_test") or [{}])[0], "test_"
        else:
            rec, prefix = (histories.get(phase) or [{}])[-1], "val_"
        metrics = {m: rec[prefix + m] for m in names if prefix + m in rec}
        if not metrics and phase != "gnet_r":  # no epochs: the network as composed / as initialised in compose
            key = "snet" if phase == "snets" else "gnet_t_init"
            metrics = {m: comp[f"{key}_{m}"] for m in names if f"{key}_{m}" in comp}
        out.update({f"{net}_test_{m}": metrics.get(m) for m in names})
    return out


def summarize(c: Config, histories: dict, extra: dict) -> dict:
    """The run's summary.  The classification keys (``*_acc``, ``*_top5``: None for other tasks),
    the times, and for every task ``monitor``/``monitor_mode`` and the final validation metrics
    (``val_<metric>`` dicts): ``snets_trained`` (lists, one value per sub-network), ``gnet_t_init``,
    ``gnet_t_trained`` (after ``gnet_t_epochs``, the paper's protocol), ``gnet_r_trained``."""
    key, mode = monitor_of(c)
    comp = histories["compose"][0]
    snets, gt, gr = histories["snets"], histories["gnet_t"], histories.get("gnet_r", [])
    t_sub = snets[-1]["elapsed_s"] if snets else 0.0
    protocol = gt[: c.gnet_t_epochs]
    init = {f"val_{k[len('gnet_t_init_'):]}": v for k, v in comp.items() if k.startswith("gnet_t_init_")}
    out = {
        "snet_acc": comp.get("snet_acc"),
        "gnet_t_init_acc": comp.get("gnet_t_init_acc"),
        "theorem_2_1_max_abs_diff": comp["theorem_2_1_max_abs_diff"],
        "gnet_t_trained_acc": protocol[-1].get("val_acc") if protocol else comp.get("gnet_t_init_acc"),
        "gnet_r_trained_acc": gr[-1].get("val_acc") if gr else None,
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
    out.update(time_to_target(comp, snets, gt, gr, (extra.get("strategy") or {}).get("selection_s", 0.0), key, mode))
    out.update({
        "task": c.task, "monitor": key, "monitor_mode": mode,
        "snets_trained": {f"val_{k[len('snet_'):]}": v for k, v in comp.items() if k.startswith("snet_")},
        "gnet_t_init": init,
        "gnet_t_trained": _val_metrics(protocol[-1]) if protocol else init,
        "gnet_r_trained": _val_metrics(gr[-1]) if gr else None,
    })
    held_out = bool(extra.get("held_out"))
    out["validation"] = "held_out" if held_out else "test"
    out.update(test_results(histories, held_out, get_task(c.task).names))
    return out


def _val_metrics(record: dict) -> dict:
    return {k: v for k, v in record.items() if k.startswith("val_")}


def time_to_target(comp: dict, snets: list, gnet_t: list, gnet_r: list, selection_s: float = 0.0,
                   monitor: str = "val_acc", mode: str = "max") -> dict:
    """The time-to-accuracy figures of one run, with the same rule on both sides: the target is
    GNet-R's final accuracy, and each pipeline is charged its *first* evaluation at or above it
    (generally: GNet-R's final value of the ``monitor``-ed metric, reached at or above it for
    ``mode='max'``, at or below it for ``'min'``; the keys keep their ``acc`` names).

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
    target = gnet_r[-1][monitor]
    out["gnet_r_first_hit_s"] = next(r["elapsed_s"] for r in gnet_r if reached(r[monitor], target, mode))
    base = selection_s + (snets[-1]["elapsed_s"] if snets else 0.0) + comp["compose_s"] + comp.get("eval_s", 0.0)
    init = comp.get(f"gnet_t_init_{monitor[len('val_'):]}")
    if init is not None and reached(init, target, mode):
        out["time_to_gnet_r_acc_s"] = base
    else:
        hit = next((r for r in gnet_t if reached(r[monitor], target, mode)), None)
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

    held_out = s.get("validation") == "held_out"
    key = s.get("monitor", "val_acc")
    if key == "val_acc":  # the classification rows, as before
        what, vals = "accuracy", (s["snet_acc"], s["gnet_t_init_acc"], s["gnet_t_trained_acc"], s["gnet_r_trained_acc"])
    else:
        what = key
        vals = tuple((s.get(k) or {}).get(key)
                     for k in ("snets_trained", "gnet_t_init", "gnet_t_trained", "gnet_r_trained"))
    rows = [
        (f"SNet-1..K {'validation' if held_out else 'test'} " + what, f(vals[0])),
        ("GNet-T before fine-tuning" + ("" if key == "val_acc" else f" ({key})"), f(vals[1])),
        ("Theorem 2.1 max |diff|", f(s["theorem_2_1_max_abs_diff"], "{:.2e}")),
        (f"GNet-T trained ({s['epochs']['snets']}+{s['epochs']['gnet_t']} epochs)", f(vals[2])),
        (f"GNet-R trained ({s['epochs']['gnet_r']} epochs)", f(vals[3])),
        ("time SNets [s]", f(s["time_subnets_s"], "{:.1f}")),
        ("time compose [s]", f(s["time_compose_s"], "{:.2f}")),
        ("time GNet-T [s]", f(s["time_gnet_t_s"], "{:.1f}")),
        ("time GNet-R [s]", f(s["time_gnet_r_s"], "{:.1f}")),
        ("strategy selection [s]", f(s.get("time_strategy_s"), "{:.1f}")),
        (f"GNet-T pipeline to GNet-R's {what} [s]", f(s["time_to_gnet_r_acc_s"], "{:.1f}")),
        (f"GNet-R to its own final {what} [s]", f(s.get("gnet_r_first_hit_s"), "{:.1f}")),
        ("ratio (GNet-T pipeline / GNet-R)", f(s.get("payoff_ratio"), "{:.2f}")),
    ]
    if held_out:  # the validation numbers above drove the rules; the test set, once per trained network
        m = key.removeprefix("val_")
        rows += [(f"SNet-1..K on the test set ({m})", f(s.get(f"snet_test_{m}"))),
                 (f"GNet-T (final) on the test set ({m})", f(s.get(f"gnet_t_test_{m}"))),
                 (f"GNet-R (final) on the test set ({m})", f(s.get(f"gnet_r_test_{m}")))]
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{w}}  {b}" for a, b in rows)
