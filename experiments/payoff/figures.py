"""The payoff figure: accuracy against wall time."""

from __future__ import annotations

from pathlib import Path

from experiments.plotting import pyplot, save_figure


def figure(cases, path: Path) -> str:
    """Accuracy against wall time: per network, the base case and the best variant, every seed."""
    plt = pyplot()
    nets = list(dict.fromkeys(c["network"] for c in cases))
    fig, axes = plt.subplots(1, len(nets), figsize=(6.5 * len(nets), 4.5), squeeze=False)
    for ax, net in zip(axes[0], nets):
        mine = [c for c in cases if c["network"] == net]
        shown = [mine[0]]
        ranked = [c for c in mine[1:] if c["ratio_mean"] is not None]
        if ranked:
            shown.append(min(ranked, key=lambda c: c["ratio_mean"]))
        for s, cur in mine[0]["curves"]["gnet_r"].items():
            ax.plot(cur["t"], cur["acc"], "k-", marker=".", alpha=0.7, label="GNet-R" if s == str(mine[0]["seeds"][0]) else None)
        for color, c in zip(("tab:blue", "tab:orange"), shown):
            for s, cur in c["curves"]["gnet_t"].items():
                ax.plot(cur["t"], cur["acc"], "-", color=color, marker=".", alpha=0.8,
                        label=f"GNet-T {c['variant']}" if s == str(c["seeds"][0]) else None)
        ax.axhline(mine[0]["target"], color="gray", ls="--", lw=0.8, label="target (GNet-R final, mean)")
        lo = min(min(c["composed_acc_per_seed"]) for c in shown)
        ax.set_ylim(max(0.0, min(lo, mine[0]["target"]) - 0.05), None)
        ax.set(title=f"{net}: accuracy against wall time", xlabel="pipeline wall time [s] (compilation and "
               "evaluation counted)", ylabel="test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)
