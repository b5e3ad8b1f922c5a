"""experiments.visualize's run: one Algorithm-1 run, the networks of Figs. 3.7-3.8, their feature
maps (Theorem 2.1 (1)), CAMs and accuracies, the figures, and the results' numbers and prose."""

from __future__ import annotations

import numpy as np

from dcnn_dd.activation_maps import cam_fn, upsample_normalized
from dcnn_dd.theorems import restricted_feature_maps
from experiments import cli
from experiments.results import cached, run_case
from experiments.tables import md_table, pct
from experiments.visualize.config import CLASS_NAMES, FIGURES, LAYERS, PRESETS
from experiments.visualize.figures import draw_cam, draw_feature_maps, grey_images


def _load(run_dir, phase: str) -> dict:
    """``checkpoint.load_variables`` without orbax's absl warning about the checkpoint metadata file."""
    import logging

    from dcnn_dd.train.checkpoint import load_variables

    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return load_variables(run_dir, phase)
    finally:
        log.setLevel(level)


def pick_images(labels: np.ndarray, n: int) -> np.ndarray:
    """``n`` indices, cycling over the classes in order of first appearance (different classes first)."""
    order = list(dict.fromkeys(int(v) for v in labels))
    per = {c: list(np.flatnonzero(labels == c)) for c in order}
    out: list[int] = []
    while len(out) < min(n, len(labels)):
        for c in order:
            if per[c] and len(out) < n:
                out.append(int(per[c].pop(0)))
    return np.asarray(out)


def run(args) -> dict:
    import jax

    from dcnn_dd import sharding
    from dcnn_dd.composition import compose
    from dcnn_dd.fields import total_stride
    from dcnn_dd.grid import decompose_input
    from dcnn_dd.train.composed_training import phase_keys
    from dcnn_dd.train.setup import build_setup
    from dcnn_dd.train.steps import Steps
    from dcnn_dd.tree import unstack

    setting = cli.apply(PRESETS[args.preset](), args)
    c = setting.config
    run_dir = args.out / "cases" / "dogs_cats"
    summary = run_case(c, run_dir, args)
    main_proc = jax.process_index() == 0

    setup = build_setup(c, data_path=args.data, data_dir=args.data_dir, num_devices=args.num_devices)
    k_r, _ = phase_keys(c.seed)  # GNet-R's initial variables, as Algorithm 1 draws them
    snets = _load(run_dir, "snets")
    plan = setup.plan  # derived and checked when the setup was built
    nets = {
        "GNet-T": jax.device_get(jax.jit(lambda s: compose(plan, s))(snets)),
        "GNet-T-trained": _load(run_dir, "gnet_t"),
        "GNet-R": jax.device_get(setup.global_init(k_r)),
        "GNet-R-trained": _load(run_dir, "gnet_r"),
    }

    # test images: different classes first
    n_look = min(len(setup.test_source), 64)
    _, look_labels = setup.test_source.take(np.arange(n_look))
    ids = pick_images(look_labels, setting.n_images)
    images, labels = setup.test_source.take(ids)
    x = np.asarray(setup.prep(images, ids, 0, False))

    # ---- Fig. 3.7
    maps = restricted_feature_maps(setup.model, setup.sub, nets["GNet-T"], snets, x, setup.grid, LAYERS)
    diffs = {i: [float(np.max(np.abs(g - s))) for g, s, _ in per_k] for i, per_k in maps.items()}
    print(f"Fig. 3.7 / Theorem 2.1 (1): max |GNet-T (composed) on Omega_k, channel block k - SNet-k| on "
          f"{len(ids)} test images")
    for i in LAYERS:
        print(f"  layer {i}: " + ", ".join(f"k={k + 1}: {d:.2e}" for k, d in enumerate(diffs[i]))
              + f"  (field {maps[i][0][2].size} of the sub-network's map)")

    # ---- Fig. 3.8: CAMs and accuracies
    shape = setup.image_shape[:2]
    cams, probs = {}, {}
    titles = {"GNet-T": "(b) GNet-T composed", "GNet-T-trained": "(c) GNet-T fine-tuned",
              "GNet-R": "(d) GNet-R initial", "GNet-R-trained": "(e) GNet-R trained"}
    with jax.default_matmul_precision("highest"):
        g_cam, s_cam = cam_fn(setup.model), cam_fn(setup.sub)
        for name, v in nets.items():
            m, p = g_cam(v, x, labels)
            cams[titles[name]], probs[titles[name]] = upsample_normalized(np.asarray(m), shape), np.asarray(p)
        xs = decompose_input(x, setup.grid)
        sub_cams, sub_probs = [], []
        for k, v in enumerate(unstack(snets, c.K)):
            m, p = s_cam(v, xs[k], labels)
            sub_cams.append(upsample_normalized(np.asarray(m), setup.grid.sub_shape))
            sub_probs.append(np.asarray(p))

    def gnet_r_init_acc():
        acc = Steps(setup).global_evaluator()(sharding.put_global(nets["GNet-R"], sharding.replicated(setup.data_mesh)))["acc"]
        return {"acc": float(np.asarray(acc))}

    r0 = cached(args.out / "gnet_r_init.json", args.restart, gnet_r_init_acc)
    accs = {f"SNet-{k + 1}": a for k, a in enumerate(summary["snet_acc"])}
    accs.update({"GNet-T": summary["gnet_t_init_acc"], "GNet-T-trained": summary["gnet_t_trained_acc"],
                 "GNet-R": r0["acc"], "GNet-R-trained": summary["gnet_r_trained_acc"]})

    figures = dict(FIGURES)
    if main_proc:
        args.out.mkdir(parents=True, exist_ok=True)
        grey = grey_images(images)
        draw_feature_maps(args.out / FIGURES["3.7"], grey[0], maps, diffs, setup.grid, setting.channels)
        names = CLASS_NAMES.get(c.dataset) or tuple(str(i) for i in range(setup.train_source.num_classes))
        draw_cam(args.out / FIGURES["3.8"], grey, labels, names, sub_cams, cams, probs, sub_probs, setup.grid)

    # ---- results
    windows = dict(setup.model.spatial_layers())
    key = {"dataset": c.dataset, "model": "DogsCatsCNN", "K": c.K, "overlap": bool(setup.grid.overlaps)}
    entries = [{"table": "fig3.7", "row": f"layer{i}", "metric": "max_abs_diff", **key, "value": max(diffs[i])}
               for i in LAYERS]
    entries += [{"table": "fig3.8", "row": name, "metric": "acc", **key, "value": None if a is None else float(a)}
                for name, a in accs.items()]
    t37 = md_table(["layer", "stride", "field Ω_k"] + [f"k={k + 1}" for k in range(c.K)] + ["max"],
                          [[i, total_stride(windows[f"layer{i}"], setup.grid.ndim)[0],
                            "x".join(map(str, maps[i][0][2].size))]
                           + [f"{d:.2e}" for d in diffs[i]] + [f"{max(diffs[i]):.2e}"] for i in LAYERS])
    t38 = md_table(["network", "test accuracy (%)"], [[n, pct(a)] for n, a in accs.items()])
    notes = [
        "Fig. 3.7 compares sub-network k's map with the composed network's map restricted to the activation field "
        "Omega_k of (2.15) and channel block k (Theorem 2.1 (1)); with SAME padding the field loses one cell per conv "
        "at every interior sub-image border, border padding counts as inside.",
        "Global average pooling: the composed network's logits are not the exact sum of the sub-networks' (the "
        f"average runs over the whole map, not the fields); measured max |global - sum of sub logits| = "
        f"{summary['theorem_2_1_max_abs_diff']:.3g} on the test set. GNet-T before fine-tuning is an initialisation.",
        "CAM for the ground-truth class, bilinearly upsampled and min-max normalised per map; column (a) shows the "
        "four sub-images each with its own sub-network's CAM, in the grid's 2x2 layout (overlaps shown twice).",
        "GNet-R before training = its initial variables, recomputed from the seed as Algorithm 1 draws them.",
        f"Epochs (our choice; the paper gives none for Section 3.1.3): SNets {c.snet_epochs}, GNet-T "
        f"{c.gnet_t_epochs}, GNet-R {c.gnet_r_epochs}.",
    ]
    if c.dataset == "cats_vs_dogs":
        notes.append("Cats vs. Dogs has a single TFDS split: train on train[:80%], test on train[80%:] (our choice).")
    return {"stand_in": setting.stand_in, "entries": entries,
            "tables_md": {f"Fig. 3.7: max |SNet-k - GNet-T on Ω_k| (feature maps, {len(ids)} test images)": t37,
                          "Fig. 3.8 networks: test accuracy": t38},
            "figures": figures, "notes": notes}
