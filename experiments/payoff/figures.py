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


def converged_figure(cases, epochs: dict, path: Path, sweeps: dict | None = None) -> str:
    """The converged protocol, per network (a row): validation accuracy against global epochs
    (GNet-T's drawn from the SNets' epochs on: equal epochs in all, as the paper counts them) and
    against each pipeline's wall time; GNet-R black, each GNet-T variant a colour, every seed.
    Where ``sweeps`` has GNet-R at the sweep's other rates on every seed (``every_seed``), those
    curves are grey and dashed, against epochs only (their accuracy is what they are run for).
    The axis starts below GNet-T's accuracy after its first epoch and GNet-R's after a fifth of
    its epochs; composed starts further down (global average pooling's) are counted in a note,
    GNet-R's first epochs may fall below it."""
    plt = pyplot()
    nets = list(dict.fromkeys(c["network"] for c in cases))
    fig, axes = plt.subplots(len(nets), 2, figsize=(13, 4.5 * len(nets)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, net in zip(axes, nets):
        mine = [c for c in cases if c["network"] == net]
        lo, starts = [], []
        for s, cur in mine[0]["curves"]["gnet_r"].items():
            first = s == str(mine[0]["seeds"][0])
            row[0].plot(range(1, len(cur["acc"]) + 1), cur["acc"], "k-", marker=".", alpha=0.7,
                        label="GNet-R" if first else None)
            row[1].plot(cur["t"], cur["acc"], "k-", marker=".", alpha=0.7, label="GNet-R" if first else None)
            lo.append(cur["acc"][len(cur["acc"]) // 5])
        sweep = (sweeps or {}).get(net, {})
        for lr, d in sweep.get("every_seed", {}).items():
            if lr == sweep["chosen"]:
                continue
            for i, cur in enumerate(d["curves"].values()):
                label = f"GNet-R at {lr}" if i == 0 else None
                row[0].plot(range(1, len(cur["acc"]) + 1), cur["acc"], "--", color="0.5", alpha=0.7, label=label)
        for color, c in zip(colors, mine):
            for s, cur in c["curves"]["gnet_t"].items():
                label = f"GNet-T {c['variant']}" if s == str(c["seeds"][0]) else None
                start = c["epochs"]["snets"]  # the composed start, after the SNets' epochs
                row[0].plot(range(start, start + len(cur["acc"])), cur["acc"], "-", color=color, marker=".",
                            alpha=0.8, label=label)
                row[1].plot(cur["t"], cur["acc"], "-", color=color, marker=".", alpha=0.8, label=label)
                lo.append(cur["acc"][min(1, len(cur["acc"]) - 1)])  # after GNet-T's first epoch
                starts.append(cur["acc"][0])
        floor = max(0.0, min(lo) - 0.02)
        below = sorted({a for a in starts if a < floor})  # the variants of a seed and pooling share theirs
        for ax in row:
            ax.set_ylim(floor, None)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="lower right")
            if below:
                ax.text(0.01, 0.01, f"{len(below)} composed starts below the axis ({min(below):.2f}-{max(below):.2f})",
                        transform=ax.transAxes, fontsize=8, va="bottom")
        E = mine[0]["E"]  # noqa: N806
        row[0].set(title=f"{net}: validation accuracy against epochs (E = {E}; GNet-T after {epochs['snets']} "
                   "SNet epochs)", xlabel="epochs (SNets' + GNet-T's, or GNet-R's)", ylabel="validation accuracy")
        row[1].set(title=f"{net}: against each pipeline's wall time", xlabel="pipeline wall time [s] (compilation, "
                   "evaluation and GNet-T's SNets counted)", ylabel="validation accuracy")
    return save_figure(fig, path)
