"""Running the CNN-DNN experiment: every case's phases (:func:`dcnn_dd.cnn_dnn.train.run_cnn_dnn`), the
result entries, the accuracy and wall-time tables and the notes."""

from __future__ import annotations

from experiments import cli
from experiments.cnn_dnn.config import OVERLAP_NAME, PRESETS, ROWS, TIME_ROWS, Case, Preset
from experiments.tables import md_table, pct


# ----------------------------------------------------------------------------- results
def entries(plan: Preset, case: Case, s: dict) -> list[dict]:
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
        rows.append([c.name, f"{pct(min(loc))} / {pct(sum(loc) / len(loc))} / {pct(max(loc))}",
                     *[pct(a[k]) for k, _ in ROWS[1:]]])
    return md_table(["case", "local CNNs min / mean / max [%]", *[f"{r} [%]" for _, r in ROWS[1:]]], rows)


def time_table(cases, summaries) -> str:
    rows = []
    for c in cases:
        s = summaries[c.name]
        t = s["time_s"]
        rows.append([c.name, *[None if t[k] is None else f"{t[k]:.1f}" for k, _ in TIME_ROWS],
                     f"{s['params']['local_each']:,} x {c.K}", f"{s['params']['dnn']:,} ({s['params']['dnn_hidden']})",
                     f"{s['params']['global']:,}", s["strategy"]["strategy"]])
    return md_table(["case", *[f"{r} [s]" for _, r in TIME_ROWS], "params local CNN x K", "params DNN (hidden)",
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


def run(args) -> dict:
    from dcnn_dd.cnn_dnn import train
    from experiments.cnn_dnn.figures import figure

    plan = cli.apply(PRESETS[args.preset](), args)
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
    import experiments.cnn_dnn as pkg

    return cli.main("cnn_dnn", pkg.__doc__, run, argv, targets=targets,
                    set_help="the configurations (Config; cnn_dnn.KEY: CNNDNNConfig)")


def targets() -> dict:
    """``--set`` keys: the fields of :class:`~dcnn_dd.train.config.Config` and, prefixed ``cnn_dnn.``,
    of :class:`~dcnn_dd.cnn_dnn.train.CNNDNNConfig`."""
    from dcnn_dd.cnn_dnn.train import CNNDNNConfig
    from dcnn_dd.train.config import Config

    return {"": Config, "cnn_dnn": CNNDNNConfig}
