"""Section 3.1.2 of Gu et al.: Tables 3.4-3.5 and Figs. 3.5-3.6 (Food101, ResNet50/101, K = 4, 8, 16).

    python -m experiments.partitions --preset cpu-smoke   # offline, Fashion-MNIST stand-in, ~3 min on 2 CPU cores (measured 175 s)
    python -m experiments.partitions --preset tiny        # ~1.5 min; the test suite's variant
    python -m experiments.partitions --preset gpu-small   # Food101 (TFDS), ResNet50, 1/10 of the epochs
    python -m experiments.partitions --preset paper       # the paper's setting: days on 4 GPUs
    python -m experiments.report                          # then: results/REPORT.md

What runs: for each network, Algorithm 1 with K = 4, 8 and 16 partitions of the network and of
the input (GNet-R, the random-init baseline, once per network, in the K=4 run): Table 3.5 (top-1
and top-5 of GNet-T before and after training and of GNet-R), Fig. 3.6 (their validation curves),
Fig. 3.5 (training times of the two strategies); and Table 3.4: parameters and FLOPs of the
global network and one sub-network, and the time of 10 epochs of the global network and of the K
sub-networks, measured on one device and on all devices there are (the paper: 1 and 4 GPUs).

Input layouts (Section 3.1.2, :func:`dcnn_dd.grid.paper_grid`): K=4: 2x2 sub-images of 140x140 with
overlap; K=8: ours in the spirit of Fig. 3.4 - the K=4 rows split once more across the width,
2 rows x 4 columns of 140x80 with overlap; K=16: crop 24 px to 176x176, then 4x4 of 70x70 with
overlap.  The stand-in presets scale the same layouts to 28x28: 2x2 of 16x16; 2x4 of 16x10;
crop 2 px, 4x4 of 8x8.

Presets:

* ``paper``: Food101 (TFDS, 224x224; ``python -m dcnn_dd.data.prepare food101``), ResNet50 and
  ResNet101 with a 1024-wide hidden FC, batch 128, 300 iterations per epoch, the schedules of
  Section 3.1.2 (GNet-R 200 epochs, SNets 100, GNet-T 100, plateau rule), rotate/zoom/flip/shift
  augmentation.  Should reach Table 3.5 (GNet-T-4-trained ~75% top-1; GNet-T before training
  falling from ~49% (K=4) to ~14% (K=16) top-1).
* ``gpu-small``: Food101, ResNet50 only, the same schedules at 1/10 of the epochs.
* ``cpu-smoke``: Fashion-MNIST (10000 training / 2000 test images) standing in for Food101, a small
  bottleneck ResNet (stages of 1 block, widths 16/32, stem 16, hidden FC 64: divisible by 16)
  standing in for ResNet50; 30 iterations of batch 128 per epoch; the schedules at 1/20 of the
  epochs (GNet-R 10, SNets 5, GNet-T 5).
* ``tiny``: the cpu-smoke experiment at seconds scale with K = 4 and 16, for the tests (``vmap``:
  at this scale compilation dominates, and one vmapped sub-network compiles faster than 16
  unrolled ones).

Resumable: each Algorithm-1 run checkpoints under ``<out>/cases/``, each timing under ``<out>/timing/``.
"""

from __future__ import annotations

import dataclasses

from experiments import common

FOOD_GRIDS = {4: {"paper": "food101-4"}, 8: {"paper": "food101-8"}, 16: {"paper": "food101-16"}}
FASHION_GRIDS = {4: {"parts": 2, "size": 16}, 8: {"parts": [2, 4], "size": [16, 10]},
                 16: {"parts": 4, "size": 8, "crop": 2}}


@dataclasses.dataclass
class Plan:
    cases: list  # (name, slot model, K, Config)
    models: dict  # slot model -> model spec
    image_shape: tuple
    timing_steps: int
    stand_in: str | None = None


def _plan(*, dataset, models, Ks, grids, image_size, fraction, batch, steps_per_epoch, augment, strategy,  # noqa: N803
          train_size=None, test_size=None, timing_steps=20, image_shape=(224, 224, 3), eval_batch=500) -> list:
    from dcnn_dd.train.config import Config
    from dcnn_dd.train.schedules import scaled_schedule

    ep = {ph: scaled_schedule("food101", ph, fraction) for ph in ("gnet_r", "snets", "gnet_t")}
    cases = []
    for slot, spec in models.items():
        for K in Ks:  # noqa: N806
            c = Config(dataset=dataset, train_size=train_size, test_size=test_size, image_size=image_size,
                       model=spec, K=K, grid=grids[K], augment=augment, batch_size=batch,
                       steps_per_epoch=steps_per_epoch, eval_batch_size=eval_batch,
                       snet_epochs=ep["snets"][0], gnet_t_epochs=ep["gnet_t"][0],
                       gnet_r_epochs=ep["gnet_r"][0] if K == Ks[0] else 0,  # GNet-R once per network
                       snet_lr=ep["snets"][1].to_json(), gnet_t_lr=ep["gnet_t"][1].to_json(),
                       gnet_r_lr=ep["gnet_r"][1].to_json(), plateau_patience=5, strategy=strategy)
            cases.append((f"{slot.lower()}-k{K}", slot, K, c))
    return cases


def _resnet(name):
    return {"name": name, "fc_hidden": 1024, "conv_bias": True}


def paper() -> Plan:
    models = {"ResNet50": _resnet("resnet50"), "ResNet101": _resnet("resnet101")}
    cases = _plan(dataset="food101", models=models, Ks=(4, 8, 16), grids=FOOD_GRIDS, image_size=(224, 224),
                  fraction=1.0, batch=128, steps_per_epoch=300, augment="food101", strategy="auto")
    return Plan(cases, models, (224, 224, 3), timing_steps=50)


def gpu_small() -> Plan:
    models = {"ResNet50": _resnet("resnet50")}
    cases = _plan(dataset="food101", models=models, Ks=(4, 8, 16), grids=FOOD_GRIDS, image_size=(224, 224),
                  fraction=0.1, batch=128, steps_per_epoch=300, augment="food101", strategy="auto")
    return Plan(cases, models, (224, 224, 3), timing_steps=20)


SMALL = {"name": "bottleneck_resnet", "stage_sizes": [1, 1], "widths": [16, 32], "stem_width": 16,
         "fc_hidden": 64, "conv_bias": True}


def _smoke(*, Ks, model, train_size, test_size, fraction, batch, steps_per_epoch, timing_steps,  # noqa: N803
           strategy="sequential") -> Plan:
    cases = _plan(dataset="fashion_mnist_idx", models={"ResNet50": model}, Ks=Ks, grids=FASHION_GRIDS,
                  image_size=None, fraction=fraction, batch=batch, steps_per_epoch=steps_per_epoch,
                  augment="fashion", strategy=strategy, train_size=train_size, test_size=test_size,
                  eval_batch=1000)
    desc = "/".join(map(str, model["widths"]))
    stand_in = (f"Fashion-MNIST ({train_size} training / {test_size} test images, 28x28x1, 10 classes) stands in "
                f"for Food101 (101 classes, 224x224), a bottleneck ResNet (stages {model['stage_sizes']}, widths "
                f"{desc}, stem {model['stem_width']}, hidden FC {model['fc_hidden']}) for ResNet50 with its "
                f"1024-FC; K = {', '.join(map(str, Ks))} with the paper's layouts scaled to 28x28; {steps_per_epoch} "
                f"iterations of batch {batch} per epoch; the schedules at {fraction:g} of the epochs. ResNet101 "
                f"slots are missing.")
    return Plan(cases, {"ResNet50": model}, (28, 28, 1), timing_steps, stand_in)


def cpu_smoke() -> Plan:
    return _smoke(Ks=(4, 8, 16), model=SMALL, train_size=10000, test_size=2000, fraction=0.05, batch=128,
                  steps_per_epoch=30, timing_steps=10)


def tiny() -> Plan:
    model = {**SMALL, "widths": [16, 16], "stem_width": 16, "fc_hidden": 16}
    return _smoke(Ks=(4, 16), model=model, train_size=1024, test_size=256, fraction=0.01, batch=64,
                  steps_per_epoch=4, timing_steps=2, strategy="vmap")  # vmap: compiles fastest for K=16


PRESETS = {"paper": paper, "gpu-small": gpu_small, "cpu-smoke": cpu_smoke, "tiny": tiny}


# ----------------------------------------------------------------------------- Table 3.4
def complexity_entries(plan: Plan, num_classes: int) -> list[dict]:
    from dcnn_dd.complexity import KERAS, params_and_flops
    from dcnn_dd.train.config import build_grid, build_model

    out, done = [], set()
    for _, slot, K, c in plan.cases:  # noqa: N806
        model = build_model(plan.models[slot], num_classes)
        base = {"table": "3.4", "dataset": "food101", "model": slot}
        if slot not in done:
            n, rep = params_and_flops(model, (1, *plan.image_shape), include=KERAS)
            out += [{**base, "row": "GNet", "K": 1, "metric": "params_M", "value": n / 1e6},
                    {**base, "row": "GNet", "K": 1, "metric": "gflops", "value": rep.gflops}]
            done.add(slot)
        grid = build_grid(c.grid, plan.image_shape)
        n, rep = params_and_flops(model.subnet(K), (1, *grid.sub_shape, plan.image_shape[-1]), include=KERAS)
        out += [{**base, "row": f"SNet-{K}", "K": K, "metric": "params_M", "value": n / 1e6},
                {**base, "row": f"SNet-{K}", "K": K, "metric": "gflops", "value": rep.gflops}]
    return out


def timing_entries(plan: Plan, args) -> tuple[list[dict], list[dict]]:
    """Time of 10 epochs of the global network and of the K sub-networks, on 1 device and on all."""
    import jax

    from dcnn_dd.train.timing import time_training

    counts = [1] if len(jax.devices()) == 1 else [1, len(jax.devices())]
    rows, entries, done = [], [], set()
    for name, slot, K, c in plan.cases:  # noqa: N806
        for devices in counts:
            jobs = [("subnets", f"SNet-{K}", K, name)]
            if (slot, devices) not in done:
                jobs.insert(0, ("global", "GNet", 1, slot.lower()))
                done.add((slot, devices))
            # on several devices the K sub-networks are spread over them (shard_map), as the paper's GPUs
            cfg = c if devices == 1 or c.strategy == "auto" else c.replace(strategy="shard_map")
            for which, row, k, key in jobs:
                def compute(which=which, devices=devices, cfg=cfg):
                    print(f"timing: {which} of {name} on {devices} device(s) ...", flush=True)
                    return time_training(cfg, which, steps=plan.timing_steps, warmup=1, epochs=10,
                                         num_devices=devices, data_path=args.data, data_dir=args.data_dir)

                m = common.cached(args.out / "timing" / f"{key}-{which}-d{devices}.json", args.restart, compute)
                rows.append({"case": key, "row": row, "devices": devices, **m})
                entries.append({"table": "3.4", "dataset": "food101", "model": slot, "row": row, "K": k,
                                "metric": "time_s", "devices": devices,
                                "value": None if m.get("oom") else m["time_s"]})
    return rows, entries


# ----------------------------------------------------------------------------- Table 3.5
def accuracy_entries(name, slot, K, s) -> list[dict]:  # noqa: N803
    base = {"table": "3.5", "dataset": "food101", "model": slot}
    out = []
    for metric, init, trained in [("top1", "gnet_t_init_acc", "gnet_t_trained_acc"),
                                  ("top5", "gnet_t_init_top5", "gnet_t_trained_top5")]:
        out.append({**base, "row": f"GNet-T-{K}", "K": K, "metric": metric, "value": s[init]})
        out.append({**base, "row": f"GNet-T-{K}-trained", "K": K, "metric": metric, "value": s[trained]})
    if s.get("gnet_r_trained_acc") is not None:
        out.append({**base, "row": "GNet-R-trained", "metric": "top1", "value": s["gnet_r_trained_acc"]})
        out.append({**base, "row": "GNet-R-trained", "metric": "top5", "value": s["gnet_r_trained_top5"]})
    out += [{"table": "3.5-snets", "dataset": "food101", "model": slot, "K": K, "row": f"SNet-{k + 1} of {K}",
             "metric": "top1", "value": a} for k, a in enumerate(s["snet_acc"])]
    return out


def tables(plan: Plan, summaries: dict, timing_rows: list[dict]) -> dict:
    acc = []
    for name, slot, K, _ in plan.cases:  # noqa: N806
        s = summaries[name]
        acc.append([slot, K, f"{common.pct(min(s['snet_acc']))}-{common.pct(max(s['snet_acc']))}",
                    f"{common.pct(s['gnet_t_init_acc'])} / {common.pct(s['gnet_t_init_top5'])}",
                    f"{common.pct(s['gnet_t_trained_acc'])} / {common.pct(s['gnet_t_trained_top5'])}",
                    None if s.get("gnet_r_trained_acc") is None else
                    f"{common.pct(s['gnet_r_trained_acc'])} / {common.pct(s['gnet_r_trained_top5'])}",
                    f"{s['time_subnets_s']:.0f} + {s['time_gnet_t_s']:.0f}",
                    None if s.get("time_gnet_r_s") is None else f"{s['time_gnet_r_s']:.0f}"])
    timing = [[r["case"], r["row"], r["devices"], r.get("strategy") or "-",
               "OOM" if r.get("oom") else f"{r['time_s']:.1f} s", f"{r['timed_steps']}/{r['steps_per_epoch']}"]
              for r in timing_rows]
    return {
        "Table 3.5 (top-1 / top-5 %) and Fig. 3.5 (times)": common.md_table(
            ["model slot", "K", "SNets top-1", "GNet-T", "GNet-T-trained", "GNet-R-trained",
             "time SNets + GNet-T [s]", "time GNet-R [s]"], acc),
        "Table 3.4 (time of 10 epochs, from timed steps)": common.md_table(
            ["case", "row", "devices", "strategy", "10 epochs", "timed steps / epoch"], timing),
    }


def notes(plan: Plan, summaries: dict) -> list[str]:
    out = []
    for slot in plan.models:
        init = [(K, summaries[n]["gnet_t_init_acc"]) for n, s_, K, _ in plan.cases if s_ == slot]
        falling = all(a >= b for (_, a), (_, b) in zip(init, init[1:]))
        out.append(f"{slot} slot: GNet-T before training, top-1 by K: "
                   + ", ".join(f"K={K} {100 * a:.2f}%" for K, a in init)
                   + (" - falls as K grows, as in the paper (Table 3.5: 49.09 / 25.59 / 13.65%)." if falling else
                      " - DEVIATION: does not fall monotonically with K as in the paper (Table 3.5: 49.09 / 25.59 / "
                      "13.65%); likely cause: a short run and sub-networks of 1-2 channels per layer at K=16 on "
                      "28x28 inputs, where each SNet is near chance."))
    out.append("Table 3.4: the time of 10 epochs is the measured seconds per step (real input pipeline, on-device "
               "augmentation) times the steps of 10 epochs of the configured iterations per epoch. 'devices' is the "
               "number used; on a one-device machine only the 1-device rows exist.")
    return out


def figures(out, plan: Plan, summaries: dict) -> dict:
    plt = common.pyplot()

    slots = list(plan.models)
    # Fig. 3.5: training times
    fig, axes = plt.subplots(1, len(slots), figsize=(5 * len(slots), 3.6), squeeze=False)
    for ax, slot in zip(axes[0], slots):
        cases = [(n, K) for n, s_, K, _ in plan.cases if s_ == slot]
        labels = []
        for i, (n, K) in enumerate(cases):  # noqa: N806
            s = summaries[n]
            ax.bar(i, s["time_subnets_s"], 0.6, color="0.6", label="SNets" if i == 0 else None)
            ax.bar(i, s["time_gnet_t_s"], 0.6, bottom=s["time_subnets_s"], color="C0", label="GNet-T" if i == 0 else None)
            labels.append(f"partitions={K}")
        r = next((summaries[n] for n, _ in cases if summaries[n].get("time_gnet_r_s") is not None), None)
        if r is not None:
            ax.bar(len(cases), r["time_gnet_r_s"], 0.6, color="C3", label="GNet-R")
            labels.append("random")
        ax.set_xticks(range(len(labels)), labels)
        ax.set(ylabel="training time [s]", title=f"Fig. 3.5: {slot} slot")
        ax.legend(fontsize=8)
    common.save_figure(fig, out / "fig3_5_times.png")
    # Fig. 3.6: top-1 and top-5 validation curves
    fig, axes = plt.subplots(len(slots), 2, figsize=(10, 3.4 * len(slots)), squeeze=False)
    for r_i, slot in enumerate(slots):
        for c_i, (key, init_key, label) in enumerate([("val_acc", "gnet_t_init_acc", "top-1"),
                                                      ("val_top5", "gnet_t_init_top5", "top-5")]):
            ax = axes[r_i, c_i]
            for i, (n, s_, K, _) in enumerate(plan.cases):  # noqa: N806
                if s_ != slot:
                    continue
                s = summaries[n]
                h = s["histories"]
                n_s = s["epochs"]["snets"]
                ax.plot([n_s] + [n_s + r["epoch"] for r in h.get("gnet_t", [])],
                        [s[init_key]] + [r[key] for r in h.get("gnet_t", [])], marker="o", ms=3, color=f"C{i}",
                        label=f"GNet-T-{K}")
                if h.get("gnet_r"):
                    ax.plot([r["epoch"] for r in h["gnet_r"]], [r[key] for r in h["gnet_r"]], color="k", marker="s",
                            ms=3, label="GNet-R")
            ax.set(title=f"Fig. 3.6: {slot} slot, {label}", xlabel="epoch (GNet-T after its SNets' epochs)",
                   ylabel=f"validation {label} accuracy")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="lower right")
    common.save_figure(fig, out / "fig3_6_accuracy.png")
    return {"3.5": "fig3_5_times.png", "3.6": "fig3_6_accuracy.png"}


def run(args) -> dict:
    plan = PRESETS[args.preset]()
    args.out.mkdir(parents=True, exist_ok=True)
    summaries, entries = {}, []
    for name, slot, K, c in plan.cases:  # noqa: N806
        print(f"== case {name}: K={K}, grid {c.grid}", flush=True)
        summaries[name] = common.run_case(c, args.out / "cases" / name, args)
        entries += accuracy_entries(name, slot, K, summaries[name])
    num_classes = 101 if plan.cases[0][3].dataset == "food101" else 10
    entries = complexity_entries(plan, num_classes) + entries
    timing_rows, t_entries = timing_entries(plan, args)
    entries += t_entries
    for name, slot, K, _ in plan.cases:  # noqa: N806
        s = summaries[name]
        base = {"table": "fig3.5", "dataset": "food101", "model": slot, "metric": "time_s"}
        entries += [{**base, "K": K, "row": "SNets", "value": s["time_subnets_s"]},
                    {**base, "K": K, "row": "GNet-T", "value": s["time_gnet_t_s"]}]
        if s.get("time_gnet_r_s") is not None:
            entries.append({**base, "row": "GNet-R", "value": s["time_gnet_r_s"]})
    return {
        "stand_in": plan.stand_in,
        "entries": entries,
        "tables_md": tables(plan, summaries, timing_rows),
        "figures": figures(args.out, plan, summaries),
        "notes": notes(plan, summaries),
        "cases": {n: {"config": c.to_json(), "slot": slot, "K": K,
                      "summary": {k: v for k, v in summaries[n].items() if k != "histories"}}
                  for n, slot, K, c in plan.cases},
        "timing": timing_rows,
    }


def main(argv=None) -> dict:
    return common.main("partitions", __doc__, run, argv)


if __name__ == "__main__":
    main()
