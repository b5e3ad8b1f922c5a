"""Running the payoff protocol: its arithmetic (first hits, ratios), the timed pipelines (GNet-R,
the SNets, GNet-T: the engine's phase functions under the protocol's clocks), the experiment over
seeds and variants, and its table."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from experiments import cli
from experiments.payoff.config import LR_SWEEP, PRESETS, Variant, pipeline_config
from experiments.payoff.figures import figure
from experiments.results import run_cache
from experiments.tables import md_table


# ============================================================ the protocol's arithmetic (pure)
def first_hit(times, accs, target: float) -> float | None:
    """The time of the first evaluation at or above ``target`` (None: never reached)."""
    for t, a in zip(times, accs):
        if a >= target:
            return float(t)
    return None


def ratio_stats(t_hits, r_hits) -> dict:
    """Per seed: GNet-T first-hit time / GNet-R first-hit time (None where either never reached);
    their mean and sample standard deviation over the seeds where both reached the target."""
    ratios = [None if (t is None or r is None) else t / r for t, r in zip(t_hits, r_hits)]
    ok = [x for x in ratios if x is not None]
    return {"ratios": ratios, "ratio_mean": float(np.mean(ok)) if ok else None,
            "ratio_sd": float(np.std(ok, ddof=1)) if len(ok) > 1 else None,  # undefined for one seed
            "seeds_reached": len(ok)}


class Clock:
    """A pausable wall clock: ``with clock:`` runs it; :meth:`now` reads it."""

    def __init__(self, offset: float = 0.0):
        self.total, self._t0 = float(offset), None

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.total += time.perf_counter() - self._t0
        self._t0 = None

    def now(self) -> float:
        return self.total + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)


# ============================================================ pipelines
# Each pipeline is built from the engine's phase functions (dcnn_dd.train.composed_training: gnet_r_phase,
# snet_init, select_strategy, snets_phase, compose_snets, gnet_t_phase), bound to the pipeline's setup with
# the variant's settings as configuration fields; what the protocol adds is its clocks, in-memory
# checkpoints and its own stopping rule (the target, up to cap_epochs).
class GlobalRun:
    """A global network's :class:`~dcnn_dd.train.phases.Train` entry (the engine's GNet-R or GNet-T
    phase, with its own compiled step and evaluation) trained from ``state`` under ``clock``, a
    curve of (wall time, accuracy) per evaluation; it can be trained further (to reach a target)
    with the clock going on.  Its checkpoints stay in memory (no checkpoint I/O is timed)."""

    def __init__(self, train, state, clock: Clock, progress: bool):
        from dcnn_dd.train.checkpoint import InMemoryCheckpoints

        self.train, self.state, self.clock, self.progress = train, state, clock, progress
        self.name = train.name
        self.store = InMemoryCheckpoints()
        self.times: list[float] = []
        self.accs: list[float] = []
        self.epochs = 0

    def point(self, acc: float) -> None:
        self.times.append(self.clock.now())
        self.accs.append(float(acc))

    def train_to(self, epochs: int, target: float | None = None) -> None:
        """Train until ``epochs`` epochs in all, or (``target``) stop at the first evaluation at or above it."""
        from dcnn_dd.train.loop import run_phase

        if epochs <= self.epochs or (target is not None and first_hit(self.times, self.accs, target) is not None):
            return
        until = None if target is None else (lambda h: any(r["val_acc"] >= target for r in h))
        entry = dataclasses.replace(self.train, epochs=self.epochs if until else epochs,
                                    extra_epochs=epochs - self.epochs if until else 0)
        self.store.reopen()
        with self.clock:
            self.state, history = run_phase(entry.phase(until), self.state, self.store, self.train.data,
                                            progress=self.progress, on_epoch=lambda h: self.point(h[-1]["val_acc"]))
        self.epochs = len(history)


def gnet_r(setup, seed: int, variant: Variant, epochs: int, progress: bool) -> GlobalRun:
    """GNet-R from random initialisation (the engine's key for ``seed``; its phase
    ``gnet_r_phase`` at the variant's learning rate), ``epochs`` epochs."""
    from dcnn_dd.train.composed_training import gnet_r_phase, phase_keys
    from dcnn_dd.train.steps import Steps

    setup = setup.reconfigured(gnet_r_lr=variant.schedule())  # outside the clock: checks the configuration
    clock = Clock()
    with clock:
        steps = Steps(setup)  # GNet-R's own compiled steps
        k_r, _ = phase_keys(seed)
        train = gnet_r_phase(setup, steps, k_r, {})
        state = train.init({})
    run = GlobalRun(train, state, clock, progress)
    run.train_to(epochs)
    return run


def snets(setup, seed: int, budgets, lr: float, progress: bool) -> list[dict]:
    """The K sub-networks (the engine's key for ``seed``; its ``snet_init``, ``select_strategy`` and
    ``snets_phase`` at ``lr``), one run, a snapshot after each budget: ``{"epochs", "t",
    "variables", "opt_state", "snet_acc", "strategy"}`` (host arrays)."""
    from dcnn_dd import sharding
    from dcnn_dd.train.checkpoint import InMemoryCheckpoints
    from dcnn_dd.train.composed_training import phase_keys, select_strategy, snet_init, snets_phase
    from dcnn_dd.train.loop import run_phase
    from dcnn_dd.train.steps import Steps

    setup = setup.reconfigured(snet_lr=lr)
    clock, out = Clock(), []
    with clock:
        steps = Steps(setup)  # the sub-networks' own compiled steps
        _, k_s = phase_keys(seed)
        results = {"snet_init": snet_init(setup, k_s, {})}
        results["strategy"] = select_strategy(setup, steps, results)  # measured (and counted) when strategy="auto"
        train = snets_phase(setup, steps, results)
        state = train.init(results)
        store = InMemoryCheckpoints()
        for b in sorted(set(budgets)):
            store.reopen()
            state, history = run_phase(dataclasses.replace(train, epochs=b).phase(), state, store, train.data,
                                       progress=progress)
            out.append({"epochs": b, "t": clock.now(), "variables": sharding.to_host(state.variables),
                        "opt_state": sharding.to_host(state.opt_state), "snet_acc": list(history[-1]["val_acc"]),
                        "strategy": results["strategy"]["strategy"]})
    return out


def gnet_t(setup, snap: dict, variant: Variant, epochs: int, progress: bool) -> tuple[GlobalRun, dict]:
    """Compose a SNet snapshot ((2.11)-(2.14), the engine's ``compose_snets``; with the Adam state if
    asked), evaluate, fine-tune ``epochs`` epochs (its ``gnet_t_phase``); the clock goes on from the
    snapshot's.  Also returns the plan's global variables."""
    from dcnn_dd.planning import plan_for
    from dcnn_dd.train.composed_training import compose_snets, gnet_t_phase
    from dcnn_dd.train.steps import Steps

    setup = setup.reconfigured(gnet_t_lr=variant.schedule(), compose_opt_state=variant.adam_state)
    clock = Clock(offset=snap["t"])
    with clock:
        steps = Steps(setup)  # GNet-T's own compiled steps
        # the plan is derived inside the clock (the engine's setup.plan was derived outside every clock); its
        # self-check (plan_for(verify=True), a one-time cost per pipeline) is not timed: it ran when the setup was
        # built (run_algorithm1 charges it to compose_s); docs/payoff.md states its measured cost
        setup = dataclasses.replace(setup, plan=plan_for(setup.model, setup.sub, setup.grid,
                                                         input_shape=(1, *setup.image_shape), verify=False))
        results = {"snets": (snap["variables"], snap["opt_state"] if variant.adam_state else None)}
        results["composed"] = compose_snets(setup, results)
        train = gnet_t_phase(setup, steps, results)
        state = train.init(results)
        composed = float(train.evaluate(state)["val_acc"][0])
    run = GlobalRun(train, state, clock, progress)
    run.times, run.accs = [clock.now()], [composed]  # the composed start is GNet-T's first evaluation
    run.train_to(epochs)
    return run, results["composed"]["variables"]


def warm_eager(setup) -> None:
    """Outside every clock, once per network: initialise the global network and the stacked
    sub-networks once.  Flax initialises op by op, and JAX keeps each primitive's compiled kernel
    for the process, so otherwise whichever pipeline initialises a shape first would pay it (10 s
    here) and the later ones not; warmed, no pipeline pays it."""
    import jax

    from dcnn_dd.train.steps import global_state, subnet_state

    key = jax.random.PRNGKey(12345)
    c = setup.config
    jax.block_until_ready(jax.tree.leaves(global_state(setup, setup.global_init(key))))
    jax.block_until_ready(jax.tree.leaves(subnet_state(setup, setup.subnet_init(key),
                                                       c.strategy if c.strategy != "auto" else "vmap")))


def strategy_check(setup) -> dict:
    """Outside every clock: the engine's ``auto`` measurement of every sub-network strategy on
    this machine (s per step), to check the preset's fixed strategy against it.  A fixed strategy
    is only fair to GNet-T where it is the fastest; the result says whether it is."""
    import jax

    from dcnn_dd.train.steps import Steps, choose_strategy

    probe = setup.reconfigured(strategy="auto")
    fastest, timings = choose_strategy(probe, probe.subnet_init(jax.random.PRNGKey(0)), Steps(probe))
    fixed = setup.config.strategy
    return {"fixed": fixed, "fastest": fastest, "s_per_step": {k: float(v) for k, v in timings.items()},
            "fixed_is_fastest": fixed in ("auto", fastest)}


def summed_logits_check(setup, snap: dict, gvars) -> dict:
    """Outside every clock: the composed network against the sum of the sub-networks' logits on
    the test set (accuracy of the sum, max and mean |difference|)."""
    from dcnn_dd import sharding
    from dcnn_dd.train.steps import Steps, subnet_sharding

    strategy, steps = snap["strategy"], Steps(setup)
    s = steps.subnet_evaluator(strategy, with_logits=True)(
        sharding.put_global(snap["variables"], subnet_sharding(setup, strategy)))
    g = steps.global_evaluator(with_logits=True)(sharding.put_global(gvars, sharding.replicated(setup.data_mesh)))
    total = s["logits"].sum(0)
    diff = np.abs(g["logits"] - total)
    return {"logit_sum_acc": float(np.mean(np.argmax(total, -1) == g["labels"])),
            "logit_gap_max": float(diff.max()), "logit_gap_mean": float(diff.mean()),
            "logit_scale": float(np.abs(total).max())}


def _curve(run: GlobalRun) -> dict:
    return {"t": [round(t, 3) for t in run.times], "acc": run.accs}


def run(args) -> dict:
    import jax

    from dcnn_dd.train.setup import build_setup
    from experiments.payoff import converged

    if args.preset in converged.PRESETS:
        return converged.run(args)
    jax.config.update("jax_enable_compilation_cache", False)  # compilation is counted on both sides
    p = PRESETS[args.preset]
    seeds = list(range(p.first_seed, p.first_seed + (args.seeds if args.seeds else p.seeds)))
    progress = not args.no_progress
    cache_dir = args.out / "cache"
    setups: dict = {}

    def setup_for(net, K, pooling, seed):  # noqa: N803
        """One Setup (data, models, warmed eager kernels) per (network, K, pooling), shared by the
        seeds: a seed changes only the configuration's seed (keys, batch order, augmentation).
        Each pipeline compiles its own steps (a ``Steps`` of its own)."""
        key = (net, K, pooling)
        if key not in setups:
            c = pipeline_config(p, p.networks[net], K, pooling, seeds[0], args.overrides[""])
            setups[key] = setup = build_setup(c, data_path=args.data, num_devices=args.num_devices)
            warm_eager(setup)
        return setups[key].reconfigured(seed=seed)

    cached = run_cache(cache_dir, args.restart)  # each pipeline once per invocation, ``--restart`` too

    nets = list(p.networks) if not args.networks else args.networks.split(",")
    unknown = [n for n in nets if n not in p.networks]
    if unknown or (args.seeds is not None and args.seeds < 1):
        raise ValueError(f"--networks {unknown}: choose from {list(p.networks)}" if unknown else
                         f"--seeds {args.seeds}: give at least 1")
    offered = {v.name for n in nets for v in p.variants[n]}
    chosen = set(args.variants.split(",")) if args.variants else offered
    if chosen - offered:
        raise ValueError(f"--variants {sorted(chosen - offered)}: the preset {args.preset!r} offers {sorted(offered)}")
    nets = [n for n in nets if any(v.name in chosen for v in p.variants[n])]
    c = pipeline_config(p, p.networks[nets[0]], 4, "global", seeds[0], args.overrides[""]) if nets else None
    if c is not None and (c.task != "classification" or c.monitor not in ("auto", "val_acc")):
        raise ValueError(f"task={c.task!r}, monitor={c.monitor!r}: the payoff protocol measures the time to GNet-R's "
                         "validation accuracy; it runs task='classification' with monitor 'val_acc'")
    screen = len(seeds) == 1  # a one-seed result is a screen, marked as such in rows, table and notes
    cases, sweeps, targets, notes, checks = [], {}, {}, [], {}
    for net in nets:
        if p.check_strategy:
            checks[net] = cached(f"{net}-strategy_check", lambda net=net: strategy_check(setup_for(net, 4, "global",
                                                                                               seeds[0])))
            log(f"{net}: sub-network strategies (s per step, outside the clocks): {checks[net]['s_per_step']}")
            if not checks[net]["fixed_is_fastest"]:
                notes.append(f"{net}: the fixed strategy {p.strategy!r} is not the fastest on this machine "
                             f"({checks[net]['s_per_step']}): GNet-T is handicapped; re-measure with that strategy")
        # ---- GNet-R: the learning-rate sweep on the first seed, then every seed at the best
        runs: dict = {}

        def baseline(seed, v, net=net):
            def compute():
                r = gnet_r(setup_for(net, 4, "global", seed), seed, v, p.gnet_r_epochs, progress)
                runs[(seed, v.name)] = r
                return _curve(r)
            return cached(f"{net}-gnet_r-{v.name}-seed{seed}", compute)

        lr_sweep = (p.lr_sweep or {}).get(net, LR_SWEEP)
        sweep = {v.name: baseline(seeds[0], v)["acc"][-1] for v in lr_sweep}
        best = next(v for v in lr_sweep if v.name == max(sweep, key=sweep.get))
        sweeps[net] = {"final_acc": sweep, "chosen": best.name}
        r_curves = {s: baseline(s, best) for s in seeds}
        target = float(np.mean([r_curves[s]["acc"][-1] for s in seeds]))
        targets[net] = target

        def extended(seed, curve, net=net, best=best, target=target):
            """GNet-R's curve trained on (up to cap_epochs) until it reaches the target."""
            if first_hit(curve["t"], curve["acc"], target) is not None:
                return curve

            def compute():
                r = runs.get((seed, best.name)) or gnet_r(setup_for(net, 4, "global", seed), seed, best, p.gnet_r_epochs,
                                                          progress)
                r.train_to(p.cap_epochs, target)
                return _curve(r)
            return cached(f"{net}-gnet_r-{best.name}-seed{seed}-to{target:.4f}", compute)

        r_curves = {s: extended(s, r_curves[s]) for s in seeds}
        log(f"{net}: GNet-R lr sweep {sweep} -> {best.name}; target {target:.4f}")

        # ---- GNet-T: per variant, SNets shared by budget (and by K)
        variants = [v for v in p.variants[net] if v.name in chosen]
        snaps: dict = {}

        def pipeline(v, seed, net=net, target=target):
            budget = v.snet_epochs or p.snet_epochs

            def compute():
                key = (v.K, seed)
                if budget not in snaps.get(key, {}):  # one SNet run serves every budget asked for on this seed
                    budgets = {budget} | {w.snet_epochs or p.snet_epochs for w in variants if w.K == v.K}
                    snaps[key] = {s["epochs"]: s for s in snets(setup_for(net, v.K, "global", seed), seed, budgets,
                                                                 1e-3, progress)}
                snap = snaps[key][budget]
                setup = setup_for(net, v.K, v.pooling, seed)
                t_run, gvars = gnet_t(setup, snap, v, p.gnet_r_epochs, progress)
                final = t_run.accs[-1]
                t_run.train_to(p.cap_epochs, target)
                return {"curve": _curve(t_run), "final_acc": final, "snet_acc": snap["snet_acc"],
                        "snet_s": snap["t"], "strategy": snap["strategy"], **summed_logits_check(setup, snap, gvars)}
            return cached(f"{net}-gnet_t-{v.name}-seed{seed}", compute)

        def case(v, case_seeds):
            outs = [pipeline(v, s) for s in case_seeds]
            t_hits = [first_hit(o["curve"]["t"], o["curve"]["acc"], target) for o in outs]
            r_hits = [first_hit(r_curves[s]["t"], r_curves[s]["acc"], target) for s in case_seeds]
            row = {"network": net, "variant": v.name, "seeds": case_seeds, "screen": screen,
                   "K": v.K, "snet_epochs": v.snet_epochs or p.snet_epochs, "gnet_t_lr": v.schedule(),
                   "compose_opt_state": v.adam_state, "pooling": v.pooling, "target": target,
                   "snet_acc": [float(a) for a in np.mean([o["snet_acc"] for o in outs], 0)],
                   "composed_acc": float(np.mean([o["curve"]["acc"][0] for o in outs])),
                   "composed_acc_per_seed": [o["curve"]["acc"][0] for o in outs],
                   "logit_sum_acc": float(np.mean([o["logit_sum_acc"] for o in outs])),
                   "logit_gap_max": float(np.max([o["logit_gap_max"] for o in outs])),
                   "logit_gap_mean": float(np.mean([o["logit_gap_mean"] for o in outs])),
                   "logit_scale": float(np.max([o["logit_scale"] for o in outs])),
                   "snet_s": [o["snet_s"] for o in outs],
                   "gnet_t_first_hit_s": t_hits, "gnet_r_first_hit_s": r_hits,
                   **ratio_stats(t_hits, r_hits),
                   "gnet_t_final_acc": float(np.mean([o["final_acc"] for o in outs])),
                   "gnet_r_final_acc": float(np.mean([r_curves[s]["acc"][p.gnet_r_epochs - 1] for s in case_seeds])),
                   "curves": {"gnet_t": {str(s): o["curve"] for s, o in zip(case_seeds, outs)},
                              "gnet_r": {str(s): r_curves[s] for s in case_seeds}}}
            log(f"{net}/{v.name} (seeds {case_seeds}): composed {row['composed_acc']:.4f} (SNets "
                + " ".join(f"{a:.3f}" for a in row["snet_acc"]) + f", logit sum {row['logit_sum_acc']:.4f}); "
                f"first hit GNet-T {t_hits} s, GNet-R {r_hits} s; ratio {_fmt(row['ratio_mean'])}")
            return row

        cases += [case(v, seeds) for v in variants]
        if screen:
            notes.append(f"{net}: one seed ({seeds[0]}): a screen; single-seed differences of a few seconds are "
                         "within the seed-to-seed spread (docs/payoff.md)")

    results = {"cases": cases, "entries": [], "targets": targets, "gnet_r_lr_sweep": sweeps, "seeds": seeds,
               "strategy_check": checks,
               "protocol": "short",
               "rules": {"clock": "one wall clock per pipeline, started before anything of it runs",
                            "evaluation": "counted on both sides (after every epoch)",
                            "compilation": "counted on both sides (no shared compiled function, no persistent cache)",
                            "excluded": "data loading (once, before everything); the eager (op-by-op) "
                                        "initialisation kernels, warmed once per network before any clock; no "
                                        "checkpoint I/O on either side",
                            "target": "GNet-R's final accuracy, mean over seeds",
                            "first_hit": "first evaluation at or above the target, up to cap_epochs global epochs",
                            "strategy": p.strategy,
                            "not_timed": "plan_for's self-check (verify=False here; a one-time cost per pipeline)"},
               "preset_settings": {k: v for k, v in dataclasses.asdict(p).items() if k not in ("networks", "variants",
                                                                                               "lr_sweep")},
               "notes": notes}
    results["tables_md"] = {"payoff": table(cases)}
    if jax.process_index() == 0:
        results["figures"] = {"accuracy vs wall time": figure(cases, args.out / "payoff.png")}
    return results


def _fmt(v, f="{:.2f}"):
    return "-" if v is None else f.format(v)


def table(cases) -> str:
    rows = []
    for c in cases:
        t = [x for x in c["gnet_t_first_hit_s"] if x is not None]
        r = [x for x in c["gnet_r_first_hit_s"] if x is not None]
        rows.append([c["network"], c["variant"] + (" (screen)" if c["screen"] else ""), len(c["seeds"]),
                     f"{max(c['snet_acc']):.4f}", f"{c['composed_acc']:.4f}", f"{c['logit_sum_acc']:.4f}",
                     f"{c['gnet_t_final_acc']:.4f}", f"{c['gnet_r_final_acc']:.4f}",
                     f"{np.mean(t):.1f} ({len(t)}/{len(c['seeds'])})" if t else "never",
                     f"{np.mean(r):.1f} ({len(r)}/{len(c['seeds'])})" if r else "never",
                     _fmt(c["ratio_mean"]) + ("" if c["ratio_sd"] is None else f" ± {c['ratio_sd']:.2f}")])
    return md_table(["network", "variant", "seeds", "best SNet", "composed", "logit sum", "GNet-T final",
                     "GNet-R final", "GNet-T first hit [s]", "GNet-R first hit [s]", "ratio (mean ± sd)"], rows)


def log(msg: str) -> None:
    print(msg, flush=True)


def main(argv=None) -> dict:
    import experiments.payoff as pkg

    from experiments.payoff import converged

    return cli.main("payoff", pkg.__doc__, run, argv, extra_args=_args, presets=(*PRESETS, *converged.PRESETS),
                    default_preset="cpu-smoke")


def _args(p) -> None:
    p.add_argument("--seeds", type=int, help="number of seeds (default: the preset's)")
    p.add_argument("--networks", help="comma-separated subset of the preset's networks (exact, resnet)")
    p.add_argument("--variants", help="comma-separated subset of the preset's variants (e.g. base,snets=32+warmup)")
