"""CNN-DNN (Klawonn, Weber, Lanser, arXiv 2408.14442 and 2302.06564): local CNNs on sub-images,
their class probabilities aggregated by a DNN, by averaging, by majority vote or by the logit sum
(Gu et al.'s composed network); the coherent CNN-DNN from random initialisation and with transfer
learning; and the global CNN trained directly.  K in {4, 16}, with and without overlap.

    python -m experiments.cnn_dnn --preset cpu-smoke   # offline, Fashion-MNIST, ~3 min on 2 CPU cores (measured 190 s)
    python -m experiments.cnn_dnn --preset tiny        # ~30 s; the test suite's variant
    python -m experiments.cnn_dnn --preset gpu-small   # CIFAR-10 (TFDS), ResNet20, a tenth of the epochs (not run yet)
    python -m experiments.cnn_dnn --preset paper       # CIFAR-10 (TFDS), ResNet32, paper scale (not run yet; many GPU hours)
    python -m experiments.report                       # then: results/REPORT.md includes results/cnn_dnn/

What runs, per case (K, overlap): the K local CNNs (the global architecture with its widths divided
by K, trained concurrently as the sub-networks of Algorithm 1), then from their frozen outputs the
aggregators (DNN trained on them, average, majority vote, logit sum, and the composed network of
Gu et al. before fine-tuning), then the coherent CNN-DNN trained end to end from random
initialisation and from the pre-trained local CNNs + DNN (transfer learning).  The global CNN is
trained directly once (in the first case).  Every phase's wall time is recorded.

Outputs in ``results/cnn_dnn/``: ``results.json`` (the schema of :mod:`experiments.common`; table
``cnn_dnn`` (accuracies), ``cnn_dnn-time`` (wall times), ``cnn_dnn-local`` (each local CNN)),
``results.md``, ``cnn_dnn.png`` (accuracies and phase wall times per case), ``cases/<case>/``
(engine run directories: re-running the same command resumes where it stopped).

Presets (epochs and models are our choices - only the abstract of Klawonn et al. is available to
us, so neither their schedules nor their numbers are reproduced or claimed):

* ``paper``: CIFAR-10 (TFDS; ``python -m dcnn_dd.data.prepare cifar10``), CIFAR ResNet32 (widths
  64/128/256, divisible by 16), flip+shift augmentation, batch 128; K=4 on 2x2 sub-images of 20x20
  (overlap) / 16x16, K=16 on 4x4 of 10x10 (overlap) / 8x8; local CNNs 100 epochs, global CNN and
  coherent CNN-DNN 200, DNN 50, transfer 50; the Section 3.1.1 schedules of Gu et al. scaled to
  these epochs.  Should reach, if the CNN-DNN papers' claims carry over: the DNN at or above the
  average and the vote, the transfer model above the coherent model from random init, and both
  close to the global CNN.
* ``gpu-small``: the same with ResNet20 and a tenth of the epochs.
* ``cpu-smoke``: Fashion-MNIST (8000 training / 2000 test images) standing in for CIFAR-10; a
  VGG-style CNN (same padding, conv 32-32-pool-64-64-pool, global average pooling, FC 128) standing
  in for the ResNet; K=4 on 2x2 of 16x16 (overlap) / 14x14, K=16 on 4x4 of 10x10 (overlap) / 7x7;
  batch 128; local CNNs 4 epochs, global CNN 4, DNN 10, coherent 4, transfer 2.
* ``tiny``: seconds scale for the tests: 512 / 256 images, K=4 overlap and K=16 non-overlap only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from experiments import common

OVERLAP_NAME = {True: "overlap", False: "nonoverlap"}
ROWS = [("local", "local CNNs (mean)"), ("average", "average"), ("vote", "majority vote"),
        ("logit_sum", "logit sum"), ("composed", "Gu et al. composed"), ("dnn", "CNN-DNN (DNN on frozen local)"),
        ("coherent", "coherent CNN-DNN (random init)"), ("transfer_init", "transfer: initial"),
        ("transfer", "transfer: trained"), ("global", "global CNN")]
TIME_ROWS = [("local", "local CNNs"), ("features", "local outputs"), ("dnn", "DNN"), ("coherent", "coherent"),
             ("transfer", "transfer"), ("global", "global CNN"), ("compose", "compose")]


@dataclasses.dataclass
class Case:
    name: str
    config: object  # dcnn_dd.train.Config
    cnn_dnn: object  # dcnn_dd.cnn_dnn.train.CNNDNNConfig
    K: int  # noqa: N815
    overlap: bool


@dataclasses.dataclass
class Plan:
    cases: list
    slot: dict  # the (dataset, model) the cases stand for
    stand_in: str | None = None


def _cases(*, dataset, model, grids, Ks, overlaps, batch, augment, strategy, inner, epochs, lrs, train_size=None,  # noqa: N803
           test_size=None, steps_per_epoch=None, eval_batch=1000, dnn_hidden=None):
    from dcnn_dd.cnn_dnn.train import CNNDNNConfig
    from dcnn_dd.train.config import Config

    cases = []
    for i, (K, overlap) in enumerate((K, o) for K in Ks for o in overlaps):  # noqa: N806
        if (K, overlap) not in grids:
            continue
        c = Config(dataset=dataset, train_size=train_size, test_size=test_size, model=model, K=K,
                   grid=grids[(K, overlap)], augment=augment, batch_size=batch, steps_per_epoch=steps_per_epoch,
                   eval_batch_size=eval_batch, snet_epochs=epochs["local"], gnet_t_epochs=0,
                   gnet_r_epochs=epochs["global"] if not cases else 0,  # the global CNN once
                   snet_lr=lrs["local"], gnet_r_lr=lrs["global"], plateau_patience=5, strategy=strategy)
        cfg = CNNDNNConfig(dnn_hidden=dnn_hidden, dnn_epochs=epochs["dnn"], dnn_lr=lrs["dnn"],
                           coherent_epochs=epochs["coherent"], coherent_lr=lrs["coherent"],
                           transfer_epochs=epochs["transfer"], transfer_lr=lrs["transfer"], inner=inner)
        cases.append(Case(f"k{K}-{OVERLAP_NAME[overlap]}", c, cfg, K, overlap))
    return cases


def _cifar(depth: int, fraction: float) -> Plan:
    from dcnn_dd.train.schedules import scaled_schedule

    grids = {(4, True): {"paper": "cifar-overlap"}, (4, False): {"paper": "cifar"},
             (16, True): {"parts": 4, "size": 10}, (16, False): {"parts": 4, "size": 8}}
    n_local, s_local = scaled_schedule("cifar", "snets", fraction * 100 / 120)
    n_glob, s_glob = scaled_schedule("cifar", "gnet_r", fraction)
    n_tr, s_tr = scaled_schedule("cifar", "gnet_t", fraction * 50 / 80)
    epochs = {"local": n_local, "global": n_glob, "dnn": max(1, round(50 * fraction)), "coherent": n_glob,
              "transfer": n_tr}
    lrs = {"local": s_local.to_json(), "global": s_glob.to_json(), "dnn": 1e-3, "coherent": s_glob.to_json(),
           "transfer": s_tr.to_json()}
    model = {"name": "cifar_resnet", "depth": depth, "widths": [64, 128, 256]}
    cases = _cases(dataset="cifar10", model=model, grids=grids, Ks=(4, 16), overlaps=(True, False), batch=128,
                   augment="cifar", strategy="auto", inner="vmap", epochs=epochs, lrs=lrs)
    return Plan(cases, {"dataset": "cifar10", "model": f"ResNet{depth}"})


def paper() -> Plan:
    return _cifar(32, 1.0)


def gpu_small() -> Plan:
    return _cifar(20, 0.1)


def _fashion(*, Ks, overlaps, features, fc, train_size, test_size, batch, epochs, strategy, inner,  # noqa: N803
             steps_per_epoch=None, eval_batch=1000) -> Plan:
    grids = {(4, True): {"parts": 2, "size": 16}, (4, False): {"parts": 2, "size": 14},
             (16, True): {"parts": 4, "size": 10}, (16, False): {"parts": 4, "size": 7}}
    model = {"name": "plain", "features": list(features), "pool_after": [1, 3], "fc": list(fc), "padding": "SAME",
             "head": "gap"}
    lrs = {"local": 1e-3, "global": 1e-3, "dnn": 1e-3, "coherent": 1e-3, "transfer": 1e-4}
    cases = _cases(dataset="fashion_mnist_idx", model=model, grids=grids, Ks=Ks, overlaps=overlaps, batch=batch,
                   augment="none", strategy=strategy, inner=inner, epochs=epochs, lrs=lrs, train_size=train_size,
                   test_size=test_size, steps_per_epoch=steps_per_epoch, eval_batch=eval_batch)
    stand_in = (f"Fashion-MNIST ({train_size} training / {test_size} test images, 28x28x1) stands in for CIFAR-10, "
                f"a VGG-style CNN (same padding, conv {features[0]}-{features[1]}-pool-{features[2]}-{features[3]}-pool, "
                f"global average pooling, FC {fc[0]}) for ResNet32; epochs: local CNNs {epochs['local']}, global CNN "
                f"{epochs['global']}, DNN {epochs['dnn']}, coherent {epochs['coherent']}, transfer {epochs['transfer']}"
                + (f", {steps_per_epoch} batches of {batch} per epoch" if steps_per_epoch else f", batch {batch}")
                + ". Klawonn et al.'s own numbers are not available to us (abstract only).")
    return Plan(cases, {"dataset": "cifar10", "model": "ResNet32"}, stand_in)


def cpu_smoke() -> Plan:
    return _fashion(Ks=(4, 16), overlaps=(True, False), features=(32, 32, 64, 64), fc=(128,), train_size=8000,
                    test_size=2000, batch=128, strategy="auto", inner="sequential",
                    epochs={"local": 4, "global": 4, "dnn": 10, "coherent": 4, "transfer": 2})


def tiny() -> Plan:
    plan = _fashion(Ks=(4, 16), overlaps=(True, False), features=(16, 16, 32, 32), fc=(32,), train_size=512,
                    test_size=256, batch=64, strategy="vmap", inner="vmap", steps_per_epoch=4, eval_batch=256,
                    epochs={"local": 1, "global": 1, "dnn": 2, "coherent": 1, "transfer": 1})
    plan.cases = [c for c in plan.cases if (c.K, c.overlap) in ((4, True), (16, False))]
    return plan


PRESETS = {"paper": paper, "gpu-small": gpu_small, "cpu-smoke": cpu_smoke, "tiny": tiny}


# ----------------------------------------------------------------------------- results
def entries(plan: Plan, case: Case, s: dict) -> list[dict]:
    base = {"dataset": plan.slot["dataset"], "model": plan.slot["model"]}
    ov = {**base, "K": case.K, "overlap": case.overlap}
    out = []
    for key, row in ROWS:
        if key == "local":
            continue
        v = s["acc"][key]
        if v is None:
            continue
        out.append({"table": "cnn_dnn", **(base if key == "global" else ov), "row": row, "metric": "acc", "value": v})
    loc = s["acc"]["local"]
    out.append({"table": "cnn_dnn", **ov, "row": "local CNNs (mean)", "metric": "acc", "value": sum(loc) / len(loc)})
    out += [{"table": "cnn_dnn-local", **ov, "row": f"local CNN {k + 1} of {case.K}", "metric": "acc", "value": a}
            for k, a in enumerate(loc)]
    for key, row in TIME_ROWS:
        v = s["time_s"][key]
        if v is not None and not (key == "global" and s["acc"]["global"] is None):
            out.append({"table": "cnn_dnn-time", **(base if key == "global" else ov), "row": row, "metric": "time_s",
                        "value": v})
    return out


def accuracy_table(cases, summaries) -> str:
    rows = []
    for c in cases:
        a = summaries[c.name]["acc"]
        loc = a["local"]
        rows.append([c.name, f"{common.pct(min(loc))} / {common.pct(sum(loc) / len(loc))} / {common.pct(max(loc))}",
                     *[common.pct(a[k]) for k, _ in ROWS[1:]]])
    return common.md_table(["case", "local CNNs min / mean / max [%]", *[f"{r} [%]" for _, r in ROWS[1:]]], rows)


def time_table(cases, summaries) -> str:
    rows = []
    for c in cases:
        s = summaries[c.name]
        t = s["time_s"]
        rows.append([c.name, *[None if t[k] is None else f"{t[k]:.1f}" for k, _ in TIME_ROWS],
                     f"{s['params']['local_each']:,} x {c.K}", f"{s['params']['dnn']:,} ({s['params']['dnn_hidden']})",
                     f"{s['params']['global']:,}", s["strategy"]["strategy"]])
    return common.md_table(["case", *[f"{r} [s]" for _, r in TIME_ROWS], "params local CNN x K", "params DNN (hidden)",
                            "params global CNN", "local strategy"], rows)


def notes(cases, summaries) -> list[str]:
    out = ["Klawonn, Weber, Lanser report their numbers in arXiv 2408.14442 / 2302.06564; only the abstract is "
           "available to us, so no paper numbers are listed next to ours.",
           "Majority vote ties (several classes with the most votes) go to the tied class with the highest summed "
           "probability, then the lowest class index.",
           "The DNN is trained on the local CNNs' probabilities of the (non-augmented) training images; 'transfer: "
           "initial' is the coherent model evaluated with the trained local CNNs and DNN before any end-to-end step, "
           "so it must equal the CNN-DNN (DNN) row up to float rounding.",
           "The global CNN is trained once (first case); its wall time is not part of the other cases."]
    for c in cases:
        s = summaries[c.name]
        a = s["acc"]
        best_param_free = max(a["average"], a["vote"], a["logit_sum"])
        if a["dnn"] is not None and a["dnn"] < best_param_free:
            out.append(f"{c.name}: the DNN ({a['dnn']:.4f}) is below the best parameter-free aggregator "
                       f"({best_param_free:.4f}); Klawonn et al. motivate the DNN by it doing better. Here it sees "
                       f"only the training set's local outputs for {s['epochs']['dnn']} epochs.")
        if a["transfer"] is not None and a["coherent"] is not None and a["transfer"] < a["coherent"]:
            out.append(f"{c.name}: transfer learning ({a['transfer']:.4f}) is below the coherent model from random "
                       f"init ({a['coherent']:.4f}).")
        if a["transfer_init"] is not None and a["dnn"] is not None and abs(a["transfer_init"] - a["dnn"]) > 1e-3:
            out.append(f"CHECK {c.name}: transfer initial accuracy {a['transfer_init']:.4f} differs from the DNN's "
                       f"{a['dnn']:.4f} (should be equal).")
        out.append(f"{c.name}: majority vote tied on {100 * s['vote_tied_fraction']:.1f}% of the test images.")
        p = s["params"]
        if p["dnn"] > p["local_all"]:
            out.append(f"{c.name}: the DNN (default widths {p['dnn_hidden']}: {p['dnn']:,} parameters) has more "
                       f"parameters than the {c.K} local CNNs together ({p['local_all']:,})"
                       + (f" and than the global CNN ({p['global']:,})" if p["dnn"] > p["global"] else "")
                       + "; it reads only K x classes numbers, but part of the CNN-DNN's gain over the "
                         "parameter-free aggregators may be this capacity.")
    return out


def figure(out: Path, cases, summaries) -> str:
    plt = common.pyplot()
    import numpy as np

    fig, (ax_a, ax_t) = plt.subplots(1, 2, figsize=(13, 4.4), gridspec_kw={"width_ratios": [3, 2]})
    keys = [k for k, _ in ROWS if k != "transfer_init"]
    labels = dict(ROWS)
    width = 0.8 / len(cases)
    for i, c in enumerate(cases):
        a = summaries[c.name]["acc"]
        vals = [np.mean(a["local"]) if k == "local" else a[k] for k in keys]
        xs = np.arange(len(keys)) + (i - (len(cases) - 1) / 2) * width
        ax_a.bar(xs, [np.nan if v is None else v for v in vals], width, label=c.name)
        lo, hi = min(a["local"]), max(a["local"])
        ax_a.errorbar(xs[0], np.mean(a["local"]), yerr=[[np.mean(a["local"]) - lo], [hi - np.mean(a["local"])]],
                      color="k", capsize=2, lw=1)
    ax_a.set_xticks(range(len(keys)), [labels[k] for k in keys], rotation=35, ha="right", fontsize=8)
    ax_a.set_ylabel("test accuracy")
    ax_a.set_ylim(0, 1.12)
    ax_a.grid(axis="y", alpha=0.3)
    ax_a.legend(fontsize=8, loc="upper left", ncol=len(cases))
    ax_a.set_title("accuracy (local CNNs: mean, bar = min..max)")
    tkeys = [k for k, _ in TIME_ROWS if k != "compose"]
    tl = dict(TIME_ROWS)
    for i, c in enumerate(cases):
        t = summaries[c.name]["time_s"]
        xs = np.arange(len(tkeys)) + (i - (len(cases) - 1) / 2) * width
        ax_t.bar(xs, [np.nan if t[k] is None else t[k] for k in tkeys], width, label=c.name)
    ax_t.set_xticks(range(len(tkeys)), [tl[k] for k in tkeys], rotation=35, ha="right", fontsize=8)
    ax_t.set_ylabel("wall time [s]")
    ax_t.set_title("phase wall times")
    ax_t.grid(axis="y", alpha=0.3)
    return common.save_figure(fig, out / "cnn_dnn.png")


def run(args) -> dict:
    from dcnn_dd.cnn_dnn import train

    plan = PRESETS[args.preset]()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    summaries, all_entries = {}, []
    for case in plan.cases:
        print(f"== case {case.name}: K={case.K}, {OVERLAP_NAME[case.overlap]}", flush=True)
        s = train.run_cnn_dnn(case.config, case.cnn_dnn, out / "cases" / case.name, restart=args.restart,
                      progress=not args.no_progress, data_path=args.data, data_dir=args.data_dir,
                      num_devices=args.num_devices)
        summaries[case.name] = s
        all_entries += entries(plan, case, s)
    return {
        "stand_in": plan.stand_in,
        "entries": all_entries,
        "tables_md": {"CNN-DNN: test accuracy of each local CNN, aggregator and model": accuracy_table(plan.cases,
                                                                                                      summaries),
                      "CNN-DNN: wall time of every phase": time_table(plan.cases, summaries)},
        "figures": {"cnn_dnn": figure(out, plan.cases, summaries)},
        "notes": notes(plan.cases, summaries),
        "cases": {c.name: {"config": c.config.to_json(), "cnn_dnn": c.cnn_dnn.to_json(), "K": c.K, "overlap": c.overlap,
                           "summary": {k: v for k, v in summaries[c.name].items() if k != "histories"}}
                  for c in plan.cases},
    }


def main(argv=None) -> dict:
    return common.main("cnn_dnn", __doc__, run, argv)


if __name__ == "__main__":
    main()
