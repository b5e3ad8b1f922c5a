"""Running the cifar experiment: Table 3.1 from the model definitions, the Algorithm-1 cases
(Table 3.3, Fig. 3.1), the Table 3.2 sweep, their tables and the notes on deviations."""

from __future__ import annotations

from experiments import cli
from experiments.cifar.config import OVERLAP_NAME, PRESETS, Case, Preset
from experiments.results import cached, run_case, timed_s
from experiments.tables import md_table, pct


# ----------------------------------------------------------------------------- Table 3.1
def complexity_entries(plan: Preset) -> list[dict]:
    from dcnn_dd.complexity import KERAS, params_and_flops
    from dcnn_dd.models.registry import build_model
    from dcnn_dd.train.config import build_grid

    out = []
    for slot_model, spec, shape, grids in plan.complexity:
        model = build_model(spec, 10)
        n_g, rep_g = params_and_flops(model, (1, *shape), include=KERAS)
        g = {"params_M": n_g / 1e6, "gflops": rep_g.gflops}
        base = {"table": "3.1", "dataset": "cifar10", "model": slot_model, "K": 4, "ours": _model_desc(spec, shape)}
        out += [{**base, "row": "global-net", "metric": m, "value": v} for m, v in g.items()]
        for overlap, gspec in grids.items():
            grid = build_grid(gspec, shape)
            n_s, rep_s = params_and_flops(model.subnet(4), (1, *grid.sub_shape, shape[-1]), include=KERAS)
            s = {"params_M": n_s / 1e6, "gflops": rep_s.gflops}
            for m in s:
                out.append({**base, "row": "sub-net", "metric": m, "overlap": overlap, "value": s[m]})
                out.append({**base, "row": "ratio", "metric": m, "overlap": overlap, "value": g[m] / s[m]})
    return out


def _model_desc(spec: dict, shape) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
    return f"{spec['name']}({extra}) on {'x'.join(map(str, shape))}"


# ----------------------------------------------------------------------------- Table 3.2
def sweep_entries(plan: Preset, args, log=print) -> tuple[list[dict], list[dict]]:
    from dcnn_dd.train.timing import time_training

    sw = plan.sweep
    rows, entries = [], []
    for augment in sw["augments"]:
        for bs in sw["batch_sizes"]:
            cfg = sw["base"].replace(batch_size=bs, augment=augment)
            if cfg.train_size is not None and bs > cfg.train_size:
                continue
            measured = {}
            for label, grid, which in [("global", sw["grids"][True], "global"),
                                       *[(f"subnets-{OVERLAP_NAME[o]}", g, "subnets") for o, g in sw["grids"].items()]]:
                key = f"{augment}-{bs}-{label}"

                def compute(cfg=cfg, grid=grid, which=which, key=key):
                    log(f"sweep: {key} ...")
                    return time_training(cfg.replace(grid=grid), which, steps=sw["steps"], warmup=sw["warmup"],
                                         epochs=10, num_devices=args.num_devices, data_path=args.data,
                                         data_dir=args.data_dir)

                measured[label] = cached(args.out / "sweep" / f"{key}.json", args.restart, compute)
            rows.append({"augment": augment, "batch_size": bs, **measured})
            aug = augment != "none"
            base = {"table": "3.2", "dataset": "cifar10", "model": "ResNet32", "batch_size": bs, "augment": aug}
            glob = measured["global"]
            entries.append({**base, "row": "global network", "metric": "time_s", "value": timed_s(glob)})
            entries.append({**base, "row": "global network", "metric": "memory_MB", "value": _mb(glob)})
            for overlap in sw["grids"]:
                sub = measured[f"subnets-{OVERLAP_NAME[overlap]}"]
                e = {**base, "overlap": overlap}
                entries.append({**e, "row": "4 sub-networks", "metric": "time_s", "value": timed_s(sub)})
                entries.append({**e, "row": "4 sub-networks", "metric": "memory_MB", "value": _mb(sub)})
                ratio = None if timed_s(glob) is None or timed_s(sub) is None else timed_s(glob) / timed_s(sub)
                entries.append({**e, "row": "ratio", "metric": "ratio", "value": ratio})
                mem = None if _mb(glob) is None or _mb(sub) is None else _mb(glob) / _mb(sub)
                entries.append({**e, "row": "memory ratio", "metric": "ratio", "value": mem})
    return rows, entries


def _mb(m: dict) -> float | None:
    b = m.get("peak_bytes") or m.get("compiled_bytes")
    return None if m.get("oom") or b is None else b / 2**20


def sweep_table(rows: list[dict]) -> str:
    def cell(m):
        return "OOM" if m.get("oom") else f"{m['time_s']:.1f} s"

    body = []
    for r in rows:
        subs = [k for k in r if k.startswith("subnets-")]
        for k in subs:
            g, s = r["global"], r[k]
            ratio = "-" if g.get("oom") or s.get("oom") else f"{g['time_s'] / s['time_s']:.2f}"
            mem = "-" if _mb(g) is None or _mb(s) is None else f"{_mb(g):.0f} / {_mb(s):.0f} MB"
            body.append([r["augment"], r["batch_size"], k.removeprefix("subnets-"), cell(g), cell(s), ratio, mem,
                         f"{s['strategy']}", f"{g['timed_steps']}/{g['steps_per_epoch']}"])
    return md_table(["augment", "batch", "sub-images", "global net (10 ep.)", "4 sub-nets (10 ep.)",
                            "ratio", "memory global / sub-nets", "strategy", "timed steps / epoch"], body)


# ----------------------------------------------------------------------------- Table 3.3
def accuracy_entries(case: Case, s: dict) -> list[dict]:
    slot = case.slot
    table = "3.3-exact" if case.exact else "3.3"
    base = {"table": table, "dataset": slot["dataset"], "model": slot["model"], "ours": case.ours}
    ov = {**base, "overlap": slot["overlap"]}
    out = [{**ov, "row": f"SNet-{k + 1}", "metric": "acc", "value": a} for k, a in enumerate(s["snet_acc"])]
    out.append({**ov, "row": "GNet-T", "metric": "acc", "value": s["gnet_t_init_acc"]})
    out.append({**ov, "row": "GNet-T", "metric": "theorem_2_1_max_abs_diff", "value": s["theorem_2_1_max_abs_diff"]})
    # the trained rows under schedules shrunk below the paper's 200 epochs measure the shrinking, not the method:
    # the paper's comparison at convergence is experiments.payoff --preset converged (docs/payoff.md)
    shrunk = 0 < case.config.gnet_r_epochs < 200 or 0 < case.config.gnet_t_epochs < 80
    note = ({"note": f"schedules shrunk to {case.config.gnet_t_epochs}/80 of GNet-T's epochs; the comparison at "
                     "convergence: payoff --preset converged"} if shrunk else {})
    if s["epochs"]["gnet_t"] > 0:
        out.append({**ov, "row": "GNet-T-trained", "metric": "acc", "value": s["gnet_t_trained_acc"], **note})
    if s.get("gnet_r_trained_acc") is not None:
        out.append({**base, "row": "GNet-R-trained", "metric": "acc", "value": s["gnet_r_trained_acc"], **note})
    return out


def accuracy_table(cases, summaries) -> str:
    rows = []
    for case in cases:
        s = summaries[case.name]
        t22 = s.get("theorem_2_2") or {}
        rows.append([case.name, " ".join(pct(a) for a in s["snet_acc"]), pct(s["gnet_t_init_acc"]),
                     f"{s['theorem_2_1_max_abs_diff']:.2e}", pct(s["gnet_t_trained_acc"]),
                     pct(s.get("gnet_r_trained_acc")),
                     f"{t22.get('composed_correct_of_those')}/{t22.get('all_subnets_correct')}",
                     f"{s['time_subnets_s']:.0f} + {s['time_gnet_t_s']:.0f}",
                     None if s.get("time_gnet_r_s") is None else f"{s['time_gnet_r_s']:.0f}"])
    return md_table(["case", "SNet-1..4 [%]", "GNet-T [%]", "max abs(GNet-T - sum SNet logits)",
                            "GNet-T-trained [%]", "GNet-R-trained [%]", "Thm 2.2: composed right / all SNets right",
                            "time SNets + GNet-T [s]", "time GNet-R [s]"], rows)


def deviation_notes(cases, summaries) -> list[str]:
    notes = []
    exact = next((c for c in cases if c.exact), None)
    for case in cases:
        s = summaries[case.name]
        best = max(s["snet_acc"])
        init, diff = s["gnet_t_init_acc"], s["theorem_2_1_max_abs_diff"]
        if case.exact:
            notes.append(f"{case.name} (theorem-exact control): composed {init:.4f} vs best SNet {best:.4f}; "
                         f"max |GNet-T - sum of SNet logits| = {diff:.1e} (Theorem 2.1: 0 up to float rounding).")
        elif init < best:
            ctrl = ""
            if exact is not None:
                e = summaries[exact.name]
                ok = e["gnet_t_init_acc"] >= max(e["snet_acc"])
                ctrl = (f" The theorem-exact control on the same data and grid gives composed {e['gnet_t_init_acc']:.4f} "
                        f"vs best SNet {max(e['snet_acc']):.4f}"
                        + (", so the decomposition of these images itself does not cause the loss; the ResNet's "
                           "layers do." if ok else "; it too stays below its best SNet here, so this run cannot "
                           "separate the two causes (train longer)."))
            notes.append(
                f"DEVIATION {case.name}: GNet-T before training {init:.4f} < best SNet {best:.4f} (paper, Table 3.3: "
                f"GNet-T 88.33% above every SNet's ~80% on CIFAR-10 ResNet32). Likely cause: outside the theorems' "
                f"setting the composed network is not the sum of the sub-networks - its logits differ from the sum "
                f"by up to {diff:.2f}. Global average pooling averages each channel block over the whole image "
                f"instead of the sub-image (the (2.14) head rescales only the mean), same padding lets block k read "
                f"its neighbours' pixels at the sub-image borders, and BatchNorm statistics were estimated on the "
                f"sub-images. On Fashion-MNIST the quadrants differ strongly (a centred object on an empty border), "
                f"so block k sees, over most of the image, content unlike its training sub-images.{ctrl}")
    by_slot = {}
    for case in cases:
        if not case.exact:
            by_slot.setdefault((case.slot["dataset"], case.slot["model"], case.config.dataset), []).append(case)
    for (ds, model, ours), group in by_slot.items():
        r = next((summaries[c.name]["gnet_r_trained_acc"] for c in group
                  if summaries[c.name].get("gnet_r_trained_acc") is not None), None)
        for c in group:
            s = summaries[c.name]
            if r is not None and s["epochs"]["gnet_t"] > 0 and s["gnet_t_trained_acc"] < r:
                per_epoch = _epoch_lrs(c.config.gnet_t_lr, s["epochs"]["gnet_t"])
                lrs = c.config.gnet_t_lr if per_epoch is None else [round(float(x), 8) for x in per_epoch]
                notes.append(
                    f"DEVIATION {c.name}: GNet-T-trained {s['gnet_t_trained_acc']:.4f} < GNet-R-trained {r:.4f} "
                    f"(paper, Table 3.3: GNet-T-trained above GNet-R-trained, e.g. 94.40% vs 93.26%). Likely cause: "
                    f"the paper's GNet-T schedule (start 1e-4, divided at 1/4, 1/2, 3/4 of its epochs) shrunk to "
                    f"{s['epochs']['gnet_t']} epochs gives learning rates {lrs}: too little training to recover from "
                    f"a composed start at {s['gnet_t_init_acc']:.4f}, where the paper's 80 epochs start from 88%.")
    return notes


def _epoch_lrs(lr_json, epochs: int) -> list[float] | None:
    """The rate of each epoch of a per-epoch schedule; None for a per-step one (its rate moves
    within an epoch: the note then quotes the schedule as given)."""
    from dcnn_dd.train.schedules import Piecewise, schedule_from_json

    sched = schedule_from_json(lr_json)
    return [sched(e) for e in range(epochs)] if isinstance(sched, Piecewise) else None


# ----------------------------------------------------------------------------- run
def run(args) -> dict:
    from experiments.cifar.figures import figures, sweep_figure

    plan = cli.apply(PRESETS[args.preset](), args)
    if getattr(args, "batch_sizes", None):
        plan.sweep = {**plan.sweep, "batch_sizes": args.batch_sizes}
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    entries = complexity_entries(plan)
    summaries = {}
    for case in plan.cases:
        print(f"== case {case.name}: {case.ours}", flush=True)
        summaries[case.name] = run_case(case.config, out / "cases" / case.name, args)
        entries += accuracy_entries(case, summaries[case.name])
    rows, sweep = sweep_entries(plan, args)
    entries += sweep
    for case in plan.cases:  # training times of the two strategies (Fig. 3.1) as entries too
        s = summaries[case.name]
        base = {"table": "fig3.1", "dataset": case.slot["dataset"], "model": case.slot["model"], "metric": "time_s"}
        if not case.exact:
            entries.append({**base, "overlap": case.slot["overlap"], "row": "SNets", "value": s["time_subnets_s"]})
            entries.append({**base, "overlap": case.slot["overlap"], "row": "GNet-T", "value": s["time_gnet_t_s"]})
            if s.get("time_gnet_r_s") is not None:
                entries.append({**base, "row": "GNet-R", "value": s["time_gnet_r_s"]})
    figs = figures(out, plan.cases, summaries)
    figs["3.2 (table)"] = sweep_figure(out, rows)
    t31 = [[e["model"], e["row"], e.get("overlap"), e["metric"], f"{e['value']:.4g}"]
           for e in entries if e["table"] == "3.1"]
    return {
        "stand_in": plan.stand_in,
        "entries": entries,
        "tables_md": {
            "Table 3.1 (parameters with BatchNorm statistics, Keras-style; GFLOPs of convolutions and dense layers)":
                md_table(["model slot", "row", "overlap", "metric", "value"], t31),
            "Table 3.2 (10 epochs, from timed steps)": sweep_table(rows),
            "Table 3.3 and Fig. 3.1": accuracy_table(plan.cases, summaries),
        },
        "figures": figs,
        "notes": deviation_notes(plan.cases, summaries) + [
            "Table 3.2: the time of 10 epochs is the measured seconds per step (real input pipeline, on-device "
            "augmentation) times the steps of 10 epochs; 'timed steps / epoch' says how many steps were timed. Memory: "
            "the device's peak allocation where reported (GPU), else XLA's size of the compiled step "
            "(arguments + outputs + temporaries). The 4 sub-networks run with the strategy shown on one device "
            "(the paper: one GPU each)."],
        "cases": {c.name: {"config": c.config.to_json(), "slot": c.slot, "ours": c.ours,
                           "summary": {k: v for k, v in summaries[c.name].items() if k != "histories"}}
                  for c in plan.cases},
        "sweep": rows,
    }


def _batch_sizes(text: str) -> list[int]:
    import argparse

    try:
        sizes = [int(b) for b in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give batch sizes as integers separated by commas, e.g. 32,128,512")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: batch sizes must be >= 1")
    return sizes


def extra_args(p) -> None:
    p.add_argument("--batch-sizes", type=_batch_sizes, metavar="B1,B2,...",
                   help="the batch sizes of the Table 3.2 sweep (default: the preset's, e.g. paper: "
                        "32,128,512,2048,8192,16384,32768)")


def main(argv=None) -> dict:
    import experiments.cifar as pkg

    return cli.main("cifar", pkg.__doc__, run, argv, extra_args=extra_args)
