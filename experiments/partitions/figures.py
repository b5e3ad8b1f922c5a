"""The partitions experiment's figures: Fig. 3.5 (training times) and Fig. 3.6 (validation curves)."""

from __future__ import annotations

from experiments.partitions.config import Preset
from experiments.plotting import pyplot, save_figure


def figures(out, plan: Preset, summaries: dict) -> dict:
    plt = pyplot()

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
    save_figure(fig, out / "fig3_5_times.png")
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
    save_figure(fig, out / "fig3_6_accuracy.png")
    return {"3.5": "fig3_5_times.png", "3.6": "fig3_6_accuracy.png"}
