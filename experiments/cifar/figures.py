"""The cifar experiment's figures: Figs. 3.1-3.3 and the Table 3.2 sweep."""

from __future__ import annotations

from pathlib import Path

from experiments.cifar.config import OVERLAP_NAME
from experiments.plotting import pyplot, save_figure
from experiments.results import timed_s


# ----------------------------------------------------------------------------- figures
def figures(out: Path, cases, summaries) -> dict:
    plt = pyplot()

    figs = {}
    resnet = [c for c in cases if not c.exact]
    groups = sorted({(c.slot["dataset"], c.slot["model"], c.config.dataset) for c in resnet})

    def find(ds, model, overlap):
        return next((c for c in resnet if (c.slot["dataset"], c.slot["model"]) == (ds, model)
                     and c.slot["overlap"] == overlap), None)

    # Fig. 3.1: training times of the two strategies
    fig, ax = plt.subplots(figsize=(2.4 + 2.2 * len(groups), 3.8))
    for i, (ds, model, _) in enumerate(groups):
        for j, overlap in enumerate((False, True)):
            c = find(ds, model, overlap)
            if c is None:
                continue
            s = summaries[c.name]
            x = i + (j - 1) * 0.27
            ax.bar(x, s["time_subnets_s"], 0.25, color="0.75" if not overlap else "0.45",
                   label=("SNets-overlap" if overlap else "SNets-non-overlap") if i == 0 else None)
            ax.bar(x, s["time_gnet_t_s"], 0.25, bottom=s["time_subnets_s"], color="C0", alpha=0.6 if not overlap else 1,
                   label="GNet-T" if (i == 0 and overlap) else None)
        c = find(ds, model, True)
        if c is not None and summaries[c.name].get("time_gnet_r_s") is not None:
            ax.bar(i + 0.27, summaries[c.name]["time_gnet_r_s"], 0.25, color="C3", label="GNet-R" if i == 0 else None)
    ax.set_xticks(range(len(groups)), [f"{m}\n({ds if ds == o else o})" for ds, m, o in groups])
    ax.set_ylabel("training time [s]")
    ax.set_title("Fig. 3.1: time of the two training strategies")
    ax.legend(fontsize=8)
    figs["3.1"] = save_figure(fig, out / "fig3_1_times.png")

    # Figs. 3.2 and 3.3: validation accuracy curves
    datasets = sorted({g[0] for g in groups})
    models = sorted({g[1] for g in groups}, key=lambda m: int(m.removeprefix("ResNet")))
    for key, title, fname in [("3.2", "Fig. 3.2: GNet-T-overlap vs GNet-R", "fig3_2_accuracy.png"),
                              ("3.3", "Fig. 3.3: GNet-T overlap vs non-overlap", "fig3_3_overlap.png")]:
        fig, axes = plt.subplots(len(datasets), len(models), figsize=(4.2 * len(models), 3.3 * len(datasets)),
                                 squeeze=False)
        for r, ds in enumerate(datasets):
            for col, model in enumerate(models):
                ax = axes[r, col]
                for overlap, color, style in [(True, "C0", "-"), (False, "C2", "--")]:
                    if key == "3.2" and not overlap:
                        continue
                    c = find(ds, model, overlap)
                    if c is None:
                        continue
                    h = summaries[c.name]["histories"]
                    n_s = summaries[c.name]["epochs"]["snets"]
                    init = summaries[c.name]["gnet_t_init_acc"]
                    xs = [n_s] + [n_s + rec["epoch"] for rec in h.get("gnet_t", [])]
                    ys = [init] + [rec["val_acc"] for rec in h.get("gnet_t", [])]
                    ax.plot(xs, ys, style, color=color, marker="o", ms=3,
                            label=f"GNet-T-{OVERLAP_NAME[overlap].replace('nonoverlap', 'non-overlap')}")
                    if key == "3.2" and h.get("gnet_r"):
                        ax.plot([rec["epoch"] for rec in h["gnet_r"]], [rec["val_acc"] for rec in h["gnet_r"]],
                                color="C3", marker="s", ms=3, label="GNet-R")
                ax.set(title=f"{ds}, {model}", xlabel="epoch (GNet-T drawn after its SNets' epochs)",
                       ylabel="validation accuracy")
                ax.grid(alpha=0.3)
                ax.legend(fontsize=8, loc="lower right")
        fig.suptitle(title)
        figs[key] = save_figure(fig, out / fname)
    return figs


def sweep_figure(out: Path, rows: list[dict]) -> str:
    plt = pyplot()

    fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(10, 3.8))
    for aug, style in [("none", "-"), *[(a, "--") for a in sorted({r["augment"] for r in rows}) if a != "none"]]:
        sel = [r for r in rows if r["augment"] == aug]
        if not sel:
            continue
        bs = [r["batch_size"] for r in sel]
        label = "no aug." if aug == "none" else f"aug. {aug}"
        ax_t.plot(bs, [timed_s(r["global"]) for r in sel], style, color="C3", marker="s", label=f"global, {label}")
        for k, color in [("subnets-overlap", "C0"), ("subnets-nonoverlap", "C2")]:
            ax_t.plot(bs, [timed_s(r[k]) for r in sel], style, color=color, marker="o", label=f"4 sub-nets {k[8:]}, {label}")
            ax_r.plot(bs, [None if timed_s(r["global"]) is None or timed_s(r[k]) is None else timed_s(r["global"]) / timed_s(r[k])
                           for r in sel], style, color=color, marker="o", label=f"{k[8:]}, {label}")
    ax_t.set(xscale="log", yscale="log", xlabel="batch size", ylabel="time of 10 epochs [s]",
             title="Table 3.2: training time")
    ax_r.set(xscale="log", xlabel="batch size", ylabel="global / 4 sub-networks", title="time ratio")
    for ax in (ax_t, ax_r):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, out / "table3_2_sweep.png")
