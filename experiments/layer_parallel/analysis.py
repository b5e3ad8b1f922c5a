"""Running the layer-parallel experiment: the data, each problem trained serial / exact /
one-shot (:mod:`dcnn_dd.layer_parallel.train`), the table and the notes."""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments import cli
from experiments.layer_parallel.config import PRESETS, Problem
from experiments.tables import md_table


def load(problem: Problem, data_path=None):
    if problem.name == "peaks":
        from dcnn_dd.layer_parallel.data import NUM_CLASSES, peaks

        return (*peaks(problem.n_train, seed=0), *peaks(problem.n_val, seed=1), NUM_CLASSES)
    from dcnn_dd.data.sources import load_fashion_mnist

    def take(split, n):
        x, y = load_fashion_mnist(split, data_path).take(np.arange(n))
        return (x.astype(np.float32) / 255.0 - 0.286) / 0.353, y

    return (*take("train", problem.n_train), *take("test", problem.n_val), 10)


def train_problem(problem: Problem, data, progress: bool) -> dict:
    """The three methods on one problem, each trained by :func:`dcnn_dd.layer_parallel.fit` from
    the same initial parameters."""
    import jax
    import optax

    import dcnn_dd.layer_parallel as lp

    x, y, xv, yv, classes = data
    kind = "dense" if problem.name == "peaks" else "conv"
    model = lp.ODEResNet(n_layers=problem.n_layers, width=problem.width, num_classes=classes, T=problem.T, kind=kind,
                         open_stride=2)
    batch = problem.batch or len(x)
    params = model.init(jax.random.PRNGKey(0), x[:batch])
    levels = lp.max_levels(problem.n_layers, problem.cfactor, problem.min_coarse)
    s_kw = dict(cfactor=problem.cfactor, levels=levels, min_coarse=problem.min_coarse)
    exact = lp.Solver(rtol=problem.rtol, max_iter=30, **s_kw)
    budget = lp.Solver(max_iter=problem.budget, **s_kw)
    methods = [lp.Method("serial", alpha=problem.alpha, beta=problem.beta),
               lp.Method("exact", exact, exact, warm_start=False, alpha=problem.alpha, beta=problem.beta),
               lp.Method("one-shot", budget, budget, warm_start=problem.batch is None, alpha=problem.alpha,
                         beta=problem.beta)]
    tx = optax.adam(problem.lr)
    out = {"levels": levels, "cfactor": problem.cfactor, "methods": {}}
    for method in methods:
        out["methods"][method.name] = lp.fit(model, method, tx, params, (x, y, xv, yv), steps=problem.steps,
                                             batch=problem.batch, eval_every=problem.eval_every, progress=progress,
                                             desc=f"{problem.name} {method.name}")
    return out


def run(args) -> dict:
    import jax

    from experiments.layer_parallel.figures import draw

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    entries, rows, figures, results = [], [], {}, {}
    for problem in cli.apply(PRESETS[args.preset](), args):
        r = train_problem(problem, load(problem, args.data), progress=not args.no_progress)
        results[problem.name] = {"problem": dataclasses.asdict(problem), **r}
        figures[problem.name] = draw(out / f"{problem.name}.png", problem.name, r)
        for method, m in r["methods"].items():
            rows.append([problem.name, problem.n_layers, method, f"{m['final_loss']:.4f}", f"{m['final_val_acc']:.4f}",
                         f"{m['wall_s']:.2f}", None if m["mean_fwd_iters"] is None else f"{m['mean_fwd_iters']:.2f}",
                         None if m["mean_bwd_iters"] is None else f"{m['mean_bwd_iters']:.2f}"])
            for metric in ("final_loss", "final_val_acc", "wall_s"):
                entries.append({"table": "layer_parallel", "row": f"{problem.name}/{method}", "metric": metric,
                                "dataset": problem.name, "model": f"ode-resnet-{problem.n_layers}",
                                "devices": jax.device_count(), "value": m[metric]})
    table = md_table(["problem", "N", "method", "final loss", "val acc", "steps wall (s)",
                             "mean fwd iters", "mean adj iters"], rows)
    notes = [
        "Validation accuracy is measured with the serial forward pass of each method's parameters.",
        "Wall time counts the optimiser steps only (ahead-of-time compiled; evaluation excluded). On one "
        "CPU device the MGRIT chunks run one after another, so the layer-parallel methods are not expected "
        "to be faster here.",
        "fashion one-shot starts every solve from u_0 at every layer (minibatches change the samples); "
        "peaks one-shot warm-starts from the previous step (full batch).",
    ]
    for name, r in results.items():
        ex = r["methods"]["exact"]
        hit = ex["fwd_hit_max_iter"] + ex["bwd_hit_max_iter"]
        notes.append(f"{name} exact: every forward and adjoint solve stopped at rtol before max_iter={ex['max_iter']} "
                     f"(at most {ex['max_fwd_iters']} forward, {ex['max_bwd_iters']} adjoint iterations)." if not hit else
                     f"{name} exact: WARNING {ex['fwd_hit_max_iter']} forward and {ex['bwd_hit_max_iter']} adjoint "
                     f"solve(s) used all max_iter={ex['max_iter']} iterations and may not have reached rtol; those "
                     "steps' gradients are not the serial ones to the tolerance.")
    return {"stand_in": None if args.preset == "paper" else f"preset {args.preset}: smaller N, data and steps",
            "entries": entries, "tables_md": {"layer-serial vs layer-parallel": table}, "figures": figures,
            "notes": notes, "problems": results}


def main(argv=None) -> dict:
    import experiments.layer_parallel as pkg

    return cli.main("layer_parallel", pkg.__doc__, run, argv, targets=lambda: {"": Problem},
                    set_help="both problems (experiments.layer_parallel.config.Problem)")
